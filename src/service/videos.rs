//! Videos: admit and file uploads, read, list, change, delete, download.

use std::time::Instant;

use serde_json::json;
use tracing::info;

use super::{CANCEL_WAIT, Result, Service, ServiceError};
use crate::auth::Caller;
use crate::domain::{
    HistoryKind, NewEvent, NewVideo, UploadFacts, Video, VideoId, VideoStatus, Visibility,
};
use crate::progress::JobEvent;
use crate::store::{StoreError, VideoPatch, VideoQuery};
use crate::telemetry;
use crate::transcode::publish_queue_positions;
use crate::upload::{self, UploadError};

/// What an upload says about itself besides its bytes.
#[derive(Debug, Clone)]
pub struct UploadMeta {
    pub title: Option<String>,
    pub filename: Option<String>,
    /// `Content-Length` of a raw upload, checked against the limits before reading.
    pub declared_size: Option<u64>,
    pub visibility: Visibility,
    pub metadata: Option<serde_json::Value>,
    /// When the request started, for the history's `upload_seconds`.
    pub started: Instant,
    /// `raw`, `multipart` or `tus`.
    pub protocol: &'static str,
    pub user_agent: Option<String>,
    pub country: Option<String>,
}

impl Default for UploadMeta {
    fn default() -> Self {
        Self {
            title: None,
            filename: None,
            declared_size: None,
            visibility: Visibility::Public,
            metadata: None,
            started: Instant::now(),
            protocol: "raw",
            user_agent: None,
            country: None,
        }
    }
}

/// A page of videos, newest first.
#[derive(Debug, Clone)]
pub struct VideoList {
    pub items: Vec<Video>,
    /// The cursor of the next page, when there is one.
    pub next: Option<VideoId>,
}

/// An original that can be read (through [`Service::media`]), and what to call it.
#[derive(Debug, Clone)]
pub struct SourceFile {
    pub video: Video,
    pub head: crate::media::ObjectHead,
}

impl Service {
    /// Refuses an upload before its body is read: shutting down, no right to upload, declared
    /// too large, queue full, disk nearly full.
    pub async fn admit_upload(&self, caller: &Caller, meta: &UploadMeta) -> Result<()> {
        if self.shutdown.is_cancelled() {
            return Err(ServiceError::ShuttingDown);
        }
        if !caller.can_upload() {
            return Err(ServiceError::Forbidden);
        }
        self.check_visibility(meta.visibility)?;
        if let Some(size) = meta.declared_size
            && size > self.config.max_upload_bytes
        {
            return Err(UploadError::TooLarge {
                limit: self.config.max_upload_bytes,
            }
            .into());
        }
        if self.store.queued_count().await? >= self.config.queue_capacity {
            return Err(StoreError::QueueFull {
                capacity: self.config.queue_capacity,
            }
            .into());
        }
        upload::check_space(
            self.media.as_ref(),
            &self.upload_limits(),
            meta.declared_size,
        )?;
        Ok(())
    }

    /// Files a fully received upload: makes its source visible in the store, queues its job
    /// (appending `uploaded` and `queued`), wakes an encoder. The id was made when the upload
    /// started (a bucket upload streams to its final key), so queue order is the order in
    /// which uploads started. On any error the source does not stay behind.
    pub async fn file_upload(
        &self,
        caller: &Caller,
        received: upload::Received,
        meta: UploadMeta,
    ) -> Result<Video> {
        let id = received.id;
        let size = received.size;
        let container = received.container;
        let at_upload = self.properties_at_upload(caller, &meta, container.mime());
        received.persist(self.media.as_ref()).await?;
        let new = NewVideo {
            id,
            owner: caller.user.clone(),
            title: meta.title.clone(),
            filename: meta.filename.clone(),
            visibility: meta.visibility,
            source_size: size,
            metadata: meta.metadata.clone(),
            properties: at_upload.properties,
            property_context: at_upload.context,
            upload: UploadFacts {
                bytes: size,
                content_type: Some(container.mime().to_owned()),
                upload_seconds: (meta.started.elapsed().as_secs_f64() * 1000.0).round() / 1000.0,
                country: meta.country.clone(),
                user_agent: meta.user_agent.clone(),
                protocol: Some(meta.protocol.to_owned()),
            },
        };
        match self
            .store
            .insert_video(&new, self.config.queue_capacity)
            .await
        {
            Ok(video) => {
                metrics::counter!(telemetry::UPLOADS, "outcome" => "accepted").increment(1);
                metrics::counter!(telemetry::UPLOAD_BYTES).increment(size);
                self.count_accepted(&meta, container.mime(), size, &video.properties);
                self.bus.wake_workers();
                publish_queue_positions(&self.store, self.bus.as_ref()).await;
                info!(video.id = %id, bytes = size, "upload accepted");
                Ok(video)
            }
            Err(error) => {
                // Not queued: the source must not stay behind.
                let _ = self.media.remove_video(id).await;
                Err(error.into())
            }
        }
    }

    /// One video the caller may see.
    pub async fn video(&self, caller: &Caller, id: VideoId) -> Result<Video> {
        self.visible(caller, id).await
    }

    /// The caller's videos (an admin's: everyone's), newest first, one page.
    pub async fn list(&self, caller: &Caller, mut query: VideoQuery) -> Result<VideoList> {
        query.owner = caller.scope();
        let limit = query.limit;
        query.limit = limit + 1;
        let mut items = self.store.videos(&query).await?;
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|video| video.id)
        } else {
            None
        };
        Ok(VideoList { items, next })
    }

    /// Changes title or visibility (the owner or an admin). A visibility change is committed,
    /// then the published ladder's private marker follows it.
    pub async fn update(&self, caller: &Caller, id: VideoId, patch: VideoPatch) -> Result<Video> {
        let video = self.visible(caller, id).await?;
        if !caller.can_upload() {
            return Err(ServiceError::Forbidden);
        }
        if patch.is_empty() {
            return Ok(video);
        }
        if let Some(visibility) = patch.visibility {
            self.check_visibility(visibility)?;
        }
        let updated = self
            .store
            .update_video(id, &patch)
            .await?
            .ok_or(ServiceError::NotFound)?;
        if updated.visibility != video.visibility {
            self.media
                .set_private(id, updated.visibility == Visibility::Private)
                .await?;
        }
        Ok(updated)
    }

    /// Private videos need signed playback links, hence a `--playback-secret`.
    fn check_visibility(&self, visibility: Visibility) -> Result<()> {
        if visibility == Visibility::Private && self.signer.is_none() {
            return Err(ServiceError::Invalid {
                code: "private_unavailable",
                message: "This server cannot serve private videos: it has no --playback-secret."
                    .into(),
            });
        }
        Ok(())
    }

    /// Whether `/hls/<id>/…` may be served: public ladders always, private ones with a valid
    /// signature. `Ok(Ok(Some(query)))` for a private ladder: the query to append to the URIs
    /// of a playlist served from it. `Err` when the store cannot say.
    pub async fn playback(
        &self,
        id: VideoId,
        exp: Option<&str>,
        sig: Option<&str>,
    ) -> std::result::Result<
        std::result::Result<Option<String>, crate::auth::playback::PlaybackError>,
        crate::media::MediaError,
    > {
        if !self.media.is_private(id).await? {
            return Ok(Ok(None));
        }
        Ok(self.check_signed(id, exp, sig))
    }

    fn check_signed(
        &self,
        id: VideoId,
        exp: Option<&str>,
        sig: Option<&str>,
    ) -> std::result::Result<Option<String>, crate::auth::playback::PlaybackError> {
        let signer = self
            .signer
            .as_ref()
            .ok_or(crate::auth::playback::PlaybackError::Unsigned)?;
        signer.check(id, exp, sig)?;
        Ok(Some(format!(
            "exp={}&sig={}",
            exp.unwrap_or_default(),
            sig.unwrap_or_default()
        )))
    }

    /// Deletes a video: removes its row (appending `deleted`), stops its job wherever it runs
    /// (waiting until its ffmpeg is gone), then removes every file, then tells subscribers.
    /// A failed database write changes nothing and removes nothing.
    pub async fn delete(&self, caller: &Caller, id: VideoId) -> Result<()> {
        self.visible(caller, id).await?;
        if !caller.can_upload() {
            return Err(ServiceError::Forbidden);
        }
        let by = caller.user.clone().unwrap_or_else(|| "operator".into());
        let video = self
            .store
            .delete_video(id, Some(&by))
            .await?
            .ok_or(ServiceError::NotFound)?;
        if video.status == VideoStatus::Processing {
            self.bus.cancel(id, CANCEL_WAIT).await;
        }
        self.media.remove_video(id).await?;
        self.bus.publish(id, JobEvent::Canceled);
        if video.status == VideoStatus::Queued {
            publish_queue_positions(&self.store, self.bus.as_ref()).await;
        }
        info!(video.id = %id, was = video.status.as_str(), "video deleted");
        Ok(())
    }

    /// The original of a video the caller may see.
    pub async fn source(&self, caller: &Caller, id: VideoId) -> Result<SourceFile> {
        let video = self.visible(caller, id).await?;
        let head = self
            .media
            .source_head(id)
            .await?
            .ok_or(ServiceError::NotFound)?;
        Ok(SourceFile { video, head })
    }

    /// Appends `downloaded` (`bytes` sent, `range` asked for) to a video's history.
    pub async fn record_download(&self, video: &Video, bytes: u64, range: Option<&str>) {
        let event = NewEvent::new(
            HistoryKind::Downloaded,
            json!({ "bytes": bytes, "range": range }),
        );
        if let Err(error) = self
            .store
            .record_event(video.id, video.owner.as_deref(), &event)
            .await
        {
            tracing::warn!(video.id = %video.id, %error, "cannot record a download");
        }
    }
}

impl Service {
    /// What a watch or embed page may show about a video before any sign-in: public videos
    /// only (a private one's title is not leaked into the page). `None` when there is nothing
    /// to show; a database error is logged and treated the same.
    pub async fn page_video(&self, id: VideoId) -> Option<Video> {
        match self.store.video(id).await {
            Ok(Some(video)) if video.visibility == Visibility::Public => Some(video),
            Ok(_) => None,
            Err(error) => {
                tracing::warn!(video.id = %id, %error, "page served without the video's title");
                None
            }
        }
    }
}
