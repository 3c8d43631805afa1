//! Interlace detection for streams that do not say how they are scanned.
//!
//! Interlaced material re-encoded as "progressive" keeps its combing and carries no flag. ffmpeg's
//! `idet` looks at the first [`SAMPLE_FRAMES`] pictures. With its default interlace threshold
//! (1.04), progressive pictures with sharp moving edges (test patterns, screen captures) get
//! interlaced votes: `testsrc2` at 640×360 gave 84 TFF, 44 BFF, 22 progressive of 150; at
//! 320×240, 41 TFF, 0 BFF, 9 progressive. At [`THRESHOLD`] (1.5) the same clips are all
//! progressive, while combed pictures keep their votes (a 29.97i clip re-encoded as progressive
//! H.264: 44 TFF of 45; MPEG-2 bottom-field-first: 44 BFF of 45; at 2.0 the first goes
//! undetermined). A source counts as interlaced when one field order holds at least
//! [`DOMINANCE`] of the decided frames, and at least [`MIN_VOTES`] of them. Reproduce with
//! `ffmpeg -i SRC -map 0:v:0 -vf idet=intl_thres=1.5 -frames:v 200 -an -f null -`.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::{FieldOrder, Tools};

pub const SAMPLE_FRAMES: u32 = 200;
/// `idet`'s `intl_thres`: how much stronger the combing must be than its absence.
pub const THRESHOLD: f64 = 1.5;
pub const DOMINANCE: f64 = 0.8;
pub const MIN_VOTES: u32 = 10;

/// `idet`'s multi-frame counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Votes {
    pub top_first: u32,
    pub bottom_first: u32,
    pub progressive: u32,
}

impl Votes {
    /// Reads the last `Multi frame detection: TFF: a BFF: b Progressive: c Undetermined: d` line.
    pub fn parse(log: &str) -> Option<Self> {
        let line = log
            .lines()
            .rev()
            .find(|l| l.contains("Multi frame detection:"))?;
        let count = |key: &str| -> Option<u32> {
            let rest = line.split(key).nth(1)?;
            rest.split_whitespace().next()?.parse().ok()
        };
        Some(Self {
            top_first: count("TFF:")?,
            bottom_first: count("BFF:")?,
            progressive: count("Progressive:")?,
        })
    }

    /// The field order these votes show, `Progressive` when no order dominates.
    pub fn decide(self) -> FieldOrder {
        let decided = self.top_first + self.bottom_first + self.progressive;
        let (order, votes) = if self.top_first >= self.bottom_first {
            (FieldOrder::TopFirst, self.top_first)
        } else {
            (FieldOrder::BottomFirst, self.bottom_first)
        };
        if decided == 0 {
            FieldOrder::Unknown
        } else if votes >= MIN_VOTES && f64::from(votes) >= DOMINANCE * f64::from(decided) {
            order
        } else {
            FieldOrder::Progressive
        }
    }
}

/// Runs `idet` over the first pictures of video stream `index` (`0:v:index`); `Unknown` when
/// ffmpeg cannot tell (or cannot run: the encode will report a broken file better).
pub(super) async fn detect(
    tools: Tools<'_>,
    path: &Path,
    index: usize,
    timeout: Duration,
) -> FieldOrder {
    let mut command = std::process::Command::new(tools.ffmpeg);
    command
        .args(["-nostdin", "-hide_banner", "-v", "info", "-i"])
        .arg(path)
        .args([
            "-map",
            &format!("0:v:{index}"),
            "-vf",
            &format!("idet=intl_thres={THRESHOLD}"),
            "-frames:v",
            &SAMPLE_FRAMES.to_string(),
            "-an",
            "-sn",
            "-dn",
            "-f",
            "null",
            "-",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    crate::transcode::ffmpeg::prepare_child(&mut command, tools.nice);
    let mut child = match tokio::process::Command::from(command).spawn() {
        Ok(child) => child,
        Err(error) => {
            tracing::warn!(%error, "interlace detection could not run");
            return FieldOrder::Unknown;
        }
    };
    let stderr = child.stderr.take();
    let mut reaper = Reaper(Some(child));
    let read = async {
        let mut log = String::new();
        if let Some(mut stderr) = stderr {
            let _ = stderr.read_to_string(&mut log).await;
        }
        if let Some(mut child) = reaper.0.take() {
            let _ = child.wait().await;
        }
        log
    };
    match tokio::time::timeout(timeout, read).await {
        Ok(log) => Votes::parse(&log).map_or(FieldOrder::Unknown, Votes::decide),
        Err(_) => {
            tracing::warn!("interlace detection took longer than {timeout:?}");
            FieldOrder::Unknown
        }
    }
}

/// Kills and reaps the sampling ffmpeg when the probe is dropped (a delete or a timeout): a
/// canceled job leaves no ffmpeg behind, not even for an instant after its delete answers.
struct Reaper(Option<tokio::process::Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        let Some(child) = self.0.as_mut() else {
            return;
        };
        let _ = child.start_kill();
        // SIGKILL ends a process at once; the wait is for the kernel to report it.
        for _ in 0..500 {
            if !matches!(child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn votes(top_first: u32, bottom_first: u32, progressive: u32) -> Votes {
        Votes {
            top_first,
            bottom_first,
            progressive,
        }
    }

    #[test]
    fn reads_idet_summary() {
        let log = "[Parsed_idet_0 @ 0x55] Single frame detection: TFF: 1 BFF: 2 Progressive: 3 Undetermined: 4\n\
                   [Parsed_idet_0 @ 0x55] Multi frame detection: TFF:    37 BFF:     0 Progressive:     2 Undetermined:     1\n";
        assert_eq!(Votes::parse(log), Some(votes(37, 0, 2)));
        assert_eq!(Votes::parse("nothing"), None);
    }

    #[test]
    fn one_consistent_field_order_is_interlaced() {
        assert_eq!(votes(37, 0, 0).decide(), FieldOrder::TopFirst);
        assert_eq!(votes(1, 180, 10).decide(), FieldOrder::BottomFirst);
    }

    #[test]
    fn mixed_votes_from_sharp_progressive_pictures_are_progressive() {
        assert_eq!(
            votes(49, 32, 10).decide(),
            FieldOrder::Progressive,
            "testsrc2"
        );
        assert_eq!(votes(5, 0, 0).decide(), FieldOrder::Progressive, "too few");
        assert_eq!(votes(0, 0, 0).decide(), FieldOrder::Unknown);
    }
}
