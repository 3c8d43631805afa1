//! The storage side of a resumable (tus) upload, whose bytes grow over many requests.
//!
//! With the folder store, `uploads/<id>` is a file of the media volume. Each request opens
//! it at the upload's durable offset (cutting off whatever a request that died wrote past
//! it), appends through the same writer as a plain upload (a fixed number of chunks in
//! flight), sniffs the first bytes for a video container, and reports an offset only once the
//! bytes below it are fdatasynced. When the last byte is in, the file is linked into `tmp/` as
//! a [`Received`], so the filing path of `POST /api/v1/videos` moves it to `sources/`.
//!
//! With a bucket, the bytes are chunk objects in the bucket instead ([`chunks`]), so every
//! API node can continue an upload; the same checks apply, and an offset is reported only
//! once the chunks below it are stored.

use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use tempfile::TempPath;

use super::sniff::{Container, SNIFF_LEN, sniff};
use super::tus::{Checksum, Hasher, TusError};
use super::{DiskWriter, Received, SPACE_CHECK_EVERY, UploadError, UploadLimits};
use crate::media::{Media, MediaError, MediaStore};

pub mod chunks;

/// The folder of partial uploads, beside `sources/` (same filesystem, so filing is a rename).
/// Not in `tmp/`, which a restart empties.
pub fn uploads_dir(media: &dyn MediaStore) -> PathBuf {
    media.work().root().join("uploads")
}

/// The partial file of upload `name` (an id made by reel, never user input).
pub fn partial_path(media: &dyn MediaStore, name: &str) -> PathBuf {
    uploads_dir(media).join(name)
}

/// Names of the partial files present, for the sweeper.
pub fn partial_names(media: &dyn MediaStore) -> io::Result<Vec<String>> {
    match std::fs::read_dir(uploads_dir(media)) {
        Ok(entries) => Ok(entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(error) => Err(error),
    }
}

/// Removes whatever upload `name` stored: its partial file and its chunk objects. Missing
/// ones are fine.
pub async fn remove(media: &Media, name: &str) -> Result<(), MediaError> {
    remove_partial(media.as_ref(), name)?;
    media.remove_upload_chunks(name).await
}

/// Removes a partial file; a missing one is fine.
pub fn remove_partial(media: &dyn MediaStore, name: &str) -> Result<(), MediaError> {
    let path = partial_path(media, name);
    match std::fs::remove_file(&path) {
        Err(source) if source.kind() != io::ErrorKind::NotFound => {
            Err(MediaError::Io { path, source })
        }
        _ => Ok(()),
    }
}

/// The container stored with an upload, by its media type (see [`Container::mime`]).
pub fn container_from_mime(mime: &str) -> Option<Container> {
    [
        Container::IsoBmff,
        Container::Matroska,
        Container::Avi,
        Container::MpegTs,
        Container::MpegPs,
        Container::Flv,
        Container::Ogg,
        Container::Asf,
        Container::Mxf,
    ]
    .into_iter()
    .find(|c| c.mime() == mime)
}

fn io_error(path: &Path) -> impl Fn(io::Error) -> UploadError + '_ {
    move |source| {
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
}

/// Where a request's bytes go.
enum Writer {
    /// The partial file (folder store).
    Disk(DiskWriter),
    /// Chunk objects (bucket).
    Chunks(chunks::ChunkWriter),
}

/// One request's appending to an upload's bytes.
pub struct Appender {
    writer: Writer,
    path: PathBuf,
    /// The work area whose free space is re-checked, for a partial file.
    media: Option<crate::media::WorkDir>,
    limits: UploadLimits,
    /// `Upload-Length`.
    length: u64,
    /// Bytes in the file once every chunk handed over is written.
    offset: u64,
    /// Bytes known to be on disk (fdatasynced): what may be reported.
    durable: u64,
    /// The first bytes of the upload until the container is known.
    head: Vec<u8>,
    container: Option<Container>,
    /// The body's hash and `Upload-Checksum`, when the request sent one.
    checksum: Option<(Hasher, Checksum)>,
    next_space_check: u64,
}

/// Where an upload stands after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Durable bytes.
    pub offset: u64,
    pub container: Option<Container>,
}

impl Appender {
    /// Opens upload `name` at `offset`, its durable size: bytes past it (written by a request
    /// that died before they were synced and recorded) are cut off, or, in a bucket, left
    /// off the upload's chain.
    ///
    /// Errors: [`TusError::Lost`] when the file is shorter than `offset` (or the chunks do
    /// not cover it); I/O as [`UploadError`] (507 when the disk is full, 503 when the bucket
    /// is away).
    pub async fn open(
        media: &Media,
        name: &str,
        offset: u64,
        length: u64,
        container: Option<Container>,
        checksum: Option<Checksum>,
        limits: UploadLimits,
    ) -> Result<Self, TusError> {
        let path = partial_path(media.as_ref(), name);
        let want_head = container.is_none() && offset > 0;
        let (writer, head, work) = if media.keeps_upload_chunks() {
            let (writer, head) =
                chunks::open(media, name, offset, want_head, checksum.is_some()).await?;
            (Writer::Chunks(writer), head, None)
        } else {
            let opened = {
                let path = path.clone();
                tokio::task::spawn_blocking(move || open_at(&path, offset, want_head)).await
            }
            .map_err(|join| io_error(&path)(io::Error::other(join)))?;
            let (file, head) = match opened {
                Ok(Some(opened)) => opened,
                Ok(None) => return Err(TusError::Lost),
                Err(error) => return Err(io_error(&path)(error).into()),
            };
            let writer = Writer::Disk(DiskWriter::start_at(file, offset));
            (writer, head, Some(media.work().clone()))
        };
        Ok(Self {
            writer,
            path,
            media: work,
            limits,
            length,
            offset,
            durable: offset,
            head,
            container,
            checksum: checksum.map(|c| (Hasher::new(c.algorithm), c)),
            next_space_check: offset + SPACE_CHECK_EVERY,
        })
    }

    /// Bytes in the file once what was handed over is written.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The container, once the first bytes were sniffed.
    pub fn container(&self) -> Option<Container> {
        self.container
    }

    /// True when this request's bytes must be verified before any of them may be reported.
    pub fn is_checksummed(&self) -> bool {
        self.checksum.is_some()
    }

    /// Appends one chunk of the body: checked against the length, sniffed while the container
    /// is unknown, hashed, handed to the writer; free space is re-checked every 64 MiB.
    pub async fn push(&mut self, chunk: Bytes) -> Result<(), TusError> {
        let end = self.offset + chunk.len() as u64;
        if end > self.length {
            return Err(TusError::BeyondLength {
                length: self.length,
            });
        }
        if self.container.is_none() {
            let wanted = SNIFF_LEN.saturating_sub(self.head.len());
            self.head
                .extend_from_slice(&chunk[..chunk.len().min(wanted)]);
            if self.head.len() >= SNIFF_LEN {
                self.container = Some(sniff(&self.head).ok_or(UploadError::NotAVideo)?);
            }
        }
        if let Some((hasher, _)) = &mut self.checksum {
            hasher.update(&chunk);
        }
        self.write(chunk).await?;
        self.offset = end;
        if self.offset >= self.next_space_check {
            self.next_space_check = self.offset + SPACE_CHECK_EVERY;
            if let Some(work) = &self.media
                && work.free_bytes().map_err(UploadError::from)? < self.limits.min_free_bytes / 2
            {
                return Err(UploadError::InsufficientStorage.into());
            }
        }
        Ok(())
    }

    async fn write(&mut self, chunk: Bytes) -> Result<(), TusError> {
        let written = match &mut self.writer {
            Writer::Disk(writer) => writer.write(chunk).await,
            Writer::Chunks(writer) => {
                return Ok(writer.write(chunk).await.map_err(UploadError::from)?);
            }
        };
        if written {
            Ok(())
        } else {
            Err(self.writer_error().await)
        }
    }

    /// Waits until everything handed over is on disk (fdatasynced) or stored.
    async fn sync(&mut self) -> Result<(), TusError> {
        match &mut self.writer {
            Writer::Disk(writer) => writer
                .sync()
                .await
                .map_err(|e| TusError::from(io_error(&self.path)(e))),
            Writer::Chunks(writer) => Ok(writer.sync().await.map_err(UploadError::from)?),
        }
    }

    /// Makes what was handed over durable and returns the new durable offset: a partial file
    /// is synced whole; chunk objects count once stored, and the bytes still gathered for the
    /// next full chunk wait for it or for the request's end (so a slow client's upload is
    /// not cut into a small object per checkpoint). Not for checksummed requests, whose
    /// bytes count only once verified (see [`Appender::finish`]).
    pub async fn checkpoint(&mut self) -> Result<u64, TusError> {
        if self.checksum.is_none() && self.durable < self.offset {
            self.durable = match &mut self.writer {
                Writer::Disk(_) => {
                    self.sync().await?;
                    self.offset
                }
                Writer::Chunks(writer) => writer.settle().await.map_err(UploadError::from)?,
            };
        }
        Ok(self.durable)
    }

    /// Ends the request's writing: sniffs a complete upload shorter than the sniffing window,
    /// verifies the checksum, syncs. A request cut short (`complete_body == false`) keeps its
    /// bytes unless it was checksummed.
    ///
    /// Errors: [`TusError::ChecksumMismatch`] (nothing of this request counts),
    /// `NotAVideo` (415), I/O.
    pub async fn finish(mut self, complete_body: bool) -> Result<Appended, TusError> {
        if self.container.is_none() && self.offset == self.length {
            self.container = Some(sniff(&self.head).ok_or(UploadError::NotAVideo)?);
        }
        if let Some((hasher, expected)) = self.checksum.take()
            && !(complete_body && hasher.matches(&expected))
        {
            // Nothing of this request counts: a bucket's chunks of it, kept aside, go.
            if let Writer::Chunks(writer) = &mut self.writer {
                writer.verified(false).await.map_err(UploadError::from)?;
            }
            if !complete_body {
                return Ok(self.appended_at(self.durable));
            }
            return Err(TusError::ChecksumMismatch);
        }
        let appended = self.appended_at(self.offset);
        match self.writer {
            Writer::Disk(writer) => writer
                .finish()
                .await
                .map_err(|e| TusError::from(io_error(&self.path)(e)))?,
            Writer::Chunks(mut writer) => {
                writer.sync().await.map_err(UploadError::from)?;
                writer.verified(true).await.map_err(UploadError::from)?;
            }
        }
        Ok(appended)
    }

    fn appended_at(&self, offset: u64) -> Appended {
        Appended {
            offset,
            container: self.container,
        }
    }

    async fn writer_error(&self) -> TusError {
        let synced = match &self.writer {
            Writer::Disk(writer) => writer.sync().await,
            Writer::Chunks(_) => Ok(()),
        };
        let error = match synced {
            Err(error) => error,
            Ok(()) => io::Error::other("the upload writer stopped"),
        };
        io_error(&self.path)(error).into()
    }
}

/// Opens (creating) `path` with its length cut to `offset` and its position there; `None` when
/// the file is shorter than `offset`. With `want_head`, also its first bytes (for sniffing).
fn open_at(
    path: &Path,
    offset: u64,
    want_head: bool,
) -> io::Result<Option<(std::fs::File, Vec<u8>)>> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)?;
    let size = file.metadata()?.len();
    if size < offset {
        return Ok(None);
    }
    if size > offset {
        file.set_len(offset)?;
    }
    let mut head = Vec::new();
    if want_head {
        let take = offset.min(SNIFF_LEN as u64);
        (&mut file).take(take).read_to_end(&mut head)?;
    }
    file.seek(SeekFrom::Start(offset))?;
    Ok(Some((file, head)))
}

/// Stages a complete upload as a [`Received`] for the filing path: the partial file linked
/// into `tmp/`, or the chunk objects streamed into a new source object (not yet visible). The
/// upload's bytes stay where they are until the caller removes them, so a refused filing
/// (queue full, bucket away) keeps them for a retry.
pub async fn stage_complete(
    media: &Media,
    name: &str,
    size: u64,
    container: Container,
) -> Result<Received, TusError> {
    if media.keeps_upload_chunks() {
        return chunks::stage(media, name, size, container).await;
    }
    let media = media.as_ref();
    let source = partial_path(media, name);
    let staged = media
        .work()
        .tmp_dir()
        .join(format!("tus-{name}-{}", uuid::Uuid::now_v7().simple()));
    let link = {
        let (source, staged) = (source.clone(), staged.clone());
        tokio::task::spawn_blocking(move || -> io::Result<Option<()>> {
            if std::fs::metadata(&source)?.len() != size {
                return Ok(None);
            }
            std::fs::hard_link(&source, &staged).map(Some)
        })
        .await
    }
    .map_err(|join| io_error(&source)(io::Error::other(join)))?;
    match link {
        Ok(Some(())) => Ok(Received::from_file(
            TempPath::try_from_path(&staged).map_err(|e| io_error(&staged)(e))?,
            size,
            container,
        )),
        Ok(None) => Err(TusError::Lost),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Err(TusError::Lost),
        Err(error) => Err(io_error(&source)(error).into()),
    }
}

#[cfg(test)]
mod tests;
