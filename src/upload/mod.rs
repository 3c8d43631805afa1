//! Streams an upload body to `tmp/` with a fixed buffer, then moves it to `sources/`.
//!
//! The body is never held in memory: each chunk is counted against the size limit, written
//! through a fixed-size buffer (awaiting each write, so a slow disk slows the socket down), and
//! the first bytes are sniffed for a video container. Any failure drops the staged file, which
//! removes it.

mod body;
pub mod form;
pub mod resumable;
pub mod sniff;
pub mod tus;

use std::io;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::io::Write;
use tempfile::TempPath;

use crate::domain::VideoId;
use crate::media::{MediaError, MediaStore, ObjectSink, StagedObject, Staging};
use sniff::{Container, SNIFF_LEN, sniff};

/// Chunks in flight between the socket and the disk writer: with actix's chunks of at most
/// 64 KiB, the only per-upload memory (≤ 1 MiB), and the back-pressure that slows a client
/// down to the disk's pace.
const CHUNKS_IN_FLIGHT: usize = 16;
/// Writeback of what is written is started every this many bytes, so the closing fsync has
/// little left to wait for and a large upload does not fill the page cache of a small box.
const WRITEBACK_EVERY: u64 = 8 * 1024 * 1024;
/// Free space is re-checked after this many bytes.
const SPACE_CHECK_EVERY: u64 = 64 * 1024 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct UploadLimits {
    pub max_bytes: u64,
    pub min_free_bytes: u64,
    /// A client that sends nothing for this long is cut off.
    pub idle_timeout: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("the upload is larger than the limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("the upload is empty")]
    Empty,
    #[error("the bytes are not a known video container")]
    NotAVideo,
    #[error("the media volume is nearly full")]
    InsufficientStorage,
    #[error("the client sent nothing for {0:?}")]
    IdleTimeout(Duration),
    #[error("the upload body could not be read: {0}")]
    Body(String),
    #[error("the form has no `file` field")]
    MissingFile,
    #[error("a form field other than `file` is longer than {limit} bytes")]
    FieldTooLong { limit: usize },
    #[error("the form has more than {limit} parts")]
    TooManyParts { limit: usize },
    #[error("the form has more than one `{name}` part")]
    DuplicatePart { name: &'static str },
    /// Client metadata too large (413) or not a JSON object (400).
    #[error(transparent)]
    Metadata(#[from] crate::properties::metadata::MetadataError),
    #[error(transparent)]
    Media(#[from] MediaError),
}

/// A complete upload, not yet filed: a file in `tmp/` (removed on drop) or a multipart upload
/// with every part sent (aborted on drop) until [`Received::persist`].
#[derive(Debug)]
pub struct Received {
    /// The video it becomes, made when the upload started (its key in a bucket).
    pub id: VideoId,
    staged: Staged,
    pub size: u64,
    pub container: Container,
}

#[derive(Debug)]
enum Staged {
    File(TempPath),
    Object(Box<dyn StagedObject>),
}

impl Received {
    /// A complete local file (a finished resumable upload) to be filed as a new video.
    pub fn from_file(file: TempPath, size: u64, container: Container) -> Self {
        Self {
            id: VideoId::new(),
            staged: Staged::File(file),
            size,
            container,
        }
    }

    /// A complete upload streamed into the store as the source of `id`, not yet visible (a
    /// finished resumable upload whose bytes were chunk objects).
    pub fn from_object(
        id: VideoId,
        staged: Box<dyn StagedObject>,
        size: u64,
        container: Container,
    ) -> Self {
        Self {
            id,
            staged: Staged::Object(staged),
            size,
            container,
        }
    }

    /// Makes the source of [`Received::id`] visible in the store.
    pub async fn persist(self, media: &dyn MediaStore) -> Result<(), MediaError> {
        match self.staged {
            Staged::File(file) => media.persist_file(file, self.id).await,
            Staged::Object(object) => object.commit().await,
        }
    }
}

/// Checks free space before anything is read (nothing to check for a bucket).
pub fn check_space(
    media: &dyn MediaStore,
    limits: &UploadLimits,
    expected: Option<u64>,
) -> Result<(), UploadError> {
    let Some(free) = media.upload_free_bytes()? else {
        return Ok(());
    };
    let needed = limits.min_free_bytes.saturating_add(expected.unwrap_or(0));
    if free < needed {
        return Err(UploadError::InsufficientStorage);
    }
    Ok(())
}

/// Checks the local work area's free space (resumable uploads grow there whatever the store).
pub fn check_local_space(
    work: &crate::media::WorkDir,
    limits: &UploadLimits,
    expected: Option<u64>,
) -> Result<(), UploadError> {
    let needed = limits.min_free_bytes.saturating_add(expected.unwrap_or(0));
    if work.free_bytes()? < needed {
        return Err(UploadError::InsufficientStorage);
    }
    Ok(())
}

/// Where the bytes of a plain upload go.
enum Target {
    Disk {
        /// `None` once it stopped on an error.
        writer: Option<DiskWriter>,
        staged: TempPath,
    },
    Object(Box<dyn ObjectSink>),
}

fn disk_error(path: &std::path::Path, source: io::Error) -> UploadError {
    let error = MediaError::Io {
        path: path.to_path_buf(),
        source,
    };
    if error.is_out_of_space() {
        UploadError::InsufficientStorage
    } else {
        UploadError::Media(error)
    }
}

impl Target {
    async fn write(&mut self, chunk: Bytes) -> Result<(), UploadError> {
        match self {
            Target::Disk { writer, staged } => {
                let Some(running) = writer.as_ref() else {
                    return Err(disk_error(staged, io::Error::other("writer stopped")));
                };
                if running.write(chunk).await {
                    return Ok(());
                }
                // The writer stopped: its error says why (ENOSPC becomes a 507).
                let error = match writer.take() {
                    Some(stopped) => stopped.finish().await.err(),
                    None => None,
                };
                let error = error.unwrap_or_else(|| io::Error::other("writer stopped"));
                Err(disk_error(staged, error))
            }
            Target::Object(sink) => Ok(sink.write(chunk).await?),
        }
    }

    async fn finish(self) -> Result<Staged, UploadError> {
        match self {
            Target::Disk { writer, staged } => {
                let writer = writer
                    .ok_or_else(|| disk_error(&staged, io::Error::other("writer stopped")))?;
                writer.finish().await.map_err(|e| disk_error(&staged, e))?;
                Ok(Staged::File(staged))
            }
            Target::Object(sink) => Ok(Staged::Object(sink.finish().await?)),
        }
    }
}

/// Streams `body` into the store: a staged file in `tmp/` for the folder, a multipart upload
/// for a bucket (part size × parts in flight of memory; see `media::bucket::sink`).
pub async fn receive<S, E>(
    body: S,
    media: &dyn MediaStore,
    limits: UploadLimits,
) -> Result<Received, UploadError>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    let id = VideoId::new();
    let mut target = match media.stage_source(id).await? {
        Staging::File(file) => {
            let (file, staged) = file.into_parts();
            Target::Disk {
                writer: Some(DiskWriter::start(file)),
                staged,
            }
        }
        Staging::Object(sink) => Target::Object(sink),
    };
    let mut head: Vec<u8> = Vec::with_capacity(SNIFF_LEN);
    let mut container = None;
    let mut size: u64 = 0;
    let mut next_space_check = SPACE_CHECK_EVERY;

    let mut body = std::pin::pin!(body);
    loop {
        let chunk = match tokio::time::timeout(limits.idle_timeout, body.next()).await {
            Err(_) => return Err(UploadError::IdleTimeout(limits.idle_timeout)),
            Ok(None) => break,
            Ok(Some(Err(error))) => return Err(UploadError::Body(error.to_string())),
            Ok(Some(Ok(chunk))) => chunk,
        };
        size += chunk.len() as u64;
        if size > limits.max_bytes {
            return Err(UploadError::TooLarge {
                limit: limits.max_bytes,
            });
        }
        if container.is_none() {
            let wanted = SNIFF_LEN - head.len();
            head.extend_from_slice(&chunk[..chunk.len().min(wanted)]);
            if head.len() == SNIFF_LEN {
                container = Some(sniff(&head).ok_or(UploadError::NotAVideo)?);
            }
        }
        target.write(chunk).await?;
        if size >= next_space_check {
            next_space_check = size + SPACE_CHECK_EVERY;
            if media
                .upload_free_bytes()?
                .is_some_and(|free| free < limits.min_free_bytes / 2)
            {
                return Err(UploadError::InsufficientStorage);
            }
        }
    }
    if size == 0 {
        return Err(UploadError::Empty);
    }
    let container = match container {
        Some(container) => container,
        None => sniff(&head).ok_or(UploadError::NotAVideo)?,
    };
    let staged = target.finish().await?;
    Ok(Received {
        id,
        staged,
        size,
        container,
    })
}

/// What the writer thread is asked to do, in order.
enum WriterOp {
    Write(Bytes),
    /// fdatasync everything written so far, then answer.
    Sync(tokio::sync::oneshot::Sender<io::Result<()>>),
}

/// Writes an upload on a blocking thread: chunks are moved in (no copy), written with plain
/// `write`s, and pushed to disk as they go; [`DiskWriter::finish`] fsyncs.
struct DiskWriter {
    ops: tokio::sync::mpsc::Sender<WriterOp>,
    thread: tokio::task::JoinHandle<io::Result<()>>,
    /// Set by `finish`: an upload dropped on an error is not worth an fsync.
    complete: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl DiskWriter {
    fn start(file: std::fs::File) -> Self {
        Self::start_at(file, 0)
    }

    /// A writer for `file` whose position is already at `base` (resumed uploads append).
    fn start_at(mut file: std::fs::File, base: u64) -> Self {
        let (ops, mut receiver) = tokio::sync::mpsc::channel::<WriterOp>(CHUNKS_IN_FLIGHT);
        let complete = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let done = complete.clone();
        let thread = tokio::task::spawn_blocking(move || {
            let (mut written, mut pushed) = (base, base);
            while let Some(op) = receiver.blocking_recv() {
                let chunk = match op {
                    WriterOp::Write(chunk) => chunk,
                    WriterOp::Sync(reply) => {
                        let synced = file.sync_data();
                        let failed = synced
                            .as_ref()
                            .err()
                            .map(|e| io::Error::new(e.kind(), e.to_string()));
                        let _ = reply.send(synced);
                        match failed {
                            Some(error) => return Err(error),
                            None => continue,
                        }
                    }
                };
                file.write_all(&chunk)?;
                written += chunk.len() as u64;
                if written - pushed >= WRITEBACK_EVERY {
                    // On Linux this starts writeback of the range without waiting for it.
                    let length = std::num::NonZeroU64::new(written - pushed);
                    let _ =
                        rustix::fs::fadvise(&file, pushed, length, rustix::fs::Advice::DontNeed);
                    pushed = written;
                }
            }
            if done.load(std::sync::atomic::Ordering::Acquire) {
                file.sync_all()
            } else {
                Ok(())
            }
        });
        Self {
            ops,
            thread,
            complete,
        }
    }

    /// Hands a chunk to the writer; `false` when the writer has stopped on an error.
    async fn write(&self, chunk: Bytes) -> bool {
        self.ops.send(WriterOp::Write(chunk)).await.is_ok()
    }

    /// Waits until every chunk handed over so far is written and fdatasynced.
    async fn sync(&self) -> io::Result<()> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        if self.ops.send(WriterOp::Sync(reply)).await.is_err() {
            return Err(io::Error::other("the upload writer stopped"));
        }
        answer
            .await
            .unwrap_or_else(|_| Err(io::Error::other("the upload writer stopped")))
    }

    /// Waits until everything is written and fsynced.
    async fn finish(self) -> io::Result<()> {
        self.complete
            .store(true, std::sync::atomic::Ordering::Release);
        drop(self.ops);
        self.thread.await.map_err(io::Error::other)?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::folder::FolderStore;
    use futures_util::stream;

    fn limits(max_bytes: u64) -> UploadLimits {
        UploadLimits {
            max_bytes,
            min_free_bytes: 0,
            idle_timeout: Duration::from_secs(5),
        }
    }

    fn mp4_head() -> Vec<u8> {
        let mut head = vec![0, 0, 0, 0x20];
        head.extend_from_slice(b"ftypisom");
        head.resize(4096, 7);
        head
    }

    fn chunks(data: Vec<u8>, size: usize) -> impl Stream<Item = Result<Bytes, io::Error>> {
        let parts: Vec<_> = data
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        stream::iter(parts)
    }

    #[tokio::test]
    async fn a_video_is_written_whole_and_persisted() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let media = FolderStore::open(dir.path())?;
        let data = mp4_head();
        let received = receive(chunks(data.clone(), 100), &media, limits(1 << 20)).await?;
        assert_eq!(received.size, data.len() as u64);
        assert_eq!(received.container, Container::IsoBmff);
        let id = received.id;
        received.persist(&media).await?;
        assert_eq!(std::fs::read(media.source_path(id))?, data);
        assert_eq!(std::fs::read_dir(media.work().tmp_dir())?.count(), 0);
        Ok(())
    }

    #[tokio::test]
    async fn failures_leave_nothing_in_tmp() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let media = FolderStore::open(dir.path())?;
        let too_large = receive(chunks(mp4_head(), 1000), &media, limits(2000)).await;
        assert!(matches!(
            too_large,
            Err(UploadError::TooLarge { limit: 2000 })
        ));
        let junk = receive(chunks(vec![b'x'; 5000], 1000), &media, limits(1 << 20)).await;
        assert!(matches!(junk, Err(UploadError::NotAVideo)));
        let short_junk = receive(chunks(b"hi".to_vec(), 1), &media, limits(1 << 20)).await;
        assert!(matches!(short_junk, Err(UploadError::NotAVideo)));
        let empty = receive(chunks(Vec::new(), 1), &media, limits(1 << 20)).await;
        assert!(matches!(empty, Err(UploadError::Empty)));
        let broken = stream::iter(vec![
            Ok(Bytes::from(mp4_head())),
            Err(io::Error::other("reset")),
        ]);
        let dropped = receive(broken, &media, limits(1 << 20)).await;
        assert!(matches!(dropped, Err(UploadError::Body(_))));
        assert_eq!(std::fs::read_dir(media.work().tmp_dir())?.count(), 0);
        Ok(())
    }
}
