//! `/hls/…` and the web page, for running without nginx in front.

use actix_files::Files;
use actix_web::http::header::{self, CacheControl, CacheDirective};
use std::path::Path;

use actix_web::{HttpRequest, HttpResponse, route, web};

use super::{parse_id, ranged};
use crate::app::AppState;
use crate::error::ApiError;

/// MIME type of a published ladder file by its extension; anything else is not served.
pub fn hls_mime(name: &str) -> Option<mime::Mime> {
    let extension = name.rsplit_once('.')?.1;
    let mime = match extension {
        "m3u8" => "application/vnd.apple.mpegurl",
        "m4s" => "video/iso.segment",
        "mp4" => "video/mp4",
        "ts" => "video/mp2t",
        "jpg" => "image/jpeg",
        _ => return None,
    };
    mime.parse().ok()
}

/// Only plain names: letters, digits, `_`, `-`, one dot inside; no `..`, no hidden files.
fn safe_component(part: &str) -> bool {
    !part.is_empty()
        && !part.starts_with('.')
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Playlists, segments and poster of a published ladder, with Range support (RFC 9110 §14).
#[route("/hls/{id}/{tail:.*}", method = "GET", method = "HEAD")]
pub async fn hls(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (id, tail) = path.into_inner();
    let id = parse_id(&id)?;
    let parts: Vec<&str> = tail.split('/').collect();
    if parts.len() > 2 || !parts.iter().all(|p| safe_component(p)) {
        return Err(ApiError::not_found());
    }
    let name = parts.last().copied().unwrap_or_default();
    let mime = hls_mime(name).ok_or_else(ApiError::not_found)?;
    let path = parts
        .iter()
        .fold(state.media.hls_dir(id), |path, part| path.join(part));
    let mut response = ranged::serve(&req, &path, &mime).await?;
    // A published ladder never changes: its id is new for every upload.
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        CacheControl(vec![
            CacheDirective::Public,
            CacheDirective::MaxAge(31_536_000),
            CacheDirective::Extension("immutable".into(), None),
        ])
        .to_string()
        .parse()
        .map_err(|_| ApiError::not_found())?,
    );
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::HeaderValue::from_static("*"),
    );
    Ok(response)
}

/// The web page and its assets from the static folder.
pub fn page(static_dir: &Path) -> Files {
    Files::new("/", static_dir)
        .index_file("index.html")
        .prefer_utf8(true)
}
