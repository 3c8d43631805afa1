//! One job from claim to its end: probe, plan, encode, publish, and how each failure is recorded.

use std::path::PathBuf;

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::ffmpeg::{self, EncodePlan, FfmpegError, RunLimits};
use super::playlist::PlaylistError;
use super::probe::{self, Probe, ProbeError};
use super::{Encoders, outputs, plan};
use crate::domain::Video;
use crate::domain::{JobError, Rendition, SourceInfo, Step, VideoId, VideoStatus};
use crate::media::MediaError;
use crate::progress::{JobEvent, ProgressUpdate};
use crate::store::{Lease, StoreError};

/// Progress is written to the database at most this often (SSE gets every tick).
const PERSIST_EVERY: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);

/// Share of the job's progress bar taken by each step.
const PROBED: f64 = 0.02;
const ENCODED: f64 = 0.95;

/// A ladder encoded in its work folder, not yet published.
pub(super) struct Encoded {
    /// Removed on drop: whatever is not published goes with it.
    pub _workdir: tempfile::TempDir,
    pub ladder: PathBuf,
    pub renditions: Vec<Rendition>,
    /// Wall time from probe to a written ladder.
    pub encode_seconds: f64,
}

/// How a job ended when it did not end ready.
#[derive(Debug)]
pub(super) enum JobFailure {
    /// The input or the encode is broken: fail now with a readable reason.
    Fatal(JobError),
    /// A hiccup (database, I/O): put the job back in the queue. The text is for the log only
    /// (it may name server paths); the history says [`PASSING_FAULT`].
    Retryable(String),
    /// ffmpeg or ffprobe could not be started (removed or broken after start-up): put the job
    /// back in the queue, saying which tool in public words; `detail` goes to the log only.
    ToolUnavailable { tool: &'static str, detail: String },
    /// Deleted while running: the delete cleans up.
    Canceled,
    /// The server is shutting down: back to the queue.
    Interrupted,
    /// Another worker holds the job now (this one's lease expired): touch nothing.
    LeaseLost,
}

/// What the history (public) says about a [`JobFailure::Retryable`] attempt.
pub(super) const PASSING_FAULT: &str =
    "A passing problem on the server (database or storage); it will be tried again.";

impl JobFailure {
    /// The plain-words reason a retried attempt records (history, and the message of a job
    /// that runs out of attempts): never a path or a tool's raw output.
    pub(super) fn public_reason(&self) -> String {
        match self {
            JobFailure::ToolUnavailable { tool, .. } => format!(
                "The server's {tool} could not be started; an administrator must fix the installation."
            ),
            _ => PASSING_FAULT.to_owned(),
        }
    }
}

pub(super) fn fatal(code: &str, message: impl Into<String>) -> JobFailure {
    JobFailure::Fatal(JobError {
        code: code.into(),
        message: message.into(),
    })
}

/// Plain words for a creator; the tool's own text goes to the log (the job span carries the
/// video id), never into the public message.
impl From<ProbeError> for JobFailure {
    fn from(error: ProbeError) -> Self {
        if !matches!(error, ProbeError::Limit(_)) {
            warn!(%error, "the source could not be probed");
        }
        match error {
            ProbeError::Spawn { tool, .. } => JobFailure::ToolUnavailable {
                tool,
                detail: error.to_string(),
            },
            ProbeError::Timeout(_) => fatal(
                "probe_timeout",
                "Reading the file took too long; it may be damaged.",
            ),
            ProbeError::NoVideo => fatal(
                "no_video_stream",
                "The file has no video stream (is it audio only?).",
            ),
            ProbeError::NoSize => fatal("no_video_size", "The video stream has no picture size."),
            ProbeError::NoPictures => fatal(
                "unreadable_source",
                "The file has a video stream but no pictures in it.",
            ),
            ProbeError::Truncated { declared, found } => fatal(
                "truncated_source",
                format!(
                    "The file is incomplete: it says it lasts {declared:.1} s, but only the \
                     first {found:.1} s are in it. Upload the complete file again."
                ),
            ),
            ProbeError::Unreadable(_) => fatal(
                "unreadable_source",
                "The file could not be read as a video: it is damaged, incomplete, or in a \
                 format this server does not read.",
            ),
            ProbeError::Limit(reason) => fatal("input_too_large", reason),
        }
    }
}

impl From<StoreError> for JobFailure {
    fn from(error: StoreError) -> Self {
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
        warn!(%error, "the encoded ladder cannot be published");
        fatal(
            "publish_failed",
            "The encoded video could not be published; please try again.",
        )
    }
}

impl Encoders {
    fn report(&self, id: VideoId, step: Step, progress: f64) {
        self.bus.publish(
            id,
            JobEvent::Progress(ProgressUpdate::new(VideoStatus::Processing, step, progress)),
        );
    }

    /// Probes, plans and encodes a claimed job into a ladder in its work folder, ready to be
    /// published by [`Encoders::settle`](super::Encoders) once the outcome is committed.
    pub(super) async fn process(
        &self,
        video: &Video,
        lease: Lease,
        cancel: &CancellationToken,
    ) -> Result<Encoded, JobFailure> {
        let id = video.id;
        let started = Instant::now();
        fault_injection::panic_if_asked(video.title.as_deref());
        self.report(id, Step::Probing, 0.0);
        // A rerun after a crash starts from scratch.
        self.media.remove_outputs(id).await?;

        // Kept until the encode is over: a bucket's source is a downloaded copy.
        let source = tokio::select! {
            fetched = self.media.fetch_source(id) => fetched?,
            () = cancel.cancelled() => return Err(JobFailure::Canceled),
        };
        let source_path = source.path.clone();
        let probed = tokio::select! {
            probed = probe::probe(self.tools(), &self.settings.limits, &source_path, PROBE_TIMEOUT) => probed?,
            () = cancel.cancelled() => return Err(JobFailure::Canceled),
        };
        let source = source_info(&probed, video.source_size);
        // Best effort: the encode goes on while the database is away; the final commit is the
        // fence that matters.
        match self.store.record_source(&lease, &source).await {
            Ok(true) => {}
            Ok(false) => return Err(JobFailure::LeaseLost),
            Err(error) => warn!(%error, "cannot record the probe; going on"),
        }
        let document = probed.document.as_ref();
        let properties = &self.settings.properties;
        if !crate::properties::worker::after_probe(&self.store, properties, &lease, video, document)
            .await
        {
            return Err(JobFailure::LeaseLost);
        }
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

        let workdir = self.media.work().job_workdir(id)?;
        let ladder_dir = workdir.path().join("ladder");
        let plan = self.plan(&probed, source_path, ladder_dir.clone());
        // ffmpeg's HLS muxer makes the rung folders; the image muxer needs its folder made.
        let sheets_dir = ladder_dir.join(plan::storyboard::DIR);
        std::fs::create_dir_all(&sheets_dir).map_err(|source| MediaError::Io {
            path: sheets_dir,
            source,
        })?;
        self.persist_progress(lease, Step::Encoding, PROBED).await;
        self.report(id, Step::Encoding, PROBED);

        // The poster comes from its own short ffmpeg, run alongside the ladder so it adds no
        // wall time to the job; a missing poster does not fail the job.
        let poster = ladder_dir.join("poster.jpg");
        let poster_args = ffmpeg::poster_args(&plan, &poster);
        let poster_run = ffmpeg::run(
            &self.settings.ffmpeg,
            &poster_args,
            self.limits(10.0),
            cancel,
            |_| {},
        );
        // While it encodes, the ladder grows in `hls/<id>` (see `live`).
        let encode_done = CancellationToken::new();
        let encode = async {
            let encoded = self.encode(lease, &plan, probed.duration, cancel).await;
            encode_done.cancel();
            encoded
        };
        let (encoded, postered, ()) = tokio::join!(
            encode,
            poster_run,
            self.follow_live(video, lease, &plan, &encode_done)
        );
        encoded?;
        if cancel.is_cancelled() {
            return Err(JobFailure::Canceled);
        }
        if let Err(error) = postered {
            warn!(%error, "no poster");
        }

        self.report(id, Step::Publishing, ENCODED);
        self.persist_progress(lease, Step::Publishing, ENCODED)
            .await;
        let written = tokio::task::spawn_blocking({
            let plan = plan.clone();
            move || outputs::write_ladder(&plan)
        })
        .await
        .map_err(|join| JobFailure::Retryable(join.to_string()))?
        .map_err(JobFailure::from)
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
        drop(source);
        Ok(Encoded {
            _workdir: workdir,
            ladder: ladder_dir,
            renditions: written.renditions(id),
            encode_seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// Records progress, best effort: a database that is away does not stop the encode, and a
    /// lost lease is the heartbeat's to notice.
    async fn persist_progress(&self, lease: Lease, step: Step, progress: f64) {
        if let Err(error) = self.store.record_progress(&lease, step, progress).await {
            warn!(%error, "cannot record progress; going on");
        }
    }

    /// Whether a failure is most likely a full media volume (ffmpeg does not always say so).
    fn ran_out_of_space(&self, log: &str) -> bool {
        log.contains("No space left")
            || self
                .media
                .work()
                .free_bytes()
                .map(|free| free < 4 << 20)
                .unwrap_or(false)
    }

    fn plan(&self, probed: &Probe, source: PathBuf, out_dir: PathBuf) -> EncodePlan {
        plan::build(probed, &self.settings, source, out_dir)
    }

    fn tools(&self) -> probe::Tools<'_> {
        probe::Tools {
            ffprobe: &self.settings.ffprobe,
            ffmpeg: &self.settings.ffmpeg,
            nice: self.settings.nice,
            stall: self.settings.stall_timeout,
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
        lease: Lease,
        plan: &EncodePlan,
        duration: f64,
        cancel: &CancellationToken,
    ) -> Result<(), JobFailure> {
        let args = ffmpeg::ladder_args(plan);
        let started = Instant::now();
        let mut last_persist = Instant::now();
        // Stops the encode before it fills the volume that uploads and the database share.
        let low_space = cancel.child_token();
        let floor = self.settings.min_free_bytes / 4;
        let result = ffmpeg::run(
            &self.settings.ffmpeg,
            &args,
            self.limits(duration),
            &low_space,
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
                    let (store, progress) = (self.store.clone(), update.progress);
                    // Fire and forget: a late write is harmless (it is fenced by the lease and
                    // never lowers progress); a lost lease is the heartbeat's to notice.
                    tokio::spawn(async move {
                        store
                            .record_progress(&lease, Step::Encoding, progress)
                            .await
                    });
                    if floor > 0
                        && self
                            .media
                            .work()
                            .free_bytes()
                            .is_ok_and(|free| free < floor)
                    {
                        low_space.cancel();
                    }
                }
                self.bus.publish(lease.video, JobEvent::Progress(update));
            },
        )
        .await;
        if low_space.is_cancelled() && !cancel.is_cancelled() {
            return Err(full_disk());
        }
        match result {
            Ok(()) => Ok(()),
            Err(FfmpegError::Canceled) => Err(JobFailure::Canceled),
            Err(error @ FfmpegError::Spawn { .. }) => Err(JobFailure::ToolUnavailable {
                tool: "ffmpeg",
                detail: error.to_string(),
            }),
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
                warn!(%status, %log, "ffmpeg failed");
                if self.ran_out_of_space(&log) {
                    return Err(full_disk());
                }
                if status.contains("signal: 9") {
                    return Err(fatal(
                        "encode_killed",
                        "Encoding was stopped by the server, most likely for lack of memory; \
                         the operator can run fewer encoders or a smaller ladder.",
                    ));
                }
                Err(fatal(
                    "encode_failed",
                    "The video could not be decoded: the file is damaged or uses a format \
                     this server cannot process.",
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
pub(super) fn retry_delay(attempts: u32) -> Duration {
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

/// Fault injection for the supervision specs: with `REEL_FAULT_PANIC_ON_TITLE` set, a job whose
/// title equals it panics as it starts (a stand-in for a bug in the pipeline). Unset (always, in
/// production), it costs one environment lookup per job.
mod fault_injection {
    pub(super) fn panic_if_asked(title: Option<&str>) {
        if let (Ok(wanted), Some(title)) = (std::env::var("REEL_FAULT_PANIC_ON_TITLE"), title)
            && wanted == title
        {
            panic!("fault injection: REEL_FAULT_PANIC_ON_TITLE matched this job");
        }
    }
}
