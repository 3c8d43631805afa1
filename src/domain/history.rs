//! The history of a video: one event per state change or access, in commit order.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Millis, VideoId};

/// What happened to a video. Stored as its snake_case name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum HistoryKind {
    /// The upload completed: `bytes`, `content_type`, `upload_seconds`, `country`, `user_agent`,
    /// and `properties` when any matched at upload.
    Uploaded,
    /// The job entered the queue.
    Queued,
    /// A worker claimed the job: `attempt`, `worker`.
    Processing,
    /// The first segment of every rung exists: the video can be watched.
    Playable,
    /// The ladder is published: `renditions`, `encode_seconds`.
    Ready,
    /// The job failed for good: `code`.
    Failed,
    /// The job went back to the queue: `reason`, `delay_seconds`.
    Retried,
    /// The job was stopped before it ended (by a delete).
    Canceled,
    /// The original was downloaded: `bytes`, `range`.
    Downloaded,
    /// Title or visibility changed: the new values; or the worker's evaluation after the probe
    /// changed the properties: `properties`, all of them.
    Updated,
    /// The video was deleted: `by`.
    Deleted,
}

impl HistoryKind {
    pub const ALL: [HistoryKind; 11] = [
        Self::Uploaded,
        Self::Queued,
        Self::Processing,
        Self::Playable,
        Self::Ready,
        Self::Failed,
        Self::Retried,
        Self::Canceled,
        Self::Downloaded,
        Self::Updated,
        Self::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uploaded => "uploaded",
            Self::Queued => "queued",
            Self::Processing => "processing",
            Self::Playable => "playable",
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::Retried => "retried",
            Self::Canceled => "canceled",
            Self::Downloaded => "downloaded",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == text)
    }
}

/// One committed history event. `seq` grows strictly in commit order across all videos, so a
/// change-feed reader that remembers the last `seq` it saw misses nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEvent {
    pub seq: i64,
    pub video: VideoId,
    pub owner: Option<String>,
    pub kind: HistoryKind,
    pub at: Millis,
    /// Kind-specific facts (see [`HistoryKind`]).
    pub data: serde_json::Value,
}

/// An event about to be appended (its `seq` and time are assigned by the store).
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub kind: HistoryKind,
    pub data: serde_json::Value,
}

impl NewEvent {
    pub fn new(kind: HistoryKind, data: serde_json::Value) -> Self {
        Self { kind, data }
    }

    pub fn bare(kind: HistoryKind) -> Self {
        Self::new(kind, serde_json::Value::Object(Default::default()))
    }
}
