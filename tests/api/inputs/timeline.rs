//! Kinds 3 and 4 of issue 9: audio and video timelines that disagree, and unknown lengths.
//! The ladder checks hold audio and video to one span in every rung; these specs add what each
//! shape promises on top.

use std::path::{Path, PathBuf};

use crate::fixtures::hygiene;
use crate::helpers::TestApp;
use crate::ladder_checks::{Expect, Rung, ready_ladder, source_facts};

/// Uploads every clip to one server (two encoders) and checks each ready ladder.
async fn ladders(clips: &[PathBuf]) -> (TestApp, Vec<(serde_json::Value, Vec<Rung>)>) {
    let app = TestApp::spawn(&["--encoders", "2"]);
    let mut ids = Vec::new();
    for clip in clips {
        ids.push(app.upload_id(clip).await);
    }
    let mut out = Vec::new();
    for (clip, id) in clips.iter().zip(&ids) {
        out.push(ready_ladder(&app, id, clip, Expect::default()).await);
    }
    (app, out)
}

fn assert_lasts(clip: &Path, video: &serde_json::Value, rungs: &[Rung], seconds: f64) {
    let duration = video["source"]["duration"].as_f64().expect("duration");
    assert!(
        (duration - seconds).abs() < 0.3,
        "{}: source.duration {duration}, expected {seconds}",
        clip.display()
    );
    for rung in rungs {
        assert!(
            rung.audio.is_some(),
            "{}: {} has audio",
            clip.display(),
            rung.name
        );
        assert!(
            (rung.extinf_total - seconds).abs() < 0.3,
            "{}: {} lasts {}",
            clip.display(),
            rung.name,
            rung.extinf_total
        );
    }
}

#[tokio::test]
async fn a_stream_that_starts_late_is_padded_at_the_start() {
    // Audio 2 s after the video (the example), video 1.5 s after the audio.
    let clips = [hygiene::late_audio(), hygiene::late_video()];
    let (_app, ladders) = ladders(&clips).await;
    assert_lasts(&clips[0], &ladders[0].0, &ladders[0].1, 6.0);
    assert_lasts(&clips[1], &ladders[1].0, &ladders[1].1, 4.0);
}

#[tokio::test]
async fn audio_shorter_than_the_video_or_with_holes_is_padded_with_silence() {
    let clips = [hygiene::short_audio(), hygiene::audio_hole()];
    let (_app, ladders) = ladders(&clips).await;
    assert_lasts(&clips[0], &ladders[0].0, &ladders[0].1, 8.0);
    assert_lasts(&clips[1], &ladders[1].0, &ladders[1].1, 4.5);
}

#[tokio::test]
async fn audio_longer_than_the_video_holds_the_last_picture() {
    let clips = [hygiene::long_audio()];
    let (app, ladders) = ladders(&clips).await;
    assert_lasts(&clips[0], &ladders[0].0, &ladders[0].1, 20.0);
    let id = ladders[0].0["id"].as_str().expect("id");
    assert!(
        app.media.join("hls").join(id).join("poster.jpg").exists(),
        "a poster from the 2 s of pictures, not from past their end"
    );
    for rung in &ladders[0].1 {
        let playlist = std::fs::read_to_string(&rung.playlist).expect("playlist");
        let segments = playlist.matches("#EXTINF:").count();
        assert!(
            segments >= 19,
            "{}: 20 s in 1 s segments, got {segments}",
            rung.name
        );
    }
}

#[tokio::test]
async fn audio_with_no_real_samples_counts_as_no_audio() {
    let clips = [hygiene::empty_audio(), hygiene::packetless_audio()];
    let (_app, ladders) = ladders(&clips).await;
    for ((video, rungs), clip) in ladders.iter().zip(&clips) {
        for rendition in video["renditions"].as_array().expect("renditions") {
            let codecs = rendition["codecs"].as_str().expect("codecs");
            assert!(!codecs.contains("mp4a"), "{}: {codecs}", clip.display());
        }
        assert!(
            rungs.iter().all(|r| r.audio.is_none()),
            "{}",
            clip.display()
        );
        assert_eq!(video["source"]["audio_codec"], serde_json::Value::Null);
    }
}

#[tokio::test]
async fn a_file_without_a_declared_length_is_measured_and_shows_progress() {
    let clips = [hygiene::recorded_webm(), hygiene::piped_matroska()];
    let app = TestApp::spawn(&[]);
    for clip in &clips {
        let (_, real) = source_facts(clip);
        let id = app.upload_id(clip).await;
        let events = app.events(&id, None, |_| false).await;
        let encoding: Vec<&serde_json::Value> = events
            .iter()
            .filter(|e| e.event == "progress" && e.data["step"] == "encoding")
            .map(|e| &e.data)
            .collect();
        assert!(
            !encoding.is_empty(),
            "{}: progress while encoding",
            clip.display()
        );
        let last = encoding.last().expect("progress");
        assert!(
            last["percent"].as_f64().unwrap_or(0.0) > 2.0,
            "{}: the bar moves: {last}",
            clip.display()
        );
        assert_eq!(
            events.last().expect("events").event,
            "ready",
            "{}",
            clip.display()
        );
        let (video, rungs) = ready_ladder(&app, &id, clip, Expect::default()).await;
        assert_lasts(clip, &video, &rungs, real);
    }
}
