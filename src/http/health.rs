//! Liveness, readiness, Prometheus metrics and the OpenAPI document.

use actix_web::{HttpResponse, get, web};
use metrics_exporter_prometheus::PrometheusHandle;
use serde::Serialize;
use utoipa::ToSchema;

use crate::service::Service;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// `ok` (liveness), `ready` or `unavailable`.
    pub status: &'static str,
    /// The database answers and holds reel's schema.
    pub database: bool,
    /// The local media dir (work in progress) can be written.
    pub media: bool,
    /// The media store answers: the folder can be written, or the bucket (`--storage s3://…`)
    /// answers within 3 s.
    pub storage: bool,
    /// Free space is at or above `--min-free-bytes` (below it uploads get 507).
    pub space: bool,
    /// ffmpeg and ffprobe are still where the start-up check found them.
    pub tools: bool,
    /// Not shutting down.
    pub accepting: bool,
}

/// The process is alive.
#[utoipa::path(tag = "health", responses((status = 200, description = "Alive", body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        database: true,
        media: true,
        storage: true,
        space: true,
        tools: true,
        accepting: true,
    })
}

/// Ready to take an upload and run a job: database, media volume, free space, tools.
#[utoipa::path(
    tag = "health",
    responses(
        (status = 200, description = "Ready to take uploads and run jobs", body = Health),
        (status = 503, description = "Not ready; the body says which part is not", body = Health),
    )
)]
#[get("/readyz")]
pub async fn readyz(service: web::Data<Service>) -> HttpResponse {
    let checks = service.readiness().await;
    let body = Health {
        status: if checks.ready() {
            "ready"
        } else {
            "unavailable"
        },
        database: checks.database,
        media: checks.media,
        storage: checks.storage,
        space: checks.space,
        tools: checks.tools,
        accepting: checks.accepting,
    };
    if checks.ready() {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text format. Queue gauges are read from the shared queue at scrape time, so
/// every node reports the same depth.
#[get("/metrics")]
pub async fn prometheus_metrics(
    service: web::Data<Service>,
    handle: web::Data<PrometheusHandle>,
) -> HttpResponse {
    service.refresh_queue_gauges().await;
    handle.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(handle.render())
}

/// This API's OpenAPI document, generated from the handlers.
#[utoipa::path(
    tag = "health",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", content_type = "application/json", body = Object))
)]
#[get("/api/v1/openapi.json")]
pub async fn openapi(document: web::Data<utoipa::openapi::OpenApi>) -> HttpResponse {
    HttpResponse::Ok().json(document.get_ref())
}
