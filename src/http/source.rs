//! `GET/HEAD /api/v1/videos/{id}/source`: the original upload, as a download.
//!
//! The name is sent twice (RFC 6266 §4.3): `filename="…"`, an ASCII stand-in for old clients,
//! and `filename*=UTF-8''…` (RFC 8187) with the real name. The media type comes from the
//! stored bytes (the same sniffing as at upload), not from anything the client said.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, get, head, web};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::parse_id;
use super::ranged;
use super::resource::VideoBytes;
use crate::auth::Caller;
use crate::domain::VideoId;
use crate::error::{ApiError, ErrorBody};
use crate::service::Service;
use crate::upload::sniff::{self, SNIFF_LEN};

/// The original upload, with Range support (RFC 9110 §14).
#[utoipa::path(
    tag = "videos",
    operation_id = "download_source",
    params(("id" = String, Path, description = "Video id (lowercase hyphenated UUID)"),
           ("Range" = Option<String>, Header, description = "`bytes=first-last`, `bytes=first-` or `bytes=-suffix`; one range gives a 206, several or another unit the whole file"),
           ("If-Range" = Option<String>, Header, description = "An ETag or date: the range only if the file still matches it")),
    responses(
        (status = 200, description = "The original bytes, as the container's media type (`video/mp4`, `video/webm`, …)",
         content((VideoBytes = "video/*"), (VideoBytes = "application/mxf"), (VideoBytes = "application/octet-stream"))),
        (status = 206, description = "One byte range, with `Content-Range`",
         content((VideoBytes = "video/*"), (VideoBytes = "application/mxf"), (VideoBytes = "application/octet-stream"))),
        (status = 304, description = "Not modified (`If-None-Match` / `If-Modified-Since`)"),
        (status = 404, description = "No video with this id", body = ErrorBody),
        (status = 412, description = "`If-Match` / `If-Unmodified-Since` failed", body = ErrorBody),
        (status = 416, description = "No requested range overlaps the file; `Content-Range: bytes */len`", body = ErrorBody),
    )
)]
#[get("/api/v1/videos/{id}/source")]
pub async fn download_source(
    service: web::Data<Service>,
    caller: Caller,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    send_source(&service, &caller, &id, &req).await
}

/// The headers of a source download, without its bytes.
#[utoipa::path(
    tag = "videos",
    operation_id = "head_source",
    params(("id" = String, Path, description = "Video id (lowercase hyphenated UUID)"),
           ("Range" = Option<String>, Header, description = "`bytes=first-last`, `bytes=first-` or `bytes=-suffix`; one range gives a 206, several or another unit the whole file"),
           ("If-Range" = Option<String>, Header, description = "An ETag or date: the range only if the file still matches it")),
    responses(
        (status = 200, description = "The headers of the whole download"),
        (status = 206, description = "The headers of one byte range"),
        (status = 304, description = "Not modified"),
        (status = 404, description = "No video with this id"),
        (status = 412, description = "A precondition failed"),
        (status = 416, description = "No requested range overlaps the file"),
    )
)]
#[head("/api/v1/videos/{id}/source")]
pub async fn head_source(
    service: web::Data<Service>,
    caller: Caller,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    send_source(&service, &caller, &id, &req).await
}

/// How long a presigned link to a source (`--storage-redirect`) stays valid: enough to start
/// the transfer, which then runs to its end.
const PRESIGNED_TTL: std::time::Duration = std::time::Duration::from_secs(300);

/// Sends the original and, for a GET, appends `downloaded` (bytes, range) to its history.
async fn send_source(
    service: &Service,
    caller: &Caller,
    id: &str,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(id)?;
    let source = service.source(caller, id).await?;
    let media = service.media();
    let content_type = media_type(media.as_ref(), id, source.head.len).await?;
    let disposition = attachment(id, source.video.filename.as_deref());
    let range = req
        .headers()
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let is_get = req.method() == actix_web::http::Method::GET;
    let presigned = media.presign(id, None, PRESIGNED_TTL);
    // nginx sends a folder's file itself from its internal `/_sources/` location (sendfile,
    // Range), keeping these Content-Type and Content-Disposition headers. A bucket's source
    // is streamed (or redirected) by reel below: nginx has no route to the bucket.
    if service.config.accel_redirect && presigned.is_none() {
        if is_get {
            service
                .record_download(&source.video, source.head.len, range.as_deref())
                .await;
        }
        return Ok(HttpResponse::Ok()
            .insert_header(("X-Accel-Redirect", format!("/_sources/{id}")))
            .insert_header((header::CONTENT_DISPOSITION, disposition))
            .content_type(content_type)
            .finish());
    }
    if let Some(url) = presigned.filter(|_| service.config.storage.storage_redirect) {
        if is_get {
            service
                .record_download(&source.video, source.head.len, range.as_deref())
                .await;
        }
        return Ok(HttpResponse::Found()
            .insert_header((header::LOCATION, url))
            .insert_header((header::CACHE_CONTROL, "private, no-store"))
            .finish());
    }
    let mut response = ranged::serve(req, &source.head, &content_type, |start, len| async move {
        media.read_source(id, start, len).await
    })
    .await?;
    if let Ok(value) = header::HeaderValue::from_str(&disposition) {
        response
            .headers_mut()
            .insert(header::CONTENT_DISPOSITION, value);
    }
    if is_get && response.status().is_success() {
        // The body's own size: actix writes Content-Length from it when sending, so the
        // header is not there yet.
        let bytes = match actix_web::body::MessageBody::size(response.body()) {
            actix_web::body::BodySize::Sized(n) => n,
            // A stream (a bucket's object): the range it answers, or the whole file.
            _ => content_range_len(&response).unwrap_or(source.head.len),
        };
        service
            .record_download(&source.video, bytes, range.as_deref())
            .await;
    }
    Ok(response)
}

/// The media type of the stored source, from its first bytes.
async fn media_type(
    media: &dyn crate::media::MediaStore,
    id: VideoId,
    len: u64,
) -> Result<mime::Mime, ApiError> {
    let stream = media.read_source(id, 0, len.min(SNIFF_LEN as u64)).await?;
    let head = crate::media::collect(stream, SNIFF_LEN).await?;
    Ok(sniff::media_type(&head)
        .parse()
        .unwrap_or(mime::APPLICATION_OCTET_STREAM))
}

/// RFC 8187 `attr-char`: what an ext-value may carry unencoded.
const ATTR_CHAR: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `attachment; filename="<ASCII>"; filename*=UTF-8''<percent-encoded UTF-8>`, the UTF-8 name
/// encoded exactly as RFC 8187 says (actix's `ExtendedValue` also encodes `-` and `.`-like
/// attr-chars, which decoders accept but people read worse).
pub fn attachment(id: VideoId, name: Option<&str>) -> String {
    let name = name.map_or_else(|| format!("{id}.video"), str::to_owned);
    format!(
        "attachment; filename=\"{}\"; filename*=UTF-8''{}",
        ascii_fallback(&name),
        utf8_percent_encode(&name, ATTR_CHAR)
    )
}

/// The name transliterated to ASCII (`Été à Noël.mp4` → `Ete a Noel.mp4`), keeping only
/// characters that need no quoting or decoding anywhere (RFC 6266 appendix D: no `%`, `\`,
/// `"`).
fn ascii_fallback(name: &str) -> String {
    let plain: String = deunicode::deunicode(name)
        .chars()
        .map(|c| match c {
            ' ' | '.' | '-' | '_' | '(' | ')' | '[' | ']' | '+' | ',' => c,
            c if c.is_ascii_alphanumeric() => c,
            _ => '_',
        })
        .collect();
    let plain = plain.trim();
    if plain.is_empty() || plain.chars().all(|c| c == '.' || c == '_') {
        "video".to_owned()
    } else {
        plain.to_owned()
    }
}

/// The length of the `Content-Range: bytes a-b/len` a 206 carries (`b - a + 1`).
fn content_range_len(response: &HttpResponse) -> Option<u64> {
    let value = response
        .headers()
        .get(header::CONTENT_RANGE)?
        .to_str()
        .ok()?;
    let (from, to) = value
        .strip_prefix("bytes ")?
        .split_once('/')?
        .0
        .split_once('-')?;
    let (from, to): (u64, u64) = (from.parse().ok()?, to.parse().ok()?);
    to.checked_sub(from).map(|n| n + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_is_plain_ascii_and_the_real_name_is_encoded() {
        let id = VideoId::new();
        let header = attachment(id, Some("Été à Noël.mp4"));
        assert_eq!(
            header,
            "attachment; filename=\"Ete a Noel.mp4\"; \
             filename*=UTF-8''%C3%89t%C3%A9%20%C3%A0%20No%C3%ABl.mp4"
        );
        assert_eq!(ascii_fallback("a\"b\\c%41.mp4"), "a_b_c_41.mp4");
        assert_eq!(ascii_fallback("..."), "video");
        assert!(attachment(id, None).ends_with(&format!("''{id}.video")));
        assert!(attachment(id, Some("clip-4s.mp4")).ends_with("UTF-8''clip-4s.mp4"));
    }
}
