//! Thin actix-web handlers: extract (the caller included), call one `Service` method, respond.
//!
//! Every answer under `/api/` is JSON, errors included: extractor rejections go through
//! [`ApiError::from_extractor`], and paths or methods no route has get a JSON 404 or 405 from
//! [`fallback`], which reads the routes off the OpenAPI document.

mod caller;
mod changes;
mod events;
mod fallback;
mod files;
pub mod filters;
mod health;
mod history;
pub mod latency;
pub mod pages;
mod ranged;
pub mod resource;
mod source;
mod tls;
mod uploads;
mod videos;
mod webhooks;

use std::path::PathBuf;

use actix_web::middleware::DefaultHeaders;
use actix_web::web;
use utoipa::OpenApi;
use utoipa_actix_web::AppExt;

use crate::domain::VideoId;
use crate::error::{ApiError, RequestPart};

/// The page's Content-Security-Policy: its own scripts and styles only; `blob:` for the
/// MediaSource and worker URLs hls.js makes; framed by nobody (only `/embed/{id}` may be framed, see `pages`).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
     worker-src 'self' blob:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
     form-action 'self'; frame-ancestors 'none'";

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
        .service(videos::patch_video)
        .service(videos::delete_video)
        .service(source::download_source)
        .service(source::head_source)
        .service(events::events)
        .service(history::history)
        .service(changes::changes)
        .service(changes::changes_stream)
        .service(webhooks::create_webhook)
        .service(webhooks::list_webhooks)
        .service(webhooks::get_webhook)
        .service(webhooks::delete_webhook)
        .service(webhooks::dead_letters)
        .service(webhooks::redeliver)
        .service(uploads::upload_options)
        .service(uploads::create_upload)
        .service(uploads::upload_offset)
        .service(uploads::append_upload)
        .service(uploads::terminate_upload)
        .service(tls::pins)
        .service(health::healthz)
        .service(health::readyz)
        .service(health::openapi);
}

/// Routes outside the documented API, the extractors' error shape and the `/api/` fallback;
/// the web page comes last so it never shadows anything. `static_dir` replaces the page built
/// into the binary (`--static-dir`).
pub fn configure_rest(config: &mut web::ServiceConfig, static_dir: &Option<PathBuf>) {
    extractor_errors(config);
    config
        .service(health::prometheus_metrics)
        .service(uploads::upload_item_options)
        .service(uploads::method_override)
        .service(files::hls)
        .service(web::scope("/api").default_service(web::to(fallback::api_fallback)));
    let routes = fallback::Routes::of(&openapi_document());
    for path in routes.outside_api() {
        config
            .service(web::resource(path.as_str()).default_service(web::to(fallback::api_fallback)));
    }
    config.app_data(web::Data::new(routes));
    pages::configure(config, static_dir.as_deref());
}

/// A worker's routes (`reel work`): health, readiness and metrics only.
pub fn configure_worker(config: &mut web::ServiceConfig) {
    extractor_errors(config);
    config
        .service(health::healthz)
        .service(health::readyz)
        .service(health::prometheus_metrics);
}

/// Every extractor's rejection in the JSON error shape.
fn extractor_errors(config: &mut web::ServiceConfig) {
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
            web::JsonConfig::default()
                .limit(64 * 1024)
                .error_handler(|error, _| ApiError::from_json(&error).into()),
        )
        .app_data(
            web::FormConfig::default().error_handler(|error, _| {
                ApiError::from_extractor(RequestPart::Form, &error).into()
            }),
        );
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

/// The `limit` of a history-like page (history, change feed, dead letters): 1 to 1000,
/// default 100; `400 invalid_limit` otherwise. The handlers ask the store for one more row to
/// know whether a next page exists.
fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            "`limit` must be between 1 and 1000.",
        ));
    }
    Ok(limit)
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
