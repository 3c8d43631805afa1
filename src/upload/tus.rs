//! The tus resumable upload protocol, version 1.0.0 (<https://tus.io/protocols/resumable-upload>):
//! header values, `Upload-Metadata`, `Upload-Checksum` and the errors the protocol names. Pure:
//! no I/O, so every rule here is unit-tested.
//!
//! reel speaks the core protocol plus the `creation`, `creation-with-upload`, `termination`,
//! `expiration` and `checksum` extensions (not `creation-defer-length` nor `concatenation`).

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use sha1::Digest as _;

use super::UploadError;
use crate::domain::Visibility;

/// `Tus-Resumable`: the protocol version every request and response carries (core, "Headers").
pub const TUS_RESUMABLE: &str = "1.0.0";
/// `Tus-Version`: the versions this server speaks, preferred first (core, "OPTIONS").
pub const TUS_VERSION: &str = "1.0.0";
/// `Tus-Extension`, as `OPTIONS` advertises it.
pub const TUS_EXTENSIONS: &str = "creation,creation-with-upload,termination,expiration,checksum";
/// `Tus-Checksum-Algorithm` (checksum extension).
pub const CHECKSUM_ALGORITHMS: &str = "sha1,sha256,md5";
/// The content type of every request body that carries upload bytes (core, "PATCH").
pub const OFFSET_OCTET_STREAM: &str = "application/offset+octet-stream";

/// Longest `Upload-Metadata` header kept, in bytes (it is echoed on every `HEAD`): room for
/// the 16 KiB of client metadata in base64 (21,848 bytes) and the other keys.
pub const MAX_METADATA_HEADER: usize = 24 * 1024;
/// Longest title or file name kept, in characters (as for `POST /api/v1/videos`).
const MAX_TEXT: usize = 200;

/// Why a tus request was refused. Statuses are those the protocol names (see `error.rs`).
#[derive(Debug, thiserror::Error)]
pub enum TusError {
    /// `Tus-Resumable` missing or not 1.0.0: `412 Precondition Failed` with `Tus-Version`.
    #[error("this server speaks tus {TUS_VERSION}; send `Tus-Resumable: {TUS_RESUMABLE}`")]
    Version,
    /// A tus header that is not what the protocol says: `400`.
    #[error("the {header} header is not valid: {reason}")]
    InvalidHeader {
        header: &'static str,
        reason: String,
    },
    /// Creation without `Upload-Length` (reel does not defer lengths): `400`.
    #[error("send the Upload-Length header: reel needs the size when the upload is created")]
    MissingLength,
    /// Bytes sent with a content type other than `application/offset+octet-stream`: `415`.
    #[error("send the bytes as {OFFSET_OCTET_STREAM}")]
    ContentType,
    /// No such upload for this caller, or it expired or was terminated: `404`.
    #[error("no such upload (it may have expired or been terminated)")]
    NotFound,
    /// The recorded bytes are gone from the disk: `410` (the upload is removed).
    #[error("the bytes received so far were lost; please upload the file again")]
    Lost,
    /// `Upload-Offset` is not where the upload is: `409 Conflict` (core, "PATCH").
    #[error("the upload is at offset {offset}, not at the offset sent")]
    OffsetMismatch { offset: u64 },
    /// Another request is writing this upload: `423 Locked`.
    #[error("another request is writing this upload")]
    Locked,
    /// More bytes than `Upload-Length`: `413`.
    #[error("the request carries more bytes than the upload's length of {length}")]
    BeyondLength { length: u64 },
    /// An `Upload-Checksum` algorithm reel does not compute: `400` (checksum extension).
    #[error("checksum algorithm {0:?} is not supported (use one of {CHECKSUM_ALGORITHMS})")]
    UnsupportedChecksum(String),
    /// The body does not hash to `Upload-Checksum`: `460 Checksum Mismatch`; nothing of this
    /// request was kept.
    #[error("the bytes do not match Upload-Checksum; nothing of this request was kept")]
    ChecksumMismatch,
    /// The same refusals as a plain upload (size, not a video, disk space, idle, body).
    #[error(transparent)]
    Upload(#[from] UploadError),
}

/// Checks `Tus-Resumable` (every request but `OPTIONS`).
pub fn check_resumable(value: Option<&str>) -> Result<(), TusError> {
    match value.map(str::trim) {
        Some(TUS_RESUMABLE) => Ok(()),
        _ => Err(TusError::Version),
    }
}

/// `Upload-Offset` or `Upload-Length`: a non-negative decimal integer, nothing else.
pub fn parse_size(header: &'static str, value: &str) -> Result<u64, TusError> {
    let value = value.trim();
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TusError::InvalidHeader {
            header,
            reason: "not a non-negative integer".into(),
        });
    }
    value.parse().map_err(|_| TusError::InvalidHeader {
        header,
        reason: "too large".into(),
    })
}

/// What `Upload-Metadata` says about the video, cleaned.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UploadFields {
    pub filename: Option<String>,
    pub title: Option<String>,
    pub visibility: Visibility,
    /// `metadata`: a JSON object for the video's `metadata`.
    pub metadata: Option<serde_json::Value>,
}

/// Parses `Upload-Metadata` (creation extension): comma-separated `key base64value` pairs, keys
/// unique and free of spaces and commas, the value optional. Known keys: `filename` (or `name`,
/// as Uppy sends), `title`, `visibility` (`public` or `private`), `metadata` (a JSON object);
/// others (`filetype`, …) are accepted and ignored.
pub fn parse_metadata(header: &str) -> Result<UploadFields, TusError> {
    let invalid = |reason: String| TusError::InvalidHeader {
        header: "Upload-Metadata",
        reason,
    };
    if header.len() > MAX_METADATA_HEADER {
        return Err(invalid(format!("longer than {MAX_METADATA_HEADER} bytes")));
    }
    let engine = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let mut pairs: Vec<(&str, Vec<u8>)> = Vec::new();
    for pair in header.split(',') {
        let pair = pair.trim();
        if pair.is_empty() {
            if header.trim().is_empty() {
                break;
            }
            return Err(invalid("an empty pair".into()));
        }
        let mut parts = pair.split(' ').filter(|p| !p.is_empty());
        let key = parts.next().unwrap_or_default();
        let value = parts.next().unwrap_or_default();
        if parts.next().is_some() {
            return Err(invalid(format!(
                "the pair for {key:?} has more than a key and a value"
            )));
        }
        if pairs.iter().any(|(k, _)| *k == key) {
            return Err(invalid(format!("the key {key:?} appears twice")));
        }
        let decoded = engine
            .decode(value)
            .map_err(|_| invalid(format!("the value of {key:?} is not base64")))?;
        pairs.push((key, decoded));
    }
    let text = |key: &str| -> Result<Option<String>, TusError> {
        match pairs.iter().find(|(k, _)| *k == key) {
            None => Ok(None),
            Some((_, bytes)) => String::from_utf8(bytes.clone())
                .map(Some)
                .map_err(|_| invalid(format!("the value of {key:?} is not UTF-8"))),
        }
    };
    let visibility = match text("visibility")?.as_deref().map(str::trim) {
        None | Some("") | Some("public") => Visibility::Public,
        Some("private") => Visibility::Private,
        Some(other) => {
            return Err(invalid(format!(
                "visibility {other:?} is neither public nor private"
            )));
        }
    };
    let metadata = match pairs.iter().find(|(k, _)| *k == "metadata") {
        None => None,
        Some((_, json)) => {
            Some(crate::properties::metadata::parse(json).map_err(|e| TusError::Upload(e.into()))?)
        }
    };
    let filename = match text("filename")? {
        Some(name) => Some(name),
        None => text("name")?,
    };
    Ok(UploadFields {
        filename: filename.as_deref().and_then(clean_text),
        title: text("title")?.as_deref().and_then(clean_text),
        visibility,
        metadata,
    })
}

/// Control characters dropped, trimmed, at most [`MAX_TEXT`] characters; `None` when blank.
fn clean_text(text: &str) -> Option<String> {
    let cleaned: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(MAX_TEXT)
        .collect();
    let cleaned = cleaned.trim();
    (!cleaned.is_empty()).then(|| cleaned.to_owned())
}

/// A hash algorithm of the checksum extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Sha1,
    Sha256,
    Md5,
}

/// `Upload-Checksum`: the algorithm and the digest the request body must hash to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub algorithm: Algorithm,
    pub digest: Vec<u8>,
}

/// Parses `Upload-Checksum: <algorithm> <base64 digest>` (checksum extension).
pub fn parse_checksum(value: &str) -> Result<Checksum, TusError> {
    let invalid = |reason: &str| TusError::InvalidHeader {
        header: "Upload-Checksum",
        reason: reason.into(),
    };
    let (name, digest) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| invalid("expected `<algorithm> <base64 digest>`"))?;
    let (algorithm, size) = match name.to_ascii_lowercase().as_str() {
        "sha1" => (Algorithm::Sha1, 20),
        "sha256" => (Algorithm::Sha256, 32),
        "md5" => (Algorithm::Md5, 16),
        _ => {
            return Err(TusError::UnsupportedChecksum(
                name.chars().take(32).collect(),
            ));
        }
    };
    let digest = base64::engine::general_purpose::STANDARD
        .decode(digest.trim())
        .map_err(|_| invalid("the digest is not base64"))?;
    if digest.len() != size {
        return Err(invalid("the digest has the wrong length for its algorithm"));
    }
    Ok(Checksum { algorithm, digest })
}

/// Hashes a request body as it streams by.
pub enum Hasher {
    Sha1(sha1::Sha1),
    Sha256(sha2::Sha256),
    Md5(md5::Md5),
}

impl Hasher {
    pub fn new(algorithm: Algorithm) -> Self {
        match algorithm {
            Algorithm::Sha1 => Self::Sha1(sha1::Sha1::new()),
            Algorithm::Sha256 => Self::Sha256(sha2::Sha256::new()),
            Algorithm::Md5 => Self::Md5(md5::Md5::new()),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        match self {
            Self::Sha1(h) => h.update(bytes),
            Self::Sha256(h) => h.update(bytes),
            Self::Md5(h) => h.update(bytes),
        }
    }

    /// True when what went by hashes to `expected`.
    pub fn matches(self, expected: &Checksum) -> bool {
        let digest: Vec<u8> = match self {
            Self::Sha1(h) => h.finalize().to_vec(),
            Self::Sha256(h) => h.finalize().to_vec(),
            Self::Md5(h) => h.finalize().to_vec(),
        };
        digest == expected.digest
    }
}

#[cfg(test)]
mod tests;
