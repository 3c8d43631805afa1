//! `POST/GET/DELETE /api/v1/videos…`: upload, read, list, delete, download.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, delete, get, patch, post, web};

use super::parse_id;
use super::resource::{
    ListQuery, UploadForm, VideoBytes, VideoPage, VideoPatch, VideoResource, video_url,
};
use crate::auth::Caller;
use crate::domain::{Video, Visibility};
use crate::error::{ApiError, ErrorBody};
use crate::geo::ClientCountry;
use crate::properties::metadata::{self, MetadataError};
use crate::service::{Service, UploadMeta};
use crate::store::VideoQuery;
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

/// `public` (the default) or `private`, from an upload's `X-Visibility` header or form field.
fn visibility(text: Option<&str>) -> Result<Visibility, ApiError> {
    match text.map(str::trim) {
        None | Some("") | Some("public") => Ok(Visibility::Public),
        Some("private") => Ok(Visibility::Private),
        Some(_) => Err(ApiError::bad_request(
            "invalid_visibility",
            "`visibility` must be `public` or `private`.",
        )
        .closing()),
    }
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

fn count_rejection(service: &Service, country: &str, error: &ApiError) {
    metrics::counter!(telemetry::UPLOADS, "outcome" => error.code()).increment(1);
    service.count_refused(country, error.code());
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
           ("X-Title" = Option<String>, Header, description = "Title, percent-encoded UTF-8 (raw uploads)"),
           ("X-Visibility" = Option<String>, Header, description = "`public` (default) or `private` (raw uploads)"),
           ("X-Metadata" = Option<String>, Header, description = "Client metadata (raw uploads): a JSON object of at most 16 KiB, base64url-encoded (padding optional)")),
    responses(
        (status = 202, description = "Accepted and queued", body = VideoResource,
         headers(("Location" = String, description = "The new video's URL"))),
        (status = 400, description = "Empty body, malformed form, no `file` part, a field too long, metadata that is not a JSON object (`invalid_metadata`)", body = ErrorBody),
        (status = 408, description = "The client stopped sending for the idle timeout", body = ErrorBody),
        (status = 413, description = "Larger than the upload limit, or metadata over 16 KiB (`metadata_too_large`)", body = ErrorBody),
        (status = 415, description = "Not a video container, or not a video content type", body = ErrorBody),
        (status = 503, description = "Queue full or shutting down; see Retry-After", body = ErrorBody,
         headers(("Retry-After" = u32, description = "Seconds to wait"))),
        (status = 507, description = "The media volume is nearly full", body = ErrorBody),
    )
)]
#[post("/api/v1/videos")]
pub async fn upload_video(
    service: web::Data<Service>,
    caller: Caller,
    country: ClientCountry,
    req: HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let result = receive_upload(&service, &caller, &req, payload, &country.0).await;
    if let Err(error) = &result {
        count_rejection(&service, &country.0, error);
    }
    let video = result?;
    let resource = VideoResource::new(&video, service.media_links());
    Ok(HttpResponse::Accepted()
        .insert_header((header::LOCATION, video_url(video.id)))
        .json(resource))
}

async fn receive_upload(
    service: &Service,
    caller: &Caller,
    req: &HttpRequest,
    payload: web::Payload,
    country: &str,
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
        country: Some(country.to_owned()),
        ..UploadMeta::default()
    };

    if content_type.starts_with("multipart/form-data") {
        // The declared length includes the form's framing, so it is not held against the limit.
        meta.protocol = "multipart";
        service.admit_upload(caller, &meta).await?;
        let form =
            upload::form::receive_form(req.headers(), payload, service.media().as_ref(), limits)
                .await?;
        meta.filename = form.filename.as_deref().and_then(clean_text);
        meta.title = form
            .title
            .as_deref()
            .and_then(|title| clean_text(&String::from_utf8_lossy(title)));
        meta.visibility = visibility(
            form.visibility
                .as_deref()
                .map(String::from_utf8_lossy)
                .as_deref(),
        )?;
        meta.metadata = form.metadata;
        return Ok(service.file_upload(caller, form.received, meta).await?);
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
    meta.visibility = visibility(header_text(req, "X-Visibility").as_deref())?;
    if let Some(value) = req.headers().get("X-Metadata") {
        let text = value
            .to_str()
            .map_err(|_| ApiError::from(MetadataError::NotBase64).closing())?;
        meta.metadata = Some(metadata::from_header(text).map_err(|e| ApiError::from(e).closing())?);
    }
    service.admit_upload(caller, &meta).await?;
    let received = upload::receive(payload, service.media().as_ref(), limits).await?;
    Ok(service.file_upload(caller, received, meta).await?)
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
    service: web::Data<Service>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<web::Json<VideoResource>, ApiError> {
    let video = service.video(&caller, parse_id(&id)?).await?;
    Ok(web::Json(VideoResource::new(&video, service.media_links())))
}

/// Videos, newest first, cursor paginated; filtered by status, by a title search and by
/// properties (`property.NAME=VALUE`, one per declared property, compared as text).
#[utoipa::path(
    tag = "videos",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of videos", body = VideoPage),
        (status = 400, description = "A malformed query: `limit` outside 1–100, an unknown `status`, a bad `cursor`, a repeated parameter, a `property.NAME` naming no declared property", body = ErrorBody),
    )
)]
#[get("/api/v1/videos")]
pub async fn list_videos(
    service: web::Data<Service>,
    caller: Caller,
    query: web::Query<ListQuery>,
    req: HttpRequest,
) -> Result<web::Json<VideoPage>, ApiError> {
    let properties =
        super::filters::property_filters(req.query_string(), &service.property_names())?;
    let limit = query.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::bad_request(
            "invalid_limit",
            "`limit` must be between 1 and 100.",
        ));
    }
    let before = match &query.cursor {
        Some(text) => Some(parse_id(text).map_err(|_| {
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
                properties,
                ..VideoQuery::default()
            },
        )
        .await?;
    Ok(web::Json(VideoPage {
        items: page
            .items
            .iter()
            .map(|video| VideoResource::new(video, service.media_links()))
            .collect(),
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

/// Change a video's title or visibility (its owner or an admin).
#[utoipa::path(
    tag = "videos",
    params(("id" = String, Path, description = "Video id")),
    request_body(content = VideoPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The changed video", body = VideoResource),
        (status = 400, description = "Not a valid patch, an empty or too long title, or `private` on a server without a playback secret", body = ErrorBody),
        (status = 404, description = "No such video, or not the caller's", body = ErrorBody),
        (status = 415, description = "The body is not application/json", body = ErrorBody),
    )
)]
#[patch("/api/v1/videos/{id}")]
pub async fn patch_video(
    service: web::Data<Service>,
    caller: Caller,
    id: web::Path<String>,
    body: web::Json<VideoPatch>,
) -> Result<web::Json<VideoResource>, ApiError> {
    let id = parse_id(&id)?;
    let patch = body.into_inner();
    let changes = crate::store::VideoPatch {
        title: patch.title.as_deref().map(new_title).transpose()?.map(Some),
        visibility: patch.visibility,
    };
    let video = service.update(&caller, id, changes).await?;
    Ok(web::Json(VideoResource::new(&video, service.media_links())))
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
    service: web::Data<Service>,
    caller: Caller,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    service.delete(&caller, parse_id(&id)?).await?;
    Ok(HttpResponse::NoContent().finish())
}
