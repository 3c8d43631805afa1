//! `POST/GET/DELETE /api/v1/videos…`: upload, read, list, delete, download.

use actix_files::NamedFile;
use actix_multipart::Multipart;
use actix_web::error::JsonPayloadError;
use actix_web::http::StatusCode;
use actix_web::http::header::{self, ContentDisposition, DispositionParam, DispositionType};
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, route, web};
use futures_util::StreamExt;

use super::parse_id;
use super::resource::{ListQuery, VideoPage, VideoPatch, VideoResource, video_url};
use crate::auth::Caller;
use crate::domain::{Video, VideoId};
use crate::error::{ApiError, ErrorBody};
use crate::service::{Service, UploadMeta};
use crate::store::VideoQuery;
use crate::telemetry;
use crate::upload::{self, UploadError};

/// Longest title or file name kept, in characters.
const MAX_TEXT: usize = 200;
/// Largest non-file multipart field read (a title), in bytes.
const MAX_FIELD: usize = 4096;

fn header_text(req: &HttpRequest, name: &str) -> Option<String> {
    let raw = req.headers().get(name)?.to_str().ok()?;
    // The web page percent-encodes non-ASCII names; plain ASCII passes through unchanged.
    clean_text(&percent_encoding::percent_decode_str(raw).decode_utf8_lossy())
}

fn clean_text(text: &str) -> Option<String> {
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT)
        .collect();
    let cleaned = cleaned.trim();
    (!cleaned.is_empty()).then(|| cleaned.to_owned())
}

fn declared_size(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A coarse browser or tool family for the history, never the raw header.
pub(super) fn user_agent_family(req: &HttpRequest) -> Option<String> {
    let agent = req.headers().get(header::USER_AGENT)?.to_str().ok()?;
    let family = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
        ("python", "Python"),
        ("node", "Node.js"),
        ("reel/", "reel"),
        ("tus", "tus"),
    ]
    .iter()
    .find(|(needle, _)| agent.contains(needle))
    .map_or("other", |(_, family)| family);
    Some(family.to_owned())
}

fn count_rejection(error: &ApiError) {
    metrics::counter!(telemetry::UPLOADS, "outcome" => error.code()).increment(1);
}

/// Upload a video: multipart (`file`, optional `title`) or a raw body.
#[utoipa::path(
    tag = "videos",
    request_body(content = Vec<u8>, description = "The video bytes (raw), or multipart/form-data with `file` and `title`",
        content_type = "application/octet-stream"),
    params(("X-Filename" = Option<String>, Header, description = "Original file name (raw uploads)"),
           ("X-Title" = Option<String>, Header, description = "Title (raw uploads)")),
    responses(
        (status = 202, description = "Accepted and queued", body = VideoResource, headers(("Location" = String))),
        (status = 400, description = "Empty or unreadable body", body = ErrorBody),
        (status = 413, description = "Larger than the upload limit", body = ErrorBody),
        (status = 415, description = "Not a video container", body = ErrorBody),
        (status = 503, description = "Queue full or shutting down; see Retry-After", body = ErrorBody),
        (status = 507, description = "The media volume is nearly full", body = ErrorBody),
    )
)]
#[post("/api/v1/videos")]
pub async fn upload_video(
    service: web::Data<Service>,
    caller: Caller,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let result = receive_upload(&service, &caller, &req, payload).await;
    if let Err(error) = &result {
        count_rejection(error);
    }
    let video = result?;
    let resource = VideoResource::new(&video);
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, video_url(video.id)))
        .json(resource))
}

async fn receive_upload(
    service: &Service,
    caller: &Caller,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<Video, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_ascii_lowercase();
    let limits = service.upload_limits();
    let mut meta = UploadMeta {
        user_agent: user_agent_family(req),
        ..UploadMeta::default()
    };

    if content_type.starts_with("multipart/form-data") {
        // The declared length includes the form's framing, so it is not held against the limit.
        meta.protocol = "multipart";
        service.admit_upload(caller, &meta).await?;
        let mut form = Multipart::new(req.headers(), payload);
        let mut received = None;
        while let Some(field) = form.next().await {
            let mut field = field.map_err(|e| ApiError::from(UploadError::Body(e.to_string())))?;
            match field.name() {
                Some("file") if received.is_none() => {
                    meta.filename = field
                        .content_disposition()
                        .and_then(|d| d.get_filename())
                        .and_then(clean_text);
                    received = Some(upload::receive(&mut field, service.media(), limits).await?);
                }
                Some("title") => {
                    let mut text = Vec::new();
                    while let Some(chunk) = field.next().await {
                        let chunk =
                            chunk.map_err(|e| ApiError::from(UploadError::Body(e.to_string())))?;
                        if text.len() + chunk.len() > MAX_FIELD {
                            return Err(ApiError::bad_request(
                                "title_too_long",
                                "The title is too long.",
                            )
                            .closing());
                        }
                        text.extend_from_slice(&chunk);
                    }
                    meta.title = clean_text(&String::from_utf8_lossy(&text));
                }
                // Unknown fields (or a second file) are read and dropped.
                _ => while field.next().await.is_some() {},
            }
        }
        let received = received.ok_or_else(|| {
            ApiError::bad_request("missing_file", "The form has no `file` field.")
        })?;
        return Ok(service.file_upload(caller, received, meta).await?);
    }

    let is_video =
        content_type.starts_with("video/") || content_type.starts_with("application/octet-stream");
    if !is_video {
        return Err(ApiError::new(
            actix_web::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("Send the video as multipart/form-data, video/* or application/octet-stream, not {content_type}."),
        )
        .closing());
    }
    meta.declared_size = declared_size(req);
    meta.filename = header_text(req, "X-Filename");
    meta.title = header_text(req, "X-Title");
    service.admit_upload(caller, &meta).await?;
    let received = upload::receive(payload, service.media(), limits).await?;
    Ok(service.file_upload(caller, received, meta).await?)
}

/// One video.
#[utoipa::path(
    tag = "videos",
    params(("id" = String, Path, description = "Video id")),
    responses((status = 200, body = VideoResource), (status = 404, body = ErrorBody))
)]
#[get("/api/v1/videos/{id}")]
pub async fn get_video(
    service: web::Data<Service>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<web::Json<VideoResource>, ApiError> {
    let video = service.video(&caller, parse_id(&id)?).await?;
    Ok(web::Json(VideoResource::new(&video)))
}

/// Videos, newest first, cursor paginated; filtered by status and by a title search.
#[utoipa::path(
    tag = "videos",
    params(ListQuery),
    responses((status = 200, body = VideoPage), (status = 400, body = ErrorBody))
)]
#[get("/api/v1/videos")]
pub async fn list_videos(
    service: web::Data<Service>,
    caller: Caller,
    query: web::Query<ListQuery>,
) -> Result<web::Json<VideoPage>, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            "`limit` must be between 1 and 100.",
        ));
    }
    let before = match &query.cursor {
        Some(text) => Some(text.parse::<VideoId>().map_err(|_| {
            ApiError::bad_request(
                "invalid_cursor",
                "`cursor` is not a cursor from a previous page.",
            )
        })?),
        None => None,
    };
    let page = service
        .list(
            &caller,
            VideoQuery {
                status: query.status,
                title_contains: search_text(query.q.as_deref())?,
                before,
                limit,
                ..VideoQuery::default()
            },
        )
        .await?;
    Ok(web::Json(VideoPage {
        items: page.items.iter().map(VideoResource::new).collect(),
        next_cursor: page.next.map(|id| id.to_string()),
    }))
}

/// The `q` of a list request: trimmed, `None` when blank, refused past [`MAX_TEXT`] characters.
fn search_text(q: Option<&str>) -> Result<Option<String>, ApiError> {
    let Some(q) = q.map(str::trim).filter(|q| !q.is_empty()) else {
        return Ok(None);
    };
    if q.chars().count() > MAX_TEXT {
        return Err(ApiError::bad_request(
            "invalid_query",
            format!("`q` must be at most {MAX_TEXT} characters."),
        ));
    }
    Ok(Some(q.to_owned()))
}

/// A new title: control characters dropped, trimmed, 1 to [`MAX_TEXT`] characters.
fn new_title(text: &str) -> Result<String, ApiError> {
    let cleaned: String = text.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_title",
            "The title cannot be empty.",
        ));
    }
    if cleaned.chars().count() > MAX_TEXT {
        return Err(ApiError::bad_request(
            "invalid_title",
            format!("The title must be at most {MAX_TEXT} characters."),
        ));
    }
    Ok(cleaned.to_owned())
}

/// Why a JSON body was refused, in the error envelope.
fn json_body_error(error: &actix_web::Error) -> ApiError {
    match error.as_error::<JsonPayloadError>() {
        Some(JsonPayloadError::ContentType) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "Send the changes as application/json.",
        ),
        Some(JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. }) => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "The request body is too large.",
            )
        }
        Some(JsonPayloadError::Deserialize(reason)) => {
            ApiError::bad_request("invalid_body", format!("The body is not valid: {reason}."))
        }
        _ => ApiError::bad_request("invalid_body", "The body could not be read as JSON."),
    }
}

/// Change a video's title.
#[utoipa::path(
    tag = "videos",
    params(("id" = String, Path, description = "Video id")),
    request_body(content = VideoPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed video", body = VideoResource),
        (status = 400, description = "Not a valid patch, or an empty or too long title", body = ErrorBody),
        (status = 404, body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
    )
)]
#[patch("/api/v1/videos/{id}")]
pub async fn patch_video(
    service: web::Data<Service>,
    caller: Caller,
    id: web::Path<String>,
    body: Result<web::Json<VideoPatch>, actix_web::Error>,
) -> Result<web::Json<VideoResource>, ApiError> {
    let id = parse_id(&id)?;
    let patch = body.map_err(|e| json_body_error(&e))?.into_inner();
    let changes = crate::store::VideoPatch {
        title: patch.title.as_deref().map(new_title).transpose()?.map(Some),
        visibility: None,
    };
    let video = service.update(&caller, id, changes).await?;
    Ok(web::Json(VideoResource::new(&video)))
}

/// Delete a video: cancels its job (killing ffmpeg) and removes source and outputs.
#[utoipa::path(
    tag = "videos",
    params(("id" = String, Path, description = "Video id")),
    responses((status = 204, description = "Deleted"), (status = 404, body = ErrorBody))
)]
#[delete("/api/v1/videos/{id}")]
pub async fn delete_video(
    service: web::Data<Service>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    service.delete(&caller, parse_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// The original upload, with Range support.
#[utoipa::path(
    tag = "videos",
    params(("id" = String, Path, description = "Video id")),
    responses((status = 200, description = "The original bytes", content_type = "application/octet-stream"),
              (status = 206, description = "A byte range"), (status = 404, body = ErrorBody))
)]
#[route("/api/v1/videos/{id}/source", method = "GET", method = "HEAD")]
pub async fn download_source(
    service: web::Data<Service>,
    caller: Caller,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    let source = service.source(&caller, id).await?;
    let name = source
        .video
        .filename
        .clone()
        .unwrap_or_else(|| format!("{id}.video"));
    let disposition = ContentDisposition {
        disposition: DispositionType::Attachment,
        parameters: vec![DispositionParam::Filename(name)],
    };
    if service.config.accel_redirect {
        // nginx sends the file from its internal `/_sources/` location, with Range and sendfile.
        return Ok(HttpResponse::Ok()
            .insert_header(("X-Accel-Redirect", format!("/_sources/{id}")))
            .insert_header((header::CONTENT_DISPOSITION, disposition))
            .content_type(mime::APPLICATION_OCTET_STREAM)
            .finish());
    }
    let file = NamedFile::open_async(&source.path)
        .await
        .map_err(|_| ApiError::not_found())?;
    let file = file
        .set_content_type(mime::APPLICATION_OCTET_STREAM)
        .set_content_disposition(disposition);
    let response = file.into_response(&req);
    if req.method() == actix_web::http::Method::GET && response.status().is_success() {
        let range = req
            .headers()
            .get(header::RANGE)
            .and_then(|v| v.to_str().ok());
        let bytes = response
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        service.record_download(&source.video, bytes, range).await;
    }
    Ok(response)
}
