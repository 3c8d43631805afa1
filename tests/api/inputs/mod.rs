//! Odd and hostile inputs: each gets a correct ladder, a clear 4xx, or a failed job with a reason.
//! Every ready ladder here passes [`crate::ladder_checks`].
//!
//! Issue 9's kinds, one module each: [`shape`] (non-square pixels, interlacing), [`timeline`]
//! (audio and video timelines, unknown length), [`colour`], [`audio`], [`failures`] (files
//! shorter than they say, any length, failures in plain words).

mod audio;
mod colour;
mod failures;
mod shape;
mod timeline;

use std::path::Path;

use crate::fixtures;
use crate::helpers::{TestApp, ffprobe};
use crate::ladder_checks::{Expect, assert_ladder};

pub(crate) async fn ready_renditions(
    app: &TestApp,
    clip: &Path,
) -> (String, Vec<serde_json::Value>) {
    let id = app.upload_id(clip).await;
    let video = app.wait_for(&id, "ready").await;
    assert_ladder(app, &id, clip, Expect::default()).await;
    (
        id,
        video["renditions"].as_array().expect("renditions").clone(),
    )
}

fn first_segment_stream(app: &TestApp, id: &str, rung: &str) -> serde_json::Value {
    let dir = app.media.join("hls").join(id).join(rung);
    let mut joined = std::fs::read(dir.join("init_0.mp4"))
        .or_else(|_| {
            let init = std::fs::read_dir(&dir)
                .expect("rung dir")
                .flatten()
                .find(|e| e.file_name().to_string_lossy().starts_with("init"))
                .expect("init");
            std::fs::read(init.path())
        })
        .expect("init");
    joined.extend(std::fs::read(dir.join("seg_00000.m4s")).expect("segment"));
    let file = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(file.path(), joined).expect("write");
    let probe = ffprobe(file.path(), &["-show_streams", "-select_streams", "v:0"]);
    probe["streams"][0].clone()
}

#[tokio::test]
async fn a_source_without_audio_gets_video_only_renditions() {
    let app = TestApp::spawn(&[]);
    let (_, renditions) = ready_renditions(&app, &fixtures::silent()).await;
    for rendition in &renditions {
        let codecs = rendition["codecs"].as_str().expect("codecs");
        assert!(
            codecs.starts_with("avc1.") && !codecs.contains("mp4a"),
            "{codecs}"
        );
    }
}

#[tokio::test]
async fn odd_sizes_are_scaled_to_even() {
    let app = TestApp::spawn(&[]);
    let (_, renditions) = ready_renditions(&app, &fixtures::odd_size()).await;
    // Coded 577×323 with pixels of 26369:26333 (ffmpeg's scale left them so): displayed 578×323.
    assert_eq!(
        renditions.iter().map(size).collect::<Vec<_>>(),
        [(430, 240)]
    );
}

#[tokio::test]
async fn a_rotated_phone_clip_is_planned_and_played_upright() {
    let app = TestApp::spawn(&[]);
    let (id, renditions) = ready_renditions(&app, &fixtures::rotated()).await;
    assert_eq!(
        renditions.iter().map(size).collect::<Vec<_>>(),
        [(240, 426), (360, 640)]
    );
    let stream = first_segment_stream(&app, &id, "360p");
    assert_eq!(
        (stream["width"].as_u64(), stream["height"].as_u64()),
        (Some(360), Some(640)),
        "frames are upright"
    );
    assert_eq!(
        app.video(&id).await["source"]["height"],
        640,
        "the source is described as displayed"
    );
}

#[tokio::test]
async fn a_source_below_the_lowest_rung_gets_one_rung_at_its_own_size() {
    let app = TestApp::spawn(&[]);
    let (_, renditions) = ready_renditions(&app, &fixtures::tiny()).await;
    assert_eq!(
        renditions.iter().map(size).collect::<Vec<_>>(),
        [(160, 120)]
    );
}

#[tokio::test]
async fn ten_bit_input_becomes_8_bit_420() {
    let app = TestApp::spawn(&[]);
    let (id, _) = ready_renditions(&app, &fixtures::ten_bit()).await;
    assert_eq!(
        first_segment_stream(&app, &id, "240p")["pix_fmt"],
        "yuv420p"
    );
}

#[tokio::test]
async fn hdr_input_is_tone_mapped_to_bt709() {
    let app = TestApp::spawn(&[]);
    let (id, _) = ready_renditions(&app, &fixtures::hdr()).await;
    let stream = first_segment_stream(&app, &id, "240p");
    assert_eq!(stream["pix_fmt"], "yuv420p");
    assert_eq!(stream["color_transfer"], "bt709", "{stream}");
    assert_eq!(stream["color_primaries"], "bt709");
}

pub(crate) fn size(rendition: &serde_json::Value) -> (u64, u64) {
    (
        rendition["width"].as_u64().expect("width"),
        rendition["height"].as_u64().expect("height"),
    )
}

#[tokio::test]
async fn variable_frame_rate_becomes_constant_with_true_durations() {
    let app = TestApp::spawn(&[]);
    let (id, _) = ready_renditions(&app, &fixtures::vfr()).await;
    let playlist = std::fs::read_to_string(app.media.join("hls").join(&id).join("240p/index.m3u8"))
        .expect("playlist");
    let total: f64 = playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.trim_end_matches(',').parse::<f64>().ok())
        .sum();
    assert!(
        (total - 3.0).abs() < 0.2,
        "true segment durations add up to the source: {total}"
    );
    let stream = first_segment_stream(&app, &id, "240p");
    assert_eq!(stream["r_frame_rate"], "30/1", "{stream}");
}

#[tokio::test]
async fn an_audio_only_file_fails_with_a_clear_reason() {
    let app = TestApp::spawn(&[]);
    let id = app.upload_id(&fixtures::audio_only()).await;
    let failed = app.wait_for(&id, "failed").await;
    assert_eq!(failed["error"]["code"], "no_video_stream");
    assert!(
        failed["error"]["message"]
            .as_str()
            .expect("message")
            .contains("no video")
    );
    let events = app.events(&id, None, |_| false).await;
    assert_eq!(events.last().expect("events").event, "failed");
}

#[tokio::test]
async fn a_truncated_file_fails_with_a_reason_and_leaves_no_output() {
    let app = TestApp::spawn(&[]);
    let id = app.upload_id(&fixtures::truncated()).await;
    let failed = app.wait_for(&id, "failed").await;
    assert_eq!(failed["error"]["code"], "unreadable_source", "{failed}");
    assert!(!failed["error"]["message"].as_str().unwrap_or("").is_empty());
    assert!(app.files_in("hls").is_empty() && app.files_in("tmp").is_empty());
}

#[tokio::test]
async fn bytes_that_are_not_a_video_are_refused_with_415() {
    let app = TestApp::spawn(&[]);
    let junk = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(
        junk.path(),
        "this is a text file pretending to be a video ".repeat(100),
    )
    .expect("write");
    let response = app.upload_raw(junk.path(), "video/mp4").await;
    assert_eq!(response.status(), 415);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unsupported_media_type");
    assert!(app.files_in("sources").is_empty() && app.files_in("tmp").is_empty());
}

#[tokio::test]
async fn an_empty_body_is_a_400() {
    let app = TestApp::spawn(&[]);
    let response = app.post_video(Vec::new()).await.expect("post");
    assert_eq!(response.status(), 400);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "empty_body");
}
