//! Liveness, readiness, Prometheus metrics and the OpenAPI document.

use actix_web::{HttpResponse, get, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::app::AppState;
use crate::telemetry;

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub database: bool,
    pub media: bool,
}

/// The process is alive.
#[utoipa::path(tag = "health", responses((status = 200, description = "Alive", body = Health)))]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health {
        status: "ok",
        database: true,
        media: true,
    })
}

/// The database and the media volume are usable.
#[utoipa::path(
    tag = "health",
    responses(
        (status = 200, description = "Ready to take uploads and run jobs", body = Health),
        (status = 503, description = "Not ready; the body says which part is not", body = Health),
    )
)]
#[get("/readyz")]
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let database = state.store.ping().await.is_ok();
    let media = {
        let media = state.media.clone();
        web::block(move || media.is_writable())
            .await
            .unwrap_or(false)
    };
    let ready = database && media && !state.shutdown.is_cancelled();
    let body = Health {
        status: if ready { "ready" } else { "unavailable" },
        database,
        media,
    };
    if ready {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

/// Prometheus text format.
#[get("/metrics")]
pub async fn prometheus_metrics(state: web::Data<AppState>) -> HttpResponse {
    ::metrics::gauge!(telemetry::ENCODERS_BUSY).set(state.encoders.busy() as f64);
    state.metrics.run_upkeep();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
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
