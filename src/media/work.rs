//! The local work area below `--media-dir`: `tmp/` (uploads being received, job work folders,
//! each removed on drop) and `uploads/` (resumable uploads' partial files). Used by both
//! stores: a bucket-backed reel still encodes and resumes uploads on local disk.

use std::path::{Path, PathBuf};

use tempfile::{NamedTempFile, TempDir};

use super::{MediaError, remove_if_exists};
use crate::domain::VideoId;

#[derive(Debug, Clone)]
pub struct WorkDir {
    root: PathBuf,
}

impl WorkDir {
    /// Creates `root` and `root/tmp` when missing.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, MediaError> {
        let root: PathBuf = root.into();
        for dir in [root.clone(), root.join("tmp")] {
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

    /// The media dir (the SQLite file's default home).
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// Bytes available to this process on the local volume.
    pub fn free_bytes(&self) -> Result<u64, MediaError> {
        let stats =
            rustix::fs::statvfs(&self.root).map_err(|e| MediaError::io(&self.root)(e.into()))?;
        Ok(stats.f_bavail.saturating_mul(stats.f_frsize))
    }

    /// True when the local volume can be written.
    pub fn is_writable(&self) -> bool {
        NamedTempFile::with_prefix_in("ready-", self.tmp_dir()).is_ok()
    }

    /// A new upload file in `tmp/`, removed on drop unless persisted.
    pub fn stage_file(&self, prefix: &str) -> Result<NamedTempFile, MediaError> {
        let tmp = self.tmp_dir();
        NamedTempFile::with_prefix_in(prefix, &tmp).map_err(MediaError::io(&tmp))
    }

    /// A private work folder for one job in `tmp/`, removed on drop.
    pub fn job_workdir(&self, id: VideoId) -> Result<TempDir, MediaError> {
        let tmp = self.tmp_dir();
        TempDir::with_prefix_in(format!("job-{id}-"), &tmp).map_err(MediaError::io(&tmp))
    }

    /// Removes every work folder of a video's jobs in `tmp/`.
    pub fn remove_job_workdirs(&self, id: VideoId) -> Result<(), MediaError> {
        let prefix = format!("job-{id}-");
        self.remove_tmp_where(|name| name.starts_with(&prefix))?;
        Ok(())
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
