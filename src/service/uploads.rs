//! Resumable uploads (tus 1.0): create, report the offset, append, terminate, expire. A
//! complete upload goes through the same admission and filing as `POST /api/v1/videos`
//! ([`Service::admit_upload`], then [`Service::file_upload`]), so it becomes a video exactly as
//! a plain upload does.
//!
//! Durability: the offset an upload reports is only ever one whose bytes are fdatasynced. A
//! writing request records its offset after every [`CHECKPOINT_BYTES`] or
//! [`CHECKPOINT_EVERY`], when the body ends or breaks, and before it answers; a process killed
//! in between loses at most what came after the last record, and the next request cuts that
//! tail off the file.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tracing::{info, warn};

use super::{Result, Service, ServiceError, UploadMeta};
use crate::auth::Caller;
use crate::domain::{Millis, Video, VideoId};
use crate::store::{LockOutcome, NewUpload, Upload, UploadId, UploadLock};
use crate::upload::resumable::{self, Appended, Appender};
use crate::upload::tus::{Checksum, TusError, UploadFields};
use crate::upload::{self, UploadError};

/// How long a writing request's lock lasts unless renewed; it is renewed only while bytes
/// flow, so a request whose client vanished without closing the connection gives the upload up
/// to the client's next request after this long.
const LOCK_LEASE: Duration = Duration::from_secs(15);
/// A writing request records its durable offset (one fdatasync, one row update) after this
/// many bytes…
const CHECKPOINT_BYTES: u64 = 16 * 1024 * 1024;
/// …or after this long, whichever comes first; each record also renews the lock.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// Expired uploads removed per statement by the sweeper.
const SWEEP_BATCH: u32 = 100;

/// A new upload as the creation request describes it.
#[derive(Debug, Clone, Default)]
pub struct CreateUpload {
    /// `Upload-Length`, in bytes.
    pub length: u64,
    /// `Upload-Metadata` as sent (echoed by `HEAD`).
    pub tus_metadata: Option<String>,
    pub fields: UploadFields,
    pub user_agent: Option<String>,
}

/// A request that carries bytes (`PATCH`, or creation-with-upload).
#[derive(Debug, Clone, Default)]
pub struct Append {
    /// `Upload-Offset`: where the client believes the upload is.
    pub offset: u64,
    /// `Upload-Checksum` of this request's body.
    pub checksum: Option<Checksum>,
    /// `Content-Length`, when sent: checked against the upload's length before reading.
    pub declared: Option<u64>,
}

/// An upload as a client sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadStatus {
    pub id: UploadId,
    /// Durable bytes received.
    pub offset: u64,
    pub length: u64,
    pub tus_metadata: Option<String>,
    pub expires_at: Millis,
    /// The video it became, once complete.
    pub video: Option<VideoId>,
}

impl From<&Upload> for UploadStatus {
    fn from(upload: &Upload) -> Self {
        Self {
            id: upload.id,
            offset: upload.offset,
            length: upload.length,
            tus_metadata: upload.tus_metadata.clone(),
            expires_at: upload.expires_at,
            video: upload.video,
        }
    }
}

/// This process, as the holder of upload locks: made once per process, so a lock left by a
/// process that died is recognisably not ours.
fn node_id() -> &'static str {
    static NODE: OnceLock<String> = OnceLock::new();
    NODE.get_or_init(|| uuid::Uuid::new_v4().simple().to_string())
}

impl Service {
    /// Creates an upload after the same admission as a plain upload (shutting down, role,
    /// size against `--max-upload-bytes`, queue full, free space for its length).
    pub async fn create_upload(&self, caller: &Caller, new: CreateUpload) -> Result<UploadStatus> {
        let meta = UploadMeta {
            declared_size: Some(new.length),
            protocol: "tus",
            ..UploadMeta::default()
        };
        self.admit_upload(caller, &meta).await?;
        if new.length == 0 {
            return Err(UploadError::Empty.into());
        }
        let row = NewUpload {
            id: UploadId::new(),
            owner: caller.user.clone(),
            length: new.length,
            tus_metadata: new.tus_metadata,
            title: new.fields.title,
            filename: new.fields.filename,
            visibility: new.fields.visibility,
            metadata: new.fields.metadata,
            user_agent: new.user_agent,
        };
        let upload = self
            .store
            .insert_upload(&row, self.config.upload_expiry)
            .await?;
        info!(upload.id = %upload.id, bytes = upload.length, "tus upload created");
        Ok(UploadStatus::from(&upload))
    }

    /// The upload's durable offset and, once complete, its video (`HEAD`).
    pub async fn upload_status(&self, caller: &Caller, id: UploadId) -> Result<UploadStatus> {
        Ok(UploadStatus::from(&self.owned_upload(caller, id).await?))
    }

    /// Terminates an upload: its row, then its file (termination extension).
    pub async fn terminate_upload(&self, caller: &Caller, id: UploadId) -> Result<()> {
        self.owned_upload(caller, id).await?;
        self.store.delete_upload(id).await?;
        resumable::remove_partial(&self.media, &id.to_string())?;
        info!(upload.id = %id, "tus upload terminated");
        Ok(())
    }

    /// Appends a request body at `append.offset` (`PATCH`). When the last byte is in, the
    /// upload is filed as a video; if filing is refused (queue full: 503), the bytes stay and
    /// an empty request at the final offset retries it.
    ///
    /// Errors: 404 not this caller's or expired, 409 wrong offset, 423 another request writes
    /// it, 413 more than its length, 415 not a video (the upload is removed), 460 checksum
    /// mismatch, 507, 408 idle, and the admission errors of a plain upload when filing.
    pub async fn append_upload<S, E>(
        &self,
        caller: &Caller,
        id: UploadId,
        append: Append,
        body: S,
    ) -> Result<UploadStatus>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        if self.shutdown.is_cancelled() {
            return Err(ServiceError::ShuttingDown);
        }
        let upload = self.owned_upload(caller, id).await?;
        if upload.video.is_some() {
            // Already a video: a retried final request learns which one.
            return match append.declared {
                _ if append.offset != upload.length => Err(TusError::OffsetMismatch {
                    offset: upload.length,
                }
                .into()),
                Some(n) if n > 0 => Err(TusError::BeyondLength {
                    length: upload.length,
                }
                .into()),
                _ => Ok(UploadStatus::from(&upload)),
            };
        }
        if append.offset != upload.offset {
            return Err(TusError::OffsetMismatch {
                offset: upload.offset,
            }
            .into());
        }
        if let Some(n) = append.declared
            && append.offset.saturating_add(n) > upload.length
        {
            return Err(TusError::BeyondLength {
                length: upload.length,
            }
            .into());
        }
        let lock = UploadLock {
            token: uuid::Uuid::new_v4().simple().to_string(),
            node: node_id().to_owned(),
        };
        let locked_at = Instant::now();
        let upload = match self.store.lock_upload(id, &lock, LOCK_LEASE).await? {
            LockOutcome::Acquired(upload) => *upload,
            LockOutcome::Busy => return Err(TusError::Locked.into()),
            LockOutcome::Missing => return Err(TusError::NotFound.into()),
        };
        let result = self
            .append_locked(caller, &upload, (&lock, locked_at), append, body)
            .await;
        if let Err(error) = self.store.unlock_upload(id, &lock).await {
            warn!(upload.id = %id, %error, "cannot release an upload's lock; its lease will");
        }
        result
    }

    /// [`Service::append_upload`] once the lock is held (taken no later than `locked_at`).
    async fn append_locked<S, E>(
        &self,
        caller: &Caller,
        upload: &Upload,
        (lock, locked_at): (&UploadLock, Instant),
        append: Append,
        body: S,
    ) -> Result<UploadStatus>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let id = upload.id;
        if append.offset != upload.offset {
            return Err(TusError::OffsetMismatch {
                offset: upload.offset,
            }
            .into());
        }
        let limits = self.upload_limits();
        upload::check_space(&self.media, &limits, Some(upload.length - upload.offset))?;
        let container = upload
            .container
            .as_deref()
            .and_then(resumable::container_from_mime);
        let opened = Appender::open(
            &self.media,
            &id.to_string(),
            upload.offset,
            upload.length,
            container,
            append.checksum,
            limits,
        )
        .await;
        let mut appender = match opened {
            Ok(appender) => appender,
            Err(TusError::Lost) => {
                self.discard(id).await;
                return Err(TusError::Lost.into());
            }
            Err(error) => return Err(error.into()),
        };
        let received = self
            .receive(&mut appender, upload, (lock, locked_at), body)
            .await;
        let complete_body = received.is_ok();
        let finished = appender
            .finish(complete_body)
            .await
            .map_err(ServiceError::from);
        let not_a_video = |error: Option<&ServiceError>| {
            matches!(
                error,
                Some(ServiceError::Tus(TusError::Upload(UploadError::NotAVideo)))
            )
        };
        if not_a_video(received.as_ref().err()) || not_a_video(finished.as_ref().err()) {
            self.discard(id).await;
            return Err(UploadError::NotAVideo.into());
        }
        let appended = match (received, finished) {
            (Err(error), Err(_)) | (Ok(()), Err(error)) => return Err(error),
            (received, Ok(appended)) => {
                self.record(upload, lock, appended).await?;
                received?;
                appended
            }
        };
        if appended.offset < upload.length {
            return self.status_now(upload, appended.offset, None).await;
        }
        let Some(container) = appended.container else {
            return Err(UploadError::NotAVideo.into());
        };
        let video = self.file_complete(caller, upload, lock, container).await?;
        self.status_now(upload, upload.length, Some(video.id)).await
    }

    /// Streams the body into the appender, recording the durable offset (and renewing the lock)
    /// every [`CHECKPOINT_BYTES`] or [`CHECKPOINT_EVERY`]; a request that lost its lock stops
    /// before writing another byte.
    async fn receive<S, E>(
        &self,
        appender: &mut Appender,
        upload: &Upload,
        (lock, locked_at): (&UploadLock, Instant),
        body: S,
    ) -> Result<()>
    where
        S: Stream<Item = Result<Bytes, E>>,
        E: std::fmt::Display,
    {
        let idle = self.upload_limits().idle_timeout;
        let mut body = std::pin::pin!(body);
        let mut last_byte = Instant::now();
        // The lease was taken (or last renewed) no earlier than this; a chunk is written only
        // within CHECKPOINT_EVERY of it, well inside LOCK_LEASE.
        let mut renewed_at = locked_at;
        let mut recorded = appender.offset();
        loop {
            // While bytes wait to be recorded, a silence longer than CHECKPOINT_EVERY records
            // them without renewing the lock: a client that vanished keeps what it sent, and
            // its next request may take over once the lease runs out.
            let silence_left = idle.saturating_sub(last_byte.elapsed());
            let wait = if appender.offset() > recorded && !appender.is_checksummed() {
                silence_left.min(CHECKPOINT_EVERY)
            } else {
                silence_left
            };
            let chunk = match tokio::time::timeout(wait, body.next()).await {
                Err(_) if last_byte.elapsed() >= idle => {
                    return Err(UploadError::IdleTimeout(idle).into());
                }
                Err(_) => {
                    recorded = self.checkpoint(appender, upload, lock, None).await?;
                    continue;
                }
                Ok(None) => return Ok(()),
                Ok(Some(Err(error))) => return Err(UploadError::Body(error.to_string()).into()),
                Ok(Some(Ok(chunk))) => chunk,
            };
            last_byte = Instant::now();
            // Before writing on: renew the lock (recording what is durable) every
            // CHECKPOINT_EVERY or CHECKPOINT_BYTES; a request that lost it writes nothing more.
            if renewed_at.elapsed() >= CHECKPOINT_EVERY
                || appender.offset() - recorded >= CHECKPOINT_BYTES
            {
                let renewing = Instant::now();
                recorded = self
                    .checkpoint(appender, upload, lock, Some(LOCK_LEASE))
                    .await?;
                renewed_at = renewing;
            }
            appender.push(chunk).await?;
        }
    }

    /// Syncs the appender and records its durable offset; returns it. Errors with
    /// [`TusError::Locked`] when the lock is no longer this request's.
    async fn checkpoint(
        &self,
        appender: &mut Appender,
        upload: &Upload,
        lock: &UploadLock,
        lease: Option<Duration>,
    ) -> Result<u64> {
        let durable = appender.checkpoint().await?;
        let container = appender.container().map(|c| c.mime());
        let kept = self
            .store
            .checkpoint_upload(
                upload.id,
                lock,
                durable,
                container,
                lease,
                self.config.upload_expiry,
            )
            .await?;
        if kept {
            Ok(appender.offset())
        } else {
            Err(TusError::Locked.into())
        }
    }

    /// Records a request's durable bytes. A request that lost its lock records nothing: the
    /// upload was terminated (404) or taken over by a newer request (423).
    async fn record(&self, upload: &Upload, lock: &UploadLock, appended: Appended) -> Result<()> {
        let container = appended.container.map(|c| c.mime());
        let kept = self
            .store
            .checkpoint_upload(
                upload.id,
                lock,
                appended.offset,
                container,
                Some(LOCK_LEASE),
                self.config.upload_expiry,
            )
            .await?;
        if kept {
            return Ok(());
        }
        if self.store.upload_exists(upload.id).await? {
            Err(TusError::Locked.into())
        } else {
            // Terminated while this request wrote: its file may have been made again.
            resumable::remove_partial(&self.media, &upload.id.to_string())?;
            Err(TusError::NotFound.into())
        }
    }

    /// Files a complete upload as a video through the plain upload's admission and filing.
    /// A refusal (queue full, shutting down, disk) keeps the bytes for a retry.
    async fn file_complete(
        &self,
        caller: &Caller,
        upload: &Upload,
        lock: &UploadLock,
        container: upload::sniff::Container,
    ) -> Result<Video> {
        let age = Millis::now().0.saturating_sub(upload.created_at.0);
        let started = Instant::now()
            .checked_sub(Duration::from_millis(u64::try_from(age).unwrap_or(0)))
            .unwrap_or_else(Instant::now);
        let meta = UploadMeta {
            title: upload.title.clone(),
            filename: upload.filename.clone(),
            declared_size: None,
            visibility: upload.visibility,
            metadata: upload.metadata.clone(),
            started,
            protocol: "tus",
            user_agent: upload.user_agent.clone(),
            country: None,
        };
        self.admit_upload(caller, &meta).await?;
        let name = upload.id.to_string();
        let received =
            resumable::stage_complete(&self.media, &name, upload.length, container).await?;
        let video = self.file_upload(caller, received, meta).await?;
        // The video exists. Forget the bytes first: a retry must never file a second copy.
        if let Err(error) = resumable::remove_partial(&self.media, &name) {
            warn!(upload.id = %upload.id, %error, "cannot remove a filed upload's file");
        }
        match self
            .store
            .mark_upload_filed(upload.id, lock, video.id, self.config.upload_expiry)
            .await
        {
            Ok(true) => {}
            Ok(false) => warn!(upload.id = %upload.id, "a filed upload lost its lock"),
            Err(error) => warn!(upload.id = %upload.id, %error, "cannot record a filed upload"),
        }
        info!(upload.id = %upload.id, video.id = %video.id, "tus upload filed");
        Ok(video)
    }

    /// The status after a request, with the expiry as the database set it.
    async fn status_now(
        &self,
        upload: &Upload,
        offset: u64,
        video: Option<VideoId>,
    ) -> Result<UploadStatus> {
        let expires_at =
            match self.store.upload(upload.id).await {
                Ok(Some(row)) => row.expires_at,
                _ => Millis(Millis::now().0.saturating_add(
                    i64::try_from(self.config.upload_expiry.as_millis()).unwrap_or(0),
                )),
            };
        Ok(UploadStatus {
            offset,
            video,
            expires_at,
            ..UploadStatus::from(upload)
        })
    }

    async fn owned_upload(&self, caller: &Caller, id: UploadId) -> Result<Upload> {
        match self.store.upload(id).await? {
            Some(upload) if caller.owns(upload.owner.as_deref()) => Ok(upload),
            _ => Err(TusError::NotFound.into()),
        }
    }

    /// Removes an upload that cannot go on (not a video, bytes lost): row, then file.
    async fn discard(&self, id: UploadId) {
        if let Err(error) = self.store.delete_upload(id).await {
            warn!(upload.id = %id, %error, "cannot remove a refused upload's row; it will expire");
        }
        if let Err(error) = resumable::remove_partial(&self.media, &id.to_string()) {
            warn!(upload.id = %id, %error, "cannot remove a refused upload's file");
        }
    }

    /// Removes expired uploads with their files, and files left without a row by a crash.
    /// Returns how many uploads went.
    pub async fn sweep_uploads(&self) -> Result<usize> {
        let mut removed = 0;
        loop {
            let expired = self.store.delete_expired_uploads(SWEEP_BATCH).await?;
            for id in &expired {
                resumable::remove_partial(&self.media, &id.to_string())?;
            }
            removed += expired.len();
            if expired.len() < SWEEP_BATCH as usize {
                break;
            }
        }
        let names = resumable::partial_names(&self.media).map_err(|source| {
            crate::media::MediaError::Io {
                path: resumable::uploads_dir(&self.media),
                source,
            }
        })?;
        for name in names {
            let orphan = match name.parse::<UploadId>() {
                Ok(id) => !self.store.upload_exists(id).await?,
                Err(_) => true,
            };
            if orphan {
                resumable::remove_partial(&self.media, &name)?;
                removed += 1;
            }
        }
        if removed > 0 {
            info!(removed, "expired uploads removed");
        }
        Ok(removed)
    }

    /// Sweeps expired uploads every quarter of `--upload-expiry` (between 1 s and 1 min).
    pub fn spawn_upload_sweeper(self: &Arc<Self>) -> tokio::task::JoinHandle<()> {
        let service = self.clone();
        let every =
            (self.config.upload_expiry / 4).clamp(Duration::from_secs(1), Duration::from_secs(60));
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tick.tick().await;
                if let Err(error) = service.sweep_uploads().await {
                    warn!(%error, "cannot sweep expired uploads");
                }
            }
        })
    }
}
