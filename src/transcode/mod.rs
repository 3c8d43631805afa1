//! The encoder pool: a fixed number of workers, apart from request handling, that each claim a
//! job, probe the source, plan the ladder, run one ffmpeg for every rung, and publish.
//!
//! Workers are supervised: a job runs in its own task, so a panic fails that job with a
//! reason and the worker goes on. A claimed job holds a lease renewed by a heartbeat; every
//! write of the job is fenced by the lease's token (see `store::jobs`).

pub mod ffmpeg;
pub mod ladder;
pub mod master;
pub mod plan;
pub mod playlist;
pub mod probe;
pub mod supervise;
pub mod tools;

mod fence;
mod job;
pub mod live;
mod outputs;
mod settle;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::bus::{Bus, Node, RunningJob};
use crate::config::{Config, LadderSpec};
use crate::domain::{JobError, VideoId};
use crate::media::Media;
use crate::progress::JobEvent;
use crate::store::{Claim, Lease, Outcome, Store};
use crate::telemetry;
use job::JobFailure;

/// How often a worker looks at the queue when nothing woke it (a safety net: new jobs wake
/// workers at once through the bus).
const IDLE_POLL: Duration = Duration::from_secs(2);
/// Failed attempts (passing faults of the job itself) before a job fails for good.
const MAX_ATTEMPTS: u32 = 3;
/// Interruptions (the process running the job died) before a job is taken for a poison input.
const MAX_INTERRUPTIONS: u32 = 5;

/// Encoding settings taken from the configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub ffmpeg: PathBuf,
    pub ffprobe: PathBuf,
    pub ladder: LadderSpec,
    pub audio_kbps: u32,
    pub preset: String,
    pub segment_seconds: u32,
    pub stall_timeout: Duration,
    pub nice: i32,
    pub limits: probe::InputLimits,
    /// The encode is stopped when free space falls below a quarter of this.
    pub min_free_bytes: u64,
    /// A claim is the worker's for this long unless renewed; renewed every sixth of it.
    pub lease: Duration,
    /// `--property` expressions, evaluated again once the source is probed.
    pub properties: Arc<crate::properties::Properties>,
}

impl From<&Config> for Settings {
    fn from(config: &Config) -> Self {
        Self {
            ffmpeg: config.ffmpeg.clone(),
            ffprobe: config.ffprobe.clone(),
            ladder: config.ladder.clone(),
            audio_kbps: config.audio_kbps,
            preset: config.x264_preset.clone(),
            segment_seconds: config.segment_seconds,
            stall_timeout: config.stall_timeout(),
            nice: config.ffmpeg_nice,
            limits: config.input_limits(),
            min_free_bytes: config.min_free_bytes,
            lease: Duration::from_secs(config.lease_secs),
            properties: Arc::new(crate::properties::Properties::new(
                config.properties.properties.clone(),
            )),
        }
    }
}

/// The pool and what its workers share.
pub struct Encoders {
    store: Store,
    media: Media,
    bus: Arc<dyn Bus>,
    node: Arc<Node>,
    settings: Settings,
    busy: AtomicUsize,
    /// This process's name in leases and history (`host:pid`).
    worker: String,
}

/// Removes a job from the running registry and releases its slot however the job ends,
/// a panic included.
struct RunningGuard<'a> {
    pool: &'a Encoders,
    video: VideoId,
    job: RunningJob,
    heartbeat: JoinHandle<()>,
}

impl Drop for RunningGuard<'_> {
    fn drop(&mut self) {
        self.heartbeat.abort();
        self.pool.busy.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(telemetry::ENCODERS_BUSY).decrement(1.0);
        self.pool.node.running.remove(&self.video);
        self.job.finished.cancel();
    }
}

impl Encoders {
    pub fn new(
        store: Store,
        media: Media,
        bus: Arc<dyn Bus>,
        node: Arc<Node>,
        settings: Settings,
    ) -> Arc<Self> {
        let host = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        Arc::new(Self {
            store,
            media,
            bus,
            node,
            settings,
            busy: AtomicUsize::new(0),
            worker: format!("{host}:{}", std::process::id()),
        })
    }

    /// Starts `count` workers; they stop (returning running jobs to the queue) when `shutdown`
    /// is cancelled.
    pub fn spawn(
        self: &Arc<Self>,
        count: usize,
        shutdown: &CancellationToken,
    ) -> Vec<JoinHandle<()>> {
        (0..count)
            .map(|n| {
                let pool = self.clone();
                let shutdown = shutdown.clone();
                tokio::spawn(async move { pool.worker(n, shutdown).await })
            })
            .collect()
    }

    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    async fn worker(self: Arc<Self>, n: usize, shutdown: CancellationToken) {
        info!(worker = n, "encoder started");
        let mut backoff = Duration::from_millis(500);
        while !shutdown.is_cancelled() {
            match self.store.claim(&self.worker, self.settings.lease).await {
                Ok(Some(claim)) => {
                    backoff = Duration::from_millis(500);
                    let lease = claim.lease;
                    let span =
                        info_span!("job", video.id = %lease.video, lease = lease.token, worker = n);
                    let pool = self.clone();
                    let stop = shutdown.clone();
                    // Its own task: a panic ends the job, not this worker.
                    let job = tokio::spawn(
                        async move { pool.run_job(claim, &stop).await }.instrument(span),
                    );
                    if let Err(join) = job.await
                        && join.is_panic()
                    {
                        self.after_panic(lease).await;
                    }
                }
                Ok(None) => {
                    tokio::select! {
                        () = self.node.wake.notified() => {}
                        () = tokio::time::sleep(IDLE_POLL) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
                Err(error) => {
                    warn!(%error, retry_in = ?backoff, "cannot claim a job");
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shutdown.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        info!(worker = n, "encoder stopped");
    }

    async fn run_job(&self, claim: Claim, shutdown: &CancellationToken) {
        let Claim { video, lease, .. } = claim;
        let job = RunningJob {
            cancel: shutdown.child_token(),
            finished: CancellationToken::new(),
        };
        self.node.running.insert(lease.video, job.clone());
        self.busy.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(telemetry::ENCODERS_BUSY).increment(1.0);
        let lost = CancellationToken::new();
        let _guard = RunningGuard {
            pool: self,
            video: lease.video,
            heartbeat: self.heartbeat(lease, job.cancel.clone(), lost.clone()),
            job: job.clone(),
        };
        let started = Instant::now();
        info!(
            attempts = video.attempts,
            interruptions = video.interruptions,
            "job claimed"
        );
        self.bus.publish(
            lease.video,
            JobEvent::Status(crate::domain::VideoStatus::Processing),
        );
        self.queue_changed().await;

        let outcome = if video.attempts >= MAX_ATTEMPTS {
            let last = match self.store.last_retry_reason(lease.video).await {
                Ok(Some(reason)) => reason,
                Ok(None) | Err(_) => video
                    .error
                    .as_ref()
                    .map_or_else(|| "an unknown error.".to_owned(), |e| e.message.clone()),
            };
            Err(job::fatal(
                "too_many_attempts",
                format!("Processing failed {MAX_ATTEMPTS} times; the last attempt: {last}"),
            ))
        } else if video.interruptions >= MAX_INTERRUPTIONS {
            Err(job::fatal(
                "interrupted_too_often",
                format!(
                    "Processing this file was interrupted {} times by the server stopping; \
                     it may be crashing the server, so it was not tried again.",
                    video.interruptions
                ),
            ))
        } else {
            self.process(&video, lease, &job.cancel).await
        };
        let outcome = match outcome {
            Err(JobFailure::Canceled) if lost.is_cancelled() => Err(JobFailure::LeaseLost),
            Err(JobFailure::Canceled) if shutdown.is_cancelled() => Err(JobFailure::Interrupted),
            other => other,
        };
        let label = self.settle(lease, video.attempts, outcome).await;
        let elapsed = started.elapsed().as_secs_f64();
        metrics::counter!(telemetry::JOBS, "outcome" => label).increment(1);
        metrics::histogram!(telemetry::JOB_DURATION, "outcome" => label).record(elapsed);
        info!(outcome = label, seconds = elapsed, "job ended");
    }

    /// Renews the lease while the job runs. A lease found taken (deleted, or claimed by another
    /// worker after it expired) stops the job at once; a database that is away is retried, and
    /// the job goes on meanwhile.
    fn heartbeat(
        &self,
        lease: Lease,
        cancel: CancellationToken,
        lost: CancellationToken,
    ) -> JoinHandle<()> {
        let store = self.store.clone();
        let every = self.settings.lease / 6;
        let duration = self.settings.lease;
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(200)));
            tick.tick().await;
            loop {
                tick.tick().await;
                match store.renew(&lease, duration).await {
                    Ok(true) => {}
                    Ok(false) => {
                        warn!(video.id = %lease.video, "lease lost; stopping the job");
                        lost.cancel();
                        cancel.cancel();
                        return;
                    }
                    Err(error) => {
                        warn!(video.id = %lease.video, %error, "cannot renew the lease; retrying")
                    }
                }
            }
        })
    }

    /// A job's task panicked: fail it with a reason (the worker goes on).
    async fn after_panic(&self, lease: Lease) {
        error!(video.id = %lease.video, "a job panicked; failing it");
        live::withdraw(self.media.as_ref(), lease).await;
        let error = JobError {
            code: "internal_error".into(),
            message: "An internal error stopped the processing of this video; it was logged for \
                      the operators."
                .into(),
        };
        match self.store.finish(&lease, Outcome::Failed(&error)).await {
            Ok(Some(video)) => {
                self.bus
                    .publish(lease.video, JobEvent::Failed(Arc::new(video)));
            }
            Ok(None) => {}
            Err(error) => warn!(%error, "cannot record the failure; the lease will expire"),
        }
        let _ = self.media.work().remove_job_workdirs(lease.video);
        metrics::counter!(telemetry::JOBS, "outcome" => "failed").increment(1);
    }

    /// Tells subscribers of queued videos their new place in the queue.
    pub async fn queue_changed(&self) {
        publish_queue_positions(&self.store, self.bus.as_ref()).await;
    }
}

/// Publishes every queued video's position (the first 200) and the queue depth gauge.
pub async fn publish_queue_positions(store: &Store, bus: &dyn Bus) {
    let Ok(snapshot) = store.queue_snapshot(200).await else {
        return;
    };
    if let Ok(depth) = store.queued_count().await {
        metrics::gauge!(telemetry::QUEUE_DEPTH).set(f64::from(depth));
    }
    for (index, id) in snapshot.order.iter().enumerate() {
        let mut update = crate::progress::ProgressUpdate::new(
            crate::domain::VideoStatus::Queued,
            crate::domain::Step::Queued,
            0.0,
        );
        update.queue_position = u32::try_from(index + 1).ok();
        bus.publish(*id, JobEvent::Progress(update));
    }
}
