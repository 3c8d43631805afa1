//! Progress and cancel between processes.
//!
//! Every process has a [`Node`]: its SSE hub (for API nodes), the wake-up of its idle encoders
//! and the registry of the jobs it runs. The [`Bus`] carries signals to every node: in one
//! process ([`local::LocalBus`]) by calling the node directly; across machines
//! ([`notify::PgBus`]) over PostgreSQL `LISTEN/NOTIFY`, where each node's listener delivers
//! what it hears to its own [`Node`]. No home-made cluster protocol.

pub mod local;
pub mod notify;

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use futures_util::future::BoxFuture;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::domain::VideoId;
use crate::progress::{Hub, JobEvent};

/// A job running in this process.
#[derive(Clone)]
pub struct RunningJob {
    /// Cancelled by a delete (or by shutdown, through the parent token).
    pub cancel: CancellationToken,
    /// Cancelled once the job's ffmpeg is gone and its files are settled.
    pub finished: CancellationToken,
}

/// What one process exposes to the bus.
#[derive(Default)]
pub struct Node {
    /// Fans events out to this process's SSE subscribers.
    pub hub: Arc<Hub>,
    /// Wakes one idle encoder of this process.
    pub wake: Notify,
    /// Jobs this process runs, by video.
    pub running: DashMap<VideoId, RunningJob>,
}

impl Node {
    pub fn new(hub: Arc<Hub>) -> Arc<Self> {
        Arc::new(Self {
            hub,
            wake: Notify::new(),
            running: DashMap::new(),
        })
    }

    /// Stops a job if this process runs it and waits (at most `wait`) until its ffmpeg is gone.
    /// `false` when the job does not run here.
    pub async fn stop_local(&self, video: VideoId, wait: Duration) -> bool {
        let Some(job) = self.running.get(&video).map(|entry| entry.value().clone()) else {
            return false;
        };
        job.cancel.cancel();
        if tokio::time::timeout(wait, job.finished.cancelled())
            .await
            .is_err()
        {
            tracing::warn!(video.id = %video, "job did not stop within {wait:?}");
        }
        true
    }
}

/// Signals to every process of the deployment.
pub trait Bus: Send + Sync {
    /// Sends a job event to the SSE subscribers of every API node. Never blocks: under
    /// pressure, progress events may be dropped (the next one carries the current state);
    /// terminal states are durable in the row anyway.
    fn publish(&self, video: VideoId, event: JobEvent);

    /// A job was queued or requeued: wakes an idle encoder somewhere.
    fn wake_workers(&self);

    /// Stops `video`'s job on whichever process runs it and resolves once its ffmpeg is gone
    /// (`true`), or after `wait` without a confirmation (`false`: nobody ran it, or the worker
    /// is unreachable — its next fenced write will fail and it will stop then).
    fn cancel(&self, video: VideoId, wait: Duration) -> BoxFuture<'_, bool>;

    /// Engine name for logs and `/metrics` (`local` or `postgres`).
    fn name(&self) -> &'static str;
}
