//! Runs one ffmpeg under supervision: niced, killed with reel, stopped when it stalls, overruns
//! or is canceled; its `-progress pipe:1` blocks parsed into samples (`out_time_us` is µs, as
//! is the misnamed `out_time_ms`).

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

use ffmpeg_sidecar::command::FfmpegCommand;
use ffmpeg_sidecar::event::{FfmpegEvent, LogLevel};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// One `-progress` block.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ProgressSample {
    pub out_time: Duration,
    pub fps: Option<f64>,
    pub speed: Option<f64>,
    pub ended: bool,
}

/// Accumulates `key=value` lines of ffmpeg's `-progress` output into samples.
#[derive(Debug, Default)]
pub struct ProgressParser {
    current: ProgressSample,
}

impl ProgressParser {
    /// Feeds one line; returns a sample when the line closes a block.
    pub fn feed(&mut self, line: &str) -> Option<ProgressSample> {
        let (key, value) = line.trim().split_once('=')?;
        let value = value.trim();
        match key {
            // `out_time_ms` is really microseconds too; prefer the explicit one.
            "out_time_us" | "out_time_ms" => {
                if let Ok(us) = value.parse::<u64>() {
                    self.current.out_time = Duration::from_micros(us);
                }
            }
            "fps" => self.current.fps = value.parse().ok().filter(|f: &f64| f.is_finite()),
            "speed" => {
                self.current.speed = value
                    .trim_end_matches('x')
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite())
            }
            "progress" => {
                self.current.ended = value == "end";
                return Some(self.current);
            }
            _ => {}
        }
        None
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FfmpegError {
    #[error("ffmpeg could not be started ({binary}): {source}")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ffmpeg made no progress for {0:?}")]
    Stalled(Duration),
    #[error("ffmpeg ran longer than its limit of {0:?}")]
    TimedOut(Duration),
    #[error("ffmpeg was stopped")]
    Canceled,
    #[error("ffmpeg failed ({status}): {log}")]
    Failed { status: String, log: String },
}

/// Limits of one supervised run.
#[derive(Debug, Clone, Copy)]
pub struct RunLimits {
    pub stall: Duration,
    pub total: Duration,
    pub nice: i32,
}

const LOG_TAIL: usize = 8;

/// Runs ffmpeg with `args`, reporting progress, until it exits, stalls, overruns or is canceled.
///
/// ffmpeg is killed and reaped on every exit path but success.
pub async fn run(
    binary: &Path,
    args: &[OsString],
    limits: RunLimits,
    cancel: &CancellationToken,
    mut on_progress: impl FnMut(ProgressSample),
) -> Result<(), FfmpegError> {
    tracing::debug!(binary = %binary.display(), ?args, "starting ffmpeg");
    let mut command = FfmpegCommand::new_with_path(binary);
    command.args(args);
    prepare_child(command.as_inner_mut(), limits.nice);
    let spawn_error = |source| FfmpegError::Spawn {
        binary: binary.display().to_string(),
        source,
    };
    let mut child = command.spawn().map_err(spawn_error)?;
    let stdout = child.take_stdout();
    let events = child
        .iter()
        .map_err(|e| spawn_error(std::io::Error::other(e.to_string())));
    let events = match events {
        Ok(events) => events,
        Err(error) => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(error);
        }
    };

    let (progress_tx, mut progress_rx) = mpsc::channel::<ProgressSample>(16);
    if let Some(stdout) = stdout {
        tokio::task::spawn_blocking(move || {
            let mut parser = ProgressParser::default();
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(sample) = parser.feed(&line) {
                    // A full channel only means the job is busy: drop the sample, keep draining.
                    let _ = progress_tx.try_send(sample);
                }
            }
        });
    }
    // Drained to the end so ffmpeg never blocks on a full stderr pipe.
    let log_tail = tokio::task::spawn_blocking(move || {
        let mut tail = VecDeque::with_capacity(LOG_TAIL);
        for event in events {
            let line = match event {
                FfmpegEvent::Log(LogLevel::Error | LogLevel::Fatal, line) => line,
                FfmpegEvent::Error(line) if !line.contains("No streams found") => line,
                _ => continue,
            };
            if tail.len() == LOG_TAIL {
                tail.pop_front();
            }
            tail.push_back(line);
        }
        tail.into_iter().collect::<Vec<_>>().join("; ")
    });

    let started = Instant::now();
    let mut last_advance = Instant::now();
    let mut furthest = Duration::ZERO;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let outcome: Result<std::process::ExitStatus, FfmpegError> = loop {
        tokio::select! {
            Some(sample) = progress_rx.recv() => {
                if sample.out_time > furthest {
                    furthest = sample.out_time;
                    last_advance = Instant::now();
                }
                on_progress(sample);
            }
            () = cancel.cancelled() => break Err(FfmpegError::Canceled),
            _ = tick.tick() => {
                match child.as_inner_mut().try_wait() {
                    Ok(Some(status)) => break Ok(status),
                    Ok(None) => {}
                    Err(error) => break Err(FfmpegError::Failed { status: "unknown".into(), log: error.to_string() }),
                }
                if last_advance.elapsed() > limits.stall {
                    break Err(FfmpegError::Stalled(limits.stall));
                }
                if started.elapsed() > limits.total {
                    break Err(FfmpegError::TimedOut(limits.total));
                }
            }
        }
    };
    let status = match outcome {
        Ok(status) => status,
        Err(error) => {
            let _ = child.kill();
            let _ = tokio::task::spawn_blocking(move || child.wait()).await;
            return Err(error);
        }
    };
    // Progress lines that raced the exit.
    while let Ok(sample) = progress_rx.try_recv() {
        on_progress(sample);
    }
    let log = log_tail.await.unwrap_or_default();
    if status.success() {
        Ok(())
    } else {
        Err(FfmpegError::Failed {
            status: status.to_string(),
            log,
        })
    }
}

/// Lowers ffmpeg's CPU priority below the server's, and has the kernel kill it if reel dies
/// (a crashed server must not leave an orphan encoder writing into `tmp/`).
pub(crate) fn prepare_child(command: &mut std::process::Command, nice: i32) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe system
    // calls (`prctl`, `nice`), allocating nothing.
    unsafe {
        command.pre_exec(move || {
            rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL))
                .map_err(std::io::Error::from)?;
            if nice > 0 {
                rustix::process::nice(nice).map_err(std::io::Error::from)?;
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_blocks_become_samples() {
        let mut parser = ProgressParser::default();
        let lines = "frame=10\nfps=25.5\nout_time_us=1500000\nspeed=1.5x\nprogress=continue\nout_time_us=3000000\nspeed=N/A\nprogress=end\n";
        let samples: Vec<_> = lines.lines().filter_map(|l| parser.feed(l)).collect();
        assert_eq!(samples.len(), 2);
        assert_eq!(samples[0].out_time, Duration::from_millis(1500));
        assert_eq!(samples[0].fps, Some(25.5));
        assert_eq!(samples[0].speed, Some(1.5));
        assert!(!samples[0].ended);
        assert_eq!(samples[1].speed, None);
        assert!(samples[1].ended);
        assert_eq!(parser.feed("garbage"), None);
    }
}
