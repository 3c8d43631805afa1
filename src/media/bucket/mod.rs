//! The media store as an S3-compatible bucket (`--storage s3://BUCKET[/PREFIX]`), through the
//! `object_store` crate (multipart uploads, ranged GETs, listing, presigned URLs, retries).
//!
//! Every request is bounded: small requests by `--s3-timeout-secs` (one retry), streaming
//! GETs by the same time without a byte. Sources are streamed in as multipart uploads
//! ([`sink`]); ladders are written file by file with the master last ([`ladder`]), or grow
//! segment by segment while they encode (`live`); what crashed uploads left is found and
//! aborted by [`stale`]. Resumable uploads keep their bytes as chunk objects ([`chunks`]).

mod chunks;
mod config;
mod inventory;
mod ladder;
mod live;
mod read;
mod seen;
pub mod sink;
mod stale;

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3;
use object_store::path::Path as Key;
use object_store::signer::Signer;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tempfile::TempPath;
use tokio::io::AsyncWriteExt;

pub use config::{BucketConfig, parse_storage_url};

use super::{
    ByteStream, Fence, GrowingLadder, Inventory, LocalSource, MASTER, MediaError, MediaStore,
    ObjectHead, PRIVATE_MARKER, Staging, WorkDir,
};
use crate::domain::VideoId;
use read::timed_out;
use sink::BucketSink;

/// Maps an object_store error: passing failures (network, time-outs, 5xx) are retryable.
pub(crate) fn mapped(what: &str, source: object_store::Error) -> MediaError {
    let what = what.to_owned();
    match source {
        object_store::Error::Generic { .. } => MediaError::Unavailable { what, source },
        _ => MediaError::Refused { what, source },
    }
}

#[derive(Debug)]
pub struct BucketStore {
    work: WorkDir,
    /// Requests with a total time-out.
    store: Arc<AmazonS3>,
    /// Streaming GETs: no total time-out (a slow reader is not an error), an idle one instead.
    streaming: Arc<AmazonS3>,
    raw: stale::Raw,
    prefix: String,
    bucket: String,
    timeout: Duration,
    seen: seen::Seen,
}

impl BucketStore {
    /// Builds the clients (nothing is sent yet: see [`MediaStore::check`]).
    pub fn open(config: &BucketConfig, work: WorkDir) -> Result<Self, MediaError> {
        let (store, streaming, raw) = config.clients()?;
        Ok(Self {
            work,
            store: Arc::new(store),
            streaming: Arc::new(streaming),
            raw,
            prefix: config.prefix.clone(),
            bucket: config.bucket.clone(),
            timeout: config.timeout,
            seen: seen::Seen::default(),
        })
    }

    /// The key of `rel` below the prefix.
    fn key(&self, rel: &str) -> Key {
        if self.prefix.is_empty() {
            Key::from(rel)
        } else {
            Key::from(format!("{}/{rel}", self.prefix))
        }
    }

    fn source_key(&self, id: VideoId) -> Key {
        self.key(&format!("sources/{id}"))
    }

    fn ladder_key(&self, id: VideoId, rel: &str) -> Key {
        self.key(&format!("hls/{id}/{rel}"))
    }

    /// The longest a write started now may take (one try and one retry).
    pub fn write_bound(&self) -> Duration {
        self.timeout * 2 + Duration::from_secs(1)
    }

    async fn head(&self, key: &Key) -> Result<Option<ObjectHead>, MediaError> {
        match self.store.head(key).await {
            Ok(meta) => Ok(Some(ObjectHead {
                len: meta.size,
                etag: meta
                    .e_tag
                    .map(|tag| tag.trim_matches('"').to_owned())
                    .unwrap_or_else(|| format!("{}-{}", meta.size, meta.last_modified.timestamp())),
                modified: Some(meta.last_modified.into()),
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(mapped(key.as_ref(), error)),
        }
    }

    async fn put(&self, key: &Key, bytes: PutPayload) -> Result<(), MediaError> {
        self.store
            .put(key, bytes)
            .await
            .map(drop)
            .map_err(|e| mapped(key.as_ref(), e))
    }

    async fn delete(&self, key: &Key) -> Result<(), MediaError> {
        match self.store.delete(key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(error) => Err(mapped(key.as_ref(), error)),
        }
    }

    /// Deletes every object below `prefix` (a folder-like key ending in `/`).
    async fn delete_below(&self, prefix: &Key) -> Result<(), MediaError> {
        let what = prefix.as_ref().to_owned();
        let keys = self
            .store
            .list(Some(prefix))
            .map_ok(|meta| meta.location)
            .boxed();
        let mut deleted = self.store.delete_stream(keys);
        while let Some(result) = deleted.next().await {
            match result {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(error) => return Err(mapped(&what, error)),
            }
        }
        Ok(())
    }

    /// Whether the ladder of `id` is published (its master is there): files staged for a
    /// commit that has not happened are not served.
    async fn is_published(&self, id: VideoId) -> Result<bool, MediaError> {
        if self.seen.published(id) {
            return Ok(true);
        }
        let published = self.head(&self.ladder_key(id, MASTER)).await?.is_some();
        if published {
            self.seen.remember_published(id);
        }
        Ok(published)
    }
}

fn age_of(at: chrono::DateTime<chrono::Utc>) -> Duration {
    (chrono::Utc::now() - at).to_std().unwrap_or_default()
}

#[async_trait]
impl MediaStore for BucketStore {
    fn kind(&self) -> &'static str {
        "bucket"
    }

    fn work(&self) -> &WorkDir {
        &self.work
    }

    async fn check(&self) -> Result<(), MediaError> {
        let probe = self.key(&format!(".reel-check-{}", uuid::Uuid::now_v7().simple()));
        self.put(&probe, PutPayload::from_static(b"reel")).await?;
        let read = self.head(&probe).await;
        self.delete(&probe).await?;
        read?
            .map(drop)
            .ok_or_else(|| timed_out("a probe just written"))
    }

    async fn ready(&self) -> bool {
        let probe = self.key(".reel-ready");
        matches!(
            tokio::time::timeout(Duration::from_secs(3), self.head(&probe)).await,
            Ok(Ok(_))
        )
    }

    fn upload_free_bytes(&self) -> Result<Option<u64>, MediaError> {
        Ok(None)
    }

    async fn sweep_stale_uploads(&self, single_node: bool, grace: Duration) -> usize {
        let prefix = self.key("sources/");
        let prefix = format!("{}/", prefix.as_ref());
        self.raw.sweep(&prefix, single_node, grace).await
    }

    async fn stage_source(&self, id: VideoId) -> Result<Staging, MediaError> {
        let key = self.source_key(id);
        let upload = self
            .store
            .put_multipart(&key)
            .await
            .map_err(|e| mapped(key.as_ref(), e))?;
        Ok(Staging::Object(Box::new(BucketSink::new(
            upload,
            key.as_ref().to_owned(),
        ))))
    }

    async fn persist_file(&self, file: TempPath, id: VideoId) -> Result<(), MediaError> {
        let staged = ladder::upload_file(self, &file, self.source_key(id)).await?;
        staged.commit().await?;
        drop(file);
        Ok(())
    }

    async fn source_head(&self, id: VideoId) -> Result<Option<ObjectHead>, MediaError> {
        self.head(&self.source_key(id)).await
    }

    async fn read_source(
        &self,
        id: VideoId,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, MediaError> {
        self.read(self.source_key(id), start, len).await
    }

    async fn fetch_source(&self, id: VideoId) -> Result<LocalSource, MediaError> {
        let head = self.source_head(id).await?.ok_or_else(|| MediaError::Io {
            path: PathBuf::from(format!("sources/{id}")),
            source: std::io::ErrorKind::NotFound.into(),
        })?;
        let workdir = self.work.job_workdir(id)?;
        let target = workdir.path().join("source");
        let mut file = tokio::fs::File::create(&target)
            .await
            .map_err(MediaError::io(&target))?;
        let mut stream = self.read(self.source_key(id), 0, head.len).await?;
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk?)
                .await
                .map_err(MediaError::io(&target))?;
        }
        file.flush().await.map_err(MediaError::io(&target))?;
        Ok(LocalSource::copied(target, workdir))
    }

    async fn stage_ladder(
        &self,
        id: VideoId,
        dir: &Path,
        fence: &dyn Fence,
    ) -> Result<(), MediaError> {
        ladder::stage(self, id, dir, fence).await
    }

    async fn commit_ladder(
        &self,
        id: VideoId,
        dir: &Path,
        private: bool,
    ) -> Result<(), MediaError> {
        ladder::commit(self, id, dir, private).await
    }

    fn grow_ladder(&self, id: VideoId, token: i64, private: bool) -> Box<dyn GrowingLadder + '_> {
        Box::new(live::BucketGrowing::new(self, id, token, private))
    }

    async fn is_growing(&self, id: VideoId) -> Result<bool, MediaError> {
        live::is_growing(self, id).await
    }

    async fn withdraw_growing(&self, id: VideoId, owner: Option<i64>) -> Result<bool, MediaError> {
        live::withdraw(self, id, owner).await
    }

    async fn uncommit_ladder(&self, id: VideoId, _dir: &Path) -> Result<(), MediaError> {
        // The rest stays invisible without its master; the next attempt overwrites it.
        self.seen.forget(id);
        self.delete(&self.ladder_key(id, MASTER)).await
    }

    async fn ladder_head(&self, id: VideoId, rel: &str) -> Result<Option<ObjectHead>, MediaError> {
        if rel != MASTER && !self.is_published(id).await? {
            return Ok(None);
        }
        self.head(&self.ladder_key(id, rel)).await
    }

    async fn read_ladder(
        &self,
        id: VideoId,
        rel: &str,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, MediaError> {
        self.read(self.ladder_key(id, rel), start, len).await
    }

    async fn set_private(&self, id: VideoId, private: bool) -> Result<(), MediaError> {
        if self.head(&self.ladder_key(id, MASTER)).await?.is_none() {
            return Ok(());
        }
        let marker = self.ladder_key(id, PRIVATE_MARKER);
        if private {
            self.put(&marker, PutPayload::new()).await?;
        } else {
            self.delete(&marker).await?;
        }
        self.seen.remember_private(id, private);
        Ok(())
    }

    async fn is_private(&self, id: VideoId) -> Result<bool, MediaError> {
        if let Some(private) = self.seen.private(id) {
            return Ok(private);
        }
        let private = self
            .head(&self.ladder_key(id, PRIVATE_MARKER))
            .await?
            .is_some();
        self.seen.remember_private(id, private);
        Ok(private)
    }

    async fn remove_outputs(&self, id: VideoId) -> Result<(), MediaError> {
        self.seen.forget(id);
        self.delete_below(&self.key(&format!("hls/{id}/"))).await?;
        let work = self.work.clone();
        tokio::task::spawn_blocking(move || work.remove_job_workdirs(id))
            .await
            .map_err(|join| MediaError::io(Path::new("tmp"))(std::io::Error::other(join)))?
    }

    async fn remove_video(&self, id: VideoId) -> Result<(), MediaError> {
        self.delete(&self.source_key(id)).await?;
        self.remove_outputs(id).await
    }

    async fn inventory(&self) -> Result<Inventory, MediaError> {
        inventory::inventory(self).await
    }

    fn presign(&self, id: VideoId, rel: Option<&str>, ttl: Duration) -> Option<String> {
        let key = match rel {
            None => self.source_key(id),
            Some(rel) => self.ladder_key(id, rel),
        };
        // Signing is local (no request): poll it to completion here.
        let signed = futures_util::FutureExt::now_or_never(self.store.signed_url(
            http::Method::GET,
            &key,
            ttl,
        ))?;
        signed.ok().map(String::from)
    }

    fn keeps_upload_chunks(&self) -> bool {
        true
    }

    async fn put_upload_chunk(
        &self,
        upload: &str,
        start: u64,
        parts: Vec<Bytes>,
        unverified: Option<&str>,
    ) -> Result<(), MediaError> {
        self.put_chunk(upload, start, parts, unverified).await
    }

    async fn promote_upload_chunk(
        &self,
        upload: &str,
        chunk: Range<u64>,
        unverified: &str,
        keep: bool,
    ) -> Result<(), MediaError> {
        self.promote_chunk(upload, chunk, unverified, keep).await
    }

    async fn upload_chunks(&self, upload: &str) -> Result<Vec<Range<u64>>, MediaError> {
        self.list_chunks(upload).await
    }

    async fn read_upload_chunk(
        &self,
        upload: &str,
        chunk: Range<u64>,
    ) -> Result<ByteStream, MediaError> {
        self.read_chunk(upload, chunk).await
    }

    async fn remove_upload_chunks(&self, upload: &str) -> Result<(), MediaError> {
        self.remove_chunks(upload).await
    }

    async fn chunked_uploads(&self) -> Result<Vec<String>, MediaError> {
        self.chunked().await
    }
}

impl BucketStore {
    pub fn bucket(&self) -> &str {
        &self.bucket
    }
}
