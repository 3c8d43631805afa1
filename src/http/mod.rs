//! Thin actix-web handlers: extract, call one `AppState` method, respond.

mod caller;
mod events;
mod files;
mod health;
pub mod pages;
pub mod resource;
mod uploads;
mod videos;

use std::path::PathBuf;

use actix_web::web;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

use crate::domain::VideoId;
use crate::error::ApiError;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "reel",
        description = "Self-hosted video pipeline: upload, HLS ladder, live progress."
    ),
    components(schemas(crate::error::ErrorBody, crate::progress::ProgressUpdate))
)]
struct ApiDoc;

/// The documented API routes; the OpenAPI document is generated from exactly these.
pub fn api(config: &mut utoipa_actix_web::service_config::ServiceConfig) {
    config
        .service(videos::upload_video)
        .service(videos::list_videos)
        .service(videos::get_video)
        .service(videos::patch_video)
        .service(videos::delete_video)
        .service(videos::download_source)
        .service(events::events)
        .service(uploads::upload_options)
        .service(uploads::create_upload)
        .service(uploads::upload_offset)
        .service(uploads::append_upload)
        .service(uploads::terminate_upload)
        .service(health::healthz)
        .service(health::readyz);
}

/// Routes outside the documented API; the web page comes last so it never shadows anything.
/// `static_dir` replaces the page built into the binary (`--static-dir`).
pub fn configure_rest(config: &mut web::ServiceConfig, static_dir: &Option<PathBuf>) {
    config
        .service(health::prometheus_metrics)
        .service(health::openapi)
        .service(uploads::upload_item_options)
        .service(uploads::method_override)
        .service(files::hls);
    pages::configure(config, static_dir.as_deref());
}

/// A worker's routes (`reel work`): health, readiness and metrics only.
pub fn configure_worker(config: &mut web::ServiceConfig) {
    config
        .service(health::healthz)
        .service(health::readyz)
        .service(health::prometheus_metrics);
}

/// The OpenAPI document, generated from the handlers' annotations.
pub fn openapi_document() -> utoipa::openapi::OpenApi {
    let (_, mut document) = actix_web::App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(api)
        .split_for_parts();
    document.info.version = env!("CARGO_PKG_VERSION").into();
    document
}

fn parse_id(text: &str) -> Result<VideoId, ApiError> {
    text.parse().map_err(|_| ApiError::not_found())
}
