//! Small clips made with ffmpeg's test sources, once per run, shared by every test.

use std::path::{Path, PathBuf};
use std::process::Command;

pub fn dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("fixtures");
    std::fs::create_dir_all(&dir).expect("fixture dir");
    dir
}

/// Runs ffmpeg into `name` unless it exists; writes under a temporary name, then renames, so
/// parallel test processes never see half a file.
pub fn make(name: &str, args: &[&str]) -> PathBuf {
    let target = dir().join(name);
    if target.exists() {
        return target;
    }
    let partial = dir().join(format!(
        "{}.{}.partial{}",
        name,
        std::process::id(),
        ext(name)
    ));
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y"])
        .args(args)
        .arg(&partial)
        .status()
        .expect("ffmpeg must be installed (the test command installs it)");
    assert!(status.success(), "ffmpeg could not make fixture {name}");
    std::fs::rename(&partial, &target).expect("rename fixture");
    target
}

fn ext(name: &str) -> String {
    name.rsplit_once('.')
        .map(|(_, e)| format!(".{e}"))
        .unwrap_or_default()
}

pub const H264: [&str; 6] = [
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-pix_fmt",
    "yuv420p",
];

fn clip(name: &str, video: &str, audio: bool, extra: &[&str]) -> PathBuf {
    let mut args = vec!["-f", "lavfi", "-i", video];
    if audio {
        args.extend(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"]);
    }
    args.extend(extra);
    if !extra.contains(&"-c:v") {
        args.extend(H264);
    }
    if audio {
        args.extend(["-c:a", "aac", "-shortest"]);
    }
    make(name, &args)
}

/// 640×360, 30 fps, 3 s, with audio: two rungs (240p, 360p).
pub fn standard() -> PathBuf {
    clip(
        "standard.mp4",
        "testsrc2=size=640x360:rate=30:duration=3",
        true,
        &[],
    )
}

/// A longer clip for tests that need a job still running when they act.
pub fn long() -> PathBuf {
    clip(
        "long-20s.mp4",
        "testsrc2=size=640x360:rate=30:duration=20",
        true,
        &[],
    )
}

pub fn silent() -> PathBuf {
    clip(
        "silent.mp4",
        "testsrc2=size=320x240:rate=25:duration=2",
        false,
        &[],
    )
}

pub fn odd_size() -> PathBuf {
    clip(
        "odd.mp4",
        "testsrc2=size=577x323:rate=25:duration=2",
        true,
        &[
            "-vf",
            "scale=577:323",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-pix_fmt",
            "yuv444p",
        ],
    )
}

/// Coded 640×360 with a 90° display rotation: a phone held upright (displayed 360×640).
pub fn rotated() -> PathBuf {
    let target = dir().join("rotated.mp4");
    if target.exists() {
        return target;
    }
    let plain = clip(
        "rotated-plain.mp4",
        "testsrc2=size=640x360:rate=30:duration=2",
        true,
        &[],
    );
    make(
        "rotated.mp4",
        &[
            "-i",
            plain.to_str().expect("utf-8 path"),
            "-c",
            "copy",
            "-metadata:s:v:0",
            "rotate=90",
        ],
    )
}

/// Smaller than the lowest rung (240p).
pub fn tiny() -> PathBuf {
    clip(
        "tiny.mp4",
        "testsrc2=size=160x120:rate=15:duration=2",
        true,
        &[],
    )
}

const H264_10BIT: [&str; 6] = [
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-pix_fmt",
    "yuv420p10le",
];

pub fn ten_bit() -> PathBuf {
    clip(
        "tenbit.mkv",
        "testsrc2=size=320x240:rate=25:duration=2",
        false,
        &H264_10BIT,
    )
}

/// HDR10-style: 10-bit, BT.2020 primaries, PQ transfer.
pub fn hdr() -> PathBuf {
    let tags = [
        "-color_primaries",
        "bt2020",
        "-color_trc",
        "smpte2084",
        "-colorspace",
        "bt2020nc",
    ];
    let args: Vec<&str> = H264_10BIT.iter().chain(tags.iter()).copied().collect();
    clip(
        "hdr.mkv",
        "testsrc2=size=320x240:rate=25:duration=2",
        false,
        &args,
    )
}

/// Variable frame rate: frames at irregular times.
pub fn vfr() -> PathBuf {
    clip(
        "vfr.mkv",
        "testsrc2=size=320x240:rate=30:duration=3",
        true,
        &[
            "-vf",
            "select='lt(t\\,1)+not(mod(n\\,3))'",
            "-fps_mode",
            "vfr",
        ],
    )
}

pub fn audio_only() -> PathBuf {
    make(
        "audio-only.m4a",
        &["-f", "lavfi", "-i", "sine=duration=2", "-c:a", "aac"],
    )
}

/// The first third of a clip whose index (moov) sits at the end: unreadable.
pub fn truncated() -> PathBuf {
    let target = dir().join("truncated.mp4");
    if !target.exists() {
        let whole = std::fs::read(standard()).expect("read standard clip");
        let partial = dir().join(format!("truncated.{}.partial", std::process::id()));
        std::fs::write(&partial, &whole[..whole.len() / 3]).expect("write truncated");
        std::fs::rename(&partial, &target).expect("rename truncated");
    }
    target
}
