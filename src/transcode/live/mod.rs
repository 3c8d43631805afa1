//! Playable in seconds: while ffmpeg encodes, the ladder grows in `hls/<id>` so viewers start
//! watching long before it is done.
//!
//! ffmpeg writes `EVENT` playlists in the work folder, each rewritten (temp file + rename) as a
//! segment closes. Every `TICK`, `Growing::step` reads them and publishes segment `n` only
//! once **every** rendition (each rung and the audio) lists it, so the published rungs stay
//! aligned at every instant. Published segments and init segments are hard links of the work
//! folder's files under the same names as the final ladder's; the published media playlists
//! are `EXT-X-PLAYLIST-TYPE:EVENT` (RFC 8216 §4.3.3.5: segments are only ever appended) with a
//! target duration that does not change while they grow (§6.2.1), each written atomically.
//!
//! The first publication (init and first segment of every rendition, their playlists, the
//! master with upper-bound BANDWIDTH, the [`GROWING_MARKER`]) is assembled inside the job's
//! work folder and renamed into place in one step. At the end, `publish` exchanges the
//! finished VOD ladder with the growing one (`renameat2(RENAME_EXCHANGE)`), so a player never
//! finds the folder missing and keeps the segment names it already has. A job that ends any
//! other way `withdraw`s the growing ladder: players get `404`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Encoders;
use super::ffmpeg::EncodePlan;
use super::playlist::PlaylistError;
use crate::domain::{Video, VideoId};
use crate::media::{MediaError, MediaStore};
use crate::progress::JobEvent;
use crate::store::Lease;

mod growing;
use growing::{Growing, Growth};

/// How often the work folder's playlists are looked at.
const TICK: Duration = Duration::from_millis(400);

/// The file in a growing ladder's folder (a dot file: never served) that says it still grows;
/// it holds the lease token of the attempt that owns it. nginx and reel serve the playlists of
/// such a folder `no-cache`.
pub const GROWING_MARKER: &str = ".growing";

#[derive(Debug, thiserror::Error)]
pub(super) enum LiveError {
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Playlist(#[from] PlaylistError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> MediaError + '_ {
    move |source| MediaError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Whether the ladder folder `dir` is still growing (its marker exists).
pub fn is_growing(dir: &Path) -> bool {
    dir.join(GROWING_MARKER).is_file()
}

/// Where ladders live on the local disk (`<media>/hls`), when the store is a folder.
#[derive(Debug, Clone)]
pub(super) struct LiveRoot(PathBuf);

impl LiveRoot {
    /// `None` for a store without a local ladder folder (a bucket): no progressive publication.
    pub(super) fn of(media: &dyn MediaStore) -> Option<Self> {
        media.local_hls_root().map(Self)
    }

    pub(super) fn hls_root(&self) -> PathBuf {
        self.0.clone()
    }

    pub(super) fn hls_dir(&self, id: VideoId) -> PathBuf {
        self.0.join(id.to_string())
    }
}

/// Removes a growing ladder left by an attempt that died (a crash, `kill -9`), whatever its
/// owner; a finished ladder (no marker) is kept. Used by recovery before the job runs again.
pub fn remove_growing(media: &dyn MediaStore, id: VideoId) -> Result<bool, MediaError> {
    let Some(root) = LiveRoot::of(media) else {
        return Ok(false);
    };
    let dir = root.hls_dir(id);
    if !is_growing(&dir) {
        return Ok(false);
    }
    std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    Ok(true)
}

/// Whether `id`'s published ladder is still growing (a folder store's marker exists).
pub fn ladder_is_growing(media: &dyn MediaStore, id: VideoId) -> bool {
    LiveRoot::of(media).is_some_and(|root| is_growing(&root.hls_dir(id)))
}

/// Removes the growing ladder of the attempt holding `lease`, if it is still there and still
/// its own (a newer attempt's ladder is left alone). Best effort: logged, not returned.
pub(super) fn withdraw(media: &dyn MediaStore, lease: Lease) {
    let Some(root) = LiveRoot::of(media) else {
        return;
    };
    let dir = root.hls_dir(lease.video);
    let owner = std::fs::read_to_string(dir.join(GROWING_MARKER)).ok();
    if owner.as_deref().map(str::trim) != Some(lease.token.to_string().as_str()) {
        return;
    }
    match std::fs::remove_dir_all(&dir) {
        Ok(()) => info!("the partial ladder was withdrawn"),
        Err(error) => warn!(%error, "cannot withdraw the partial ladder"),
    }
}

impl Encoders {
    /// Follows an encode until `done`: publishes the ladder as it grows, and the first time it
    /// appears records the video playable (fenced by the lease) and tells subscribers.
    /// Progressive publication is best effort: when it fails, the job goes on and publishes
    /// the finished ladder as usual.
    pub(super) async fn follow_live(
        &self,
        video: &Video,
        lease: Lease,
        plan: &EncodePlan,
        done: &CancellationToken,
    ) {
        let Some(root) = LiveRoot::of(self.media.as_ref()) else {
            // A bucket: the ladder is published when it is done.
            return;
        };
        let mut growing = Growing::new(&root, video, lease, plan);
        let mut announced = false;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = done.cancelled() => return,
            }
            let (back, result) = match tokio::task::spawn_blocking(move || {
                let result = growing.step();
                (growing, result)
            })
            .await
            {
                Ok(stepped) => stepped,
                Err(join) => {
                    warn!(error = %join, "progressive publication stopped");
                    return;
                }
            };
            growing = back;
            match result {
                Ok(Growth::Gone) => return,
                Ok(Growth::Waiting | Growth::Appeared | Growth::Grew(_)) => {}
                Err(error) => {
                    warn!(%error, "progressive publication stopped; the ladder is published when done");
                    return;
                }
            }
            if growing.published > 0 && !announced {
                match self.store.mark_playable(&lease).await {
                    Ok(Some(video)) => {
                        announced = true;
                        if let Some(at) = video.playable_at {
                            let waited = (at.0 - video.created_at.0).max(0) as f64 / 1000.0;
                            info!(seconds = waited, "playable since the upload");
                            metrics::histogram!(crate::telemetry::TIME_TO_PLAYABLE).record(waited);
                        }
                        self.bus
                            .publish(lease.video, JobEvent::Playable(Arc::new(video)));
                    }
                    // The lease is lost: the heartbeat stops the job.
                    Ok(None) => return,
                    Err(error) => warn!(%error, "cannot record the video playable yet"),
                }
            }
        }
    }
}
