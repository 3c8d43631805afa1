//! The one mapping from domain errors to HTTP responses: `{"error": {"code", "message"}}`.
//!
//! Every `From` below matches exhaustively, so a new error variant forces a decision on its
//! status and code. 5xx responses carry a generic message; their cause is logged here, once.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::media::MediaError;
use crate::service::ServiceError;
use crate::store::StoreError;
use crate::upload::UploadError;
use crate::upload::tus::TusError;

/// Seconds a client is asked to wait when the queue is full.
const QUEUE_RETRY_AFTER: u32 = 30;
/// Seconds a client is asked to wait while the database is away.
const DATABASE_RETRY_AFTER: u32 = 5;
/// Seconds a client is asked to wait when the media storage (the bucket) is unreachable.
const STORAGE_RETRY_AFTER: u32 = 5;

#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    retry_after: Option<u32>,
    /// Set when the request body was not read to the end: the connection cannot be reused.
    close: bool,
    headers: Vec<(header::HeaderName, HeaderValue)>,
    cause: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code for scripts.
    pub code: String,
    /// What happened, for people.
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
            close: false,
            headers: Vec::new(),
            cause: None,
        }
    }

    /// 403 for a private ladder asked for without a valid signed link.
    pub fn playback(error: crate::auth::playback::PlaybackError) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", format!("{error}."))
    }

    /// 401 for a missing or refused bearer token, with its RFC 6750 challenge.
    pub fn unauthorized(error: crate::auth::jwt::TokenError) -> Self {
        use crate::auth::jwt::TokenError;
        let (code, message, challenge) = match &error {
            TokenError::Missing => (
                "unauthorized",
                "Sign in: send a bearer token (Authorization: Bearer …).".to_owned(),
                r#"Bearer realm="reel""#.to_owned(),
            ),
            other => (
                "invalid_token",
                format!("The bearer token was refused: {other}."),
                format!(
                    r#"Bearer realm="reel", error="invalid_token", error_description="{}""#,
                    other.to_string().replace('"', "'")
                ),
            ),
        };
        let error = Self::new(StatusCode::UNAUTHORIZED, code, message);
        match HeaderValue::from_str(&challenge) {
            Ok(value) => error.with_header(header::WWW_AUTHENTICATE, value),
            Err(_) => error,
        }
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "No video with this id.")
    }

    /// No route under `/api/` has this path.
    pub fn no_route() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "Nothing here: see /api/v1/openapi.json for the routes.",
        )
    }

    /// The path exists but not with this method; `allow` lists the methods it has.
    pub fn method_not_allowed(allow: &str) -> Self {
        let error = Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!("This path answers {allow} only."),
        );
        match HeaderValue::from_str(allow) {
            Ok(value) => error.with_header(header::ALLOW, value),
            Err(_) => error,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unavailable(message: impl Into<String>, retry_after: u32) -> Self {
        Self {
            retry_after: Some(retry_after),
            ..Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
        }
    }

    fn internal(cause: impl std::fmt::Debug) -> Self {
        Self {
            cause: Some(format!("{cause:?}")),
            ..Self::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "Something went wrong on our side; please retry.",
            )
        }
    }

    /// Closes the connection after the response (the request body was left unread).
    pub fn closing(mut self) -> Self {
        self.close = true;
        self
    }

    pub fn code(&self) -> &'static str {
        self.code
    }

    /// Adds a header to the error response (`Allow` on a 405, `Content-Range` on a 416).
    pub fn with_header(mut self, name: header::HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// An extractor's rejection of `part` in the envelope, with the extractor's own status
    /// (400, 413, 415, …) and its reason.
    pub fn from_extractor(part: RequestPart, error: &impl ResponseError) -> Self {
        let status = error.status_code();
        let code = match status {
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            status if status.is_server_error() => return Self::internal(error.to_string()),
            _ => part.code(),
        };
        Self::new(
            status,
            code,
            format!("The {} is not valid: {error}", part.name()),
        )
    }
}

impl ApiError {
    /// A JSON body refused by `web::Json`: 415 when it is not `application/json`, 413 past the
    /// size limit, else 400 `invalid_body` with the parser's reason.
    pub fn from_json(error: &actix_web::error::JsonPayloadError) -> Self {
        use actix_web::error::JsonPayloadError;
        match error {
            JsonPayloadError::ContentType => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "Send the body as application/json.",
            ),
            JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
                Self::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "payload_too_large",
                    "The request body is too large.",
                )
            }
            JsonPayloadError::Deserialize(reason) => {
                Self::bad_request("invalid_body", format!("The body is not valid: {reason}."))
            }
            _ => Self::bad_request("invalid_body", "The body could not be read as JSON."),
        }
    }
}

/// The part of a request an extractor reads.
#[derive(Debug, Clone, Copy)]
pub enum RequestPart {
    Query,
    Path,
    Json,
    Form,
}

impl RequestPart {
    fn code(self) -> &'static str {
        match self {
            Self::Query => "invalid_query",
            Self::Path => "invalid_path",
            Self::Json => "invalid_json",
            Self::Form => "invalid_form",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Query => "query string",
            Self::Path => "path",
            Self::Json => "JSON body",
            Self::Form => "form body",
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        // A refusal (queue full, disk nearly full, shutting down) is the server protecting
        // itself and a 4xx is the client's mistake: neither is a fault worth an ERROR line.
        match self.status {
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::INSUFFICIENT_STORAGE => {
                tracing::warn!(code = self.code, "request refused");
            }
            status if status.is_server_error() => tracing::error!(
                code = self.code,
                cause = self.cause.as_deref().unwrap_or(""),
                "request failed"
            ),
            _ => tracing::info!(
                status = self.status.as_u16(),
                code = self.code,
                "request rejected"
            ),
        }
        let mut response = HttpResponse::build(self.status);
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, HeaderValue::from(seconds)));
        }
        for (name, value) in &self.headers {
            response.insert_header((name.clone(), value.clone()));
        }
        if self.close {
            response.force_close();
        }
        response.json(ErrorBody {
            error: ErrorDetail {
                code: self.code.into(),
                message: self.message.clone(),
            },
        })
    }
}

impl From<UploadError> for ApiError {
    fn from(error: UploadError) -> Self {
        match error {
            UploadError::TooLarge { limit } => Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                format!("The file is larger than the limit of {limit} bytes."),
            )
            .closing(),
            UploadError::Empty => Self::bad_request("empty_body", "The upload is empty."),
            UploadError::NotAVideo => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "The file is not a video container reel can read (MP4, MOV, MKV, WebM, AVI, TS, …).",
            )
            .closing(),
            UploadError::InsufficientStorage => Self::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "insufficient_storage",
                "The server is nearly out of disk space; try again later.",
            )
            .closing(),
            UploadError::IdleTimeout(after) => Self::new(
                StatusCode::REQUEST_TIMEOUT,
                "upload_timeout",
                format!("The upload stalled for {} s and was dropped.", after.as_secs()),
            )
            .closing(),
            UploadError::Body(reason) => Self::bad_request("bad_body", format!("The upload could not be read: {reason}")).closing(),
            UploadError::MissingFile => {
                Self::bad_request("missing_file", "The form has no `file` field.")
            }
            UploadError::FieldTooLong { limit } => Self::bad_request(
                "field_too_long",
                format!("A form field other than `file` is longer than {limit} bytes."),
            )
            .closing(),
            UploadError::DuplicatePart { name } => Self::bad_request(
                "duplicate_part",
                format!("The form has more than one `{name}` part."),
            )
            .closing(),
            UploadError::TooManyParts { limit } => Self::bad_request(
                "too_many_parts",
                format!("The form has more than {limit} parts."),
            )
            .closing(),
            UploadError::Metadata(error) => Self::from(error).closing(),
            UploadError::Media(error) => Self::from(error).closing(),
        }
    }
}

impl From<crate::properties::metadata::MetadataError> for ApiError {
    fn from(error: crate::properties::metadata::MetadataError) -> Self {
        use crate::properties::metadata::MetadataError;
        let message = format!("The metadata was refused: {error}.");
        match error {
            MetadataError::TooLarge => {
                Self::new(StatusCode::PAYLOAD_TOO_LARGE, "metadata_too_large", message)
            }
            MetadataError::NotBase64 | MetadataError::NotJson(_) | MetadataError::NotObject => {
                Self::bad_request("invalid_metadata", message)
            }
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::QueueFull { .. } => Self {
                retry_after: Some(QUEUE_RETRY_AFTER),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "queue_full",
                    "Too many videos are waiting; retry later.",
                )
            },
            error @ (StoreError::Unavailable(_) | StoreError::FileGone(_)) => Self {
                retry_after: Some(DATABASE_RETRY_AFTER),
                cause: Some(format!("{error:?}")),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database_unavailable",
                    "The database is unavailable; nothing was changed. Retry shortly.",
                )
            },
            error @ StoreError::Full(_) => Self {
                cause: Some(format!("{error:?}")),
                ..Self::new(
                    StatusCode::INSUFFICIENT_STORAGE,
                    "insufficient_storage",
                    "The server is out of disk space; nothing was changed. Try again later.",
                )
            },
            error @ (StoreError::Database(_)
            | StoreError::Migrate(_)
            | StoreError::Url(_)
            | StoreError::Corrupt { .. }) => Self::internal(error),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(error: ServiceError) -> Self {
        match error {
            ServiceError::NotFound => Self::not_found(),
            ServiceError::Forbidden => Self::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "Your token does not grant the role this needs.",
            ),
            ServiceError::ShuttingDown => {
                Self::unavailable("The server is restarting; retry shortly.", 5).closing()
            }
            ServiceError::Invalid { code, message } => Self::bad_request(code, message),
            ServiceError::NoSuchWebhook => Self::new(
                StatusCode::NOT_FOUND,
                "not_found",
                "No webhook with this id.",
            ),
            error @ ServiceError::Randomness(_) => Self::internal(error),
            ServiceError::Store(error) => error.into(),
            ServiceError::Upload(error) => error.into(),
            ServiceError::Media(error) => error.into(),
            ServiceError::Tus(error) => error.into(),
        }
    }
}

impl From<MediaError> for ApiError {
    fn from(error: MediaError) -> Self {
        if error.is_out_of_space() {
            return Self::from(UploadError::InsufficientStorage);
        }
        match error {
            error @ MediaError::Unavailable { .. } => Self {
                retry_after: Some(STORAGE_RETRY_AFTER),
                cause: Some(format!("{error:?}")),
                ..Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "The media storage is unreachable; retry shortly.",
                )
            },
            error @ (MediaError::Prepare { .. }
            | MediaError::Io { .. }
            | MediaError::Refused { .. }
            | MediaError::Fenced) => Self::internal(error),
        }
    }
}

/// tus 1.0 refusals, with the statuses the protocol names. The request body is left unread, so
/// the connection is closed after the answer.
impl From<TusError> for ApiError {
    fn from(error: TusError) -> Self {
        // The protocol's own wording, as a sentence.
        let text = error.to_string();
        let mut chars = text.chars();
        let message = match chars.next() {
            Some(first) => format!("{}{}.", first.to_uppercase(), chars.as_str()),
            None => text,
        };
        let (status, code) = match error {
            TusError::Upload(error) => return error.into(),
            TusError::Version => (StatusCode::PRECONDITION_FAILED, "tus_version"),
            TusError::InvalidHeader { .. } => (StatusCode::BAD_REQUEST, "invalid_tus_header"),
            TusError::MissingLength => (StatusCode::BAD_REQUEST, "missing_upload_length"),
            TusError::UnsupportedChecksum(_) => {
                (StatusCode::BAD_REQUEST, "unsupported_checksum_algorithm")
            }
            TusError::ContentType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            TusError::NotFound => (StatusCode::NOT_FOUND, "upload_not_found"),
            TusError::Lost => (StatusCode::GONE, "upload_lost"),
            TusError::OffsetMismatch { .. } => (StatusCode::CONFLICT, "offset_mismatch"),
            TusError::Locked => {
                let locked = Self::new(StatusCode::LOCKED, "upload_locked", message);
                return Self {
                    retry_after: Some(1),
                    ..locked
                }
                .closing();
            }
            TusError::BeyondLength { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            // 460 Checksum Mismatch: the checksum extension's own status.
            TusError::ChecksumMismatch => (
                StatusCode::from_u16(460).unwrap_or(StatusCode::BAD_REQUEST),
                "checksum_mismatch",
            ),
        };
        Self::new(status, code, message).closing()
    }
}
