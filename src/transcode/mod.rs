//! The encoder pool: a fixed number of workers, apart from request handling, that each claim a
//! job, probe the source, plan the ladder, run one ffmpeg for every rung, and publish.

pub mod ffmpeg;
pub mod ladder;
pub mod plan;
pub mod playlist;
pub mod probe;

mod job;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span, warn};

use crate::config::{Config, LadderSpec};
use crate::domain::{Step, VideoId, VideoStatus};
use crate::media::MediaRoot;
use crate::progress::{Hub, JobEvent, ProgressUpdate};
use crate::queue::{Store, Video};
use crate::telemetry;
use job::fatal;

/// A claimed job is the worker's for this long unless its heartbeat renews it.
const LEASE: Duration = Duration::from_secs(60);
const HEARTBEAT: Duration = Duration::from_secs(10);
/// How often a worker looks at the queue when nothing woke it.
const IDLE_POLL: Duration = Duration::from_secs(2);
const MAX_ATTEMPTS: u32 = 3;

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
        }
    }
}

#[derive(Clone)]
struct RunningJob {
    /// Cancelled by a delete (or by shutdown, through the parent token).
    cancel: CancellationToken,
    /// Cancelled once the job's ffmpeg is gone and its files are settled.
    finished: CancellationToken,
}

/// The pool and what its workers share.
pub struct Encoders {
    store: Store,
    media: MediaRoot,
    hub: Arc<Hub>,
    settings: Settings,
    running: DashMap<VideoId, RunningJob>,
    wake: Notify,
    busy: AtomicUsize,
}

impl Encoders {
    pub fn new(store: Store, media: MediaRoot, hub: Arc<Hub>, settings: Settings) -> Arc<Self> {
        Arc::new(Self {
            store,
            media,
            hub,
            settings,
            running: DashMap::new(),
            wake: Notify::new(),
            busy: AtomicUsize::new(0),
        })
    }

    /// Starts `count` workers; they stop (requeueing running jobs) when `shutdown` is cancelled.
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

    /// A new job is waiting: wakes one idle worker at once instead of at its next poll.
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    pub fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    /// Stops a running job and waits until its ffmpeg is gone; `false` when it was not running here.
    pub async fn cancel(&self, id: VideoId, wait: Duration) -> bool {
        let Some(job) = self.running.get(&id).map(|entry| entry.value().clone()) else {
            return false;
        };
        job.cancel.cancel();
        if tokio::time::timeout(wait, job.finished.cancelled())
            .await
            .is_err()
        {
            warn!(video.id = %id, "job did not stop within {wait:?}");
        }
        true
    }

    async fn worker(self: Arc<Self>, n: usize, shutdown: CancellationToken) {
        info!(worker = n, "encoder started");
        while !shutdown.is_cancelled() {
            match self.store.claim(LEASE).await {
                Ok(Some(video)) => {
                    let span = info_span!("job", video.id = %video.id, attempt = video.attempts, worker = n);
                    self.run_job(video, &shutdown).instrument(span).await;
                }
                Ok(None) => {
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(IDLE_POLL) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
                Err(error) => {
                    warn!(%error, "cannot claim a job; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        info!(worker = n, "encoder stopped");
    }

    async fn run_job(&self, video: Video, shutdown: &CancellationToken) {
        let id = video.id;
        let job = RunningJob {
            cancel: shutdown.child_token(),
            finished: CancellationToken::new(),
        };
        self.running.insert(id, job.clone());
        self.busy.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!(telemetry::ENCODERS_BUSY).increment(1.0);
        self.publish_queue_positions().await;
        let started = Instant::now();
        info!("job claimed");

        let heartbeat = self.heartbeat(id, job.cancel.clone());
        let outcome = if video.attempts > MAX_ATTEMPTS {
            Err(fatal(
                "too_many_attempts",
                format!("Gave up after {MAX_ATTEMPTS} attempts."),
            ))
        } else {
            self.process(&video, &job.cancel).await
        };
        heartbeat.abort();

        let label = self.settle(id, video.attempts, outcome, shutdown).await;
        let elapsed = started.elapsed().as_secs_f64();
        metrics::counter!(telemetry::JOBS, "outcome" => label).increment(1);
        metrics::histogram!(telemetry::JOB_DURATION, "outcome" => label).record(elapsed);
        info!(outcome = label, seconds = elapsed, "job ended");

        self.busy.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!(telemetry::ENCODERS_BUSY).decrement(1.0);
        self.running.remove(&id);
        job.finished.cancel();
    }

    /// Renews the lease while the job runs; cancels the job if its row disappears.
    fn heartbeat(&self, id: VideoId, cancel: CancellationToken) -> JoinHandle<()> {
        let store = self.store.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(HEARTBEAT);
            tick.tick().await;
            loop {
                tick.tick().await;
                match store.heartbeat(id, LEASE).await {
                    Ok(true) => {}
                    Ok(false) => {
                        cancel.cancel();
                        return;
                    }
                    Err(error) => warn!(video.id = %id, %error, "heartbeat failed"),
                }
            }
        })
    }

    /// Tells subscribers of queued videos their new place in the queue.
    async fn publish_queue_positions(&self) {
        if let Ok(depth) = self.store.queued_count().await {
            metrics::gauge!(telemetry::QUEUE_DEPTH).set(f64::from(depth));
        }
        let watched = self.hub.watched();
        if watched.is_empty() {
            return;
        }
        let Ok(queued) = self.store.queued_ids(10_000).await else {
            return;
        };
        for (index, id) in queued.iter().enumerate() {
            if watched.contains(id) {
                let mut update = ProgressUpdate::new(VideoStatus::Queued, Step::Queued, 0.0);
                update.queue_position = u32::try_from(index + 1).ok();
                self.hub.publish(*id, JobEvent::Progress(update));
            }
        }
    }
}
