//! The hardening kinds the store, the workers and start-up own: a failed write is seen, a crash
//! at any instant leaves no orphan, readiness tells the truth, crashes are not charged to a
//! job, a panicking job does not take its worker with it, missing tools are said plainly.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::faults::SmallDisk;
use crate::fixtures;
use crate::helpers::{DEADLINE, TestApp, wait_until};

/// A UUIDv7-shaped id no row has.
const STRAY: &str = "01a22d47-b58a-70f7-b7c6-c05a8e65a8e8";

#[tokio::test]
async fn a_write_the_full_database_disk_refuses_changes_nothing_and_answers_507() {
    // A SQLite file on a disk of its own, whatever engine the other specs run on.
    let disk = SmallDisk::mount(8);
    let url = format!("sqlite://{}/reel.db", disk.dir.path().display());
    let app = TestApp::spawn(&["--database-url", &url]);
    let id = app.upload_id(&fixtures::tiny()).await;
    app.wait_for(&id, "ready").await;
    let filler = disk.fill_leaving(0);
    // The delete's transaction cannot be written: it fails, visibly, and changes nothing.
    assert_eq!(
        app.delete(&id).await,
        507,
        "a failed delete is a 507, not a 204"
    );
    let video = app.video(&id).await;
    assert_eq!(video["status"], "ready", "the row is as it was");
    assert!(
        app.media.join("sources").join(&id).is_file(),
        "the source was not removed"
    );
    assert!(
        app.media
            .join("hls")
            .join(&id)
            .join("master.m3u8")
            .is_file(),
        "nor the ladder"
    );
    std::fs::remove_file(filler).expect("free the disk");
    assert_eq!(app.delete(&id).await, 204);
    assert_eq!(app.get_json(&format!("/api/v1/videos/{id}")).await.0, 404);
}

#[tokio::test]
async fn a_restart_after_a_crash_leaves_no_file_without_a_row_and_no_row_without_its_files() {
    // One node on its own SQLite file, whatever engine the other specs run on: on a shared
    // database other nodes may be mid-upload, so files without a row are only removed once
    // older than the janitor's grace (see recovery.rs).
    let media = tempfile::tempdir().expect("media");
    let url = format!("sqlite://{}/reel.db", media.path().display());
    let single = ["--database-url", url.as_str()];
    let mut app = TestApp::start("serve", media.path(), &single, Vec::new());
    let kept = app.upload_id(&fixtures::tiny()).await;
    app.wait_for(&kept, "ready").await;
    let lost_ladder = app.upload_id(&fixtures::tiny()).await;
    app.wait_for(&lost_ladder, "ready").await;
    app.crash();
    let media = app.media.clone();
    // What crashes at the wrong instant leave behind: a source whose row was never written
    // (upload), a ladder whose row was deleted (delete), work in tmp/, and a ready row whose
    // ladder went missing.
    std::fs::write(media.join("sources").join(STRAY), b"orphan").expect("orphan source");
    std::fs::create_dir_all(media.join("hls").join(STRAY).join("360p")).expect("orphan ladder");
    std::fs::write(
        media.join("hls").join(STRAY).join("master.m3u8"),
        b"#EXTM3U\n",
    )
    .expect("master");
    std::fs::write(media.join("tmp").join("upload-crashed"), b"partial").expect("tmp");
    std::fs::remove_dir_all(media.join("hls").join(&lost_ladder)).expect("lose a ladder");

    let app = TestApp::spawn_in(&media, &single, Vec::new());
    assert!(
        !media.join("sources").join(STRAY).exists(),
        "source without a row removed"
    );
    assert!(
        !media.join("hls").join(STRAY).exists(),
        "ladder without a row removed"
    );
    assert!(
        app.files_in("tmp").is_empty(),
        "tmp/ swept: {:?}",
        app.files_in("tmp")
    );
    let redone = app.wait_for(&lost_ladder, "ready").await;
    assert!(
        media
            .join("hls")
            .join(&lost_ladder)
            .join("master.m3u8")
            .is_file(),
        "{redone}"
    );
    assert!(
        media.join("hls").join(&kept).join("master.m3u8").is_file(),
        "untouched"
    );
    let (_, history) = app
        .get_json(&format!("/api/v1/videos/{lost_ladder}/history"))
        .await;
    assert!(
        history["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|e| e["kind"] == "retried"),
        "the repair is in the history: {history}"
    );
}

#[tokio::test]
async fn readiness_is_false_while_uploads_would_be_refused_for_space() {
    let app = TestApp::spawn(&["--min-free-bytes", "1000TiB"]);
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        (body["space"].as_bool(), body["database"].as_bool()),
        (Some(false), Some(true))
    );
    assert_eq!(app.get_json("/healthz").await.0, 200, "alive all the same");
}

#[tokio::test]
async fn a_database_file_deleted_under_the_server_is_unready_and_every_request_a_503() {
    // A SQLite file, whatever engine the other specs run on (PostgreSQL outages: scale.rs).
    let media = tempfile::tempdir().expect("media");
    let url = format!("sqlite://{}/reel.db", media.path().display());
    let app = TestApp::start("serve", media.path(), &["--database-url", &url], Vec::new());
    assert_eq!(app.get_json("/readyz").await.0, 200);
    std::fs::remove_file(app.media.join("reel.db")).expect("delete the database");
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(
        (status, body["database"].as_bool()),
        (503, Some(false)),
        "{body}"
    );
    // Not 500 and 200 by turns: every request sees the same, with Retry-After.
    for _ in 0..6 {
        let response = app
            .client
            .get(app.url("/api/v1/videos"))
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 503);
        assert!(response.headers().contains_key("retry-after"));
    }
    assert!(
        !app.media.join("reel.db").exists(),
        "not silently recreated empty"
    );
}

#[tokio::test]
async fn crashes_during_an_encode_are_not_charged_to_the_job_but_a_job_that_keeps_crashing_stops() {
    // The media dir lives as long as the first server; each restart runs on it.
    let media = tempfile::tempdir().expect("media");
    let mut apps = vec![TestApp::start(
        "serve",
        media.path(),
        &["--x264-preset", "medium"],
        Vec::new(),
    )];
    let id = apps[0].upload_id(&fixtures::long()).await;
    for crash in 0..3 {
        let app = apps.last_mut().expect("app");
        wait_until("the ladder ffmpeg", Duration::from_secs(60), async || {
            ladder_running(app, &id)
        })
        .await;
        app.crash();
        let preset = if crash < 2 { "medium" } else { "ultrafast" };
        apps.push(TestApp::start(
            "serve",
            media.path(),
            &["--x264-preset", preset],
            Vec::new(),
        ));
    }
    let app = apps.last().expect("app");
    let video = app.wait_for(&id, "ready").await;
    assert_eq!(
        video["status"], "ready",
        "three crashes did not fail an innocent job: {video}"
    );

    // A file that "crashes the server" every time it is tried: failed after the fifth.
    let media = tempfile::tempdir().expect("media");
    let slow = ["--x264-preset", "veryslow"];
    let mut apps = vec![TestApp::start("serve", media.path(), &slow, Vec::new())];
    let id = apps[0].upload_id(&fixtures::long()).await;
    let started = Instant::now();
    let failed = loop {
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "never stopped"
        );
        let app = apps.last_mut().expect("app");
        let video = app.video(&id).await;
        if video["status"] == "failed" {
            break video;
        }
        if ladder_running(app, &id) {
            app.crash();
            apps.push(TestApp::start("serve", media.path(), &slow, Vec::new()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(failed["error"]["code"], "interrupted_too_often", "{failed}");
    let message = failed["error"]["message"].as_str().unwrap_or("");
    assert!(message.contains("interrupted 5 times"), "{message}");
}

/// The ladder ffmpeg of `id` runs under `app` (not a probe or the interlace check).
fn ladder_running(app: &TestApp, id: &str) -> bool {
    app.ffmpeg_processes().into_iter().any(|pid| {
        std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
            let text = String::from_utf8_lossy(&c);
            text.contains("-var_stream_map") && text.contains(id)
        })
    })
}

#[tokio::test]
async fn a_panicking_job_fails_with_a_reason_and_its_worker_goes_on() {
    let media = tempfile::tempdir().expect("media");
    let app = TestApp::start_with_env(
        "serve",
        media.path(),
        &[],
        Vec::new(),
        &[("REEL_FAULT_PANIC_ON_TITLE", "boom")],
    );
    let response = app
        .client
        .post(app.url("/api/v1/videos"))
        .header("Content-Type", "video/mp4")
        .header("X-Title", "boom")
        .body(tokio::fs::read(fixtures::tiny()).await.expect("fixture"))
        .send()
        .await
        .expect("upload");
    let id = response.json::<Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let failed = app.wait_for(&id, "failed").await;
    assert_eq!(failed["error"]["code"], "internal_error", "{failed}");
    assert!(
        !failed["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("panicked")
    );
    // The one worker is free again: the next job runs, and the gauge is back at 0.
    let next = app.upload_id(&fixtures::tiny()).await;
    app.wait_for(&next, "ready").await;
    // The encoder is freed just after the `ready` commit the poll saw: wait for the gauge.
    wait_until("the gauge back at 0", DEADLINE, async || {
        app.metric("reel_encoders_busy").await == 0.0
    })
    .await;
    let asked = Instant::now();
    assert_eq!(app.delete(&id).await, 204);
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "no wait for a worker that is gone"
    );
}

fn script(dir: &Path, name: &str, body: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path.to_string_lossy().into_owned()
}

#[tokio::test]
async fn missing_or_crippled_tools_stop_start_up_in_plain_words_and_readiness_follows_them() {
    let bin = tempfile::tempdir().expect("bin");
    let media = tempfile::tempdir().expect("media");
    let crippled = script(
        bin.path(),
        "ffmpeg-without-filters",
        "[ \"$2\" = -filters ] && exit 0; exec ffmpeg \"$@\"",
    );
    for (flag, value, expected) in [
        ("--ffmpeg", "/nonexistent/ffmpeg", "ffmpeg was not found"),
        ("--ffprobe", "/nonexistent/ffprobe", "ffprobe was not found"),
        ("--ffmpeg", crippled.as_str(), "lacks the filters"),
    ] {
        let output = std::process::Command::new(env!("CARGO_BIN_EXE_reel"))
            .args(["serve", "--listen", "127.0.0.1:0", "--media-dir"])
            .arg(media.path())
            .args([flag, value])
            .output()
            .expect("reel");
        assert!(
            !output.status.success(),
            "{flag} {value} must stop start-up"
        );
        let said = String::from_utf8_lossy(&output.stderr);
        assert_eq!(said.matches(expected).count(), 1, "said once: {said}");
        assert!(
            !said.contains("Caused by")
                && !said.contains("error.chain")
                && !said.contains("stack backtrace"),
            "{said}"
        );
    }
    // A working copy that then disappears: not ready any more.
    let ffmpeg = script(bin.path(), "ffmpeg", "exec ffmpeg \"$@\"");
    let app = TestApp::spawn(&["--ffmpeg", &ffmpeg]);
    assert_eq!(app.get_json("/readyz").await.0, 200);
    std::fs::remove_file(&ffmpeg).expect("remove");
    let (status, body) = app.get_json("/readyz").await;
    assert_eq!(
        (status, body["tools"].as_bool()),
        (503, Some(false)),
        "{body}"
    );
    // A job that cannot start the tool goes back to the queue saying which tool, in plain
    // words, with no server path (the path is in the log only).
    let id = app.upload_id(&fixtures::tiny()).await;
    let retried = wait_for_event(&app, &id, "retried").await;
    let reason = retried["data"]["reason"].as_str().expect("reason");
    assert!(reason.contains("ffmpeg could not be started"), "{retried}");
    let video = app.video(&id).await;
    assert_eq!(video["status"], "queued", "{video}");
    let bin_path = bin.path().to_str().expect("path");
    for text in [reason.to_owned(), video.to_string()] {
        assert!(
            !text.contains(bin_path) && !text.contains("No such file"),
            "no path or OS error in public text: {text}"
        );
    }
    assert!(app.logs().contains(bin_path), "the path is in the log");
}

/// The first `kind` event of the video's history, waiting up to 20 s for it.
async fn wait_for_event(app: &TestApp, id: &str, kind: &str) -> Value {
    let mut found = None;
    wait_until(kind, Duration::from_secs(20), async || {
        let (_, history) = app.get_json(&format!("/api/v1/videos/{id}/history")).await;
        found = history["items"]
            .as_array()
            .and_then(|items| items.iter().find(|e| e["kind"] == kind).cloned());
        found.is_some()
    })
    .await;
    found.expect("event")
}
