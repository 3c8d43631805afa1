//! Writing an upload under its lock: the body into the partial file (or chunk objects in a
//! bucket), the durable offset into the row (which also renews the lease), and the last byte
//! through the plain upload's filing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use tracing::{info, warn};

use super::{Append, CHECKPOINT_BYTES, CHECKPOINT_EVERY, LOCK_LEASE, UploadStatus};
use crate::auth::Caller;
use crate::domain::{Millis, Video};
use crate::service::{Result, Service, ServiceError, UploadMeta};
use crate::store::{Store, Upload, UploadLock};
use crate::upload::resumable::{self, Appended, Appender};
use crate::upload::tus::TusError;
use crate::upload::{self, UploadError};

impl Service {
    /// [`Service::append_upload`] once the lock is held (taken no later than `locked_at`).
    pub(super) async fn append_locked<S, E>(
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
        if !self.media.keeps_upload_chunks() {
            upload::check_local_space(
                self.media.work(),
                &limits,
                Some(upload.length - upload.offset),
            )?;
        }
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
        let video = self
            .file_complete(caller, upload, lock, container, append.country)
            .await?;
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
        self.lost_lock(upload).await
    }

    /// The error for a request that lost its upload's lock. The bytes it may have written
    /// after that are removed when nothing needs them any more: the upload was terminated
    /// (its file may have been made again) or filed by the request that took over.
    async fn lost_lock<T>(&self, upload: &Upload) -> Result<T> {
        let row = self.store.upload(upload.id).await?;
        if row.as_ref().is_some_and(|row| row.video.is_none()) {
            return Err(TusError::Locked.into());
        }
        resumable::remove(&self.media, &upload.id.to_string()).await?;
        Err(match row {
            Some(_) => TusError::Locked,
            None => TusError::NotFound,
        }
        .into())
    }

    /// Files a complete upload as a video through the plain upload's admission and filing.
    /// A refusal (queue full, shutting down, disk) keeps the bytes for a retry.
    async fn file_complete(
        &self,
        caller: &Caller,
        upload: &Upload,
        lock: &UploadLock,
        container: upload::sniff::Container,
        country: Option<String>,
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
            country,
        };
        self.admit_upload(caller, &meta).await?;
        let name = upload.id.to_string();
        // Copying a bucket's chunks into the source may outlast the lock's lease: the lock is
        // renewed meanwhile, so no other request files the upload a second time, and a filing
        // whose upload was terminated or taken over stops before it becomes a video.
        let keeper = LockKeeper::start(&self.store, upload, lock, self.config.upload_expiry);
        let received =
            match resumable::stage_complete(&self.media, &name, upload.length, container).await {
                Ok(received) => received,
                Err(_) if keeper.lost() => return self.lost_lock(upload).await,
                Err(error) if !self.store.upload_exists(upload.id).await? => {
                    info!(upload.id = %upload.id, %error, "a terminated upload was not filed");
                    return Err(TusError::NotFound.into());
                }
                Err(TusError::Lost) => {
                    drop(keeper);
                    self.discard(upload.id).await;
                    return Err(TusError::Lost.into());
                }
                Err(error) => return Err(error.into()),
            };
        // Once more now, not up to 5 s ago: a terminate that came during the copy wins.
        if !keeper.confirm().await? {
            return self.lost_lock(upload).await;
        }
        let video = self.file_upload(caller, received, meta).await?;
        // The video exists. Forget the bytes first: a retry must never file a second copy.
        if let Err(error) = resumable::remove(&self.media, &name).await {
            let answer = crate::media::answer(&error);
            warn!(upload.id = %upload.id, %answer, "cannot remove a filed upload's bytes; the sweeper will once it expires");
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
        drop(keeper);
        info!(upload.id = %upload.id, video.id = %video.id, "tus upload filed");
        Ok(video)
    }
}

/// Renews an upload's lock every [`CHECKPOINT_EVERY`] (well inside [`LOCK_LEASE`]) while the
/// request holding it files the upload; stops when dropped. [`LockKeeper::lost`] says whether
/// a renewal found the lock gone (the upload terminated, or expired and taken over).
struct LockKeeper {
    task: tokio::task::JoinHandle<()>,
    lost: Arc<AtomicBool>,
    renewal: Renewal,
}

/// One renewal of a filing upload's lock (its offset is already the length).
#[derive(Clone)]
struct Renewal {
    store: Store,
    upload: Upload,
    lock: UploadLock,
    expiry: Duration,
}

impl Renewal {
    /// Whether the lock was still this request's, now renewed for [`LOCK_LEASE`].
    async fn renew(&self) -> Result<bool> {
        let (upload, lock) = (&self.upload, &self.lock);
        let renewed = self
            .store
            .checkpoint_upload(
                upload.id,
                lock,
                upload.length,
                None,
                Some(LOCK_LEASE),
                self.expiry,
            )
            .await?;
        Ok(renewed)
    }
}

impl LockKeeper {
    fn start(store: &Store, upload: &Upload, lock: &UploadLock, expiry: Duration) -> Self {
        let lost = Arc::new(AtomicBool::new(false));
        let renewal = Renewal {
            store: store.clone(),
            upload: upload.clone(),
            lock: lock.clone(),
            expiry,
        };
        let (flag, renewing, id) = (lost.clone(), renewal.clone(), upload.id);
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                match renewing.renew().await {
                    Ok(true) => {}
                    Ok(false) => {
                        flag.store(true, Ordering::Release);
                        return;
                    }
                    // The database is away: the next tick tries again, within the lease.
                    Err(error) => {
                        warn!(upload.id = %id, %error, "cannot renew a filing upload's lock")
                    }
                }
            }
        });
        Self {
            task,
            lost,
            renewal,
        }
    }

    fn lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }

    /// Renews the lock now; false when it is no longer this request's.
    async fn confirm(&self) -> Result<bool> {
        Ok(!self.lost() && self.renewal.renew().await?)
    }
}

impl Drop for LockKeeper {
    fn drop(&mut self) {
        self.task.abort();
    }
}
