//! The media store as a local folder (the default): `sources/<id>`, `hls/<id>/`, next to the
//! work area's `tmp/` on the same filesystem, so filing an upload and publishing a ladder are
//! each one atomic rename. nginx serves `hls/` and `sources/` straight from it. A ladder
//! that grows while it encodes is in `live`.

mod live;

use std::io::SeekFrom;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use futures_util::StreamExt;
use tempfile::TempPath;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::{
    ByteStream, Fence, GROWING_MARKER, GrowingLadder, Inventory, LadderState, LocalSource, MASTER,
    MediaError, MediaStore, ObjectHead, PRIVATE_MARKER, Staging, WorkDir, remove_if_exists,
    sync_dir,
};
use crate::domain::VideoId;

/// Read size of file streams.
const CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct FolderStore {
    work: WorkDir,
}

impl FolderStore {
    /// Opens (creating) `sources/`, `hls/` and `tmp/` below `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, MediaError> {
        let work = WorkDir::open(root)?;
        for dir in [work.root().join("sources"), work.root().join("hls")] {
            std::fs::create_dir_all(&dir).map_err(|source| MediaError::Prepare {
                path: dir.clone(),
                source,
            })?;
        }
        Ok(Self { work })
    }

    pub fn source_path(&self, id: VideoId) -> PathBuf {
        self.work.root().join("sources").join(id.to_string())
    }

    pub fn hls_root(&self) -> PathBuf {
        self.work.root().join("hls")
    }

    pub fn hls_dir(&self, id: VideoId) -> PathBuf {
        self.hls_root().join(id.to_string())
    }
}

/// Creates or removes the private marker of the ladder folder `dir` (if `dir` exists).
pub fn mark_private(dir: &Path, private: bool) -> Result<(), MediaError> {
    if !dir.is_dir() {
        return Ok(());
    }
    let marker = dir.join(PRIVATE_MARKER);
    if private {
        std::fs::write(&marker, b"").map_err(MediaError::io(&marker))
    } else {
        remove_if_exists(&marker, false)
    }
}

/// A strong validator: the file changes inode, size or mtime whenever its bytes change
/// (sources and ladders are only ever replaced by a rename).
fn head_of(metadata: &std::fs::Metadata) -> ObjectHead {
    let mtime = metadata
        .modified()
        .ok()
        .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
        .unwrap_or_default();
    ObjectHead {
        len: metadata.len(),
        etag: format!(
            "{:x}-{:x}-{:x}.{:x}",
            metadata.ino(),
            metadata.len(),
            mtime.as_secs(),
            mtime.subsec_nanos()
        ),
        modified: metadata.modified().ok(),
    }
}

async fn head(path: &Path) -> Result<Option<ObjectHead>, MediaError> {
    match tokio::fs::metadata(path).await {
        Ok(metadata) if metadata.is_file() => Ok(Some(head_of(&metadata))),
        Ok(_) => Ok(None),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(MediaError::io(path)(error)),
    }
}

async fn read(path: PathBuf, start: u64, len: u64) -> Result<ByteStream, MediaError> {
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(MediaError::io(&path))?;
    if start > 0 {
        file.seek(SeekFrom::Start(start))
            .await
            .map_err(MediaError::io(&path))?;
    }
    let stream = tokio_util::io::ReaderStream::with_capacity(file.take(len), CHUNK)
        .map(move |chunk| chunk.map_err(MediaError::io(&path)));
    Ok(stream.boxed())
}

fn blocking<T: Send + 'static>(
    path: &Path,
    work: impl FnOnce() -> Result<T, MediaError> + Send + 'static,
) -> impl std::future::Future<Output = Result<T, MediaError>> {
    let path = path.to_path_buf();
    async move {
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|join| MediaError::io(&path)(std::io::Error::other(join)))?
    }
}

#[async_trait]
impl MediaStore for FolderStore {
    fn kind(&self) -> &'static str {
        "folder"
    }

    fn work(&self) -> &WorkDir {
        &self.work
    }

    async fn check(&self) -> Result<(), MediaError> {
        self.work.stage_file("check-").map(drop)
    }

    async fn ready(&self) -> bool {
        let work = self.work.clone();
        tokio::task::spawn_blocking(move || work.is_writable())
            .await
            .unwrap_or(false)
    }

    fn upload_free_bytes(&self) -> Result<Option<u64>, MediaError> {
        self.work.free_bytes().map(Some)
    }

    async fn sweep_stale_uploads(&self, _single_node: bool, _grace: Duration) -> usize {
        // A crashed upload's temporary file is in `tmp/`, which reconciliation sweeps.
        0
    }

    async fn stage_source(&self, _id: VideoId) -> Result<Staging, MediaError> {
        self.work.stage_file("upload-").map(Staging::File)
    }

    async fn persist_file(&self, file: TempPath, id: VideoId) -> Result<(), MediaError> {
        let target = self.source_path(id);
        let sources = self.work.root().join("sources");
        blocking(&target.clone(), move || {
            // Readable by the nginx workers that send downloads (tempfile creates 0600).
            std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(0o644))
                .map_err(MediaError::io(&file))?;
            file.persist(&target)
                .map_err(|e| MediaError::io(&target)(e.error))?;
            sync_dir(&sources);
            Ok(())
        })
        .await
    }

    async fn source_head(&self, id: VideoId) -> Result<Option<ObjectHead>, MediaError> {
        head(&self.source_path(id)).await
    }

    async fn read_source(
        &self,
        id: VideoId,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, MediaError> {
        read(self.source_path(id), start, len).await
    }

    async fn fetch_source(&self, id: VideoId) -> Result<LocalSource, MediaError> {
        // ffmpeg reads the stored file in place.
        Ok(LocalSource::stored(self.source_path(id)))
    }

    async fn stage_ladder(&self, _: VideoId, _: &Path, _: &dyn Fence) -> Result<(), MediaError> {
        // Nothing leaves the work folder before the commit's one rename.
        Ok(())
    }

    async fn commit_ladder(
        &self,
        id: VideoId,
        ladder: &Path,
        private: bool,
    ) -> Result<(), MediaError> {
        let (ladder, target, root) = (ladder.to_path_buf(), self.hls_dir(id), self.hls_root());
        blocking(&target.clone(), move || {
            mark_private(&ladder, private)?;
            if !target.exists() {
                std::fs::rename(&ladder, &target).map_err(MediaError::io(&target))?;
                sync_dir(&root);
                return Ok(());
            }
            // A ladder that grew while it encoded (`transcode::live`), or one left by a run
            // that published and died before recording it: the two folders are exchanged in
            // one `renameat2(RENAME_EXCHANGE)`, so a player never finds the folder missing,
            // then the old one (now at `ladder`) is removed, so an undo can rename back.
            rustix::fs::renameat_with(
                rustix::fs::CWD,
                &ladder,
                rustix::fs::CWD,
                &target,
                rustix::fs::RenameFlags::EXCHANGE,
            )
            .map_err(|errno| MediaError::io(&target)(errno.into()))?;
            sync_dir(&root);
            std::fs::remove_dir_all(&ladder).map_err(MediaError::io(&ladder))?;
            Ok(())
        })
        .await
    }

    fn grow_ladder(&self, id: VideoId, token: i64, private: bool) -> Box<dyn GrowingLadder + '_> {
        Box::new(live::FolderGrowing::new(self, id, token, private))
    }

    async fn is_growing(&self, id: VideoId) -> Result<bool, MediaError> {
        Ok(tokio::fs::try_exists(self.hls_dir(id).join(GROWING_MARKER))
            .await
            .unwrap_or(false))
    }

    async fn withdraw_growing(&self, id: VideoId, owner: Option<i64>) -> Result<bool, MediaError> {
        let dir = self.hls_dir(id);
        blocking(&dir.clone(), move || live::withdraw(&dir, owner)).await
    }

    async fn uncommit_ladder(&self, id: VideoId, ladder: &Path) -> Result<(), MediaError> {
        let (ladder, target, root) = (ladder.to_path_buf(), self.hls_dir(id), self.hls_root());
        blocking(&target.clone(), move || {
            std::fs::rename(&target, &ladder).map_err(MediaError::io(&ladder))?;
            sync_dir(&root);
            Ok(())
        })
        .await
    }

    async fn ladder_head(&self, id: VideoId, rel: &str) -> Result<Option<ObjectHead>, MediaError> {
        head(&self.hls_dir(id).join(rel)).await
    }

    async fn read_ladder(
        &self,
        id: VideoId,
        rel: &str,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, MediaError> {
        read(self.hls_dir(id).join(rel), start, len).await
    }

    async fn set_private(&self, id: VideoId, private: bool) -> Result<(), MediaError> {
        let dir = self.hls_dir(id);
        blocking(&dir.clone(), move || mark_private(&dir, private)).await
    }

    async fn is_private(&self, id: VideoId) -> Result<bool, MediaError> {
        Ok(tokio::fs::try_exists(self.hls_dir(id).join(PRIVATE_MARKER))
            .await
            .unwrap_or(false))
    }

    async fn remove_outputs(&self, id: VideoId) -> Result<(), MediaError> {
        let (dir, work) = (self.hls_dir(id), self.work.clone());
        blocking(&dir.clone(), move || {
            remove_if_exists(&dir, true)?;
            work.remove_job_workdirs(id)
        })
        .await
    }

    async fn remove_video(&self, id: VideoId) -> Result<(), MediaError> {
        let source = self.source_path(id);
        blocking(&source.clone(), move || remove_if_exists(&source, false)).await?;
        self.remove_outputs(id).await
    }

    async fn inventory(&self) -> Result<Inventory, MediaError> {
        let (sources, hls) = (self.work.root().join("sources"), self.hls_root());
        blocking(&hls.clone(), move || {
            let mut inventory = Inventory::default();
            for (id, age, path) in entries(&sources)? {
                let _ = path;
                inventory.sources.insert(id, age);
            }
            for (id, age, path) in entries(&hls)? {
                let state = LadderState {
                    published: path.join(MASTER).is_file(),
                    private: path.join(PRIVATE_MARKER).exists(),
                    age,
                };
                inventory.ladders.insert(id, state);
            }
            Ok(inventory)
        })
        .await
    }

    fn presign(&self, _: VideoId, _: Option<&str>, _: Duration) -> Option<String> {
        None
    }
}

/// Entries of `dir` named by a video id, with their age and path.
fn entries(dir: &Path) -> Result<Vec<(VideoId, Duration, PathBuf)>, MediaError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)
        .map_err(MediaError::io(dir))?
        .flatten()
    {
        let Ok(id) = entry.file_name().to_string_lossy().parse::<VideoId>() else {
            continue;
        };
        let age = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default();
        found.push((id, age, entry.path()));
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Open;
    #[async_trait]
    impl Fence for Open {
        async fn hold(&self, _: Duration) -> Result<(), MediaError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn publish_is_one_rename_and_remove_cleans_everything()
    -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let media = FolderStore::open(dir.path())?;
        let id = VideoId::new();
        std::fs::write(media.source_path(id), b"source")?;
        let work = media.work().job_workdir(id)?;
        let ladder = work.path().join("ladder");
        std::fs::create_dir_all(ladder.join("360p"))?;
        std::fs::write(ladder.join(MASTER), b"#EXTM3U\n")?;
        media.stage_ladder(id, &ladder, &Open).await?;
        media.commit_ladder(id, &ladder, true).await?;
        assert!(media.hls_dir(id).join(MASTER).exists());
        assert!(media.is_private(id).await?);
        assert!(!ladder.exists());
        let inventory = media.inventory().await?;
        assert!(inventory.ladders[&id].published && inventory.sources.contains_key(&id));

        media.remove_video(id).await?;
        assert!(!media.source_path(id).exists());
        assert!(!media.hls_dir(id).exists());
        assert!(!work.path().exists(), "the job's tmp folder is removed too");
        media.remove_video(id).await?;
        Ok(())
    }

    #[tokio::test]
    async fn staged_uploads_vanish_unless_persisted() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let media = FolderStore::open(dir.path())?;
        let Staging::File(staged) = media.stage_source(VideoId::new()).await? else {
            return Err("the folder stages files".into());
        };
        let path = staged.path().to_path_buf();
        assert!(path.exists());
        drop(staged);
        assert!(!path.exists());
        assert!(media.upload_free_bytes()?.is_some_and(|free| free > 0));
        Ok(())
    }
}
