//! JSON shapes of the v1 contract and how a stored video becomes one.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::domain::{JobError, Rendition, SourceInfo, Step, VideoId, VideoStatus};
use crate::queue::Video;

#[derive(Debug, Serialize, ToSchema)]
pub struct VideoResource {
    pub id: VideoId,
    pub title: Option<String>,
    /// The client's file name, as data only.
    pub filename: Option<String>,
    pub status: VideoStatus,
    pub step: Step,
    /// 0.0 to 1.0.
    pub progress: f64,
    /// 1-based place in the queue while queued.
    pub queue_position: Option<u32>,
    pub error: Option<JobError>,
    pub source: Option<SourceInfo>,
    /// Rungs of the published ladder, ascending.
    pub renditions: Vec<Rendition>,
    pub links: Links,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Links {
    #[serde(rename = "self")]
    pub self_: String,
    pub events: String,
    pub source: String,
    /// The master playlist, once ready.
    pub playlist: Option<String>,
    /// The poster image, once ready.
    pub poster: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VideoPage {
    /// Newest first.
    pub items: Vec<VideoResource>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// 1 to 100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page (a video id).
    #[param(pattern = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")]
    pub cursor: Option<String>,
    /// Only videos in this status.
    pub status: Option<VideoStatus>,
}

/// A `multipart/form-data` upload (documentation only: the form is streamed, not parsed into
/// this). Other parts are read and ignored, up to 16 parts in all; part names must be valid
/// header text.
#[derive(ToSchema)]
pub struct UploadForm {
    /// The video file; its `filename` is kept as data.
    #[schema(value_type = String, format = Binary, content_media_type = "application/octet-stream")]
    pub file: Vec<u8>,
    /// Up to 200 characters are kept.
    pub title: Option<String>,
}

/// A video file's bytes as the whole request body (not empty).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary, content_media_type = "application/octet-stream", min_length = 1)]
pub struct VideoBytes(pub Vec<u8>);

/// One Server-Sent Event as a client parses it (the `text/event-stream` framing).
#[derive(ToSchema)]
pub struct EventFrame {
    pub event: EventName,
    /// Grows with every event of a stream; send the last one back as `Last-Event-ID` to resume.
    #[schema(pattern = "^[0-9]+$")]
    pub id: String,
    /// JSON: a `VideoResource` for `snapshot`, `ready` and `failed`; a `ProgressUpdate` for
    /// `progress`; `{"id", "status"}` for `status`, `canceled` and `reconnect`.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

/// The event names of a video's stream, in the order they can come.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum EventName {
    Snapshot,
    Progress,
    Status,
    Ready,
    Failed,
    Canceled,
    /// The server is going away; reconnect later.
    Reconnect,
}

pub fn video_url(id: VideoId) -> String {
    format!("/api/v1/videos/{id}")
}

impl VideoResource {
    pub fn new(video: &Video, queue_position: Option<u32>) -> Self {
        let id = video.id;
        let ready = video.status == VideoStatus::Ready;
        Self {
            id,
            title: video.title.clone(),
            filename: video.filename.clone(),
            status: video.status,
            step: video.step,
            progress: video.progress,
            queue_position,
            error: video.error.clone(),
            source: video.source.clone(),
            renditions: video.renditions.clone(),
            links: Links {
                self_: video_url(id),
                events: format!("{}/events", video_url(id)),
                source: format!("{}/source", video_url(id)),
                playlist: ready.then(|| format!("/hls/{id}/master.m3u8")),
                poster: ready.then(|| format!("/hls/{id}/poster.jpg")),
            },
            created_at: video.created_at.to_rfc3339(),
            updated_at: video.updated_at.to_rfc3339(),
        }
    }
}
