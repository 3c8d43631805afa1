//! Sends a stored file with validators, conditional requests and byte ranges per RFC 9110.
//!
//! actix-files' `NamedFile` (0.6.10) answers a 206 of the first range when several are asked
//! for, a 416 for a range unit it does not know, and ignores `If-Range`; each is a different
//! answer than RFC 9110 §14 asks for, so the decisions are made here, in this order
//! (RFC 9110 §13.2.2): `If-Match` / `If-Unmodified-Since` (412), `If-None-Match` /
//! `If-Modified-Since` (304), then `If-Range` and `Range`:
//! - no `Range`, an unknown range unit, a malformed range set, or an `If-Range` that does not
//!   match the current representation: the whole file, `200`;
//! - one satisfiable range: `206` with `Content-Range: bytes first-last/len`;
//! - several ranges: the whole file, `200` (RFC 9110 §14.2 lets a server ignore `Range`; no
//!   multipart/byteranges is made);
//! - a range set none of which overlaps the file: `416` with `Content-Range: bytes */len`.
//!
//! Range parsing is `http-range` (the parser actix-files uses), which tells "malformed or not
//! bytes" apart from "no overlap". The bytes come from the media store (a file, or ranged
//! reads of a bucket object), so the same answers hold for both.

use std::future::Future;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_web::body::SizedStream;
use actix_web::http::header::{
    self, EntityTag, HeaderValue, HttpDate, IfMatch, IfModifiedSince, IfNoneMatch, IfRange,
    IfUnmodifiedSince,
};
use actix_web::http::{Method, StatusCode};
use actix_web::{HttpMessage, HttpRequest, HttpResponse};

use crate::error::ApiError;
use crate::media::{ByteStream, MediaError, ObjectHead};

/// What to send of a file of `len` bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    Whole,
    /// Bytes `start..start + length`.
    Range {
        start: u64,
        length: u64,
    },
    Unsatisfiable,
}

/// Sends the stored file `head` describes as `content_type`; `open(start, length)` reads its
/// bytes (not called for a `HEAD`, a `304` or a refusal). Headers the caller adds afterwards
/// (caching, CORS, disposition) apply to every status this returns.
pub async fn serve<F, Fut>(
    req: &HttpRequest,
    head: &ObjectHead,
    content_type: &mime::Mime,
    open: F,
) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(u64, u64) -> Fut,
    Fut: Future<Output = Result<ByteStream, MediaError>>,
{
    let len = head.len;
    let modified = head.modified;
    let etag = EntityTag::new_strong(head.etag.replace('"', ""));
    let last_modified = modified.map(HttpDate::from);

    let mut response = HttpResponse::Ok();
    response
        .insert_header((header::CONTENT_TYPE, content_type.to_string()))
        .insert_header((header::ETAG, etag.to_string()))
        .insert_header((header::ACCEPT_RANGES, "bytes"));
    if let Some(date) = last_modified {
        response.insert_header((header::LAST_MODIFIED, date.to_string()));
    }

    match precondition(req, &etag, modified) {
        Some(StatusCode::NOT_MODIFIED) => {
            return Ok(response.status(StatusCode::NOT_MODIFIED).finish());
        }
        Some(status) => {
            return Err(ApiError::new(
                status,
                "precondition_failed",
                "The file does not match the request's If-Match / If-Unmodified-Since / If-None-Match.",
            ));
        }
        None => {}
    }
    let part = if if_range_holds(req, &etag, modified) {
        part_of(req, len)
    } else {
        Part::Whole
    };
    let (start, length) = match part {
        Part::Whole => (0, len),
        Part::Range { start, length } => {
            response.status(StatusCode::PARTIAL_CONTENT).insert_header((
                header::CONTENT_RANGE,
                format!("bytes {start}-{}/{len}", start + length - 1),
            ));
            (start, length)
        }
        Part::Unsatisfiable => {
            let content_range = HeaderValue::from_str(&format!("bytes */{len}"))
                .map_err(|_| ApiError::not_found())?;
            return Err(ApiError::new(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "range_not_satisfiable",
                format!("No requested range overlaps the {len} bytes of this file."),
            )
            .with_header(header::CONTENT_RANGE, content_range));
        }
    };
    let stream: ByteStream = if req.method() == Method::HEAD {
        Box::pin(futures_util::stream::empty())
    } else {
        open(start, length).await?
    };
    Ok(response.body(SizedStream::new(length, stream)))
}

fn seconds(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// RFC 9110 §13.2.2 steps 1 to 4: `412` or `304`, or `None` to go on.
fn precondition(
    req: &HttpRequest,
    etag: &EntityTag,
    modified: Option<SystemTime>,
) -> Option<StatusCode> {
    let safe = matches!(*req.method(), Method::GET | Method::HEAD);
    match req.get_header::<IfMatch>() {
        Some(IfMatch::Any) => {}
        Some(IfMatch::Items(tags)) => {
            if !tags.iter().any(|tag| tag.strong_eq(etag)) {
                return Some(StatusCode::PRECONDITION_FAILED);
            }
        }
        None => {
            if let (Some(IfUnmodifiedSince(since)), Some(modified)) =
                (req.get_header::<IfUnmodifiedSince>(), modified)
                && seconds(modified) > seconds(since.into())
            {
                return Some(StatusCode::PRECONDITION_FAILED);
            }
        }
    }
    let not_modified = match req.get_header::<IfNoneMatch>() {
        Some(IfNoneMatch::Any) => true,
        Some(IfNoneMatch::Items(tags)) => tags.iter().any(|tag| tag.weak_eq(etag)),
        None => match (req.get_header::<IfModifiedSince>(), modified) {
            (Some(IfModifiedSince(since)), Some(modified)) if safe => {
                seconds(modified) <= seconds(since.into())
            }
            _ => false,
        },
    };
    if !not_modified {
        return None;
    }
    Some(if safe {
        StatusCode::NOT_MODIFIED
    } else {
        StatusCode::PRECONDITION_FAILED
    })
}

/// RFC 9110 §13.1.5: without `If-Range` the range applies; with one, only when it names the
/// current representation: the same strong entity tag, or exactly its modification date.
fn if_range_holds(req: &HttpRequest, etag: &EntityTag, modified: Option<SystemTime>) -> bool {
    if !req.headers().contains_key(header::IF_RANGE) {
        return true;
    }
    match req.get_header::<IfRange>() {
        Some(IfRange::EntityTag(tag)) => tag.strong_eq(etag),
        Some(IfRange::Date(date)) => {
            modified.is_some_and(|modified| seconds(modified) == seconds(date.into()))
        }
        // An If-Range that does not parse cannot match anything.
        None => false,
    }
}

/// What the `Range` header asks of a file of `len` bytes (RFC 9110 §14.2).
fn part_of(req: &HttpRequest, len: u64) -> Part {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return Part::Whole;
    }
    let Some(range) = req.headers().get(header::RANGE) else {
        return Part::Whole;
    };
    let Ok(text) = range.to_str() else {
        return Part::Whole;
    };
    // Counted on the header, not on what overlaps: a request for several ranges never gets a
    // plain 206 of one of them.
    let asked = text
        .split(',')
        .filter(|spec| !spec.trim().is_empty())
        .count();
    match http_range::HttpRange::parse(text, len) {
        Ok(ranges) => match ranges.as_slice() {
            [one] if asked == 1 => Part::Range {
                start: one.start,
                length: one.length,
            },
            // An empty set, or several ranges: the whole file.
            _ => Part::Whole,
        },
        Err(http_range::HttpRangeParseError::NoOverlap) => Part::Unsatisfiable,
        // Not `bytes=`, or malformed: ignored.
        Err(http_range::HttpRangeParseError::InvalidRange) => Part::Whole,
    }
}
