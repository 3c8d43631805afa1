//! JSON shapes of the v1 contract and how a stored video becomes one.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use std::collections::BTreeMap;

use crate::auth::playback::PlaybackSigner;
use crate::domain::{
    JobError, Rendition, SourceInfo, Step, Video, VideoId, VideoStatus, Visibility,
};
use crate::media::PublicBaseUrl;

#[derive(Debug, Serialize, ToSchema)]
pub struct VideoResource {
    pub id: VideoId,
    /// The uploader (`sub` of their token); null when auth is off.
    pub owner: Option<String>,
    pub title: Option<String>,
    /// The client's file name, as data only.
    pub filename: Option<String>,
    pub visibility: Visibility,
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
    /// Client metadata given at upload.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Properties extracted by the operator's JSONPath expressions (`--property NAME=JSONPATH`):
    /// strings, numbers or booleans; those that need the probe appear once it ran.
    #[schema(value_type = Object)]
    pub properties: BTreeMap<String, serde_json::Value>,
    /// RFC 3339: when the video could first be watched (while it still encoded).
    pub playable_at: Option<String>,
    pub links: Links,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339.
    pub updated_at: String,
}

/// Paths on this server (`/api/v1/…`) for the API links; the media links (`playlist`,
/// `poster`, `storyboard`, and each rendition's `playlist`) are `/hls/…` paths too, or absolute
/// URLs below the operator's CDN when the server runs with `--public-base-url`.
#[derive(Debug, Serialize, ToSchema)]
pub struct Links {
    #[serde(rename = "self")]
    pub self_: String,
    pub events: String,
    /// The original file, from the API (owner checks, `downloaded` history): never below
    /// `--public-base-url`.
    pub source: String,
    /// The master playlist, once playable (growing while `processing`) or ready. Signed
    /// (`?exp=…&sig=…`) for a private video.
    pub playlist: Option<String>,
    /// The poster image, once ready; signed like `playlist`.
    pub poster: Option<String>,
    /// The storyboard, once ready: a WebVTT track (W3C WebVTT) whose cues cover the whole
    /// video, each naming a thumbnail as `storyboard/sprite_<n>.jpg#xywh=x,y,w,h` (a sprite
    /// sheet relative to the track, and the thumbnail's pixel rectangle in it). Signed like
    /// `playlist` for a private video, and the track's image URLs with it.
    pub storyboard: Option<String>,
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
    /// Only videos whose title (or file name, when untitled) contains this text, ignoring case;
    /// at most 200 characters.
    pub q: Option<String>,
}

/// `PATCH /api/v1/videos/{id}`: the fields to change; absent fields stay as they are.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VideoPatch {
    /// 1 to 200 characters; control characters are dropped and spaces trimmed, and what is
    /// left must not be empty.
    #[schema(max_length = 200, pattern = r"[^\s\u0000-\u001F\u007F-\u009F]")]
    pub title: Option<String>,
    /// `private` ladders are served only with the signed links the resource carries (the
    /// server needs a `--playback-secret`).
    pub visibility: Option<Visibility>,
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
    /// `private` ladders are served only with signed links (the server needs a
    /// `--playback-secret`).
    pub visibility: Option<Visibility>,
    /// Client metadata: a JSON object of at most 16 KiB (as JSON text), stored and returned as
    /// the video's `metadata`.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// A video file's bytes as the whole request body (not empty).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary, content_media_type = "application/octet-stream", min_length = 1)]
pub struct VideoBytes(pub Vec<u8>);

/// Bytes of a resumable upload at the request's `Upload-Offset` (tus 1.0: any bytes; not
/// checked against a schema).
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary, content_media_type = "application/offset+octet-stream")]
pub struct UploadBytes(pub Vec<u8>);

/// One Server-Sent Event as a client parses it (the `text/event-stream` framing).
#[derive(ToSchema)]
pub struct EventFrame {
    pub event: EventName,
    /// Grows with every event of a stream; send the last one back as `Last-Event-ID` to resume.
    #[schema(pattern = "^[0-9]+$")]
    pub id: String,
    /// JSON: a `VideoResource` for `snapshot`, `playable`, `ready` and `failed`; a `ProgressUpdate` for
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
    /// The ladder can be watched while it still encodes (`links.playlist` is set).
    Playable,
    Ready,
    Failed,
    Canceled,
    /// The server is going away; reconnect later.
    Reconnect,
}

/// One event of the change-feed stream as a client parses it (`text/event-stream` framing).
#[derive(ToSchema)]
pub struct ChangeFrame {
    pub event: ChangeEventName,
    /// The event's `seq`; send the last one back as `Last-Event-ID` to resume.
    #[schema(pattern = "^[0-9]+$")]
    pub id: String,
    /// JSON: a `HistoryItem`.
    #[schema(content_media_type = "application/json")]
    pub data: String,
}

/// The one event name of the change-feed stream.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum ChangeEventName {
    Change,
}

pub fn video_url(id: VideoId) -> String {
    format!("/api/v1/videos/{id}")
}

/// How resources spell their media links (`/hls/<id>/…`): signed for a private video (with
/// `--playback-secret`), and below `--public-base-url` when one is set. Cheap to clone.
#[derive(Clone, Default)]
pub struct MediaLinks {
    signer: Option<PlaybackSigner>,
    base: Option<PublicBaseUrl>,
}

impl MediaLinks {
    pub fn new(signer: Option<PlaybackSigner>, base: Option<PublicBaseUrl>) -> Self {
        Self { signer, base }
    }

    /// `path` (a `/hls/<id>/…` path of `video`) as clients fetch it: under the public base,
    /// with the signature query of a private video. Other paths are left as they are.
    pub fn link(&self, video: &Video, path: &str) -> String {
        if !path.starts_with("/hls/") {
            return path.to_owned();
        }
        let mut url = match &self.base {
            Some(base) => base.join(path),
            None => path.to_owned(),
        };
        if let (Visibility::Private, Some(signer)) = (video.visibility, &self.signer) {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&signer.query(video.id));
        }
        url
    }
}

impl VideoResource {
    /// The resource of `video`, its media links spelled by `links`.
    pub fn new(video: &Video, links: &MediaLinks) -> Self {
        let id = video.id;
        let ready = video.status == VideoStatus::Ready;
        // While it encodes, a playable video's ladder grows in place (see `transcode::live`).
        let watchable =
            ready || (video.status == VideoStatus::Processing && video.playable_at.is_some());
        let signed = |path: String| links.link(video, &path);
        let renditions = video
            .renditions
            .iter()
            .map(|rendition| Rendition {
                playlist: links.link(video, &rendition.playlist),
                ..rendition.clone()
            })
            .collect();
        Self {
            id,
            owner: video.owner.clone(),
            title: video.title.clone(),
            filename: video.filename.clone(),
            visibility: video.visibility,
            status: video.status,
            step: video.step,
            progress: video.progress,
            queue_position: (video.status == VideoStatus::Queued)
                .then_some(video.queue_position)
                .flatten(),
            // A passing reason is kept while a job waits for its retry; only a failure shows it.
            error: (video.status == VideoStatus::Failed)
                .then(|| video.error.clone())
                .flatten(),
            source: video.source.clone(),
            renditions,
            metadata: video.metadata.clone(),
            properties: video.properties.clone(),
            playable_at: video.playable_at.map(|at| at.to_rfc3339()),
            links: Links {
                self_: video_url(id),
                events: format!("{}/events", video_url(id)),
                source: format!("{}/source", video_url(id)),
                playlist: watchable.then(|| signed(format!("/hls/{id}/master.m3u8"))),
                poster: ready.then(|| signed(format!("/hls/{id}/poster.jpg"))),
                storyboard: ready.then(|| signed(format!("/hls/{id}/storyboard.vtt"))),
            },
            created_at: video.created_at.to_rfc3339(),
            updated_at: video.updated_at.to_rfc3339(),
        }
    }
}
