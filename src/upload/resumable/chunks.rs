//! A resumable upload whose bytes live in the store as chunk objects (a bucket), so that any
//! API node can take the next request: nothing of the upload stays on the node that received
//! a request.
//!
//! A request gathers its body into chunks of [`CHUNK_SIZE`], each stored by one PUT as
//! `start..end` of the upload, with at most [`CHUNKS_IN_FLIGHT`] being sent while the next
//! fills: `CHUNK_SIZE × (CHUNKS_IN_FLIGHT + 1)` = 40 MiB of body per request at most. A
//! checkpoint waits for the chunks sent and records the offset they reach; the end of a
//! request, cut short or not, also stores what is gathered as a shorter chunk. The offset a
//! client is told is always covered by stored chunks, and a slow client's upload is still
//! made of full chunks but for each request's last.
//!
//! A request that dies may leave chunks it never recorded, which can overlap the ones the
//! next request writes. The upload's bytes are therefore read along a [`chain`]: chunks that
//! follow each other from byte 0 to the recorded offset. When the last byte is in, the chain
//! is streamed into the source like a plain upload ([`stage`]); the chunks go once the video
//! is filed, or with the upload when it is terminated or expires.

use std::collections::HashSet;
use std::ops::Range;

use bytes::Bytes;
use futures_util::StreamExt;
use tokio::task::JoinSet;

use crate::domain::VideoId;
use crate::media::{Media, MediaError, Staging};
use crate::upload::sniff::{Container, SNIFF_LEN};
use crate::upload::tus::TusError;
use crate::upload::{Received, UploadError};

/// Bytes per chunk object.
pub const CHUNK_SIZE: usize = 8 * 1024 * 1024;
/// Chunks being stored at once by one request.
pub const CHUNKS_IN_FLIGHT: usize = 4;

/// Chunks that cover `0..to` end to end, in order; `None` when the stored chunks do not.
///
/// Where several chunks start at the same offset (one recorded, others written by a request
/// that died), any of them holds the bytes the client sent there; the longest is tried first,
/// and a start that cannot reach `to` is not tried twice.
pub fn chain(chunks: &[Range<u64>], to: u64) -> Option<Vec<Range<u64>>> {
    let mut sorted: Vec<Range<u64>> = chunks
        .iter()
        .filter(|c| c.start < c.end && c.end <= to)
        .cloned()
        .collect();
    sorted.sort_by(|a, b| a.start.cmp(&b.start).then(b.end.cmp(&a.end)));
    let mut dead_ends = HashSet::new();
    let mut path = Vec::new();
    // Depth-first from 0: each frame is (offset reached, index of the next candidate).
    let mut stack = vec![(0u64, 0usize)];
    while let Some((at, next)) = stack.pop() {
        if at == to {
            return Some(path);
        }
        let first = sorted.partition_point(|c| c.start < at);
        let candidate = (first + next..sorted.len())
            .take_while(|&i| sorted[i].start == at)
            .find(|&i| !dead_ends.contains(&sorted[i].end));
        match candidate {
            Some(i) => {
                stack.push((at, i - first + 1));
                path.push(sorted[i].clone());
                stack.push((sorted[i].end, 0));
            }
            None => {
                dead_ends.insert(at);
                path.pop();
            }
        }
    }
    (to == 0).then_some(Vec::new())
}

/// The chain of `upload` up to `to`, listed from the store; [`TusError::Lost`] when the
/// stored chunks no longer cover it.
pub async fn stored_chain(
    media: &Media,
    upload: &str,
    to: u64,
) -> Result<Vec<Range<u64>>, TusError> {
    let chunks = media.upload_chunks(upload).await.map_err(lost_if_missing)?;
    chain(&chunks, to).ok_or(TusError::Lost)
}

/// A chunk listed a moment ago and gone now (the upload was removed meanwhile) is a lost
/// upload, not a failure of the store.
fn lost_if_missing(error: MediaError) -> TusError {
    if error.is_not_found() {
        TusError::Lost
    } else {
        UploadError::from(error).into()
    }
}

/// A request's writer for `upload` at `offset`; with `want_head`, also the upload's first
/// bytes (up to [`SNIFF_LEN`]) for sniffing a container not yet known. A `checksummed`
/// request's chunks are kept aside until [`ChunkWriter::verified`].
///
/// Whether the stored chunks still reach `offset` is not listed here (that would cost every
/// request a listing of all of them): the filing finds out ([`TusError::Lost`]).
///
/// Errors: [`TusError::Lost`] when the head is asked for and the chunks do not cover it; the
/// store's.
pub async fn open(
    media: &Media,
    upload: &str,
    offset: u64,
    want_head: bool,
    checksummed: bool,
) -> Result<(ChunkWriter, Vec<u8>), TusError> {
    let head = if want_head {
        let len = SNIFF_LEN.min(usize::try_from(offset).unwrap_or(SNIFF_LEN));
        read_head(media, upload, offset, len).await?
    } else {
        Vec::new()
    };
    let unverified = checksummed.then(|| uuid::Uuid::new_v4().simple().to_string());
    Ok((
        ChunkWriter::new(media.clone(), upload, offset, unverified),
        head,
    ))
}

/// The first `len` bytes of `upload` (for sniffing a container not yet known), read along
/// its chain up to `offset`.
async fn read_head(
    media: &Media,
    upload: &str,
    offset: u64,
    len: usize,
) -> Result<Vec<u8>, TusError> {
    let mut head = Vec::with_capacity(len);
    for chunk in stored_chain(media, upload, offset).await? {
        let mut stream = media
            .read_upload_chunk(upload, chunk)
            .await
            .map_err(lost_if_missing)?;
        while let Some(bytes) = stream.next().await {
            let bytes = bytes.map_err(lost_if_missing)?;
            head.extend_from_slice(&bytes[..bytes.len().min(len - head.len())]);
            if head.len() == len {
                return Ok(head);
            }
        }
    }
    Ok(head)
}

/// Streams the complete upload (`size` bytes, along its chain) into the source of a new
/// video, not yet visible: the filing path of a plain upload makes it so.
///
/// Errors: [`TusError::Lost`] when the chunks do not cover `size`; the store's errors
/// (503 when the bucket is away), after which the chunks are still there for a retry.
pub async fn stage(
    media: &Media,
    upload: &str,
    size: u64,
    container: Container,
) -> Result<Received, TusError> {
    let chain = stored_chain(media, upload, size).await?;
    let id = VideoId::new();
    let Staging::Object(mut sink) = media.stage_source(id).await.map_err(UploadError::from)? else {
        // Only a store that keeps chunks gets here, and it stages sources as objects.
        return Err(TusError::Lost);
    };
    for chunk in chain {
        let mut stream = media
            .read_upload_chunk(upload, chunk)
            .await
            .map_err(lost_if_missing)?;
        while let Some(bytes) = stream.next().await {
            sink.write(bytes.map_err(lost_if_missing)?)
                .await
                .map_err(UploadError::from)?;
        }
    }
    let staged = sink.finish().await.map_err(UploadError::from)?;
    Ok(Received::from_object(id, staged, size, container))
}

/// One request's bytes on their way into chunk objects.
pub struct ChunkWriter {
    media: Media,
    upload: String,
    /// Where the gathered bytes start in the upload.
    start: u64,
    gathered: Vec<Bytes>,
    gathered_len: usize,
    puts: JoinSet<Result<(), MediaError>>,
    /// A checksummed request's tag: its chunks are kept aside until verified.
    unverified: Option<String>,
    /// The chunks sent, while they are kept aside.
    sent: Vec<Range<u64>>,
}

impl ChunkWriter {
    /// A writer appending to `upload` at `offset`; with `unverified`, its chunks are kept
    /// aside under that tag until [`ChunkWriter::verified`].
    pub fn new(media: Media, upload: &str, offset: u64, unverified: Option<String>) -> Self {
        Self {
            media,
            upload: upload.to_owned(),
            start: offset,
            gathered: Vec::new(),
            gathered_len: 0,
            puts: JoinSet::new(),
            unverified,
            sent: Vec::new(),
        }
    }

    /// Ends a checksummed request: its chunks (every byte stored, see [`ChunkWriter::sync`])
    /// become the upload's when `matched`, and are deleted otherwise. Nothing for a request
    /// without a checksum.
    pub async fn verified(&mut self, matched: bool) -> Result<(), MediaError> {
        let Some(tag) = self.unverified.clone() else {
            return Ok(());
        };
        if matched {
            self.sync().await?;
        } else {
            // Wait for what is being sent (a PUT cut short may still land after a delete),
            // failed or not: every chunk that may exist is deleted below.
            while self.puts.join_next().await.is_some() {}
        }
        for chunk in std::mem::take(&mut self.sent) {
            let promoted = self
                .media
                .promote_upload_chunk(&self.upload, chunk, &tag, matched)
                .await;
            if matched {
                promoted?;
            } else if let Err(error) = promoted {
                tracing::debug!(upload.id = %self.upload, %error, "an unverified chunk stays until the upload goes");
            }
        }
        Ok(())
    }

    /// Gathers `chunk`; a full chunk object is sent, after waiting for a free slot.
    pub async fn write(&mut self, chunk: Bytes) -> Result<(), MediaError> {
        self.reap()?;
        let mut chunk = chunk;
        while !chunk.is_empty() {
            let piece = chunk.split_to((CHUNK_SIZE - self.gathered_len).min(chunk.len()));
            self.gathered_len += piece.len();
            self.gathered.push(piece);
            if self.gathered_len == CHUNK_SIZE {
                self.send().await?;
            }
        }
        Ok(())
    }

    /// Stores what is gathered and waits for every chunk sent: all bytes handed over are then
    /// in the store.
    pub async fn sync(&mut self) -> Result<(), MediaError> {
        if self.gathered_len > 0 {
            self.send().await?;
        }
        self.drain_to(0).await
    }

    /// Waits for every chunk sent; returns the offset up to which the upload's bytes are
    /// then stored (the bytes gathered for the next chunk are not).
    pub async fn settle(&mut self) -> Result<u64, MediaError> {
        self.drain_to(0).await?;
        Ok(self.start)
    }

    async fn send(&mut self) -> Result<(), MediaError> {
        self.drain_to(CHUNKS_IN_FLIGHT - 1).await?;
        let parts = std::mem::take(&mut self.gathered);
        let start = self.start;
        self.start += self.gathered_len as u64;
        self.gathered_len = 0;
        if self.unverified.is_some() {
            self.sent.push(start..self.start);
        }
        let (media, upload) = (self.media.clone(), self.upload.clone());
        let tag = self.unverified.clone();
        self.puts.spawn(async move {
            media
                .put_upload_chunk(&upload, start, parts, tag.as_deref())
                .await
        });
        Ok(())
    }

    async fn drain_to(&mut self, limit: usize) -> Result<(), MediaError> {
        while self.puts.len() > limit {
            let joined = self.puts.join_next().await;
            check(joined)?;
        }
        Ok(())
    }

    /// A chunk that failed fails the request at the next write.
    fn reap(&mut self) -> Result<(), MediaError> {
        while let Some(joined) = self.puts.try_join_next() {
            check(Some(joined))?;
        }
        Ok(())
    }
}

fn check(
    joined: Option<Result<Result<(), MediaError>, tokio::task::JoinError>>,
) -> Result<(), MediaError> {
    match joined {
        None | Some(Ok(Ok(()))) => Ok(()),
        Some(Ok(Err(error))) => Err(error),
        Some(Err(join)) => Err(MediaError::io(std::path::Path::new("uploads"))(
            std::io::Error::other(join),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::chain;

    #[test]
    fn a_chain_follows_the_chunks_from_zero_to_the_offset() {
        assert_eq!(chain(&[], 0), Some(vec![]));
        assert_eq!(chain(&[], 5), None);
        assert_eq!(chain(&[4..9, 0..4], 9), Some(vec![0..4, 4..9]));
        let recorded_at_4 = chain(&[0..4, 4..9], 4).expect("a chain");
        assert_eq!(recorded_at_4.len(), 1, "recorded 4");
        assert_eq!(recorded_at_4.first(), Some(&(0..4)));
        assert_eq!(chain(&[0..4, 5..9], 9), None, "a gap");
        assert_eq!(chain(&[0..4, 4..9], 7), None, "no chunk ends at 7");
    }

    #[test]
    fn chunks_a_dead_request_left_are_stepped_around() {
        // A request stored 4..20 and died before recording it; the next one stored 4..6
        // and 6..12, and another 12..30 (a dead end: 30 is past the offset) and 12..25.
        let chunks = [0..4, 4..20, 4..6, 6..12, 12..30, 12..25, 20..22];
        assert_eq!(chain(&chunks, 25), Some(vec![0..4, 4..6, 6..12, 12..25]));
        assert_eq!(chain(&chunks, 22), Some(vec![0..4, 4..20, 20..22]));
        assert_eq!(chain(&chunks, 12), Some(vec![0..4, 4..6, 6..12]));
        assert_eq!(chain(&chunks, 13), None);
    }

    #[test]
    fn a_branching_dead_end_is_walked_once() {
        // From every offset below 1000 the longest chunk leads to 1500, where a region of
        // overlapping chunks (steps of 1 and 2) never reaches 2000: without remembering dead
        // ends the walk would try its exponentially many paths again from each offset.
        let mut chunks = Vec::new();
        for at in 0..1000u64 {
            chunks.push(at..at + 1);
            chunks.push(at..1500);
        }
        for at in 1500..1980u64 {
            chunks.push(at..at + 1);
            chunks.push(at..at + 2);
        }
        chunks.push(1000..2000);
        let walked = chain(&chunks, 2000).expect("a chain");
        assert_eq!(walked.len(), 1001);
        assert_eq!(walked.last(), Some(&(1000..2000)));
    }
}
