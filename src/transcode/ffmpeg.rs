//! The one ffmpeg process of a job: its arguments (pure) and its supervised run.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::{Duration, Instant};

use ffmpeg_sidecar::command::FfmpegCommand;
use ffmpeg_sidecar::event::{FfmpegEvent, LogLevel};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::plan::filters;
pub use super::plan::{EncodePlan, output_frame_rate};

/// ffmpeg arguments that decode once and encode every rung as fMP4 HLS with aligned keyframes.
pub fn ladder_args(plan: &EncodePlan) -> Vec<OsString> {
    let mut args: Vec<OsString> = Vec::new();
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    let graph = filters::ladder_graph(plan);
    let gop = (plan.frame_rate.as_f64() * f64::from(plan.segment_seconds))
        .round()
        .max(1.0) as u32;
    push(&["-nostats", "-progress", "pipe:1", "-y"]);
    args.push("-i".into());
    args.push(plan.source.clone().into_os_string());
    let mut push = |items: &[&str]| args.extend(items.iter().map(OsString::from));
    push(&["-filter_complex", &graph]);
    let mut stream_map = Vec::new();
    for (i, rung) in plan.rungs.iter().enumerate() {
        push(&["-map", &format!("[v{i}]")]);
        let kbps = rung.video_kbps;
        push(&[
            &format!("-b:v:{i}"),
            &format!("{kbps}k"),
            &format!("-maxrate:v:{i}"),
            &format!("{}k", kbps * 11 / 10),
            &format!("-bufsize:v:{i}"),
            &format!("{}k", kbps * 3 / 2),
        ]);
        if plan.audio.is_some() {
            push(&["-map", &format!("[a{i}]")]);
            stream_map.push(format!("v:{i},a:{i},name:{}", rung.name));
        } else {
            stream_map.push(format!("v:{i},name:{}", rung.name));
        }
    }
    let segment = plan.segment_seconds.to_string();
    push(&[
        "-c:v",
        "libx264",
        "-preset",
        &plan.preset,
        "-profile:v",
        "high",
        "-pix_fmt",
        "yuv420p",
        "-g",
        &gop.to_string(),
        "-keyint_min",
        &gop.to_string(),
        "-sc_threshold",
        "0",
        "-force_key_frames",
        &format!("expr:gte(t,n_forced*{segment})"),
    ]);
    // Every rung is BT.709 limited range, and says so (ITU-R BT.709-6).
    push(&[
        "-color_primaries",
        "bt709",
        "-color_trc",
        "bt709",
        "-colorspace",
        "bt709",
        "-color_range",
        "tv",
    ]);
    if plan.audio.is_some() {
        // The sample rate and channels come from the graph (see `plan::filters`).
        push(&[
            "-c:a",
            "aac",
            "-profile:a",
            "aac_low",
            "-b:a",
            &format!("{}k", plan.audio_kbps),
        ]);
    }
    push(&[
        "-f",
        "hls",
        "-hls_time",
        &segment,
        "-hls_playlist_type",
        "vod",
        "-hls_segment_type",
        "fmp4",
        "-hls_flags",
        "independent_segments",
        "-hls_fmp4_init_filename",
        "init.mp4",
        "-var_stream_map",
        &stream_map.join(" "),
    ]);
    args.push("-hls_segment_filename".into());
    args.push(
        plan.out_dir
            .join("%v")
            .join("seg_%05d.m4s")
            .into_os_string(),
    );
    args.push(plan.out_dir.join("%v").join("index.m3u8").into_os_string());
    args
}

/// ffmpeg arguments for a poster frame picked from a short window well inside the video's own
/// pictures (not the padded span: 20 s of audio over 2 s of video has its pictures at the start).
pub fn poster_args(plan: &EncodePlan, output: &Path) -> Vec<OsString> {
    let (start, length) = plan.pictures;
    let at = start + if length > 2.0 { length * 0.3 } else { 0.0 };
    let top = plan.rungs.last();
    let (width, height) = top.map_or((640, 360), |r| (r.width, r.height));
    let filters = filters::poster_filters(plan, width, height);
    let mut args: Vec<OsString> = ["-y", "-ss", &format!("{at:.3}")]
        .iter()
        .map(OsString::from)
        .collect();
    args.push("-i".into());
    args.push(plan.source.clone().into_os_string());
    args.extend(
        [
            "-map",
            &format!("0:v:{}", plan.video_index),
            "-vf",
            &filters,
            "-frames:v",
            "1",
            "-q:v",
            "3",
        ]
        .iter()
        .map(OsString::from),
    );
    args.push(output.as_os_str().to_owned());
    args
}

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
    use crate::transcode::ladder::PlannedRung;
    use crate::transcode::plan::AudioPlan;
    use crate::transcode::probe::{FieldOrder, Rational};

    fn plan(audio: bool) -> EncodePlan {
        EncodePlan {
            source: "/m/sources/x".into(),
            out_dir: "/m/tmp/job/ladder".into(),
            rungs: ["240p", "360p"]
                .iter()
                .zip([(426, 240, 400), (640, 360, 800)])
                .map(|(name, (width, height, video_kbps))| PlannedRung {
                    name: (*name).into(),
                    width,
                    height,
                    video_kbps,
                })
                .collect(),
            frame_rate: Rational {
                num: 30000,
                den: 1001,
            },
            video_index: 0,
            field_order: FieldOrder::Progressive,
            colour: String::new(),
            audio: audio.then_some(AudioPlan {
                index: 0,
                sample_rate: 48_000,
                channels: 2,
            }),
            audio_kbps: 128,
            offset: 0.0,
            duration: 3.0,
            pictures: (0.0, 3.0),
            segment_seconds: 4,
            preset: "veryfast".into(),
        }
    }

    fn joined(args: &[OsString]) -> String {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn one_process_decodes_once_and_aligns_keyframes() {
        let args = joined(&ladder_args(&plan(true)));
        assert!(args.contains("split=2[s0][s1]"), "{args}");
        assert!(
            args.contains("-g 120 -keyint_min 120 -sc_threshold 0"),
            "{args}"
        );
        assert!(args.contains("expr:gte(t,n_forced*4)"));
        assert!(
            args.contains("-bufsize:v:0 600k -map [a0] -map [v1]"),
            "{args}"
        );
        assert!(args.contains("-var_stream_map v:0,a:0,name:240p v:1,a:1,name:360p"));
        assert!(args.contains("-pix_fmt yuv420p"));
        assert!(args.contains("-c:a aac -profile:a aac_low -b:a 128k"));
        assert_eq!(args.matches(" -i ").count(), 1);
    }

    #[test]
    fn a_silent_source_gets_video_only_rungs() {
        let args = joined(&ladder_args(&plan(false)));
        assert!(args.contains("-var_stream_map v:0,name:240p v:1,name:360p"));
        assert!(!args.contains("[a0]"));
        assert!(!args.contains("-c:a"));
    }

    #[test]
    fn the_poster_comes_from_the_pictures_not_the_padded_span() {
        let mut short_video = plan(true);
        (short_video.duration, short_video.pictures) = (20.0, (0.0, 2.0));
        let args = joined(&poster_args(&short_video, Path::new("p.jpg")));
        assert!(args.starts_with("-y -ss 0.000 -i"), "{args}");
        short_video.pictures = (1.5, 10.0);
        let args = joined(&poster_args(&short_video, Path::new("p.jpg")));
        assert!(args.starts_with("-y -ss 4.500 -i"), "{args}");
    }

    #[test]
    fn every_rung_is_tagged_bt709() {
        let args = joined(&ladder_args(&plan(true)));
        assert!(
            args.contains(
                "-color_primaries bt709 -color_trc bt709 -colorspace bt709 -color_range tv"
            ),
            "{args}"
        );
    }

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
