//! The ffprobe runs: the stream description (JSON) and where each stream's packets end.
//!
//! Containers can declare no length (MediaRecorder and live WebM, piped Matroska) or more than
//! the file holds (a cut download whose index survived). The truth is in the packets: the end of
//! a stream is its last packet's timestamp plus that packet's duration. Only the tail is read
//! (`-read_intervals START%`, which seeks through the index, or scans when there is none); when
//! the tail holds no packet of a stream, the whole file is read (demuxing only, no decoding).

use std::collections::HashMap;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};

use super::{Probe, ProbeError};

/// How far before the declared end the tail read starts, seconds.
const TAIL_SECONDS: f64 = 15.0;

fn spawn_error(binary: &Path) -> impl FnOnce(std::io::Error) -> ProbeError + '_ {
    move |source| ProbeError::Spawn {
        tool: "ffprobe",
        binary: binary.display().to_string(),
        source,
    }
}

/// `ffprobe -show_format -show_streams` as JSON bytes.
pub(super) async fn describe(
    ffprobe: &Path,
    path: &Path,
    timeout: Duration,
) -> Result<Vec<u8>, ProbeError> {
    let output = tokio::process::Command::new(ffprobe)
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(timeout, output)
        .await
        .map_err(|_| ProbeError::Timeout(timeout))?
        .map_err(spawn_error(ffprobe))?;
    if !output.status.success() {
        // The last few lines: the cause usually precedes the final "Invalid data" line.
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        let tail = lines[lines.len().saturating_sub(4)..].join(" | ");
        let reason = if tail.is_empty() {
            format!("ffprobe failed ({})", output.status)
        } else {
            tail.chars().take(600).collect()
        };
        return Err(ProbeError::Unreadable(reason));
    }
    Ok(output.stdout)
}

/// Where each of `streams` (absolute indexes) ends, seconds in file time; a stream with no
/// packet at all is missing from the map.
pub(super) async fn ends(
    ffprobe: &Path,
    path: &Path,
    probe: &Probe,
    streams: &[usize],
    timeout: Duration,
) -> Result<HashMap<usize, f64>, ProbeError> {
    let tail_from = match probe.declared_duration {
        Some(declared) => (probe.start + declared - TAIL_SECONDS).max(0.0),
        // Past any end: Matroska without cues scans to its last cluster, MPEG-TS seeks by bytes.
        None => 1.0e9,
    };
    let tail = scan(ffprobe, path, Some(tail_from), streams, timeout).await?;
    if streams.iter().all(|s| tail.contains_key(s)) {
        return Ok(tail);
    }
    scan(ffprobe, path, None, streams, timeout).await
}

async fn scan(
    ffprobe: &Path,
    path: &Path,
    from: Option<f64>,
    streams: &[usize],
    timeout: Duration,
) -> Result<HashMap<usize, f64>, ProbeError> {
    let mut command = tokio::process::Command::new(ffprobe);
    command.args(["-v", "error"]);
    if let Some(from) = from {
        command.args(["-read_intervals", &format!("{from:.3}%")]);
    }
    command
        .args([
            "-show_entries",
            "packet=stream_index,pts_time,dts_time,duration_time",
            "-of",
            "csv=p=0",
        ])
        .arg(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(spawn_error(ffprobe))?;
    let stdout = child.stdout.take();
    let read = async {
        let mut ends = PacketEnds::default();
        if let Some(stdout) = stdout {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                ends.feed(&line, streams);
            }
        }
        // The exit status does not matter: a damaged tail ends the listing with an error.
        let _ = child.wait().await;
        ends.finish()
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ProbeError::Timeout(timeout))
}

/// Folds `stream_index,pts_time,dts_time,duration_time` lines into each stream's end.
#[derive(Debug, Default)]
struct PacketEnds {
    /// Stream index to (end so far, last timestamp seen).
    streams: HashMap<usize, (f64, f64)>,
}

impl PacketEnds {
    fn feed(&mut self, line: &str, wanted: &[usize]) {
        let mut fields = line.split(',').map(str::trim);
        let Some(index) = fields.next().and_then(|f| f.parse::<usize>().ok()) else {
            return;
        };
        if !wanted.contains(&index) {
            return;
        }
        let time = |f: Option<&str>| {
            f.and_then(|t| t.parse::<f64>().ok())
                .filter(|t| t.is_finite())
        };
        let (pts, dts, duration) = (
            time(fields.next()),
            time(fields.next()),
            time(fields.next()),
        );
        let Some(at) = pts.or(dts) else {
            return;
        };
        let entry = self.streams.entry(index).or_insert((at, at));
        // A packet without a duration lasts as long as the gap before it, which is the best guess.
        let gap = (at - entry.1).max(0.0);
        let length = duration.filter(|d| *d > 0.0).unwrap_or(gap);
        entry.0 = entry.0.max(at + length);
        entry.1 = entry.1.max(at);
    }

    fn finish(self) -> HashMap<usize, f64> {
        self.streams
            .into_iter()
            .map(|(index, (end, _))| (index, end))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_is_the_last_timestamp_plus_its_duration() {
        let mut ends = PacketEnds::default();
        for line in [
            "0,4.940000,4.940000,0.033000",
            "1,4.974000,4.974000,0.020000,",
            "0,4.974000,N/A,0.033000",
            "0,4.907000,4.900000,0.033000",
            "1,4.994000,4.994000,0.020000",
            "2,9.000000,9.000000,1.000000",
            "garbage",
            "",
        ] {
            ends.feed(line, &[0, 1]);
        }
        let ends = ends.finish();
        assert!(
            (ends[&0] - 5.007).abs() < 1e-9,
            "B-frames: the largest end wins"
        );
        assert!((ends[&1] - 5.014).abs() < 1e-9);
        assert!(!ends.contains_key(&2), "unwanted streams are ignored");
    }

    #[test]
    fn packets_without_a_duration_last_as_long_as_the_gap_before_them() {
        let mut ends = PacketEnds::default();
        for line in ["0,N/A,1.0,N/A", "0,N/A,1.5,N/A", "0,N/A,N/A,N/A"] {
            ends.feed(line, &[0]);
        }
        assert_eq!(ends.finish()[&0], 2.0);
    }
}
