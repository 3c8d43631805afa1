//! `/hls/…`, for running without nginx in front.

use actix_web::http::header::{self, CacheControl, CacheDirective};

use actix_web::{HttpRequest, HttpResponse, route, web};

use super::{parse_id, ranged};
use crate::auth::playback::{sign_playlist, sign_storyboard};
use crate::error::ApiError;
use crate::service::Service;

fn extension(name: &str) -> &str {
    name.rsplit_once('.').map_or("", |(_, extension)| extension)
}

/// MIME type of a published ladder file by its extension; anything else is not served.
pub fn hls_mime(name: &str) -> Option<mime::Mime> {
    let mime = match extension(name) {
        "m3u8" => "application/vnd.apple.mpegurl",
        "m4s" => "video/iso.segment",
        "mp4" => "video/mp4",
        "ts" => "video/mp2t",
        "jpg" => "image/jpeg",
        "vtt" => "text/vtt; charset=utf-8",
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

/// The signature of a private ladder's link.
#[derive(Debug, Default, serde::Deserialize)]
struct PlaybackQuery {
    exp: Option<String>,
    sig: Option<String>,
}

/// Playlists, segments, poster and storyboard of a published ladder, with Range support
/// (RFC 9110 §14). A private ladder needs a signed link (`?exp=&sig=`, see `auth::playback`),
/// and its playlists and storyboard track are served with that signature appended to every
/// URI inside them.
#[route("/hls/{id}/{tail:.*}", method = "GET", method = "HEAD")]
pub async fn hls(
    service: web::Data<Service>,
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
        .fold(service.media().hls_dir(id), |path, part| path.join(part));
    let query = web::Query::<PlaybackQuery>::from_query(req.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let signed = service
        .playback(id, query.exp.as_deref(), query.sig.as_deref())
        .map_err(ApiError::playback)?;
    // A ladder that grows while it encodes: its playlists change (its segments do not).
    let growing = extension(name) == "m3u8"
        && crate::transcode::live::is_growing(&service.media().hls_dir(id));
    let cache = match &signed {
        Some(_) if growing => CacheControl(vec![CacheDirective::Private, CacheDirective::NoCache]),
        None if growing => CacheControl(vec![CacheDirective::NoCache]),
        // A private ladder is for the holder of the link only.
        Some(_) => CacheControl(vec![CacheDirective::Private, CacheDirective::MaxAge(300)]),
        // A published ladder never changes: its id is new for every upload.
        None => CacheControl(vec![
            CacheDirective::Public,
            CacheDirective::MaxAge(31_536_000),
            CacheDirective::Extension("immutable".into(), None),
        ]),
    };
    let sign: Option<fn(&str, &str) -> String> = match extension(name) {
        "m3u8" => Some(sign_playlist),
        "vtt" => Some(sign_storyboard),
        _ => None,
    };
    let mut response = match (&signed, sign) {
        (Some(query), Some(sign)) => {
            let text = tokio::fs::read_to_string(&path)
                .await
                .map_err(|_| ApiError::not_found())?;
            HttpResponse::Ok()
                .content_type(mime)
                .body(sign(&text, query))
        }
        _ => ranged::serve(&req, &path, &mime).await?,
    };
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        cache
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
