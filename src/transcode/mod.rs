//! The encoder pool: a fixed number of workers, apart from request handling, that each claim a
//! job, probe the source, plan the ladder, run one ffmpeg for every rung, and publish.

pub mod ffmpeg;
pub mod ladder;
pub mod playlist;
pub mod probe;

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
use crate::domain::{JobError, Rendition, SourceInfo, Step, VideoId, VideoStatus};
use crate::media::{MediaError, MediaRoot};
use crate::progress::{Hub, JobEvent, ProgressUpdate};
use crate::queue::{QueueError, Store, Video};
use crate::telemetry;
use ffmpeg::{EncodePlan, FfmpegError, RunLimits};
use playlist::{PlaylistError, WrittenRung};
use probe::{Probe, ProbeError};

/// A claimed job is the worker's for this long unless its heartbeat renews it.
const LEASE: Duration = Duration::from_secs(60);
const HEARTBEAT: Duration = Duration::from_secs(10);
/// How often a worker looks at the queue when nothing woke it.
const IDLE_POLL: Duration = Duration::from_secs(2);
/// Progress is written to the database at most this often (SSE gets every tick).
const PERSIST_EVERY: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_ATTEMPTS: u32 = 3;

/// Share of the job's progress bar taken by each step.
const PROBED: f64 = 0.02;
const ENCODED: f64 = 0.95;

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

/// How a job ended when it did not end ready.
#[derive(Debug)]
enum JobFailure {
    /// The input or the encode is broken: fail now with a readable reason.
    Fatal(JobError),
    /// A hiccup (database, I/O): put the job back in the queue.
    Retryable(String),
    /// Deleted while running: the delete cleans up.
    Canceled,
    /// The server is shutting down: back to the queue.
    Interrupted,
}

fn fatal(code: &str, message: impl Into<String>) -> JobFailure {
    JobFailure::Fatal(JobError {
        code: code.into(),
        message: message.into(),
    })
}

impl From<ProbeError> for JobFailure {
    fn from(error: ProbeError) -> Self {
        match &error {
            ProbeError::Spawn { .. } => JobFailure::Retryable(error.to_string()),
            ProbeError::Timeout(_) => fatal(
                "probe_timeout",
                format!("Reading the file took too long: {error}."),
            ),
            ProbeError::NoVideo => fatal(
                "no_video_stream",
                "The file has no video stream (is it audio only?).",
            ),
            ProbeError::NoSize => fatal("no_video_size", "The video stream has no picture size."),
            ProbeError::NoDuration => fatal(
                "unknown_duration",
                "The file's duration is unknown: it may be truncated.",
            ),
            ProbeError::Unreadable(reason) => fatal(
                "unreadable_source",
                format!("The file could not be read as a video ({reason})."),
            ),
        }
    }
}

impl From<QueueError> for JobFailure {
    fn from(error: QueueError) -> Self {
        JobFailure::Retryable(format!("database: {error}"))
    }
}

impl From<MediaError> for JobFailure {
    fn from(error: MediaError) -> Self {
        if error.is_out_of_space() {
            fatal(
                "insufficient_storage",
                "The media volume ran out of space while processing.",
            )
        } else {
            JobFailure::Retryable(error.to_string())
        }
    }
}

impl From<PlaylistError> for JobFailure {
    fn from(error: PlaylistError) -> Self {
        fatal(
            "publish_failed",
            format!("The encoded ladder is incomplete: {error}."),
        )
    }
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

    /// Records the outcome and tells subscribers; returns the metric label.
    async fn settle(
        &self,
        id: VideoId,
        attempts: u32,
        outcome: Result<Vec<Rendition>, JobFailure>,
        shutdown: &CancellationToken,
    ) -> &'static str {
        let failure = match outcome {
            Ok(renditions) => match self.store.complete(id, &renditions).await {
                Ok(Some(video)) => {
                    self.hub.publish(id, JobEvent::Ready(Arc::new(video)));
                    return "ready";
                }
                // Deleted while publishing: the published folder must not outlive the row.
                Ok(None) => JobFailure::Canceled,
                Err(error) => error.into(),
            },
            Err(JobFailure::Canceled) if shutdown.is_cancelled() => JobFailure::Interrupted,
            Err(failure) => failure,
        };
        match failure {
            JobFailure::Fatal(error) => {
                warn!(code = %error.code, reason = %error.message, "job failed");
                let _ = self.media.remove_video_outputs(id);
                match self.store.fail(id, &error).await {
                    Ok(Some(video)) => {
                        self.hub.publish(id, JobEvent::Failed(Arc::new(video)));
                    }
                    Ok(None) => {}
                    Err(db) => {
                        warn!(error = %db, "cannot record the failure; the lease will retry the job")
                    }
                }
                "failed"
            }
            JobFailure::Canceled => {
                let _ = self.media.remove_video(id);
                "canceled"
            }
            JobFailure::Interrupted | JobFailure::Retryable(_) => {
                let (delay, count_attempt) = match &failure {
                    JobFailure::Retryable(reason) => {
                        let delay = retry_delay(attempts);
                        warn!(%reason, retry_in = ?delay, "job hit a passing error; back to the queue");
                        (delay, true)
                    }
                    _ => (Duration::ZERO, false),
                };
                let _ = self.media.remove_video_outputs(id);
                match self.store.requeue(id, delay, count_attempt).await {
                    Ok(true) => {
                        self.hub.publish(id, JobEvent::Status(VideoStatus::Queued));
                        self.wake();
                    }
                    Ok(false) => {}
                    Err(error) => {
                        warn!(%error, "cannot requeue; the lease will expire and requeue it")
                    }
                }
                "requeued"
            }
        }
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

    fn report(&self, id: VideoId, step: Step, progress: f64) {
        self.hub.publish(
            id,
            JobEvent::Progress(ProgressUpdate::new(VideoStatus::Processing, step, progress)),
        );
    }

    async fn process(
        &self,
        video: &Video,
        cancel: &CancellationToken,
    ) -> Result<Vec<Rendition>, JobFailure> {
        let id = video.id;
        self.hub
            .publish(id, JobEvent::Status(VideoStatus::Processing));
        self.report(id, Step::Probing, 0.0);
        // A rerun after a crash starts from scratch.
        self.media.remove_video_outputs(id)?;

        let source_path = self.media.source_path(id);
        let probed = tokio::select! {
            probed = probe::probe(&self.settings.ffprobe, &source_path, PROBE_TIMEOUT) => probed?,
            () = cancel.cancelled() => return Err(JobFailure::Canceled),
        };
        let source = source_info(&probed, video.source_size);
        self.store.record_source(id, &source).await?;
        self.settings
            .limits
            .check(&probed)
            .map_err(|reason| fatal("input_too_large", reason))?;
        info!(
            width = source.width,
            height = source.height,
            duration = source.duration,
            "probed"
        );

        let workdir = self.media.job_workdir(id)?;
        let ladder_dir = workdir.path().join("ladder");
        let plan = self.plan(&probed, source_path, ladder_dir.clone());
        std::fs::create_dir_all(&ladder_dir).map_err(|source| MediaError::Io {
            path: ladder_dir.clone(),
            source,
        })?;
        self.store
            .record_progress(id, Step::Encoding, PROBED)
            .await?;
        self.report(id, Step::Encoding, PROBED);

        self.encode(id, &plan, probed.duration, cancel).await?;
        if cancel.is_cancelled() {
            return Err(JobFailure::Canceled);
        }

        self.report(id, Step::Publishing, ENCODED);
        self.store
            .record_progress(id, Step::Publishing, ENCODED)
            .await?;
        let poster = ladder_dir.join("poster.jpg");
        let poster_args = ffmpeg::poster_args(&plan, probed.duration, &poster);
        if let Err(error) = ffmpeg::run(
            &self.settings.ffmpeg,
            &poster_args,
            self.limits(10.0),
            cancel,
            |_| {},
        )
        .await
        {
            if cancel.is_cancelled() {
                return Err(JobFailure::Canceled);
            }
            warn!(%error, "no poster");
        }

        let written = tokio::task::spawn_blocking({
            let plan = plan.clone();
            move || write_ladder(&plan)
        })
        .await
        .map_err(|join| JobFailure::Retryable(join.to_string()))?
        .map_err(|failure| {
            if self.ran_out_of_space("") {
                full_disk()
            } else {
                failure
            }
        })?;
        if cancel.is_cancelled() {
            return Err(JobFailure::Canceled);
        }
        self.media.publish(&ladder_dir, id)?;
        drop(workdir);
        Ok(written
            .iter()
            .map(|w| Rendition {
                name: w.rung.name.clone(),
                width: w.rung.width,
                height: w.rung.height,
                bandwidth: w.peak_bps,
                average_bandwidth: w.average_bps,
                codecs: w.codecs.clone(),
                playlist: format!("/hls/{id}/{}/index.m3u8", w.rung.name),
            })
            .collect())
    }

    /// Whether a failure is most likely a full media volume (ffmpeg does not always say so).
    fn ran_out_of_space(&self, log: &str) -> bool {
        log.contains("No space left")
            || self
                .media
                .free_bytes()
                .map(|free| free < 4 << 20)
                .unwrap_or(false)
    }

    fn plan(&self, probed: &Probe, source: PathBuf, out_dir: PathBuf) -> EncodePlan {
        let (width, height) = probed.video.display_size();
        EncodePlan {
            source,
            out_dir,
            rungs: ladder::plan(width, height, &self.settings.ladder),
            frame_rate: ffmpeg::output_frame_rate(probed),
            video_index: probed.video.index,
            audio_index: probed.audio.as_ref().map(|a| a.index),
            audio_kbps: self.settings.audio_kbps,
            dynamic: probed.video.dynamic,
            segment_seconds: self.settings.segment_seconds,
            preset: self.settings.preset.clone(),
        }
    }

    fn limits(&self, source_seconds: f64) -> RunLimits {
        // Generous: a 1-core ARM box encoding 1080p runs well below real time.
        let total = Duration::from_secs_f64(source_seconds.max(1.0) * 20.0 + 300.0);
        RunLimits {
            stall: self.settings.stall_timeout,
            total,
            nice: self.settings.nice,
        }
    }

    async fn encode(
        &self,
        id: VideoId,
        plan: &EncodePlan,
        duration: f64,
        cancel: &CancellationToken,
    ) -> Result<(), JobFailure> {
        let args = ffmpeg::ladder_args(plan);
        let started = Instant::now();
        let mut last_persist = Instant::now();
        let mut to_persist: Option<f64> = None;
        let result = ffmpeg::run(
            &self.settings.ffmpeg,
            &args,
            self.limits(duration),
            cancel,
            |sample| {
                let done = (sample.out_time.as_secs_f64() / duration).clamp(0.0, 1.0);
                let mut update = ProgressUpdate::new(
                    VideoStatus::Processing,
                    Step::Encoding,
                    PROBED + (ENCODED - PROBED) * done,
                );
                update.fps = sample.fps.filter(|fps| *fps > 0.0);
                update.speed = sample.speed;
                update.eta_seconds = eta(
                    started.elapsed().as_secs_f64(),
                    done,
                    sample.speed,
                    duration,
                );
                if last_persist.elapsed() >= PERSIST_EVERY {
                    last_persist = Instant::now();
                    to_persist = Some(update.progress);
                }
                self.hub.publish(id, JobEvent::Progress(update));
            },
        )
        .await;
        if let Some(progress) = to_persist {
            let _ = self
                .store
                .record_progress(id, Step::Encoding, progress)
                .await;
        }
        match result {
            Ok(()) => Ok(()),
            Err(FfmpegError::Canceled) => Err(JobFailure::Canceled),
            Err(error @ FfmpegError::Spawn { .. }) => Err(JobFailure::Retryable(error.to_string())),
            Err(FfmpegError::Stalled(after)) => Err(fatal(
                "encode_stalled",
                format!(
                    "Encoding made no progress for {} s and was stopped.",
                    after.as_secs()
                ),
            )),
            Err(FfmpegError::TimedOut(after)) => Err(fatal(
                "encode_timeout",
                format!(
                    "Encoding took longer than its limit of {} s.",
                    after.as_secs()
                ),
            )),
            Err(FfmpegError::Failed { status, log }) => {
                if self.ran_out_of_space(&log) {
                    return Err(full_disk());
                }
                if status.contains("signal: 9") {
                    return Err(fatal(
                        "encode_killed",
                        "ffmpeg was killed by the system, most likely for lack of memory; \
                         try fewer encoders or a smaller ladder.",
                    ));
                }
                let reason = if log.is_empty() {
                    status
                } else {
                    log.chars().take(400).collect()
                };
                Err(fatal(
                    "encode_failed",
                    format!("The video could not be decoded or encoded: {reason}"),
                ))
            }
        }
    }
}

fn full_disk() -> JobFailure {
    fatal(
        "insufficient_storage",
        "The media volume ran out of space while processing.",
    )
}

/// Exponential back-off before a retry: 5 s, 20 s, 80 s, … capped at 10 minutes.
fn retry_delay(attempts: u32) -> Duration {
    let exponent = attempts.saturating_sub(1).min(6);
    Duration::from_secs(5 * 4_u64.pow(exponent)).min(Duration::from_secs(600))
}

/// Seconds left: from ffmpeg's speed when it reports one, else from elapsed time.
fn eta(elapsed: f64, done: f64, speed: Option<f64>, duration: f64) -> Option<f64> {
    let seconds = match speed {
        Some(speed) if speed > 0.01 => duration * (1.0 - done) / speed,
        _ if done > 0.01 => elapsed / done * (1.0 - done),
        _ => return None,
    };
    Some(seconds.max(0.0).ceil())
}

fn source_info(probed: &Probe, size: u64) -> SourceInfo {
    let (width, height) = probed.video.display_size();
    SourceInfo {
        size,
        duration: (probed.duration * 1000.0).round() / 1000.0,
        width,
        height,
        video_codec: probed.video.codec.clone(),
        audio_codec: probed.audio.as_ref().map(|a| a.codec.clone()),
        frame_rate: probed
            .video
            .frame_rate
            .map(|r| (r.as_f64() * 1000.0).round() / 1000.0),
    }
}

/// Measures every rung and writes the master playlist (blocking file I/O).
fn write_ladder(plan: &EncodePlan) -> Result<Vec<WrittenRung>, JobFailure> {
    let has_audio = plan.audio_index.is_some();
    let written = plan
        .rungs
        .iter()
        .map(|rung| playlist::inspect_rung(&plan.out_dir.join(&rung.name), rung, has_audio))
        .collect::<Result<Vec<_>, _>>()?;
    playlist::write_master(
        &plan.out_dir.join("master.m3u8"),
        &written,
        plan.frame_rate.as_f64(),
    )?;
    for entry in walk(&plan.out_dir) {
        if let Ok(file) = std::fs::File::open(&entry) {
            let _ = file.sync_all();
        }
    }
    Ok(written)
}

fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
    }
    files
}
