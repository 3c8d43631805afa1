//! A growing ladder in the folder (see [`crate::media::live`]): segments are hard links of
//! ffmpeg's files (same filesystem, no copy), playlists are replaced by a rename. The first
//! publication is assembled in a work folder in `tmp/` and renamed into `hls/<id>` in one
//! step; the finished ladder is exchanged in by `commit_ladder` (`RENAME_EXCHANGE`).

use std::path::{Path, PathBuf};

use async_trait::async_trait;

use super::{FolderStore, mark_private};
use crate::domain::VideoId;
use crate::media::live::{GROWING_MARKER, GrowingLadder, Growth};
use crate::media::{Fence, MediaError, WorkDir, sync_dir};

/// The growing ladder of one attempt in `hls/<id>`.
pub(super) struct FolderGrowing {
    work: WorkDir,
    hls_root: PathBuf,
    id: VideoId,
    token: i64,
    private: bool,
}

impl FolderGrowing {
    pub(super) fn new(store: &FolderStore, id: VideoId, token: i64, private: bool) -> Self {
        Self {
            work: store.work.clone(),
            hls_root: store.hls_root(),
            id,
            token,
            private,
        }
    }

    fn dir(&self) -> PathBuf {
        self.hls_root.join(self.id.to_string())
    }
}

/// The owner's token in the ladder folder `dir`, if it is growing.
pub(super) fn owner(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join(GROWING_MARKER))
        .ok()
        .map(|text| text.trim().to_owned())
}

/// Removes the growing ladder folder `dir` when its owner is `owner` (any owner when `None`).
pub(super) fn withdraw(dir: &Path, owner_token: Option<i64>) -> Result<bool, MediaError> {
    let Some(found) = owner(dir) else {
        return Ok(false);
    };
    if owner_token.is_some_and(|token| token.to_string() != found) {
        return Ok(false);
    }
    match std::fs::remove_dir_all(dir) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
            Err(MediaError::io(dir)(error))
        }
        _ => Ok(true),
    }
}

/// Runs blocking file work off the async threads.
async fn blocking<T: Send + 'static>(
    what: PathBuf,
    work: impl FnOnce() -> Result<T, MediaError> + Send + 'static,
) -> Result<T, MediaError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|join| MediaError::io(&what)(std::io::Error::other(join)))?
}

#[async_trait]
impl GrowingLadder for FolderGrowing {
    async fn appear(
        &mut self,
        growth: Growth,
        masters: Vec<(String, Vec<u8>)>,
        _local: &dyn Fence,
    ) -> Result<(), MediaError> {
        let (work, id, target, root) = (
            self.work.clone(),
            self.id,
            self.dir(),
            self.hls_root.clone(),
        );
        let (token, private) = (self.token, self.private);
        blocking(target.clone(), move || {
            // Removed on drop with whatever is left in it; its `growing` folder is renamed out.
            let workdir = work.job_workdir(id)?;
            let staging = workdir.path().join("growing");
            std::fs::create_dir(&staging).map_err(MediaError::io(&staging))?;
            let rels = growth.files.iter().map(|(rel, _)| rel);
            for rel in rels.chain(growth.playlists.iter().map(|(rel, _)| rel)) {
                if let Some(parent) = Path::new(rel).parent() {
                    let parent = staging.join(parent);
                    std::fs::create_dir_all(&parent).map_err(MediaError::io(&parent))?;
                }
            }
            write_growth(&staging, &growth)?;
            for (rel, bytes) in &masters {
                let path = staging.join(rel);
                std::fs::write(&path, bytes).map_err(MediaError::io(&path))?;
            }
            let marker = staging.join(GROWING_MARKER);
            std::fs::write(&marker, token.to_string()).map_err(MediaError::io(&marker))?;
            mark_private(&staging, private)?;
            std::fs::rename(&staging, &target).map_err(MediaError::io(&target))?;
            sync_dir(&root);
            Ok(())
        })
        .await
    }

    async fn extend(&mut self, growth: Growth, _local: &dyn Fence) -> Result<bool, MediaError> {
        let (dir, token) = (self.dir(), self.token.to_string());
        blocking(dir.clone(), move || {
            // The marker stands in for the fence: local writes land at once.
            if owner(&dir).as_deref() != Some(token.as_str()) {
                return Ok(false);
            }
            write_growth(&dir, &growth)?;
            Ok(true)
        })
        .await
    }
}

/// Links `growth`'s files into `dir`, then replaces its playlists.
fn write_growth(dir: &Path, growth: &Growth) -> Result<(), MediaError> {
    for (rel, from) in &growth.files {
        link(from, &dir.join(rel))?;
    }
    for (rel, bytes) in &growth.playlists {
        write_atomically(&dir.join(rel), bytes)?;
    }
    Ok(())
}

/// A hard link of `from` at `to` (same filesystem); an existing link is fine.
fn link(from: &Path, to: &Path) -> Result<(), MediaError> {
    match std::fs::hard_link(from, to) {
        Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(MediaError::io(to)(error))
        }
        _ => Ok(()),
    }
}

/// Writes `bytes` to a dot-named temp file beside `path` (never served), then renames it.
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), MediaError> {
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    let temp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&temp, bytes).map_err(MediaError::io(&temp))?;
    std::fs::rename(&temp, path).map_err(MediaError::io(path))
}
