//! Streaming an object into the bucket as a multipart upload in bounded memory.
//!
//! Bytes are gathered into parts of [`PART_SIZE`]; at most [`PARTS_IN_FLIGHT`] parts are being
//! sent while the next one fills, so an upload of any size holds at most
//! `PART_SIZE × (PARTS_IN_FLIGHT + 1)` = 8 MiB × 5 = 40 MiB of body, and a client is slowed
//! down to the bucket's pace (the next chunk is not read while every slot is busy).
//!
//! A failed part fails the upload at the next chunk, or while waiting for a free slot.
//!
//! The upload is completed (made visible) only by [`StagedObject::commit`]. Whatever ends
//! otherwise — an error, a refusal, a dropped request, a drop before the commit — aborts the
//! multipart upload, retried in the background for a while; what still fails is left for the
//! start-up sweep of stale multipart uploads.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use object_store::{MultipartUpload, PutPayloadMut};
use tokio::task::JoinSet;
use tracing::{debug, warn};

use super::mapped;
use crate::media::{MediaError, ObjectSink, StagedObject};

/// Bytes per part (S3 wants at least 5 MiB for every part but the last).
pub const PART_SIZE: usize = 8 * 1024 * 1024;
/// Parts being sent at once.
pub const PARTS_IN_FLIGHT: usize = 4;
/// How long an abort is retried when the bucket is away.
const ABORT_TRIES: u32 = 6;

/// A multipart upload that aborts itself when dropped before its commit.
struct Upload {
    inner: Option<Box<dyn MultipartUpload>>,
    what: String,
}

impl Drop for Upload {
    fn drop(&mut self) {
        let Some(mut upload) = self.inner.take() else {
            return;
        };
        let what = std::mem::take(&mut self.what);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            warn!(object = %what, "no runtime to abort an unfinished upload; the sweep will");
            return;
        };
        runtime.spawn(async move {
            let mut delay = Duration::from_millis(500);
            for attempt in 1..=ABORT_TRIES {
                match upload.abort().await {
                    Ok(()) => {
                        debug!(object = %what, "unfinished multipart upload aborted");
                        return;
                    }
                    // An earlier try that timed out may have aborted it after all.
                    Err(object_store::Error::NotFound { .. }) => {
                        debug!(object = %what, "unfinished multipart upload already gone");
                        return;
                    }
                    Err(error) if attempt == ABORT_TRIES => {
                        let answer = crate::media::answer(&mapped(&what, error));
                        warn!(object = %what, %answer, "cannot abort an unfinished upload; the stale-upload sweep will");
                    }
                    Err(_) => {
                        tokio::time::sleep(delay).await;
                        delay *= 2;
                    }
                }
            }
        });
    }
}

/// How a sent part ended.
type Joined = Result<Result<(), object_store::Error>, tokio::task::JoinError>;

/// An object being written part by part.
pub struct BucketSink {
    upload: Upload,
    buffer: PutPayloadMut,
    parts: JoinSet<Result<(), object_store::Error>>,
}

impl BucketSink {
    pub fn new(upload: Box<dyn MultipartUpload>, what: String) -> Self {
        Self {
            upload: Upload {
                inner: Some(upload),
                what,
            },
            buffer: PutPayloadMut::new(),
            parts: JoinSet::new(),
        }
    }

    fn what(&self) -> String {
        self.upload.what.clone()
    }

    /// Waits until at most `limit` parts are in flight; the first failed part fails all.
    async fn drain_to(&mut self, limit: usize) -> Result<(), MediaError> {
        while self.parts.len() > limit {
            let joined = self.parts.join_next().await;
            self.check(joined)?;
        }
        Ok(())
    }

    /// Collects the parts already sent, without waiting: a part that failed fails the upload
    /// at the next chunk rather than parts later.
    fn reap(&mut self) -> Result<(), MediaError> {
        while let Some(joined) = self.parts.try_join_next() {
            self.check(Some(joined))?;
        }
        Ok(())
    }

    fn check(&self, joined: Option<Joined>) -> Result<(), MediaError> {
        match joined {
            Some(Ok(Ok(()))) | None => Ok(()),
            Some(Ok(Err(error))) => Err(mapped(&self.what(), error)),
            Some(Err(join)) => Err(mapped(
                &self.what(),
                object_store::Error::Generic {
                    store: "S3",
                    source: Box::new(join),
                },
            )),
        }
    }

    fn send_part(&mut self) {
        let part = std::mem::take(&mut self.buffer).freeze();
        if let Some(upload) = self.upload.inner.as_mut() {
            self.parts.spawn(upload.put_part(part));
        }
    }
}

#[async_trait]
impl ObjectSink for BucketSink {
    async fn write(&mut self, chunk: Bytes) -> Result<(), MediaError> {
        self.reap()?;
        let mut chunk = chunk;
        while !chunk.is_empty() {
            let room = PART_SIZE - self.buffer.content_length();
            let piece = chunk.split_to(room.min(chunk.len()));
            self.buffer.push(piece);
            if self.buffer.content_length() >= PART_SIZE {
                self.drain_to(PARTS_IN_FLIGHT - 1).await?;
                self.send_part();
            }
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>) -> Result<Box<dyn StagedObject>, MediaError> {
        if self.buffer.content_length() > 0 {
            self.drain_to(PARTS_IN_FLIGHT - 1).await?;
            self.send_part();
        }
        self.drain_to(0).await?;
        let upload = Upload {
            inner: self.upload.inner.take(),
            what: self.what(),
        };
        Ok(Box::new(Staged { upload }))
    }
}

/// Every part sent; the object appears on commit.
struct Staged {
    upload: Upload,
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Staged")
            .field("object", &self.upload.what)
            .finish()
    }
}

#[async_trait]
impl StagedObject for Staged {
    async fn commit(mut self: Box<Self>) -> Result<(), MediaError> {
        let what = self.upload.what.clone();
        let Some(upload) = self.upload.inner.as_mut() else {
            return Ok(());
        };
        upload.complete().await.map_err(|e| mapped(&what, e))?;
        // Completed: nothing to abort any more.
        self.upload.inner = None;
        Ok(())
    }
}
