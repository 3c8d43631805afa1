//! `multipart/form-data` uploads: the `file` part streams to disk, `title` is read into a small
//! buffer, any other part is read and dropped.
//!
//! The whole body, framing and every part included, goes through [`body::guard`]: one idle
//! timeout and one byte budget (`max_bytes` plus [`FORM_OVERHEAD`] for the framing). Any error
//! while reading ends the upload; nothing is retried or skipped, so a broken form can never
//! keep a worker busy.

use actix_multipart::{Field, Multipart, MultipartError};
use actix_web::error::PayloadError;
use actix_web::http::header::HeaderMap;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::body::{self, StopCell};
use super::{Received, UploadError, UploadLimits, receive};
use crate::media::MediaStore;
use crate::properties::metadata::{MAX_METADATA_BYTES, MetadataError};

/// Bytes a form may carry beyond the file limit: boundaries, part headers, a title, metadata.
pub const FORM_OVERHEAD: u64 = 64 * 1024;
/// Largest part other than `file` that is kept (a title), in bytes.
pub const MAX_FIELD: usize = 4096;
/// Most parts a form may have.
pub const MAX_PARTS: usize = 16;

/// What a form upload carried.
#[derive(Debug)]
pub struct FormUpload {
    pub received: Received,
    /// The `filename` of the `file` part, as sent (untrusted: data only, never a path).
    pub filename: Option<String>,
    /// The `title` part's bytes, as sent.
    pub title: Option<Vec<u8>>,
    /// The `visibility` part's bytes (`public` or `private`), as sent.
    pub visibility: Option<Vec<u8>>,
    /// The `metadata` part: client metadata, a JSON object (checked when read).
    pub metadata: Option<serde_json::Value>,
}

/// Reads a whole form. Errors: [`UploadError::IdleTimeout`] for a stall anywhere,
/// [`UploadError::TooLarge`] past the file limit or the body budget, [`UploadError::Body`] for
/// a malformed form or a dropped connection, [`UploadError::MissingFile`],
/// [`UploadError::FieldTooLong`], [`UploadError::TooManyParts`], [`UploadError::DuplicatePart`]
/// (a second `file`, `title`, `visibility` or `metadata`), [`UploadError::Metadata`] (larger
/// than 16 KiB, or not a JSON object), and the disk's errors. On any error the staged file is
/// removed.
pub async fn receive_form<S>(
    headers: &HeaderMap,
    payload: S,
    media: &dyn MediaStore,
    limits: UploadLimits,
) -> Result<FormUpload, UploadError>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + 'static,
{
    let budget = limits.max_bytes.saturating_add(FORM_OVERHEAD);
    let (payload, stop) = body::guard(payload, limits.idle_timeout, budget);
    let mut form = Multipart::new(headers, payload);
    let mut upload: Option<(Received, Option<String>)> = None;
    let mut title = None;
    let mut visibility = None;
    let mut metadata = None;
    let mut parts = 0;
    while let Some(field) = form.next().await {
        let mut field = field.map_err(|error| form_error(&stop, error))?;
        parts += 1;
        if parts > MAX_PARTS {
            return Err(UploadError::TooManyParts { limit: MAX_PARTS });
        }
        match field.name() {
            Some("file") if upload.is_some() => {
                return Err(UploadError::DuplicatePart { name: "file" });
            }
            Some("title") if title.is_some() => {
                return Err(UploadError::DuplicatePart { name: "title" });
            }
            Some("visibility") if visibility.is_some() => {
                return Err(UploadError::DuplicatePart { name: "visibility" });
            }
            Some("metadata") if metadata.is_some() => {
                return Err(UploadError::DuplicatePart { name: "metadata" });
            }
            Some("file") => {
                let filename = field
                    .content_disposition()
                    .and_then(|d| d.get_filename())
                    .map(str::to_owned);
                let file = (&mut field).map(|chunk| chunk.map_err(|e| form_error(&stop, e)));
                let received = receive(file, media, limits)
                    .await
                    .map_err(|error| stop.get().map_or(error, UploadError::from))?;
                upload = Some((received, filename));
            }
            Some("title") => title = Some(read_small(&mut field, &stop, MAX_FIELD).await?),
            Some("visibility") => {
                visibility = Some(read_small(&mut field, &stop, MAX_FIELD).await?);
            }
            Some("metadata") => {
                let text = read_small(&mut field, &stop, MAX_METADATA_BYTES)
                    .await
                    .map_err(|error| match error {
                        UploadError::FieldTooLong { .. } => MetadataError::TooLarge.into(),
                        other => other,
                    })?;
                metadata = Some(crate::properties::metadata::parse(&text)?);
            }
            // Unknown parts are read and dropped, under the same guard.
            _ => drain(&mut field, &stop).await?,
        }
    }
    let (received, filename) = upload.ok_or(UploadError::MissingFile)?;
    Ok(FormUpload {
        received,
        filename,
        title,
        visibility,
        metadata,
    })
}

/// The guard's own reason when it stopped the body, else the parser's error as a bad body.
fn form_error(stop: &StopCell, error: MultipartError) -> UploadError {
    match stop.get() {
        Some(stop) => stop.into(),
        None => UploadError::Body(error.to_string()),
    }
}

/// A small part's bytes, at most `limit` of them.
async fn read_small(
    field: &mut Field,
    stop: &StopCell,
    limit: usize,
) -> Result<Vec<u8>, UploadError> {
    let mut text = Vec::new();
    while let Some(chunk) = field.next().await {
        let chunk = chunk.map_err(|e| form_error(stop, e))?;
        if text.len() + chunk.len() > limit {
            return Err(UploadError::FieldTooLong { limit });
        }
        text.extend_from_slice(&chunk);
    }
    Ok(text)
}

async fn drain(field: &mut Field, stop: &StopCell) -> Result<(), UploadError> {
    while let Some(chunk) = field.next().await {
        chunk.map_err(|e| form_error(stop, e))?;
    }
    Ok(())
}
