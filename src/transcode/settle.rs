//! How a job's end is recorded: the outcome is committed first (fenced by the lease), and only
//! the worker whose commit succeeded touches the published ladder.
//!
//! Publishing a ready ladder is "commit, then rename": the `ready` row is written under the
//! lease, then the work folder is renamed to `hls/<id>` in one step. A worker that lost its
//! lease cannot commit, so it can never publish over the attempt that replaced it. A crash
//! between the two steps is finished on the next start (see `media::reconcile`).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, warn};

use super::Encoders;
use super::job::{Encoded, JobFailure, retry_delay};
use crate::domain::Video;
use crate::domain::{JobError, VideoStatus};
use crate::progress::JobEvent;
use crate::store::{Lease, Outcome, StoreError};

/// How long a finished job keeps trying to record its outcome while the database is away (the
/// encoded ladder is kept meanwhile; the lease fence keeps a late commit safe).
const RECORD_PATIENCE: Duration = Duration::from_secs(300);

/// Runs a store write until it succeeds or fails for a reason that will not pass, retrying
/// transient failures (database away, disk full) with back-off from 0.5 s to 10 s for at most
/// [`RECORD_PATIENCE`].
async fn patiently<F, Fut>(mut write: F) -> Result<Option<Video>, StoreError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<Video>, StoreError>>,
{
    let started = Instant::now();
    let mut delay = Duration::from_millis(500);
    loop {
        match write().await {
            Err(error) if error.is_transient() && started.elapsed() < RECORD_PATIENCE => {
                warn!(%error, retry_in = ?delay, "cannot record the job's outcome yet");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
            other => return other,
        }
    }
}

impl Encoders {
    /// Records the outcome and tells subscribers; returns the metric label.
    pub(super) async fn settle(
        &self,
        lease: Lease,
        attempts: u32,
        outcome: Result<Encoded, JobFailure>,
    ) -> &'static str {
        let id = lease.video;
        let failure = match outcome {
            Ok(encoded) => return self.publish(lease, encoded).await,
            Err(failure) => failure,
        };
        match failure {
            JobFailure::Fatal(error) => {
                warn!(code = %error.code, reason = %error.message, "job failed");
                self.fail(lease, &error).await;
                "failed"
            }
            // The delete removed the row and the files; the work folder went with `Encoded`.
            JobFailure::Canceled => "canceled",
            JobFailure::LeaseLost => {
                warn!("another worker holds this job now; nothing published");
                "lease_lost"
            }
            JobFailure::Interrupted | JobFailure::Retryable(_) => {
                let (delay, reason) = match &failure {
                    JobFailure::Retryable(reason) => {
                        let delay = retry_delay(attempts + 1);
                        warn!(%reason, retry_in = ?delay, "job hit a passing error; back to the queue");
                        (delay, reason.as_str())
                    }
                    _ => (Duration::ZERO, "shutdown"),
                };
                let outcome = if delay.is_zero() {
                    Outcome::Release { reason }
                } else {
                    Outcome::Retry { delay, reason }
                };
                match patiently(|| self.store.finish(&lease, outcome.clone())).await {
                    Ok(Some(_)) => {
                        self.bus.publish(id, JobEvent::Status(VideoStatus::Queued));
                        self.bus.wake_workers();
                    }
                    Ok(None) => {}
                    Err(error) => {
                        warn!(%error, "cannot requeue; the lease will expire and requeue it")
                    }
                }
                "requeued"
            }
        }
    }

    /// Commits `ready`, then renames the ladder into place and tells subscribers.
    async fn publish(&self, lease: Lease, encoded: Encoded) -> &'static str {
        let id = lease.video;
        let ready = Outcome::Ready {
            renditions: &encoded.renditions,
            encode_seconds: encoded.encode_seconds,
        };
        let committed = patiently(|| self.store.finish(&lease, ready.clone())).await;
        let video = match committed {
            Ok(Some(video)) => video,
            // Deleted meanwhile, or another worker holds the job: publish nothing.
            Ok(None) => return "canceled",
            Err(error) => {
                warn!(%error, "cannot record the finished job; retrying it later");
                let _ = self
                    .store
                    .finish(
                        &lease,
                        Outcome::Retry {
                            delay: Duration::from_secs(5),
                            reason: "The database could not record the result.",
                        },
                    )
                    .await;
                return "requeued";
            }
        };
        let private = video.visibility == crate::domain::Visibility::Private;
        let published = crate::media::mark_private(&encoded.ladder, private)
            .and_then(|()| self.media.publish(&encoded.ladder, id));
        if let Err(failure) = published {
            error!(error = %failure, "the ladder could not be published");
            let error = JobError {
                code: "publish_failed".into(),
                message: "The encoded video could not be stored on the server.".into(),
            };
            self.fail(lease, &error).await;
            return "failed";
        }
        self.bus.publish(id, JobEvent::Ready(Arc::new(video)));
        "ready"
    }

    async fn fail(&self, lease: Lease, error: &JobError) {
        match patiently(|| self.store.finish(&lease, Outcome::Failed(error))).await {
            Ok(Some(video)) => {
                let _ = self.media.remove_published(lease.video);
                self.bus
                    .publish(lease.video, JobEvent::Failed(Arc::new(video)));
            }
            Ok(None) => {}
            Err(db) => {
                warn!(error = %db, "cannot record the failure; the lease will retry the job")
            }
        }
    }
}
