//! `POST/GET/DELETE /api/v1/videos…`: upload, read, list, delete, download.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};

use super::parse_id;
use super::resource::{ListQuery, UploadForm, VideoBytes, VideoPage, VideoResource, video_url};
use crate::app::{AppState, UploadMeta};
use crate::domain::VideoStatus;
use crate::error::{ApiError, ErrorBody};
use crate::telemetry;
use crate::upload;

/// Longest title or file name kept, in characters.
const MAX_TEXT: usize = 200;

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

fn count_rejection(error: &ApiError) {
    metrics::counter!(telemetry::UPLOADS, "outcome" => error.code()).increment(1);
}

/// Upload a video: multipart (`file`, optional `title`) or a raw body.
#[utoipa::path(
    tag = "videos",
    request_body(
        description = "A form with the file (`file`, optional `title`), or the video's bytes as the body",
        content(
            (UploadForm = "multipart/form-data"),
            (VideoBytes = "video/*"),
            (VideoBytes = "application/octet-stream"),
        )
    ),
    params(("X-Filename" = Option<String>, Header, description = "Original file name, percent-encoded UTF-8 (raw uploads)"),
           ("X-Title" = Option<String>, Header, description = "Title, percent-encoded UTF-8 (raw uploads)")),
    responses(
        (status = 202, description = "Accepted and queued", body = VideoResource,
         headers(("Location" = String, description = "The new video's URL"))),
        (status = 400, description = "Empty body, malformed form, no `file` part, a field too long", body = ErrorBody),
        (status = 408, description = "The client stopped sending for the idle timeout", body = ErrorBody),
        (status = 413, description = "Larger than the upload limit", body = ErrorBody),
        (status = 415, description = "Not a video container, or not a video content type", body = ErrorBody),
        (status = 503, description = "Queue full or shutting down; see Retry-After", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
        (status = 507, description = "The media volume is nearly full", body = ErrorBody),
    )
)]
#[post("/api/v1/videos")]
pub async fn upload_video(
    state: web::Data<AppState>,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let result = receive_upload(&state, &req, payload).await;
    if let Err(error) = &result {
        count_rejection(error);
    }
    let mut video = result?;
    // Status and queue position from one read, so a worker claiming the job meanwhile gives
    // `processing` without a position rather than `queued` without one.
    let position = match state.store.get_with_position(video.id).await {
        Ok(Some((current, position))) => {
            video = current;
            position
        }
        // Deleted by a racing DELETE before this answer: that is what happened to it.
        Ok(None) => {
            video.status = VideoStatus::Canceled;
            None
        }
        Err(error) => {
            // Accepted all the same; the upload must not look failed and be sent again.
            tracing::warn!(video.id = %video.id, %error, "cannot read back an accepted upload");
            None
        }
    };
    let resource = VideoResource::new(&video, position);
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, video_url(video.id)))
        .json(resource))
}

async fn receive_upload(
    state: &AppState,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<crate::queue::Video, ApiError> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_ascii_lowercase();
    let limits = state.upload_limits();
    let mut meta = UploadMeta::default();

    if content_type.starts_with("multipart/form-data") {
        // The declared length includes the form's framing, so it is not held against the limit.
        state.admit_upload(&UploadMeta::default()).await?;
        let form = upload::form::receive_form(req.headers(), payload, &state.media, limits).await?;
        meta.filename = form.filename.as_deref().and_then(clean_text);
        meta.title = form
            .title
            .as_deref()
            .and_then(|title| clean_text(&String::from_utf8_lossy(title)));
        return state.file_upload(form.received, meta).await;
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
    state.admit_upload(&meta).await?;
    let received = upload::receive(payload, &state.media, limits).await?;
    state.file_upload(received, meta).await
}

/// One video.
#[utoipa::path(
    tag = "videos",
    params(("id" = String, Path, description = "Video id (lowercase hyphenated UUID)")),
    responses(
        (status = 200, description = "The video", body = VideoResource),
        (status = 404, description = "No video with this id", body = ErrorBody),
    )
)]
#[get("/api/v1/videos/{id}")]
pub async fn get_video(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<web::Json<VideoResource>, ApiError> {
    let id = parse_id(&id)?;
    let (video, position) = state
        .store
        .get_with_position(id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    Ok(web::Json(VideoResource::new(&video, position)))
}

/// Videos, newest first, cursor paginated.
#[utoipa::path(
    tag = "videos",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of videos", body = VideoPage),
        (status = 400, description = "A malformed query: `limit` outside 1–100, an unknown `status`, a bad `cursor`, a repeated parameter", body = ErrorBody),
    )
)]
#[get("/api/v1/videos")]
pub async fn list_videos(
    state: web::Data<AppState>,
    query: web::Query<ListQuery>,
) -> Result<web::Json<VideoPage>, ApiError> {
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            "`limit` must be between 1 and 100.",
        ));
    }
    let cursor = match &query.cursor {
        Some(text) => Some(parse_id(text).map_err(|_| {
            ApiError::bad_request(
                "invalid_cursor",
                "`cursor` is not a cursor from a previous page.",
            )
        })?),
        None => None,
    };
    let mut videos = state.store.list(limit + 1, cursor, query.status).await?;
    let next_cursor = if videos.len() > limit as usize {
        videos.truncate(limit as usize);
        videos.last().map(|(v, _)| v.id.to_string())
    } else {
        None
    };
    let items = videos
        .iter()
        .map(|(video, position)| VideoResource::new(video, *position))
        .collect();
    Ok(web::Json(VideoPage { items, next_cursor }))
}

/// Delete a video: cancels its job (killing ffmpeg) and removes source and outputs.
#[utoipa::path(
    tag = "videos",
    params(("id" = String, Path, description = "Video id (lowercase hyphenated UUID)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 404, description = "No video with this id", body = ErrorBody),
    )
)]
#[delete("/api/v1/videos/{id}")]
pub async fn delete_video(
    state: web::Data<AppState>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&id)?;
    if state.delete_video(id).await? {
        Ok(HttpResponse::NoContent().finish())
    } else {
        Err(ApiError::not_found())
    }
}
