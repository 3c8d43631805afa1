//! Resumable uploads (tus 1.0): create, report the offset, append, terminate, expire. A
//! complete upload goes through the same admission and filing as `POST /api/v1/videos`
//! ([`Service::admit_upload`], then [`Service::file_upload`]), so it becomes a video exactly as
//! a plain upload does.
//!
//! The writing itself (lease, checkpoints, filing) is in `write`.
//!
//! Durability: the offset an upload reports is only ever one whose bytes are fdatasynced. A
//! writing request records its offset after every [`CHECKPOINT_BYTES`] or
//! [`CHECKPOINT_EVERY`], when the body ends or breaks, and before it answers; a process killed
//! in between loses at most what came after the last record, and the next request cuts that
//! tail off the file.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::Stream;
use tracing::{info, warn};

mod write;

use super::{Result, Service, ServiceError, UploadMeta};
use crate::auth::Caller;
use crate::domain::{Millis, VideoId};
use crate::store::{LockOutcome, NewUpload, Upload, UploadId, UploadLock};
use crate::upload::UploadError;
use crate::upload::resumable;
use crate::upload::tus::{Checksum, TusError, UploadFields};

/// How long a writing request's lock lasts unless renewed; it is renewed only while bytes
/// flow, so a request whose client vanished without closing the connection gives the upload up
/// to the client's next request after this long.
const LOCK_LEASE: Duration = Duration::from_secs(15);
/// A writing request records its durable offset (one fdatasync, one row update) after this
/// many bytes… Measured (BENCHMARKS.md, scenario 7): every 16 MiB cost about 0.2 s per GiB
/// (+20 % at 1 GB/s on loopback); every 64 MiB is within noise of a raw POST, and a crash loses
/// at most this much, sent again.
const CHECKPOINT_BYTES: u64 = 64 * 1024 * 1024;
/// …or after this long, whichever comes first; each record also renews the lock.
const CHECKPOINT_EVERY: Duration = Duration::from_secs(5);
/// Longest a `HEAD` waits for a request that is still writing the upload to end.
const HEAD_SETTLE: Duration = Duration::from_secs(2);
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
    /// The client's country (`crate::geo`): the request that completes an upload files it.
    pub country: Option<String>,
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
        // The partial file grows in the media dir; a bucket keeps chunk objects instead.
        if !self.media.keeps_upload_chunks() {
            crate::upload::check_local_space(
                self.media.work(),
                &self.upload_limits(),
                Some(new.length),
            )?;
        }
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
    ///
    /// A `HEAD` that arrives while a request still writes the upload (typically one whose
    /// connection was just cut, still making its last bytes durable) waits up to
    /// [`HEAD_SETTLE`] for it to end, so the offset it answers is where the next `PATCH` can
    /// start: a client that retries at once would otherwise resend bytes the server already
    /// has and get a 409 (tusd likewise takes the upload's lock for `HEAD`).
    pub async fn upload_status(&self, caller: &Caller, id: UploadId) -> Result<UploadStatus> {
        let upload = self.owned_upload(caller, id).await?;
        let settle_by = Instant::now() + HEAD_SETTLE;
        let mut waited = false;
        while Instant::now() < settle_by && self.store.upload_is_locked(id, node_id()).await? {
            waited = true;
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        if !waited {
            return Ok(UploadStatus::from(&upload));
        }
        Ok(UploadStatus::from(&self.owned_upload(caller, id).await?))
    }

    /// Terminates an upload: its row, then its bytes (termination extension).
    pub async fn terminate_upload(&self, caller: &Caller, id: UploadId) -> Result<()> {
        self.owned_upload(caller, id).await?;
        self.store.delete_upload(id).await?;
        if let Err(error) = resumable::remove(&self.media, &id.to_string()).await {
            // The upload is gone for the client; its bytes go with the next sweep.
            let answer = crate::media::answer(&error);
            warn!(upload.id = %id, %answer, "cannot remove a terminated upload's bytes yet");
        }
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

    /// Removes an upload that cannot go on (not a video, bytes lost): row, then bytes.
    async fn discard(&self, id: UploadId) {
        if let Err(error) = self.store.delete_upload(id).await {
            warn!(upload.id = %id, %error, "cannot remove a refused upload's row; it will expire");
        }
        if let Err(error) = resumable::remove(&self.media, &id.to_string()).await {
            let answer = crate::media::answer(&error);
            warn!(upload.id = %id, %answer, "cannot remove a refused upload's bytes; the sweeper will");
        }
    }

    /// Removes expired uploads with their bytes, and bytes (partial files, chunk objects) left
    /// without a row by a crash or after their upload was filed.
    /// Returns how many uploads went.
    pub async fn sweep_uploads(&self) -> Result<usize> {
        let mut removed = 0;
        loop {
            let expired = self.store.delete_expired_uploads(SWEEP_BATCH).await?;
            for id in &expired {
                resumable::remove(&self.media, &id.to_string()).await?;
            }
            removed += expired.len();
            if expired.len() < SWEEP_BATCH as usize {
                break;
            }
        }
        let mut names = resumable::partial_names(self.media.as_ref()).map_err(|source| {
            crate::media::MediaError::Io {
                path: resumable::uploads_dir(self.media.as_ref()),
                source,
            }
        })?;
        names.extend(self.media.chunked_uploads().await?);
        names.sort_unstable();
        names.dedup();
        for name in names {
            // Bytes of no upload, or of one already filed (a request cut off from its
            // lock may have stored some after the filing removed the rest).
            let orphan = match name.parse::<UploadId>() {
                Ok(id) => self
                    .store
                    .upload(id)
                    .await?
                    .is_none_or(|upload| upload.video.is_some()),
                Err(_) => true,
            };
            if orphan {
                resumable::remove(&self.media, &name).await?;
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

#[cfg(test)]
mod tests;
