//! How a job's end is recorded, fenced by the lease: only the worker that holds it changes the
//! row or touches the published ladder.
//!
//! Publishing a ready ladder ends inside the `ready` transaction: first every file but the
//! master is staged (nothing for the folder; uploaded for a bucket, each write only while the
//! lease is confirmed, see [`LeaseFence`](super::fence::LeaseFence)), then the row is changed
//! under the lease (which holds it), the ladder is committed (the folder's one rename; the
//! bucket's master playlist, written last), then the change commits. A worker that lost its lease matches no row, so it
//! can never publish over the attempt that replaced it, and readers never see `ready` without
//! the ladder. A crash after the commit of the ladder and before the database's leaves a ladder
//! for a `processing` row: the next attempt removes it before it starts.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, warn};

use super::Encoders;
use super::fence::LeaseFence;
use super::job::{Encoded, JobFailure, retry_delay};
use crate::domain::{JobError, Video, VideoStatus, Visibility};
use crate::media::MediaError;
use crate::progress::JobEvent;
use crate::store::{Lease, Outcome, StoreError};
use crate::telemetry::LADDER_PUBLISH;

/// Why publishing a finished ladder did not happen.
#[derive(Debug, thiserror::Error)]
enum PublishFailure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Media(#[from] MediaError),
}

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
            Ok(encoded) => {
                let label = self.publish(lease, encoded).await;
                if label != "ready" {
                    super::live::withdraw(self.media.as_ref(), lease).await;
                }
                return label;
            }
            Err(failure) => failure,
        };
        // A ladder that grew while it encoded goes before anyone is told (players get 404).
        super::live::withdraw(self.media.as_ref(), lease).await;
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
            JobFailure::Interrupted
            | JobFailure::Retryable(_)
            | JobFailure::ToolUnavailable { .. } => {
                let public = failure.public_reason();
                let (delay, reason) = match &failure {
                    JobFailure::Retryable(detail) | JobFailure::ToolUnavailable { detail, .. } => {
                        let delay = retry_delay(attempts + 1);
                        warn!(reason = %detail, retry_in = ?delay, "job hit a passing error; back to the queue");
                        (delay, public.as_str())
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

    /// Publishes the ladder together with the `ready` commit, then tells subscribers. The
    /// database is retried with patience while it is away; the ladder is kept meanwhile.
    async fn publish(&self, lease: Lease, encoded: Encoded) -> &'static str {
        let publishing = Instant::now();
        let fence = LeaseFence::new(&self.store, lease, self.settings.lease);
        if let Err(failure) = self
            .media
            .stage_ladder(lease.video, &encoded.ladder, &fence)
            .await
        {
            return self.publish_failed(lease, failure).await;
        }
        let ready = Outcome::Ready {
            renditions: &encoded.renditions,
            encode_seconds: encoded.encode_seconds,
        };
        let started = Instant::now();
        let mut delay = Duration::from_millis(500);
        loop {
            match self.publish_once(lease, &encoded, ready.clone()).await {
                Ok(Some(video)) => {
                    metrics::histogram!(LADDER_PUBLISH, "store" => self.media.kind())
                        .record(publishing.elapsed().as_secs_f64());
                    self.bus
                        .publish(lease.video, JobEvent::Ready(Arc::new(video)));
                    return "ready";
                }
                // Deleted meanwhile, or another worker holds the job: publish nothing.
                Ok(None) => {
                    warn!(
                        "the job ended elsewhere (its lease was lost, or it was deleted); nothing published"
                    );
                    return "canceled";
                }
                Err(PublishFailure::Media(failure)) => {
                    return self.publish_failed(lease, failure).await;
                }
                Err(PublishFailure::Store(error))
                    if error.is_transient() && started.elapsed() < RECORD_PATIENCE =>
                {
                    warn!(%error, retry_in = ?delay, "cannot record the finished job yet");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
                Err(PublishFailure::Store(error)) => {
                    warn!(%error, "cannot record the finished job; it will be encoded again");
                    let retry = Outcome::Retry {
                        delay: Duration::from_secs(5),
                        reason: "The database could not record the result.",
                    };
                    let _ = self.store.finish(&lease, retry).await;
                    return "requeued";
                }
            }
        }
    }

    /// One try: the row is changed to `ready` and, before that change commits, the ladder is
    /// renamed into `hls/<id>`, so readers see the two together. A ladder renamed under a
    /// commit that then failed is moved back, so the next try (or the job's next attempt)
    /// starts from the same state.
    async fn publish_once(
        &self,
        lease: Lease,
        encoded: &Encoded,
        ready: Outcome<'_>,
    ) -> Result<Option<Video>, PublishFailure> {
        let Some(finishing) = self.store.begin_finish(&lease, ready).await? else {
            return Ok(None);
        };
        let private = finishing.video().visibility == Visibility::Private;
        self.media
            .commit_ladder(lease.video, &encoded.ladder, private)
            .await?;
        match finishing.commit().await {
            Ok(video) => Ok(Some(video)),
            Err(error) => {
                if let Err(undo) = self
                    .media
                    .uncommit_ladder(lease.video, &encoded.ladder)
                    .await
                {
                    warn!(error = %undo, "cannot take back a ladder whose commit failed");
                }
                Err(PublishFailure::Store(error))
            }
        }
    }

    /// A ladder that could not be written: a bucket that is away or a lease that could not be
    /// confirmed sends the job back to the queue with back-off (what was staged stays
    /// invisible without its master, a ladder that grew is withdrawn by [`Encoders::settle`],
    /// and the next attempt wipes what is left as it starts); anything else fails the job.
    async fn publish_failed(&self, lease: Lease, failure: MediaError) -> &'static str {
        if failure.is_transient() || matches!(failure, MediaError::Fenced) {
            let delay = retry_delay(1);
            warn!(error = %failure, retry_in = ?delay, "the ladder could not be stored yet; back to the queue");
            let retry = Outcome::Retry {
                delay,
                reason: "The media store could not be reached.",
            };
            return match self.store.finish(&lease, retry).await {
                Ok(Some(_)) => {
                    self.bus
                        .publish(lease.video, JobEvent::Status(VideoStatus::Queued));
                    "requeued"
                }
                Ok(None) => "lease_lost",
                Err(error) => {
                    warn!(%error, "cannot requeue; the lease will expire and requeue it");
                    "requeued"
                }
            };
        }
        error!(error = %failure, "the ladder could not be published");
        let error = JobError {
            code: "publish_failed".into(),
            message: "The encoded video could not be stored on the server.".into(),
        };
        self.fail(lease, &error).await;
        "failed"
    }

    async fn fail(&self, lease: Lease, error: &JobError) {
        match patiently(|| self.store.finish(&lease, Outcome::Failed(error))).await {
            Ok(Some(video)) => {
                self.bus
                    .publish(lease.video, JobEvent::Failed(Arc::new(video)));
            }
            Ok(None) => {
                warn!(
                    "the job ended elsewhere (its lease was lost, or it was deleted); nothing recorded"
                )
            }
            Err(db) => {
                warn!(error = %db, "cannot record the failure; the lease will retry the job")
            }
        }
    }
}
