//! The video, its history and the small types they are made of: pure, no I/O.

pub mod history;
pub mod video;

pub use history::{HistoryEvent, HistoryKind, NewEvent};
pub use video::{NewVideo, UploadFacts, Video, Visibility};

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

/// An unguessable, time-ordered video id (UUIDv7); never derived from user input.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(transparent)]
#[schema(value_type = String, format = Uuid)]
pub struct VideoId(Uuid);

impl VideoId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for VideoId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for VideoId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.as_hyphenated().fmt(f)
    }
}

impl FromStr for VideoId {
    type Err = uuid::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Uuid::try_parse(text).map(Self)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum VideoStatus {
    Queued,
    Processing,
    Ready,
    Failed,
    Canceled,
}

impl VideoStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Ready | Self::Failed | Self::Canceled)
    }
}

impl FromStr for VideoStatus {
    type Err = UnknownStatus;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "queued" => Ok(Self::Queued),
            "processing" => Ok(Self::Processing),
            "ready" => Ok(Self::Ready),
            "failed" => Ok(Self::Failed),
            "canceled" => Ok(Self::Canceled),
            other => Err(UnknownStatus(other.to_owned())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("unknown video status {0:?}")]
pub struct UnknownStatus(pub String);

/// Where a job is inside its life; shown in progress events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Queued,
    Probing,
    Encoding,
    Publishing,
    Done,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Probing => "probing",
            Self::Encoding => "encoding",
            Self::Publishing => "publishing",
            Self::Done => "done",
        }
    }

    pub fn parse(text: &str) -> Self {
        match text {
            "probing" => Self::Probing,
            "encoding" => Self::Encoding,
            "publishing" => Self::Publishing,
            "done" => Self::Done,
            _ => Self::Queued,
        }
    }
}

/// What ffprobe found in the uploaded file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SourceInfo {
    /// Bytes on disk.
    pub size: u64,
    /// Seconds.
    pub duration: f64,
    /// Displayed width (after rotation).
    pub width: u32,
    /// Displayed height (after rotation).
    pub height: u32,
    pub video_codec: String,
    pub audio_codec: Option<String>,
    pub frame_rate: Option<f64>,
}

/// One published rung of the ladder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Rendition {
    pub name: String,
    pub width: u32,
    pub height: u32,
    /// Measured peak bit rate, bits per second.
    pub bandwidth: u64,
    /// Measured average bit rate, bits per second.
    pub average_bandwidth: u64,
    /// RFC 6381 codecs of what was really encoded.
    pub codecs: String,
    /// URL of a playlist that plays this rung alone: a multivariant playlist naming the rung's
    /// video and the shared audio rendition (ladders made before audio was encoded once name
    /// the rung's own media playlist, which carries its audio). In a resource it is spelled
    /// like `links.playlist`: signed for a private video, below `--public-base-url` when set.
    pub playlist: String,
}

/// Why a job failed, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct JobError {
    pub code: String,
    pub message: String,
}

/// Milliseconds since the Unix epoch, as stored in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Millis(pub i64);

impl Millis {
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self(i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
    }

    pub fn to_rfc3339(self) -> String {
        let millis = u64::try_from(self.0).unwrap_or(0);
        humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(millis)).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn video_ids_round_trip_and_reject_paths() {
        let id = VideoId::new();
        assert_eq!(id.to_string().parse::<VideoId>().ok(), Some(id));
        assert!("../../etc/passwd".parse::<VideoId>().is_err());
        assert!("".parse::<VideoId>().is_err());
    }

    #[test]
    fn statuses_round_trip() {
        for status in [
            VideoStatus::Queued,
            VideoStatus::Processing,
            VideoStatus::Ready,
            VideoStatus::Failed,
            VideoStatus::Canceled,
        ] {
            assert_eq!(status.as_str().parse::<VideoStatus>().ok(), Some(status));
        }
        assert!("done".parse::<VideoStatus>().is_err());
    }

    #[test]
    fn timestamps_format_as_rfc3339() {
        assert_eq!(Millis(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            Millis(1_700_000_000_123).to_rfc3339(),
            "2023-11-14T22:13:20.123Z"
        );
    }
}
