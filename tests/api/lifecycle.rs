//! Deletes, busy encoders, crashes and restarts: nothing lost, nothing left behind.

use std::time::{Duration, Instant};

use crate::fixtures;
use crate::helpers::{DEADLINE, TestApp, follow, wait_until};

#[tokio::test]
async fn deleting_while_encoding_kills_ffmpeg_removes_every_file_and_tells_subscribers() {
    let app = TestApp::spawn(&[]);
    let id = app.upload_id(&fixtures::long()).await;
    // Subscribed before the delete (its snapshot arrived), or the delete could come first and
    // the watcher would find no video to follow.
    let watcher = follow(&app, &id).await;
    let started = Instant::now();
    while app.ffmpeg_processes().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "ffmpeg never started:\n{}",
            app.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    assert_eq!(app.delete(&id).await, 204);
    assert!(
        app.ffmpeg_processes().is_empty(),
        "ffmpeg was killed and reaped before the 204"
    );
    assert!(
        app.files_in("sources").is_empty(),
        "{:?}",
        app.files_in("sources")
    );
    assert!(app.files_in("hls").is_empty(), "{:?}", app.files_in("hls"));
    assert!(app.files_in("tmp").is_empty(), "{:?}", app.files_in("tmp"));
    let stream = tokio::time::timeout(Duration::from_secs(20), watcher)
        .await
        .expect("stream ended")
        .expect("task");
    assert!(stream.contains("event: canceled"), "{stream}");
    let (status, _) = app.get_json(&format!("/api/v1/videos/{id}")).await;
    assert_eq!(status, 404);
    assert_eq!(app.delete(&id).await, 404, "a second delete finds nothing");
}

#[tokio::test]
async fn uploads_are_accepted_while_every_encoder_is_busy() {
    let app = TestApp::spawn(&[]);
    let busy = app.upload_id(&fixtures::long()).await;
    app.wait_for(&busy, "processing").await;
    let (tiny, silent) = (fixtures::tiny(), fixtures::silent());
    let (a, b) = tokio::join!(
        app.upload_raw(&tiny, "video/mp4"),
        app.upload_raw(&silent, "video/mp4")
    );
    assert_eq!((a.status().as_u16(), b.status().as_u16()), (202, 202));
    let a: serde_json::Value = a.json().await.expect("json");
    let b: serde_json::Value = b.json().await.expect("json");
    let (a, b) = (
        app.video(a["id"].as_str().expect("id")).await,
        app.video(b["id"].as_str().expect("id")).await,
    );
    let mut positions = [a["queue_position"].as_u64(), b["queue_position"].as_u64()];
    positions.sort();
    assert_eq!(positions, [Some(1), Some(2)], "both wait their turn");
    assert_eq!(app.delete(&busy).await, 204);
    app.wait_for(a["id"].as_str().expect("id"), "ready").await;
    app.wait_for(b["id"].as_str().expect("id"), "ready").await;
}

#[tokio::test]
async fn a_full_queue_answers_503_with_retry_after() {
    let app = TestApp::spawn(&["--queue-capacity", "1"]);
    let running = app.upload_id(&fixtures::long()).await;
    app.wait_for(&running, "processing").await;
    app.upload(&fixtures::tiny()).await;
    let refused = app.upload_raw(&fixtures::tiny(), "video/mp4").await;
    assert_eq!(refused.status(), 503);
    assert!(refused.headers().get("retry-after").is_some());
    let body: serde_json::Value = refused.json().await.expect("json");
    assert_eq!(body["error"]["code"], "queue_full");
    assert_eq!(
        app.files_in("sources").len(),
        2,
        "the refused upload left nothing"
    );
}

#[tokio::test]
async fn after_a_crash_the_running_and_the_queued_job_both_finish() {
    let mut app = TestApp::spawn(&[]);
    let running = app.upload_id(&fixtures::long()).await;
    let queued = app.upload_id(&fixtures::standard()).await;
    app.events(&running, None, |e| {
        e.event == "progress"
            && e.data["step"] == "encoding"
            && e.data["progress"].as_f64().unwrap_or(0.0) > 0.05
    })
    .await;
    assert_eq!(app.video(&queued).await["status"], "queued");

    app.crash();
    let started = Instant::now();
    while !app.ffmpeg_processes().is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "ffmpeg outlived the crashed server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let media = app.media.clone();
    let restarted = TestApp::spawn_in(&media, &[], Vec::new());
    let video = restarted.wait_for(&running, "ready").await;
    assert!(
        video["renditions"]
            .as_array()
            .is_some_and(|r| !r.is_empty())
    );
    restarted.wait_for(&queued, "ready").await;
    // The job's work folder goes just after its `ready` commit: wait for it, not only look.
    wait_until("no orphan in tmp/", DEADLINE, async || {
        restarted.files_in("tmp").is_empty()
    })
    .await;
    drop(restarted);
    drop(app);
}

#[tokio::test]
async fn sigterm_during_an_encode_exits_cleanly_and_the_job_finishes_after_restart() {
    let mut app = TestApp::spawn(&[]);
    let id = app.upload_id(&fixtures::long()).await;
    // Subscribed (its snapshot arrived) before the server is told to stop.
    let watcher = follow(&app, &id).await;
    app.events(&id, None, |e| {
        e.event == "progress" && e.data["step"] == "encoding"
    })
    .await;
    let status = app.terminate();
    assert!(status.success(), "exit 0 on SIGTERM, got {status}");
    let stream = tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .expect("stream closed")
        .expect("task");
    assert!(
        stream.contains("event: reconnect"),
        "subscribers are told to reconnect: {stream}"
    );
    assert!(app.ffmpeg_processes().is_empty());

    let media = app.media.clone();
    let restarted = TestApp::spawn_in(&media, &[], Vec::new());
    restarted.wait_for(&id, "ready").await;
    drop(app);
}
