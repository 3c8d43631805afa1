//! A video as the store keeps it, and what an upload hands over to create one.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{JobError, Millis, Rendition, SourceInfo, Step, VideoId, VideoStatus};

/// Who may play a video's ladder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Visibility {
    /// Anyone with the id (the id is the secret).
    #[default]
    Public,
    /// Only with a signed, expiring URL.
    Private,
}

impl Visibility {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Public => "public",
            Self::Private => "private",
        }
    }

    /// Unknown stored values read as private: the safe side.
    pub fn parse(text: &str) -> Self {
        match text {
            "public" => Self::Public,
            _ => Self::Private,
        }
    }
}

/// A video and its job, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Video {
    pub id: VideoId,
    /// The uploader (`sub` of their token); `None` when auth is off.
    pub owner: Option<String>,
    pub title: Option<String>,
    pub filename: Option<String>,
    pub visibility: Visibility,
    pub status: VideoStatus,
    pub step: Step,
    /// 0.0 to 1.0.
    pub progress: f64,
    pub source_size: u64,
    pub source: Option<SourceInfo>,
    pub renditions: Vec<Rendition>,
    pub error: Option<JobError>,
    /// Client metadata given at upload (a JSON object).
    pub metadata: Option<serde_json::Value>,
    /// Operator-declared properties extracted by JSONPath.
    pub properties: BTreeMap<String, serde_json::Value>,
    /// Attempts that failed through a passing fault of the job itself (not interruptions).
    pub attempts: u32,
    /// Times the job was cut short by its process dying (crash, lost lease).
    pub interruptions: u32,
    /// 1-based place in the queue while queued, read together with the row.
    pub queue_position: Option<u32>,
    /// When the first segment of every rung existed (watch while it encodes).
    pub playable_at: Option<Millis>,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What an accepted upload hands to the store.
#[derive(Debug, Clone, Default)]
pub struct NewVideo {
    pub id: VideoId,
    pub owner: Option<String>,
    pub title: Option<String>,
    pub filename: Option<String>,
    pub visibility: Visibility,
    pub source_size: u64,
    pub metadata: Option<serde_json::Value>,
    pub properties: BTreeMap<String, serde_json::Value>,
    /// What only the upload request knew, kept for the properties' evaluation after the probe
    /// (`crate::properties::Context`); `None` when no property is declared.
    pub property_context: Option<serde_json::Value>,
    /// Facts about the upload recorded in the `uploaded` history event.
    pub upload: UploadFacts,
}

/// How an upload went, for the history (`uploaded` event).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UploadFacts {
    pub bytes: u64,
    /// The container sniffed from the first bytes (`mp4`, `matroska`, …).
    pub content_type: Option<String>,
    pub upload_seconds: f64,
    /// ISO 3166-1 alpha-2, `XX` when unknown.
    pub country: Option<String>,
    /// A coarse family (`Chrome`, `curl`, …), never the raw header.
    pub user_agent: Option<String>,
    /// `raw`, `multipart` or `tus`.
    pub protocol: Option<String>,
}
