//! Writing files into the bucket: a finished ladder (every file but the master, a few at a
//! time, each only while the job's lease is confirmed; what a growing ladder already stored is
//! not sent again), its commit (the master, last), and whole local files (a finished resumable
//! upload) as multipart uploads.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use object_store::path::Path as Key;
use object_store::{Attribute, Attributes, ObjectStore, PutOptions, PutPayload};
use tokio::io::AsyncReadExt;
use tracing::debug;

use super::sink::{BucketSink, PART_SIZE};
use super::{BucketStore, mapped};
use crate::domain::VideoId;
use crate::media::{
    Fence, GROWING_MARKER, MASTER, MediaError, ObjectSink, PRIVATE_MARKER, StagedObject,
};

/// Ladder files sent at once. Each is read whole when at most [`PART_SIZE`] (segments are a
/// few MB), so a publish holds at most `PUTS_IN_FLIGHT × PART_SIZE` = 32 MiB.
pub(super) const PUTS_IN_FLIGHT: usize = 4;

/// Content type and caching of a ladder file, by extension: playlists may change when a
/// failed publish is redone, everything else is immutable once the master names it.
pub(super) fn attributes(name: &str) -> Attributes {
    let extension = name.rsplit_once('.').map_or("", |(_, e)| e);
    let (content_type, cache) = match extension {
        "m3u8" => ("application/vnd.apple.mpegurl", "public, max-age=10"),
        "m4s" => ("video/iso.segment", "public, max-age=31536000, immutable"),
        "mp4" => ("video/mp4", "public, max-age=31536000, immutable"),
        "ts" => ("video/mp2t", "public, max-age=31536000, immutable"),
        "jpg" => ("image/jpeg", "public, max-age=31536000, immutable"),
        "vtt" => ("text/vtt", "public, max-age=31536000, immutable"),
        _ => (
            "application/octet-stream",
            "public, max-age=31536000, immutable",
        ),
    };
    let mut attributes = Attributes::new();
    attributes.insert(Attribute::ContentType, content_type.into());
    attributes.insert(Attribute::CacheControl, cache.into());
    attributes
}

/// Every file below `dir`, as paths relative to it with their size in bytes, except the
/// master and the markers.
fn ladder_files(dir: &Path) -> Result<Vec<(String, u64)>, MediaError> {
    let mut found = Vec::new();
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let here = dir.join(&rel);
        for entry in std::fs::read_dir(&here).map_err(MediaError::io(&here))? {
            let entry = entry.map_err(MediaError::io(&here))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = rel.join(&name);
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                pending.push(rel);
            } else if rel != Path::new(MASTER) && name != PRIVATE_MARKER && name != GROWING_MARKER {
                let size = entry.metadata().map_err(MediaError::io(&here))?.len();
                found.push((rel.to_string_lossy().into_owned(), size));
            }
        }
    }
    Ok(found)
}

/// Writes every file of the ladder but the master to `hls/<id>/…`, asking `fence` first:
/// segments, poster and storyboard before the playlists that name them (a growing ladder's
/// master is already visible), and none that is stored already with the same size (a growing
/// ladder's segments: the same files; whatever an earlier attempt left was wiped when this one
/// started, see `transcode::job`).
pub async fn stage(
    store: &BucketStore,
    id: VideoId,
    dir: &Path,
    fence: &dyn Fence,
) -> Result<(), MediaError> {
    let files = {
        let dir = dir.to_path_buf();
        tokio::task::spawn_blocking(move || ladder_files(&dir))
            .await
            .map_err(|join| MediaError::io(Path::new("ladder"))(std::io::Error::other(join)))??
    };
    let stored = super::live::stored_sizes(store, id).await?;
    let (playlists, others): (Vec<_>, Vec<_>) = files
        .into_iter()
        .partition(|(rel, _)| rel.ends_with(".m3u8"));
    let missing: Vec<_> = others
        .into_iter()
        .filter(|(rel, size)| stored.get(rel) != Some(size))
        .collect();
    debug!(
        stored = stored.len(),
        sending = missing.len() + playlists.len(),
        "staging the ladder"
    );
    for batch in [missing, playlists] {
        let bound = store.write_bound();
        let mut puts = futures_util::stream::iter(batch)
            .map(|(rel, _)| async move {
                fence.hold(bound).await?;
                put_file(store, &dir.join(&rel), store.ladder_key(id, &rel)).await
            })
            .buffer_unordered(PUTS_IN_FLIGHT);
        while let Some(put) = puts.next().await {
            put?;
        }
    }
    Ok(())
}

/// Publishes a staged ladder: the private marker, the master (the commit), then the growing
/// marker goes. A marker that cannot be removed fails the commit, whose failure path
/// withdraws the whole ladder: a finished ladder never keeps a marker.
pub async fn commit(
    store: &BucketStore,
    id: VideoId,
    dir: &Path,
    private: bool,
) -> Result<(), MediaError> {
    let marker = store.ladder_key(id, PRIVATE_MARKER);
    if private {
        store.put(&marker, PutPayload::new()).await?;
    } else {
        store.delete(&marker).await?;
    }
    put_file(store, &dir.join(MASTER), store.ladder_key(id, MASTER)).await?;
    store.seen.remember_private(id, private);
    store.delete(&super::live::marker_key(store, id)).await?;
    store.seen.remember_growing(id, false);
    Ok(())
}

/// Writes `bytes` to `key` in one PUT with `attributes`.
pub(super) async fn put_bytes(
    store: &BucketStore,
    key: Key,
    bytes: Vec<u8>,
    attributes: Attributes,
) -> Result<(), MediaError> {
    let options = PutOptions {
        attributes,
        ..Default::default()
    };
    store
        .store
        .put_opts(&key, PutPayload::from(bytes), options)
        .await
        .map(drop)
        .map_err(|e| mapped(key.as_ref(), e))
}

/// Writes one local file to `key`: one PUT when small, a multipart upload otherwise.
pub async fn put_file(store: &BucketStore, path: &Path, key: Key) -> Result<(), MediaError> {
    let size = tokio::fs::metadata(path)
        .await
        .map_err(MediaError::io(path))?
        .len();
    if size > PART_SIZE as u64 {
        return upload_file(store, path, key).await?.commit().await;
    }
    let bytes = tokio::fs::read(path).await.map_err(MediaError::io(path))?;
    let attributes = attributes(key.filename().unwrap_or_default());
    put_bytes(store, key, bytes, attributes).await
}

/// Streams a local file into `key` as a multipart upload, in bounded memory; the object
/// appears when the returned staged object is committed.
pub async fn upload_file(
    store: &BucketStore,
    path: &Path,
    key: Key,
) -> Result<Box<dyn StagedObject>, MediaError> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(MediaError::io(path))?;
    let upload = store
        .store
        .put_multipart_opts(
            &key,
            object_store::PutMultipartOptions {
                attributes: attributes(key.filename().unwrap_or_default()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| mapped(key.as_ref(), e))?;
    let mut sink = Box::new(BucketSink::new(upload, key.as_ref().to_owned()));
    let mut buffer = vec![0_u8; 1024 * 1024];
    loop {
        let read = file.read(&mut buffer).await.map_err(MediaError::io(path))?;
        if read == 0 {
            break;
        }
        sink.write(bytes::Bytes::copy_from_slice(&buffer[..read]))
            .await?;
    }
    sink.finish().await
}
