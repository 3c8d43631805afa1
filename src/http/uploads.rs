//! Resumable uploads, tus 1.0 (<https://tus.io/protocols/resumable-upload>) on
//! `/api/v1/uploads`: thin handlers over the service's upload operations.
//!
//! Every answer carries `Tus-Resumable: 1.0.0`; refusals use the JSON error envelope. When the
//! last byte is in, the answer carries `X-Reel-Video: /api/v1/videos/{id}`, the video the
//! upload became (as `Location` does for `POST /api/v1/videos`); `HEAD` repeats it afterwards,
//! so a client that lost that answer still finds its video.

use std::time::{Duration, UNIX_EPOCH};

use actix_web::http::header::{self, HeaderName, HeaderValue, HttpDate};
use actix_web::http::{Method, StatusCode};
use actix_web::{
    HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError, delete, head, options, patch,
    post, web,
};

use super::resource::video_url;
use super::videos::user_agent_family;
use crate::auth::Caller;
use crate::domain::Millis;
use crate::error::{ApiError, ErrorBody};
use crate::geo::ClientCountry;
use crate::service::{Append, CreateUpload, Service, UploadStatus};
use crate::store::UploadId;
use crate::telemetry;
use crate::upload::tus::{self, TusError};

/// The header naming the video a complete upload became.
pub const VIDEO_HEADER: &str = "X-Reel-Video";

fn text<'a>(req: &'a HttpRequest, name: &'static str) -> Result<Option<&'a str>, TusError> {
    match req.headers().get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(Some)
            .map_err(|_| TusError::InvalidHeader {
                header: name,
                reason: "not visible ASCII".into(),
            }),
    }
}

fn content_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// A request that may carry bytes: `Content-Type: application/offset+octet-stream` (else 415)
/// and an optional `Upload-Checksum`.
fn append_of(req: &HttpRequest, offset: u64) -> Result<Append, TusError> {
    let content_type = text(req, "Content-Type")?.unwrap_or_default();
    if !content_type
        .split(';')
        .next()
        .is_some_and(|t| t.trim().eq_ignore_ascii_case(tus::OFFSET_OCTET_STREAM))
    {
        return Err(TusError::ContentType);
    }
    Ok(Append {
        offset,
        checksum: text(req, "Upload-Checksum")?
            .map(tus::parse_checksum)
            .transpose()?,
        declared: content_length(req),
        country: Some(ClientCountry::of(req)),
    })
}

fn parse_upload_id(id: &str) -> Result<UploadId, TusError> {
    id.parse().map_err(|_| TusError::NotFound)
}

fn http_date(at: Millis) -> String {
    let millis = u64::try_from(at.0).unwrap_or(0);
    HttpDate::from(UNIX_EPOCH + Duration::from_millis(millis)).to_string()
}

/// `Upload-Offset`, `Upload-Expires` and, once filed, the video: what every answer about an
/// upload tells.
fn describe(response: &mut HttpResponseBuilder, status: &UploadStatus) {
    response
        .insert_header(("Upload-Offset", status.offset))
        .insert_header(("Upload-Expires", http_date(status.expires_at)));
    if let Some(video) = status.video {
        response.insert_header((VIDEO_HEADER, video_url(video)));
    }
}

/// The answer with `Tus-Resumable` (and `Tus-Version` on a 412), errors in the envelope.
fn answer(result: Result<HttpResponse, ApiError>) -> HttpResponse {
    let mut response = result.unwrap_or_else(|error| error.error_response());
    let headers = response.headers_mut();
    headers.insert(
        HeaderName::from_static("tus-resumable"),
        HeaderValue::from_static(tus::TUS_RESUMABLE),
    );
    if response.status() == StatusCode::PRECONDITION_FAILED {
        response.headers_mut().insert(
            HeaderName::from_static("tus-version"),
            HeaderValue::from_static(tus::TUS_VERSION),
        );
    }
    response
}

/// What the server speaks: version, extensions, largest upload, checksum algorithms.
#[utoipa::path(
    tag = "uploads",
    responses((status = 204, description = "tus capabilities", headers(
        ("Tus-Resumable" = String, description = "1.0.0"),
        ("Tus-Version" = String, description = "1.0.0"),
        ("Tus-Extension" = String, description = "creation,creation-with-upload,termination,expiration,checksum"),
        ("Tus-Max-Size" = u64, description = "--max-upload-bytes"),
        ("Tus-Checksum-Algorithm" = String, description = "sha1,sha256,md5"),
    )))
)]
#[options("/api/v1/uploads")]
pub async fn upload_options(service: web::Data<Service>) -> HttpResponse {
    capabilities(&service)
}

fn capabilities(service: &Service) -> HttpResponse {
    answer(Ok(HttpResponse::NoContent()
        .insert_header(("Tus-Version", tus::TUS_VERSION))
        .insert_header(("Tus-Extension", tus::TUS_EXTENSIONS))
        .insert_header(("Tus-Max-Size", service.config.max_upload_bytes))
        .insert_header(("Tus-Checksum-Algorithm", tus::CHECKSUM_ALGORITHMS))
        .finish()))
}

/// Create an upload (tus creation), optionally with its first bytes (creation-with-upload).
#[utoipa::path(
    tag = "uploads",
    request_body(content = super::resource::UploadBytes, content_type = "application/offset+octet-stream",
        description = "Optional: the first bytes of the upload (creation-with-upload)"),
    params(
        ("Tus-Resumable" = String, Header, pattern = r"^1\.0\.0$", description = "The tus version the client speaks: `1.0.0` (tus 1.0); anything else is a 412"),
        ("Upload-Length" = u64, Header, description = "The file's size in bytes"),
        ("Upload-Metadata" = Option<String>, Header,
            description = "Comma-separated `key base64(value)`: filename, title, visibility (public|private), metadata (a JSON object)"),
        ("Upload-Checksum" = Option<String>, Header, description = "`sha1|sha256|md5 base64(digest)` of the body"),
    ),
    responses(
        (status = 201, description = "Created", headers(
            ("Location" = String, description = "The upload's URL, /api/v1/uploads/{id}"),
            ("Upload-Offset" = u64, description = "Bytes received (with a body)"),
            ("Upload-Expires" = String, description = "When an unfinished upload is removed (HTTP date)"),
            ("X-Reel-Video" = String, description = "The video's URL, when the body completed the upload"))),
        (status = 400, description = "A tus header is missing or malformed", body = ErrorBody),
        (status = 403, description = "No right to upload", body = ErrorBody),
        (status = 408, description = "The body stalled", body = ErrorBody),
        (status = 412, description = "Tus-Resumable is not 1.0.0", body = ErrorBody),
        (status = 413, description = "Upload-Length is over --max-upload-bytes", body = ErrorBody),
        (status = 415, description = "Not a video container, or the body is not application/offset+octet-stream", body = ErrorBody),
        (status = 460, description = "The body does not match Upload-Checksum", body = ErrorBody),
        (status = 503, description = "Queue full or shutting down; see Retry-After", body = ErrorBody),
        (status = 507, description = "The media volume is nearly full", body = ErrorBody),
    )
)]
#[post("/api/v1/uploads")]
pub async fn create_upload(
    service: web::Data<Service>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let result = create(&service, &caller, &req, payload).await;
    if let Err(error) = &result {
        metrics::counter!(telemetry::UPLOADS, "outcome" => error.code()).increment(1);
        service.count_refused(&ClientCountry::of(&req), error.code());
    }
    answer(result)
}

async fn create(
    service: &Service,
    caller: &Caller,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    tus::check_resumable(text(req, "Tus-Resumable")?)?;
    let length = match text(req, "Upload-Length")? {
        Some(value) => tus::parse_size("Upload-Length", value)?,
        None => return Err(TusError::MissingLength.into()),
    };
    let tus_metadata = text(req, "Upload-Metadata")?.map(str::to_owned);
    let fields = tus::parse_metadata(tus_metadata.as_deref().unwrap_or_default())?;
    // creation-with-upload: a body comes with the creation.
    let with_body = content_length(req).is_some_and(|n| n > 0)
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    let append = if with_body {
        Some(append_of(req, 0)?)
    } else {
        None
    };
    let created = service
        .create_upload(
            caller,
            CreateUpload {
                length,
                tus_metadata,
                fields,
                user_agent: user_agent_family(req),
            },
        )
        .await?;
    let location = format!("/api/v1/uploads/{}", created.id);
    let status = match append {
        None => created,
        Some(append) => match service
            .append_upload(caller, created.id, append, payload)
            .await
        {
            Ok(status) => status,
            Err(error) => {
                // The upload exists: say where, so the client can resume it.
                let mut response = ApiError::from(error).error_response();
                if let Ok(value) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, value);
                }
                return Ok(response);
            }
        },
    };
    let mut response = HttpResponse::Created();
    response.insert_header((header::LOCATION, location));
    describe(&mut response, &status);
    Ok(response.finish())
}

/// Where an upload stands: its durable offset, length, metadata and, once complete, its video.
#[utoipa::path(
    tag = "uploads",
    params(
        ("id" = String, Path, description = "Upload id"),
        ("Tus-Resumable" = String, Header, pattern = r"^1\.0\.0$", description = "The tus version the client speaks: `1.0.0` (tus 1.0); anything else is a 412"),
    ),
    responses(
        (status = 200, description = "The upload", headers(
            ("Upload-Offset" = u64, description = "Bytes received and on disk"),
            ("Upload-Length" = u64),
            ("Upload-Metadata" = String, description = "As sent at creation"),
            ("Upload-Expires" = String),
            ("X-Reel-Video" = String, description = "The video's URL, once complete"))),
        (status = 404, description = "No such upload, or expired or terminated", body = ErrorBody),
        (status = 412, description = "Tus-Resumable is not 1.0.0", body = ErrorBody),
    )
)]
#[head("/api/v1/uploads/{id}")]
pub async fn upload_offset(
    service: web::Data<Service>,
    caller: Caller,
    id: web::Path<String>,
    req: HttpRequest,
) -> HttpResponse {
    answer(offset(&service, &caller, &id, &req).await)
}

async fn offset(
    service: &Service,
    caller: &Caller,
    id: &str,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    tus::check_resumable(text(req, "Tus-Resumable")?)?;
    let status = service.upload_status(caller, parse_upload_id(id)?).await?;
    let mut response = HttpResponse::Ok();
    response
        .insert_header(("Upload-Length", status.length))
        .insert_header((header::CACHE_CONTROL, "no-store"));
    if let Some(metadata) = &status.tus_metadata {
        response.insert_header(("Upload-Metadata", metadata.as_str()));
    }
    describe(&mut response, &status);
    Ok(response.finish())
}

/// Append bytes at `Upload-Offset`. The request that brings the last byte turns the upload into
/// a video (the same checks as `POST /api/v1/videos`) and names it in `X-Reel-Video`; when that
/// step is refused (503), the bytes are kept and an empty PATCH at the final offset retries it.
#[utoipa::path(
    tag = "uploads",
    request_body(content = super::resource::UploadBytes, content_type = "application/offset+octet-stream"),
    params(
        ("id" = String, Path, description = "Upload id"),
        ("Tus-Resumable" = String, Header, pattern = r"^1\.0\.0$", description = "The tus version the client speaks: `1.0.0` (tus 1.0); anything else is a 412"),
        ("Upload-Offset" = u64, Header, description = "Where these bytes go: the offset HEAD reports"),
        ("Upload-Checksum" = Option<String>, Header, description = "`sha1|sha256|md5 base64(digest)` of the body"),
    ),
    responses(
        (status = 204, description = "Bytes appended", headers(
            ("Upload-Offset" = u64, description = "The new offset"),
            ("Upload-Expires" = String),
            ("X-Reel-Video" = String, description = "The video's URL, once complete"))),
        (status = 400, description = "A tus header is missing or malformed", body = ErrorBody),
        (status = 404, description = "No such upload, or expired or terminated", body = ErrorBody),
        (status = 408, description = "The body stalled; what arrived is kept", body = ErrorBody),
        (status = 409, description = "Upload-Offset is not the upload's offset", body = ErrorBody),
        (status = 410, description = "The bytes received were lost", body = ErrorBody),
        (status = 412, description = "Tus-Resumable is not 1.0.0", body = ErrorBody),
        (status = 413, description = "More bytes than Upload-Length", body = ErrorBody),
        (status = 415, description = "Not a video container (the upload is removed), or not application/offset+octet-stream", body = ErrorBody),
        (status = 423, description = "Another request is writing this upload; see Retry-After", body = ErrorBody),
        (status = 460, description = "The body does not match Upload-Checksum; nothing of it was kept", body = ErrorBody),
        (status = 503, description = "Queue full or shutting down; see Retry-After. The bytes are kept", body = ErrorBody),
        (status = 507, description = "The media volume is nearly full", body = ErrorBody),
    )
)]
#[patch("/api/v1/uploads/{id}")]
pub async fn append_upload(
    service: web::Data<Service>,
    caller: Caller,
    id: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    answer(append(&service, &caller, &id, &req, payload).await)
}

async fn append(
    service: &Service,
    caller: &Caller,
    id: &str,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    tus::check_resumable(text(req, "Tus-Resumable")?)?;
    let id = parse_upload_id(id)?;
    let offset = match text(req, "Upload-Offset")? {
        Some(value) => tus::parse_size("Upload-Offset", value)?,
        None => {
            return Err(TusError::InvalidHeader {
                header: "Upload-Offset",
                reason: "missing".into(),
            }
            .into());
        }
    };
    let append = append_of(req, offset)?;
    let status = service.append_upload(caller, id, append, payload).await?;
    let mut response = HttpResponse::NoContent();
    describe(&mut response, &status);
    Ok(response.finish())
}

/// Terminate an upload: its bytes are removed (tus termination).
#[utoipa::path(
    tag = "uploads",
    params(
        ("id" = String, Path, description = "Upload id"),
        ("Tus-Resumable" = String, Header, pattern = r"^1\.0\.0$", description = "The tus version the client speaks: `1.0.0` (tus 1.0); anything else is a 412"),
    ),
    responses(
        (status = 204, description = "Terminated"),
        (status = 404, description = "No such upload", body = ErrorBody),
        (status = 412, description = "Tus-Resumable is not 1.0.0", body = ErrorBody),
    )
)]
#[delete("/api/v1/uploads/{id}")]
pub async fn terminate_upload(
    service: web::Data<Service>,
    caller: Caller,
    id: web::Path<String>,
    req: HttpRequest,
) -> HttpResponse {
    answer(terminate(&service, &caller, &id, &req).await)
}

async fn terminate(
    service: &Service,
    caller: &Caller,
    id: &str,
    req: &HttpRequest,
) -> Result<HttpResponse, ApiError> {
    tus::check_resumable(text(req, "Tus-Resumable")?)?;
    service
        .terminate_upload(caller, parse_upload_id(id)?)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `OPTIONS` on an upload's URL: the same capabilities.
#[options("/api/v1/uploads/{id}")]
pub async fn upload_item_options(service: web::Data<Service>) -> HttpResponse {
    capabilities(&service)
}

/// `POST` with `X-HTTP-Method-Override: PATCH|DELETE|HEAD`, for clients that cannot send those
/// methods (tus core, "X-HTTP-Method-Override").
#[post("/api/v1/uploads/{id}")]
pub async fn method_override(
    service: web::Data<Service>,
    caller: Caller,
    id: web::Path<String>,
    req: HttpRequest,
    payload: web::Payload,
) -> HttpResponse {
    let method = req
        .headers()
        .get("X-HTTP-Method-Override")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Method::from_bytes(v.trim().to_ascii_uppercase().as_bytes()).ok());
    answer(match method {
        Some(Method::PATCH) => append(&service, &caller, &id, &req, payload).await,
        Some(Method::DELETE) => terminate(&service, &caller, &id, &req).await,
        Some(Method::HEAD) => offset(&service, &caller, &id, &req).await,
        _ => Err(ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "POST to an upload needs X-HTTP-Method-Override: PATCH, DELETE or HEAD.",
        )
        // RFC 9110 §15.5.6: a 405 lists the methods the resource answers.
        .with_header(
            actix_web::http::header::ALLOW,
            actix_web::http::header::HeaderValue::from_static("HEAD, PATCH, DELETE"),
        )
        .closing()),
    })
}
