//! A generated corpus of bad and odd inputs, each with the outcome a user should see: a clear
//! 4xx at upload, a `failed` job with a readable reason, or a correct ladder. Never a panic,
//! never a stuck job.
//!
//! The members, their expected outcomes, the server flags and the steps that check them are
//! shared with [`crate::bucket_corpus`], which runs the same corpus with media in a bucket.

use std::path::{Path, PathBuf};

use crate::fixtures::{self, dir, make};
use crate::helpers::TestApp;
use crate::ladder_checks::{Expect, assert_ladder};

/// What a user should get for a corpus member.
#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// Refused at upload: this status and error code, nothing stored.
    Refused(u16, &'static str),
    /// Accepted, then a `failed` job with this error code and a readable reason.
    Failed(&'static str),
    /// Accepted, then a ready ladder that passes [`crate::ladder_checks`].
    Ready,
}

/// One input of the corpus: what it is, the file, what a user should get.
pub type Member = (&'static str, PathBuf, Expected);

/// The server's flags for the corpus: two encoders, and input caps the "too …" members pass
/// the sniff with and fail on at probe.
pub const FLAGS: [&str; 10] = [
    "--encoders",
    "2",
    "--max-width",
    "4096",
    "--max-duration-secs",
    "60",
    "--max-frame-rate",
    "240",
    "--max-streams",
    "8",
];

fn write(name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir().join(name);
    if !path.exists() {
        let partial = dir().join(format!("{name}.{}.partial", std::process::id()));
        std::fs::write(&partial, bytes).expect("write corpus file");
        std::fs::rename(&partial, &path).expect("rename corpus file");
    }
    path
}

/// Deterministic noise that starts with no container magic.
fn noise(len: usize) -> Vec<u8> {
    let mut state: u32 = 0x2545_F491;
    let mut bytes: Vec<u8> = (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            (state >> 24) as u8
        })
        .collect();
    bytes[0] = 0x13;
    bytes
}

fn lavfi(name: &str, inputs: &[&str], out: &[&str]) -> PathBuf {
    let mut args: Vec<&str> = Vec::new();
    for input in inputs {
        args.extend(["-f", "lavfi", "-i", input]);
    }
    args.extend(out);
    make(name, &args)
}

const SMALL: &str = "testsrc2=size=320x240:rate=25:duration=1";
const TONE: &str = "sine=duration=1";

/// Every member, made on first use (shared with the other specs' fixtures).
pub fn members() -> Vec<Member> {
    use Expected::*;
    let h264 = fixtures::H264;
    let srt = write("subs.srt", b"1\n00:00:00,000 --> 00:00:01,000\nhello\n");
    let mut ftyp_junk = vec![0, 0, 0, 0x18];
    ftyp_junk.extend_from_slice(b"ftypisom\0\0\x02\0isomiso2");
    ftyp_junk.extend(noise(20_000));
    let with = |base: &[&'static str], more: &[&'static str]| -> Vec<&'static str> {
        base.iter().chain(more.iter()).copied().collect()
    };
    vec![
        (
            "text named .mp4",
            write(
                "text.mp4",
                "not a video, just words ".repeat(200).as_bytes(),
            ),
            Refused(415, "unsupported_media_type"),
        ),
        (
            "zero bytes",
            write("empty.mp4", b""),
            Refused(400, "empty_body"),
        ),
        (
            "random bytes",
            write("noise.mp4", &noise(65_536)),
            Refused(415, "unsupported_media_type"),
        ),
        (
            "html page",
            write("page.mp4", b"<!doctype html><html><body>hi</body></html>"),
            Refused(415, "unsupported_media_type"),
        ),
        (
            "zip archive",
            write("archive.mp4", b"PK\x03\x04\x14\0\0\0\0\0"),
            Refused(415, "unsupported_media_type"),
        ),
        (
            "png image",
            lavfi("image.png", &[SMALL], &["-frames:v", "1"]),
            Refused(415, "unsupported_media_type"),
        ),
        (
            "jpeg image",
            lavfi("image.jpg", &[SMALL], &["-frames:v", "1"]),
            Refused(415, "unsupported_media_type"),
        ),
        (
            "gif animation",
            lavfi("anim.gif", &[SMALL], &[]),
            Refused(415, "unsupported_media_type"),
        ),
        (
            "wav audio",
            lavfi("tone.wav", &[TONE], &[]),
            Refused(415, "unsupported_media_type"),
        ),
        (
            "mp3 audio",
            lavfi("tone.mp3", &[TONE], &["-c:a", "libmp3lame"]),
            Refused(415, "unsupported_media_type"),
        ),
        (
            "audio-only mp4",
            fixtures::audio_only(),
            Failed("no_video_stream"),
        ),
        (
            "subtitles-only mkv",
            make("subs-only.mkv", &["-i", srt.to_str().expect("path")]),
            Failed("no_video_stream"),
        ),
        (
            "truncated mp4",
            fixtures::truncated(),
            Failed("unreadable_source"),
        ),
        (
            "ftyp then junk",
            write("ftyp-junk.mp4", &ftyp_junk),
            Failed("unreadable_source"),
        ),
        (
            "too wide",
            lavfi(
                "wide.mkv",
                &["testsrc2=size=4200x64:rate=5:duration=1"],
                &h264,
            ),
            Failed("input_too_large"),
        ),
        (
            "too long",
            lavfi("long.mkv", &["color=size=64x64:rate=1:duration=61"], &h264),
            Failed("input_too_large"),
        ),
        (
            "too fast",
            lavfi(
                "fast.mkv",
                &["testsrc2=size=64x64:rate=500:duration=0.2"],
                &h264,
            ),
            Failed("input_too_large"),
        ),
        (
            "too many streams",
            lavfi(
                "streams.mkv",
                &[SMALL, TONE],
                &with(
                    &h264,
                    &[
                        "-map", "0:v", "-map", "1:a", "-map", "1:a", "-map", "1:a", "-map", "1:a",
                        "-map", "1:a", "-map", "1:a", "-map", "1:a", "-map", "1:a", "-c:a", "aac",
                    ],
                ),
            ),
            Failed("input_too_large"),
        ),
        (
            "two video streams",
            lavfi(
                "two-videos.mkv",
                &[SMALL, "testsrc=size=160x120:rate=25:duration=1"],
                &with(&h264, &["-map", "0:v", "-map", "1:v"]),
            ),
            Ready,
        ),
        (
            "webm vp9 + opus",
            lavfi(
                "clip.webm",
                &[SMALL, TONE],
                &[
                    "-c:v",
                    "libvpx-vp9",
                    "-deadline",
                    "realtime",
                    "-cpu-used",
                    "8",
                    "-c:a",
                    "libopus",
                ],
            ),
            Ready,
        ),
        (
            "avi mpeg4 + mp3",
            lavfi(
                "clip.avi",
                &[SMALL, TONE],
                &["-c:v", "mpeg4", "-c:a", "libmp3lame"],
            ),
            Ready,
        ),
        (
            "mpeg-ts",
            lavfi(
                "clip.ts",
                &[SMALL, TONE],
                &with(&h264, &["-c:a", "aac", "-f", "mpegts"]),
            ),
            Ready,
        ),
        (
            "mov",
            lavfi("clip.mov", &[SMALL, TONE], &with(&h264, &["-c:a", "aac"])),
            Ready,
        ),
        (
            "flv",
            lavfi("clip.flv", &[SMALL, TONE], &with(&h264, &["-c:a", "aac"])),
            Ready,
        ),
        (
            "ogg theora",
            lavfi("clip.ogv", &[SMALL], &["-c:v", "libtheora"]),
            Ready,
        ),
        (
            "one frame",
            lavfi("one-frame.mp4", &[SMALL], &with(&h264, &["-frames:v", "1"])),
            Ready,
        ),
        (
            "2x2 pixels",
            lavfi(
                "tiny2.mp4",
                &["testsrc2=size=2x2:rate=25:duration=1"],
                &h264,
            ),
            Ready,
        ),
        ("odd size 4:4:4", fixtures::odd_size(), Ready),
        ("rotated phone clip", fixtures::rotated(), Ready),
        ("10-bit", fixtures::ten_bit(), Ready),
        ("hdr pq", fixtures::hdr(), Ready),
        ("variable frame rate", fixtures::vfr(), Ready),
        (
            "portrait",
            lavfi(
                "portrait.mp4",
                &["testsrc2=size=240x426:rate=30:duration=1"],
                &h264,
            ),
            Ready,
        ),
    ]
}

/// A member the server accepted, with its video id.
#[derive(Debug)]
pub struct Accepted<'a> {
    pub label: &'static str,
    pub id: String,
    pub path: &'a Path,
    pub expected: &'a Expected,
}

/// Uploads every member raw, one after another, and checks each refusal (status and code);
/// returns the accepted members, in order.
pub async fn upload_every_member<'a>(app: &TestApp, corpus: &'a [Member]) -> Vec<Accepted<'a>> {
    assert!(corpus.len() >= 25, "at least 25 inputs");
    let mut accepted = Vec::new();
    for (label, path, expected) in corpus {
        let response = app.upload_raw(path, "application/octet-stream").await;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        match expected {
            Expected::Refused(code, error) => {
                assert_eq!(
                    (status, body["error"]["code"].as_str()),
                    (*code, Some(*error)),
                    "{label}: {body}"
                );
            }
            _ => {
                assert_eq!(status, 202, "{label}: {body}");
                let id = body["id"].as_str().expect("id").to_owned();
                accepted.push(Accepted {
                    label,
                    id,
                    path,
                    expected,
                });
            }
        }
    }
    accepted
}

/// Waits for every accepted member to end and checks how: `ready`, or `failed` with its code
/// and a readable reason. The ladder checks are the caller's (the folder's ladder is on disk,
/// a bucket's is not).
pub async fn wait_for_outcomes(app: &TestApp, accepted: &[Accepted<'_>]) {
    for member in accepted {
        let label = member.label;
        let video = app.wait_for_one_of(&member.id, &["ready", "failed"]).await;
        match member.expected {
            Expected::Ready => assert_eq!(video["status"], "ready", "{label}: {video}"),
            Expected::Failed(code) => {
                assert_eq!(
                    (video["status"].as_str(), video["error"]["code"].as_str()),
                    (Some("failed"), Some(*code)),
                    "{label}: {video}"
                );
                let message = video["error"]["message"].as_str().unwrap_or("");
                assert!(
                    message.len() > 10 && !message.contains("panicked"),
                    "{label}: readable reason: {message}"
                );
            }
            Expected::Refused(..) => unreachable!("{label}: refused members are not accepted"),
        }
    }
}

/// What every corpus run ends with: no panic in the server, no job's work left in `tmp/`, and
/// one publish timed in `reel_ladder_publish_seconds{store}` per ready member.
pub async fn assert_clean_end(app: &TestApp, accepted: &[Accepted<'_>], store: &str) {
    assert!(!app.logs().contains("panicked"), "no panic in the server");
    // A job's work folder goes (and its publish is observed) just after its status changes.
    crate::helpers::wait_until(
        "nothing left in tmp/",
        crate::helpers::DEADLINE,
        async || app.files_in("tmp").is_empty(),
    )
    .await;
    let ready = accepted
        .iter()
        .filter(|m| *m.expected == Expected::Ready)
        .count();
    let series = format!("reel_ladder_publish_seconds_count{{store=\"{store}\"}}");
    crate::helpers::wait_until(&series, crate::helpers::DEADLINE, async || {
        app.metric(&series).await >= ready as f64
    })
    .await;
    assert_eq!(app.metric(&series).await, ready as f64, "{series}");
}

#[tokio::test]
async fn every_bad_or_odd_input_gets_its_expected_outcome() {
    let corpus = members();
    let app = TestApp::spawn(&FLAGS);
    let accepted = upload_every_member(&app, &corpus).await;
    wait_for_outcomes(&app, &accepted).await;
    for member in accepted.iter().filter(|m| *m.expected == Expected::Ready) {
        assert_ladder(&app, &member.id, member.path, Expect::default()).await;
    }
    assert_clean_end(&app, &accepted, "folder").await;
}
