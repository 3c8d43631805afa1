//! The media store: where sources and published ladders live, behind one interface with two
//! implementations, the local folder ([`folder`], the default) and an S3-compatible bucket
//! ([`bucket`], `--storage s3://BUCKET[/PREFIX]`).
//!
//! Layout, the same in both (keys below the bucket's prefix, paths below the media dir):
//! `sources/<id>` the original, `hls/<id>/…` the ladder (`master.m3u8` is the commit: a ladder
//! is visible once its master is there), `hls/<id>/.private` the private marker. Every name is
//! derived from a [`VideoId`], never from user input.
//!
//! Local work (uploads being received for the folder, ffmpeg output, resumable uploads) always
//! happens in the media dir's `tmp/` and `uploads/`: see [`WorkDir`].

mod args;
pub mod bucket;
mod explain;
pub mod folder;
pub mod live;
mod public_url;
mod work;

use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::BoxStream;
use tempfile::{NamedTempFile, TempPath};

use crate::domain::VideoId;
pub use args::{OpenError, StorageArgs, StorageConfigError};
pub use explain::{answer, explain};
pub use live::{GROWING_MARKER, GrowingLadder, Growth};
pub use public_url::PublicBaseUrl;
pub use work::WorkDir;

/// The file inside a ladder that makes it private (a dot file: never served).
pub const PRIVATE_MARKER: &str = ".private";
/// The ladder file whose presence publishes the ladder.
pub const MASTER: &str = "master.m3u8";

#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("cannot prepare media folder {path}")]
    Prepare {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("media I/O failed on {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The bucket did not answer, or answered with a passing failure (5xx, throttling,
    /// time-out): retry later.
    #[error("the bucket is unreachable ({what})")]
    Unavailable {
        what: String,
        #[source]
        source: object_store::Error,
    },
    /// The bucket refused the request for good (credentials, permissions, a missing bucket).
    #[error("the bucket refused {what}")]
    Refused {
        what: String,
        #[source]
        source: object_store::Error,
    },
    /// The job's lease could not be confirmed: another worker may hold it, so nothing more may
    /// be written for it.
    #[error("the job's lease is no longer held")]
    Fenced,
}

impl MediaError {
    pub(crate) fn io(path: &Path) -> impl FnOnce(io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// True when the disk is full, so callers can answer 507 rather than 500.
    pub fn is_out_of_space(&self) -> bool {
        match self {
            Self::Prepare { source, .. } | Self::Io { source, .. } => {
                source.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error())
                    || source.kind() == io::ErrorKind::StorageFull
            }
            Self::Unavailable { .. } | Self::Refused { .. } | Self::Fenced => false,
        }
    }

    /// True when the file or object asked for is not there.
    pub fn is_not_found(&self) -> bool {
        match self {
            Self::Io { source, .. } => source.kind() == io::ErrorKind::NotFound,
            Self::Refused { source, .. } => {
                matches!(source, object_store::Error::NotFound { .. })
            }
            Self::Prepare { .. } | Self::Unavailable { .. } | Self::Fenced => false,
        }
    }

    /// True when trying again later may succeed (the bucket was away).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }
}

/// What a stored file or object is, for validators and ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectHead {
    /// Bytes.
    pub len: u64,
    /// A strong validator (changes whenever the bytes do), without quotes.
    pub etag: String,
    pub modified: Option<SystemTime>,
}

/// Bytes read from the store, in order; an error ends the stream.
pub type ByteStream = BoxStream<'static, Result<Bytes, MediaError>>;

/// Where an upload's bytes go while it is received.
pub enum Staging {
    /// A temporary file in `tmp/`, removed on drop; [`MediaStore::persist_file`] files it.
    File(NamedTempFile),
    /// Straight into the store (a multipart upload), aborted on drop unless completed.
    Object(Box<dyn ObjectSink>),
}

/// A source being streamed into the store. Dropping it unfinished aborts it.
#[async_trait]
pub trait ObjectSink: Send {
    /// Appends one chunk; waits while the bounded number of parts in flight is reached.
    async fn write(&mut self, chunk: Bytes) -> Result<(), MediaError>;
    /// Uploads what is buffered and waits for every part, without making the object visible.
    async fn finish(self: Box<Self>) -> Result<Box<dyn StagedObject>, MediaError>;
}

/// A fully uploaded source, not visible until [`StagedObject::commit`]; aborted on drop.
#[async_trait]
pub trait StagedObject: Send + std::fmt::Debug {
    async fn commit(self: Box<Self>) -> Result<(), MediaError>;
}

/// Proof that the job publishing a ladder still holds its lease, asked before each write to
/// shared keys. `bound` is the longest a write started now may take to land.
#[async_trait]
pub trait Fence: Send + Sync {
    async fn hold(&self, bound: Duration) -> Result<(), MediaError>;
}

/// What the store holds, by video, for reconciling it with the database.
#[derive(Debug, Default, Clone)]
pub struct Inventory {
    /// Videos with a source, with its age.
    pub sources: std::collections::HashMap<VideoId, Duration>,
    /// Videos with anything below `hls/<id>/`.
    pub ladders: std::collections::HashMap<VideoId, LadderState>,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LadderState {
    /// The master playlist is there: the ladder is published.
    pub published: bool,
    pub private: bool,
    /// Age of the newest object.
    pub age: Duration,
}

impl Inventory {
    /// Every id with something stored, with the age of its newest object.
    pub fn ids(&self) -> Vec<(VideoId, Duration)> {
        let mut ids = self.sources.clone();
        for (id, ladder) in &self.ladders {
            let age = ids.entry(*id).or_insert(ladder.age);
            *age = (*age).min(ladder.age);
        }
        ids.into_iter().collect()
    }
}

/// The seam: everything reel does with sources and ladders. Every call is bounded in time
/// (the bucket's requests have time-outs); missing things are not errors where a delete or a
/// check is asked (idempotent).
#[async_trait]
pub trait MediaStore: Send + Sync + std::fmt::Debug {
    /// `folder` or `bucket`, for logs and `/readyz`.
    fn kind(&self) -> &'static str;
    /// The local work area.
    fn work(&self) -> &WorkDir;
    /// Start-up check: the store is reachable and writable (a probe is written and removed).
    /// Errors say what to fix (credentials, bucket name, endpoint).
    async fn check(&self) -> Result<(), MediaError>;
    /// `/readyz`: the store answers now (bounded by a few seconds).
    async fn ready(&self) -> bool;
    /// Bytes an upload may still use, or `None` when the store has no fixed capacity.
    fn upload_free_bytes(&self) -> Result<Option<u64>, MediaError>;
    /// Aborts what crashed uploads left (bucket multipart uploads): every one when
    /// `single_node`, else those idle for longer than `grace`. Returns how many.
    async fn sweep_stale_uploads(&self, single_node: bool, grace: Duration) -> usize;

    /// Where a new upload of `id` is received.
    async fn stage_source(&self, id: VideoId) -> Result<Staging, MediaError>;
    /// Files a complete local file (a staged upload, a finished resumable upload) as the
    /// source of `id`.
    async fn persist_file(&self, file: TempPath, id: VideoId) -> Result<(), MediaError>;
    /// The source of `id`, if stored.
    async fn source_head(&self, id: VideoId) -> Result<Option<ObjectHead>, MediaError>;
    /// `len` bytes of the source from `start`.
    async fn read_source(
        &self,
        id: VideoId,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, MediaError>;
    /// The source as a local file for ffmpeg: the stored file itself, or a copy downloaded
    /// into a work folder of the job in `tmp/`.
    async fn fetch_source(&self, id: VideoId) -> Result<LocalSource, MediaError>;

    /// Writes everything of the ladder in `ladder` except the master (invisible until then),
    /// asking `fence` before each write. Segments a growing ladder already stored are not
    /// written again; its playlists are replaced after the segments.
    async fn stage_ladder(
        &self,
        id: VideoId,
        ladder: &Path,
        fence: &dyn Fence,
    ) -> Result<(), MediaError>;
    /// Publishes the staged ladder: the private marker, then the master, last; a ladder that
    /// grew while it encoded is replaced, and its [`GROWING_MARKER`] goes.
    async fn commit_ladder(
        &self,
        id: VideoId,
        ladder: &Path,
        private: bool,
    ) -> Result<(), MediaError>;
    /// Where the ladder of `id` grows while the attempt holding lease `token` encodes it (see
    /// [`live`]); `private` ladders get the private marker before their master. Nothing is
    /// written until [`GrowingLadder::appear`].
    fn grow_ladder(&self, id: VideoId, token: i64, private: bool) -> Box<dyn GrowingLadder + '_>;
    /// Whether the ladder of `id` is still growing (its [`GROWING_MARKER`] is there): its
    /// playlists are then served `no-cache`.
    async fn is_growing(&self, id: VideoId) -> Result<bool, MediaError>;
    /// Removes the growing ladder of `id` (every file below `hls/<id>/`, the master first and
    /// the marker last): only the attempt `owner`'s when `Some` (a newer attempt's is left
    /// alone), whoever owns it when `None` (a restart). A ladder without the marker (finished,
    /// or never grown) is kept. Returns whether one was removed.
    async fn withdraw_growing(&self, id: VideoId, owner: Option<i64>) -> Result<bool, MediaError>;
    /// Takes back a commit whose database change failed.
    async fn uncommit_ladder(&self, id: VideoId, ladder: &Path) -> Result<(), MediaError>;
    /// A published ladder file (`rel` is `name` or `rung/name`, already checked as plain).
    async fn ladder_head(&self, id: VideoId, rel: &str) -> Result<Option<ObjectHead>, MediaError>;
    async fn read_ladder(
        &self,
        id: VideoId,
        rel: &str,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, MediaError>;
    /// Marks a published ladder private (or public again); nothing when not published.
    async fn set_private(&self, id: VideoId, private: bool) -> Result<(), MediaError>;
    /// Whether a published ladder is private.
    async fn is_private(&self, id: VideoId) -> Result<bool, MediaError>;

    /// Removes a video's ladder (published or partly written) and its job work folders.
    async fn remove_outputs(&self, id: VideoId) -> Result<(), MediaError>;
    /// Removes everything a video owns.
    async fn remove_video(&self, id: VideoId) -> Result<(), MediaError>;
    /// What is stored, by video.
    async fn inventory(&self) -> Result<Inventory, MediaError>;

    /// A time-limited URL a client (or nginx) may GET the source or a ladder file from
    /// directly; `None` for the folder. `rel` is `None` for the source.
    fn presign(&self, id: VideoId, rel: Option<&str>, ttl: Duration) -> Option<String>;

    /// Whether resumable uploads keep their bytes in the store as chunk objects (a bucket,
    /// which every node reaches) rather than in a partial file of the work area (a folder,
    /// shared when the media volume is). See `crate::upload::resumable::chunks`.
    fn keeps_upload_chunks(&self) -> bool {
        false
    }
    /// Stores bytes `start..start + len` of resumable upload `upload` as one chunk object
    /// (`parts` concatenated), visible whole or not at all. With `unverified` (a request's
    /// tag), the chunk is kept aside, never listed by [`MediaStore::upload_chunks`], until
    /// [`MediaStore::promote_upload_chunk`]: the bytes of a request with a checksum count
    /// only once it matched.
    async fn put_upload_chunk(
        &self,
        upload: &str,
        start: u64,
        parts: Vec<Bytes>,
        unverified: Option<&str>,
    ) -> Result<(), MediaError> {
        let _ = (upload, start, parts, unverified);
        Err(MediaError::io(Path::new("uploads"))(std::io::Error::other(
            "this store keeps resumable uploads in a partial file",
        )))
    }
    /// Makes an unverified chunk (tag `unverified`) one of the upload's chunks, or, when
    /// `keep` is false, deletes it.
    async fn promote_upload_chunk(
        &self,
        upload: &str,
        chunk: Range<u64>,
        unverified: &str,
        keep: bool,
    ) -> Result<(), MediaError> {
        let _ = (upload, chunk, unverified, keep);
        Ok(())
    }
    /// The byte ranges of the chunk objects stored for `upload` (in no particular order;
    /// a chunk a request wrote and never recorded may overlap others).
    async fn upload_chunks(&self, upload: &str) -> Result<Vec<Range<u64>>, MediaError> {
        let _ = upload;
        Ok(Vec::new())
    }
    /// The bytes of one chunk object of `upload`, as listed by
    /// [`MediaStore::upload_chunks`].
    async fn read_upload_chunk(
        &self,
        upload: &str,
        chunk: Range<u64>,
    ) -> Result<ByteStream, MediaError> {
        let _ = (upload, chunk);
        Err(MediaError::io(Path::new("uploads"))(
            std::io::ErrorKind::NotFound.into(),
        ))
    }
    /// Removes every chunk object of `upload`; none is fine.
    async fn remove_upload_chunks(&self, upload: &str) -> Result<(), MediaError> {
        let _ = upload;
        Ok(())
    }
    /// Names of the uploads that have chunk objects, for the sweeper.
    async fn chunked_uploads(&self) -> Result<Vec<String>, MediaError> {
        Ok(Vec::new())
    }
}

/// A source ffmpeg can read: the stored file, or a downloaded copy removed (with its work
/// folder) on drop.
#[derive(Debug)]
pub struct LocalSource {
    pub path: PathBuf,
    _copy: Option<tempfile::TempDir>,
}

impl LocalSource {
    /// The stored file, read in place.
    pub fn stored(path: PathBuf) -> Self {
        Self { path, _copy: None }
    }

    /// A copy at `path` inside `dir`, which goes when this is dropped.
    pub fn copied(path: PathBuf, dir: tempfile::TempDir) -> Self {
        Self {
            path,
            _copy: Some(dir),
        }
    }
}

/// The media store reel runs with.
pub type Media = Arc<dyn MediaStore>;

/// Reads a whole small stream (a playlist) into memory, refusing more than `limit` bytes.
pub async fn collect(mut stream: ByteStream, limit: usize) -> Result<Vec<u8>, MediaError> {
    use futures_util::StreamExt;
    let mut out = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if out.len() + chunk.len() > limit {
            return Err(MediaError::Io {
                path: PathBuf::from("(stream)"),
                source: io::Error::other("larger than expected"),
            });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// fsyncs a directory so a rename into it survives a power cut; best effort.
pub fn sync_dir(dir: &Path) {
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}

/// Removes a file or folder; a missing one is fine.
pub(crate) fn remove_if_exists(path: &Path, is_dir: bool) -> Result<(), MediaError> {
    let result = if is_dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
    match result {
        Err(error) if error.kind() != io::ErrorKind::NotFound => Err(MediaError::io(path)(error)),
        _ => Ok(()),
    }
}
