//! Kinds 7 and 8 of issue 9 (and issue 8 item 5): files shorter than they say, playlists valid
//! for any length, and failures told in plain words with the tool's text in the log only.

use std::path::{Path, PathBuf};

use crate::fixtures::{self, hygiene};
use crate::helpers::TestApp;
use crate::ladder_checks::{Expect, ready_ladder};

#[tokio::test]
async fn a_file_far_shorter_than_it_declares_fails_as_truncated() {
    let app = TestApp::spawn(&["--encoders", "2"]);
    // The cut phone clip (index at the front), and a cut Matroska file.
    let clips = [hygiene::cut_faststart_mp4(), hygiene::cut_matroska()];
    let mut ids = Vec::new();
    for clip in &clips {
        ids.push(app.upload_id(clip).await);
    }
    for (clip, id) in clips.iter().zip(&ids) {
        let failed = app.wait_for(id, "failed").await;
        assert_eq!(
            failed["error"]["code"],
            "truncated_source",
            "{}: {failed}",
            clip.display()
        );
        let message = failed["error"]["message"].as_str().expect("message");
        assert!(
            message.contains("incomplete") && message.contains("8.0 s"),
            "{}: {message}",
            clip.display()
        );
    }
    assert!(app.files_in("hls").is_empty() && app.files_in("tmp").is_empty());
}

#[tokio::test]
async fn playlists_are_valid_for_any_length() {
    let app = TestApp::spawn(&[]);
    // 0.2 s (shorter than a segment) and 2.5 s (a short last segment), both with audio.
    let clips = [
        hygiene::blink(),
        fixtures::make(
            "two-and-a-half.mp4",
            &[
                "-f",
                "lavfi",
                "-i",
                "testsrc2=size=320x240:rate=25:duration=2.5",
                "-f",
                "lavfi",
                "-i",
                "sine=duration=2.5",
                "-c:v",
                "libx264",
                "-preset",
                "ultrafast",
                "-c:a",
                "aac",
            ],
        ),
    ];
    for clip in &clips {
        let id = app.upload_id(clip).await;
        // The ladder checks hold TARGETDURATION and the master's bandwidths to RFC 8216.
        ready_ladder(&app, &id, clip, Expect::default()).await;
    }
}

/// Words that only a tool or a server would write.
fn assert_plain(message: &str, app: &TestApp, clip: &Path) {
    let lower = message.to_lowercase();
    let media = app.media.to_string_lossy();
    for raw in [
        "ffmpeg",
        "ffprobe",
        "0x",
        "invalid data",
        "moov",
        "decoder",
        "/",
        "\\",
    ] {
        assert!(
            !lower.contains(raw),
            "{}: {raw:?} in {message:?}",
            clip.display()
        );
    }
    assert!(
        !message.contains(media.as_ref()),
        "{}: a server path",
        clip.display()
    );
    assert!(
        message.len() > 20 && message.ends_with('.'),
        "{}: {message:?}",
        clip.display()
    );
}

#[tokio::test]
async fn failures_are_told_in_plain_words_and_the_tool_text_goes_to_the_log() {
    let app = TestApp::spawn(&[]);
    let cases: [(PathBuf, &str, &str); 3] = [
        (
            hygiene::ftyp_junk(),
            "unreadable_source",
            "Invalid data found",
        ),
        (
            fixtures::truncated(),
            "unreadable_source",
            "moov atom not found",
        ),
        (hygiene::unknown_codec(), "encode_failed", "codec none"),
    ];
    for (clip, code, raw) in &cases {
        let id = app.upload_id(clip).await;
        let failed = app.wait_for(&id, "failed").await;
        assert_eq!(
            failed["error"]["code"],
            *code,
            "{}: {failed}",
            clip.display()
        );
        let message = failed["error"]["message"].as_str().expect("message");
        assert_plain(message, &app, clip);
        let events = app.events(&id, None, |_| false).await;
        let last = events.last().expect("events");
        assert_eq!(
            (last.event.as_str(), last.data["error"]["message"].as_str()),
            ("failed", Some(message)),
            "the event stream says the same"
        );
        let logged = app.logs().lines().any(|line| {
            line.contains(&id) && line.contains(raw) && line.contains("\"level\":\"WARN\"")
        });
        assert!(
            logged,
            "{}: the log has {raw:?} with the video id\n{}",
            clip.display(),
            app.logs()
        );
    }
}
