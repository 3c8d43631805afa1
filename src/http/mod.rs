//! Thin actix-web handlers: extract, call one `AppState` method, respond.
//!
//! Every answer under `/api/` is JSON, errors included: extractor rejections go through
//! [`ApiError::from_extractor`], and paths or methods no route has get a JSON 404 or 405 from
//! [`fallback`], which reads the routes off the OpenAPI document.

mod events;
mod fallback;
mod files;
mod health;
mod ranged;
pub mod resource;
mod source;
mod videos;

use std::path::Path;

use actix_web::middleware::DefaultHeaders;
use actix_web::web;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

use crate::domain::VideoId;
use crate::error::{ApiError, RequestPart};

/// The page's Content-Security-Policy: its own scripts and styles only; `blob:` for the
/// MediaSource and worker URLs hls.js makes; framed only by reel's own pages.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
     worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'self'";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "reel",
        description = "Self-hosted video pipeline: upload, HLS ladder, live progress. \
            Every error is `{\"error\": {\"code\", \"message\"}}`."
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
        .service(videos::delete_video)
        .service(source::download_source)
        .service(source::head_source)
        .service(events::events)
        .service(health::healthz)
        .service(health::readyz)
        .service(health::openapi);
}

/// Routes outside the documented API, the extractors' error shape and the `/api/` fallback;
/// the web page comes last so it never shadows anything.
pub fn configure_rest(config: &mut web::ServiceConfig, static_dir: &Path) {
    config
        .app_data(
            web::QueryConfig::default().error_handler(|error, _| {
                ApiError::from_extractor(RequestPart::Query, &error).into()
            }),
        )
        .app_data(
            web::PathConfig::default().error_handler(|error, _| {
                ApiError::from_extractor(RequestPart::Path, &error).into()
            }),
        )
        .app_data(
            web::JsonConfig::default().error_handler(|error, _| {
                ApiError::from_extractor(RequestPart::Json, &error).into()
            }),
        )
        .app_data(
            web::FormConfig::default().error_handler(|error, _| {
                ApiError::from_extractor(RequestPart::Form, &error).into()
            }),
        )
        .service(health::prometheus_metrics)
        .service(files::hls)
        .service(web::scope("/api").default_service(web::to(fallback::api_fallback)));
    let routes = fallback::Routes::of(&openapi_document());
    for path in routes.outside_api() {
        config
            .service(web::resource(path.as_str()).default_service(web::to(fallback::api_fallback)));
    }
    config
        .app_data(web::Data::new(routes))
        .service(files::page(static_dir));
}

/// Headers on every response: no MIME sniffing, and the page's Content-Security-Policy (it
/// is harmless on JSON and media, and the page needs no exception).
pub fn security_headers() -> DefaultHeaders {
    DefaultHeaders::new()
        .add(("X-Content-Type-Options", "nosniff"))
        .add(("Content-Security-Policy", CONTENT_SECURITY_POLICY))
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

/// Video ids in URLs are canonical: a lowercase, hyphenated UUID. Every other spelling the
/// `uuid` crate would accept (upper case, braces, `urn:uuid:`, no hyphens) is a 404, so one
/// video has one URL.
fn parse_id(text: &str) -> Result<VideoId, ApiError> {
    let id: VideoId = text.parse().map_err(|_| ApiError::not_found())?;
    if id.to_string() != text {
        return Err(ApiError::not_found());
    }
    Ok(id)
}
