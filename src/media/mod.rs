//! The media volume: `sources/<id>`, `hls/<id>/`, and `tmp/` for work in progress.
//!
//! Every path is derived from a [`VideoId`], never from user input. `tmp/` is on the same
//! filesystem as the rest, so publishing is one atomic rename.

use std::io;
use std::path::{Path, PathBuf};

use tempfile::{NamedTempFile, TempDir};

use crate::domain::VideoId;

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
}

impl MediaError {
    fn io(path: &Path) -> impl FnOnce(io::Error) -> Self + '_ {
        move |source| Self::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// True when the disk is full, so callers can answer 507 rather than 500.
    pub fn is_out_of_space(&self) -> bool {
        let source = match self {
            Self::Prepare { source, .. } | Self::Io { source, .. } => source,
        };
        source.raw_os_error() == Some(rustix::io::Errno::NOSPC.raw_os_error())
            || source.kind() == io::ErrorKind::StorageFull
    }
}

#[derive(Debug, Clone)]
pub struct MediaRoot {
    root: PathBuf,
}

impl MediaRoot {
    /// Creates the three folders when missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, MediaError> {
        let root: PathBuf = root.into();
        for dir in [
            root.clone(),
            root.join("sources"),
            root.join("hls"),
            root.join("tmp"),
        ] {
            std::fs::create_dir_all(&dir).map_err(|source| MediaError::Prepare {
                path: dir.clone(),
                source,
            })?;
        }
        let root = root.canonicalize().map_err(|source| MediaError::Prepare {
            path: root.clone(),
            source,
        })?;
        Ok(Self { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    pub fn hls_root(&self) -> PathBuf {
        self.root.join("hls")
    }

    pub fn source_path(&self, id: VideoId) -> PathBuf {
        self.root.join("sources").join(id.to_string())
    }

    pub fn hls_dir(&self, id: VideoId) -> PathBuf {
        self.hls_root().join(id.to_string())
    }

    /// Bytes available to this process on the media volume.
    pub fn free_bytes(&self) -> Result<u64, MediaError> {
        let stats =
            rustix::fs::statvfs(&self.root).map_err(|e| MediaError::io(&self.root)(e.into()))?;
        Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
    }

    /// True when the volume can be written: used by `/readyz`.
    pub fn is_writable(&self) -> bool {
        NamedTempFile::with_prefix_in("ready-", self.tmp_dir()).is_ok()
    }

    /// A new upload file in `tmp/`, removed on drop unless persisted.
    pub fn stage_upload(&self) -> Result<NamedTempFile, MediaError> {
        let tmp = self.tmp_dir();
        NamedTempFile::with_prefix_in("upload-", &tmp).map_err(MediaError::io(&tmp))
    }

    /// A private work folder for one job in `tmp/`, removed on drop.
    pub fn job_workdir(&self, id: VideoId) -> Result<TempDir, MediaError> {
        let tmp = self.tmp_dir();
        TempDir::with_prefix_in(format!("job-{id}-"), &tmp).map_err(MediaError::io(&tmp))
    }

    /// Moves a finished ladder folder to `hls/<id>` in one rename, replacing a stale copy.
    pub fn publish(&self, ladder: &Path, id: VideoId) -> Result<PathBuf, MediaError> {
        let target = self.hls_dir(id);
        if target.exists() {
            // Left by a run that published and then died before recording it.
            std::fs::remove_dir_all(&target).map_err(MediaError::io(&target))?;
        }
        std::fs::rename(ladder, &target).map_err(MediaError::io(&target))?;
        sync_dir(&self.hls_root());
        Ok(target)
    }

    /// Takes a published ladder back to `ladder` (undoing [`MediaRoot::publish`] whose commit
    /// failed).
    pub fn unpublish(&self, id: VideoId, ladder: &Path) -> Result<(), MediaError> {
        std::fs::rename(self.hls_dir(id), ladder).map_err(MediaError::io(ladder))?;
        sync_dir(&self.hls_root());
        Ok(())
    }

    /// Removes a video's ladder, published or in progress, keeping its source.
    pub fn remove_video_outputs(&self, id: VideoId) -> Result<(), MediaError> {
        self.remove_published(id)?;
        self.remove_job_workdirs(id)
    }

    /// Marks a published ladder private (or public again): the `.private` file in `hls/<id>/`
    /// tells nginx (and reel) to serve it only with a signed link. Does nothing when the ladder
    /// is not published yet (the publisher marks it from the committed row).
    pub fn set_private(&self, id: VideoId, private: bool) -> Result<(), MediaError> {
        mark_private(&self.hls_dir(id), private)
    }

    /// Whether a published ladder is private (its `.private` marker exists).
    pub fn is_private(&self, id: VideoId) -> bool {
        self.hls_dir(id).join(PRIVATE_MARKER).exists()
    }

    /// Removes a video's published ladder (`hls/<id>`).
    pub fn remove_published(&self, id: VideoId) -> Result<(), MediaError> {
        remove_if_exists(&self.hls_dir(id), true)
    }

    /// Removes every work folder of a video's jobs in `tmp/`.
    pub fn remove_job_workdirs(&self, id: VideoId) -> Result<(), MediaError> {
        let prefix = format!("job-{id}-");
        self.remove_tmp_where(|name| name.starts_with(&prefix))?;
        Ok(())
    }

    /// Ids that have a source file or a published ladder, with the age of the newest of them.
    pub fn stored_ids(&self) -> Result<Vec<(VideoId, std::time::Duration)>, MediaError> {
        let mut found: std::collections::HashMap<VideoId, std::time::Duration> = Default::default();
        for dir in [self.root.join("sources"), self.hls_root()] {
            for entry in std::fs::read_dir(&dir)
                .map_err(MediaError::io(&dir))?
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
                let slot = found.entry(id).or_insert(age);
                *slot = (*slot).min(age);
            }
        }
        Ok(found.into_iter().collect())
    }

    /// Removes everything a video owns. Missing files are fine: deletes are idempotent.
    pub fn remove_video(&self, id: VideoId) -> Result<(), MediaError> {
        let source = self.source_path(id);
        remove_if_exists(&source, false)?;
        self.remove_video_outputs(id)
    }

    /// Removes every entry of `tmp/` for which `orphaned` holds; returns how many went.
    pub fn remove_tmp_where(&self, orphaned: impl Fn(&str) -> bool) -> Result<usize, MediaError> {
        let tmp = self.tmp_dir();
        let mut removed = 0;
        for entry in std::fs::read_dir(&tmp).map_err(MediaError::io(&tmp))? {
            let entry = entry.map_err(MediaError::io(&tmp))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !orphaned(&name) {
                continue;
            }
            let path = entry.path();
            let is_dir = entry.file_type().map(|t| t.is_dir()).unwrap_or(false);
            remove_if_exists(&path, is_dir)?;
            removed += 1;
        }
        Ok(removed)
    }
}

/// The file inside a ladder folder that makes it private (a dot file: never served).
pub const PRIVATE_MARKER: &str = ".private";

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

fn remove_if_exists(path: &Path, is_dir: bool) -> Result<(), MediaError> {
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

/// fsyncs a directory so a rename into it survives a power cut; best effort.
pub fn sync_dir(dir: &Path) {
    if let Ok(handle) = std::fs::File::open(dir) {
        let _ = handle.sync_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_is_one_rename_and_remove_cleans_everything() -> Result<(), Box<dyn std::error::Error>>
    {
        let dir = tempfile::tempdir()?;
        let media = MediaRoot::open(dir.path())?;
        let id = VideoId::new();
        std::fs::write(media.source_path(id), b"source")?;
        let work = media.job_workdir(id)?;
        let ladder = work.path().join("ladder");
        std::fs::create_dir_all(ladder.join("360p"))?;
        std::fs::write(ladder.join("master.m3u8"), b"#EXTM3U\n")?;
        let published = media.publish(&ladder, id)?;
        assert!(published.join("master.m3u8").exists());
        assert!(!ladder.exists());

        media.remove_video(id)?;
        assert!(!media.source_path(id).exists());
        assert!(!media.hls_dir(id).exists());
        assert!(!work.path().exists(), "the job's tmp folder is removed too");
        media.remove_video(id)?;
        Ok(())
    }

    #[test]
    fn staged_uploads_vanish_unless_persisted() -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let media = MediaRoot::open(dir.path())?;
        let staged = media.stage_upload()?;
        let path = staged.path().to_path_buf();
        assert!(path.exists());
        drop(staged);
        assert!(!path.exists());
        assert!(media.free_bytes()? > 0);
        Ok(())
    }
}
