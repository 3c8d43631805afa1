//! `/hls/…`, for running without nginx in front (or nginx in front of a bucket), from the
//! media store.

use std::time::Duration;

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

impl PlaybackQuery {
    fn of(req: &HttpRequest) -> Self {
        web::Query::<PlaybackQuery>::from_query(req.query_string())
            .map(web::Query::into_inner)
            .unwrap_or_default()
    }
}

/// How long a redirect to a presigned bucket URL (`--storage-redirect`) stays valid.
const REDIRECT_TTL: Duration = Duration::from_secs(600);
/// Largest playlist read into memory to be signed.
const MAX_PLAYLIST: usize = 4 << 20;

/// Playlists, segments, poster and storyboard of a published ladder, with Range support
/// (RFC 9110 §14), from the media store. A private ladder needs a signed link (`?exp=&sig=`,
/// see `auth::playback`), and its playlists and storyboard track are served with that
/// signature appended to every URI inside them. With `--storage-redirect`, files other than
/// playlists and the storyboard track are answered with a redirect to a presigned bucket URL.
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
    let rel = parts.join("/");
    let query = PlaybackQuery::of(&req);
    let signed = service
        .playback(id, query.exp.as_deref(), query.sig.as_deref())
        .await?
        .map_err(ApiError::playback)?;
    // A ladder that grows while it encodes: its playlists change (its segments do not).
    let growing = extension(name) == "m3u8" && service.media().is_growing(id).await?;
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
    let media = service.media();
    let sign: Option<fn(&str, &str) -> String> = match extension(name) {
        "m3u8" => Some(sign_playlist),
        "vtt" => Some(sign_storyboard),
        _ => None,
    };
    // Playlists and the storyboard track may need signing: always through reel.
    let redirect = (service.config.storage.storage_redirect && sign.is_none())
        .then(|| media.presign(id, Some(&rel), REDIRECT_TTL))
        .flatten();
    let mut response = if let Some(url) = redirect {
        // Checked first, so a deleted ladder is a 404 here rather than at the bucket.
        media
            .ladder_head(id, &rel)
            .await?
            .ok_or_else(ApiError::not_found)?;
        HttpResponse::Found()
            .insert_header((header::LOCATION, url))
            .insert_header((header::CACHE_CONTROL, "private, max-age=300"))
            .finish()
    } else {
        let head = media
            .ladder_head(id, &rel)
            .await?
            .ok_or_else(ApiError::not_found)?;
        match (&signed, sign) {
            (Some(query), Some(sign)) => {
                let stream = media.read_ladder(id, &rel, 0, head.len).await?;
                let text = crate::media::collect(stream, MAX_PLAYLIST).await?;
                HttpResponse::Ok()
                    .content_type(mime)
                    .body(sign(&String::from_utf8_lossy(&text), query))
            }
            _ => {
                let rel = rel.clone();
                ranged::serve(&req, &head, &mime, |start, len| async move {
                    media.read_ladder(id, &rel, start, len).await
                })
                .await?
            }
        }
    };
    if !response.headers().contains_key(header::CACHE_CONTROL) {
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            cache
                .to_string()
                .parse()
                .map_err(|_| ApiError::not_found())?,
        );
    }
    response.headers_mut().insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::HeaderValue::from_static("*"),
    );
    Ok(response)
}
