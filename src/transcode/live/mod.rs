//! Playable in seconds: while ffmpeg encodes, the ladder grows in `hls/<id>` so viewers start
//! watching long before it is done, whatever the media store (folder or bucket).
//!
//! ffmpeg writes `EVENT` playlists in the work folder, each rewritten (temp file + rename) as a
//! segment closes. Every `TICK`, `Growing::look` reads them and takes segment `n` only once
//! **every** rendition (each rung and the audio) lists it, so the published rungs stay aligned
//! at every instant. Segments and init segments keep the names of the final ladder; the
//! published media playlists are `EXT-X-PLAYLIST-TYPE:EVENT` (RFC 8216 §4.3.3.5: segments are
//! only ever appended) with a target duration that does not change while they grow (§6.2.1).
//!
//! How each step is stored is the media store's ([`crate::media::live`]): the first one
//! (init and first segment of every rendition, their playlists, the master with upper-bound
//! BANDWIDTH, the [`GROWING_MARKER`](crate::media::GROWING_MARKER)) appears at once, with the
//! master last; later ones add segments, then the playlists that name them. At the end, the
//! finished VOD ladder replaces the growing one in the ready commit
//! ([`MediaStore::commit_ladder`]); a job that ends any other way `withdraw`s it: players
//! get `404`.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Encoders;
use super::fence::LeaseFence;
use super::ffmpeg::EncodePlan;
use crate::domain::{Video, Visibility};
use crate::media::{MediaError, MediaStore};
use crate::progress::JobEvent;
use crate::store::Lease;

mod growing;
use growing::{Growing, Step};

/// How often the work folder's playlists are looked at.
const TICK: Duration = Duration::from_millis(400);
/// Longest pause after a step the store could not take (the bucket away); the step is tried
/// again after it, from where the last published one ended.
const MAX_BACKOFF: Duration = Duration::from_secs(8);
/// Tries of a withdraw whose store is away, and the pause before the second.
const WITHDRAW_TRIES: u32 = 3;
const WITHDRAW_PAUSE: Duration = Duration::from_secs(1);

/// Removes the growing ladder of the attempt holding `lease`, if it is still there and still
/// its own (a newer attempt's ladder is left alone). A store that is away is asked again a
/// few times (1 s, 2 s apart); what still fails is logged, and the restart's sweep or the next
/// attempt removes it.
pub(super) async fn withdraw(media: &dyn MediaStore, lease: Lease) {
    let mut pause = WITHDRAW_PAUSE;
    for attempt in 1..=WITHDRAW_TRIES {
        match media.withdraw_growing(lease.video, Some(lease.token)).await {
            Ok(true) => return info!("the partial ladder was withdrawn"),
            Ok(false) => return,
            Err(error) if error.is_transient() && attempt < WITHDRAW_TRIES => {
                warn!(%error, retry_in = ?pause, "cannot withdraw the partial ladder yet");
                tokio::time::sleep(pause).await;
                pause *= 2;
            }
            Err(error) => return warn!(%error, "cannot withdraw the partial ladder"),
        }
    }
}

impl Encoders {
    /// Follows an encode until `done`: publishes the ladder as it grows, and the first time it
    /// appears records the video playable (fenced by the lease) and tells subscribers.
    /// Progressive publication is best effort: when it fails for good, the job goes on and
    /// publishes the finished ladder as usual; a store that is away is asked again later.
    pub(super) async fn follow_live(
        &self,
        video: &Video,
        lease: Lease,
        plan: &EncodePlan,
        done: &CancellationToken,
    ) {
        let fence = LeaseFence::new(&self.store, lease, self.settings.lease);
        let private = video.visibility == Visibility::Private;
        let mut ladder = self.media.grow_ladder(video.id, lease.token, private);
        let mut growing = Growing::new(plan);
        let mut announced = false;
        let mut backoff = TICK;
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = done.cancelled() => return,
            }
            let (back, looked) = match tokio::task::spawn_blocking(move || {
                let looked = growing.look();
                (growing, looked)
            })
            .await
            {
                Ok(looked) => looked,
                Err(join) => {
                    warn!(error = %join, "progressive publication stopped");
                    return;
                }
            };
            growing = back;
            let stored: Result<Option<_>, MediaError> = match looked {
                Ok(Step::Waiting) => Ok(None),
                Ok(Step::Held { target, longest }) => {
                    warn!(
                        target,
                        longest,
                        "a segment outlasts the growing playlists' target duration; the rest is published when done"
                    );
                    return;
                }
                Ok(Step::Appear {
                    growth,
                    masters,
                    done,
                }) => ladder
                    .appear(growth, masters, &fence)
                    .await
                    .map(|()| Some(done)),
                Ok(Step::Extend { growth, done }) => match ladder.extend(growth, &fence).await {
                    // Withdrawn, or another attempt's now: stop following.
                    Ok(false) => return,
                    Ok(true) => Ok(Some(done)),
                    Err(error) => Err(error),
                },
                Err(error) => {
                    warn!(%error, "progressive publication stopped; the ladder is published when done");
                    return;
                }
            };
            match stored {
                Ok(Some(step)) => {
                    growing.published(step);
                    backoff = TICK;
                }
                Ok(None) => {}
                Err(error) if error.is_transient() => {
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    warn!(%error, retry_in = ?backoff, "the growing ladder could not be stored yet");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = done.cancelled() => return,
                    }
                    continue;
                }
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
