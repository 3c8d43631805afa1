//! Server-Sent Events: snapshot first, monotonic progress, one terminal event, resumable.

use crate::fixtures;
use crate::helpers::{DEADLINE, TestApp};

const TERMINAL: [&str; 3] = ["ready", "failed", "canceled"];

#[tokio::test]
async fn events_start_with_a_snapshot_rise_monotonically_and_end_after_one_terminal_event() {
    let app = TestApp::spawn(&[]);
    let id = app.upload_id(&fixtures::standard()).await;
    let events = app.events(&id, None, |_| false).await;

    assert_eq!(events[0].event, "snapshot", "first event: {:?}", events[0]);
    assert_eq!(events[0].data["id"], id.as_str());
    let ids: Vec<u64> = events.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids grow: {ids:?}");

    let progress: Vec<f64> = events
        .iter()
        .filter(|e| e.event == "progress")
        .map(|e| e.data["progress"].as_f64().expect("progress"))
        .collect();
    assert!(
        !progress.is_empty(),
        "progress events were sent: {events:?}"
    );
    assert!(
        progress.windows(2).all(|w| w[0] <= w[1]),
        "progress never goes back: {progress:?}"
    );
    let encoding = events
        .iter()
        .find(|e| e.event == "progress" && e.data["step"] == "encoding")
        .expect("an encoding event");
    assert!(encoding.data.get("percent").is_some() && encoding.data.get("eta_seconds").is_some());
    // Every progress event says when it was published (RFC 3339, UTC, µs): fixed width, so
    // the strings sort as the instants do.
    let published: Vec<&str> = events
        .iter()
        .filter(|e| e.event == "progress")
        .map(|e| e.data["at"].as_str().expect("`at` on every progress event"))
        .collect();
    assert!(
        published
            .iter()
            .all(|at| at.len() == 27 && at.ends_with('Z')),
        "{published:?}"
    );
    assert!(published.windows(2).all(|w| w[0] <= w[1]), "{published:?}");

    let terminal: Vec<_> = events
        .iter()
        .filter(|e| TERMINAL.contains(&e.event.as_str()))
        .collect();
    assert_eq!(terminal.len(), 1, "exactly one terminal event");
    assert_eq!(
        events.last().expect("events").event,
        "ready",
        "the stream ends after it"
    );
    assert_eq!(terminal[0].data["progress"], 1.0, "ready carries 100%");
}

#[tokio::test]
async fn a_reconnect_with_last_event_id_continues_without_repeating() {
    let app = TestApp::spawn(&[]);
    let id = app.upload_id(&fixtures::long()).await;
    // Leave after the first real encoding progress, as a browser losing its connection would.
    let first = app
        .events(&id, None, |e| {
            e.event == "progress" && e.data["progress"].as_f64().unwrap_or(0.0) > 0.03
        })
        .await;
    let last_seen = first.last().expect("events").id;
    // Progress is persisted while encoding (every 2 s, on ffmpeg's next report), so the
    // resource shows it too.
    let started = std::time::Instant::now();
    while app.video(&id).await["progress"].as_f64().unwrap_or(0.0) <= 0.02 {
        assert!(started.elapsed() < DEADLINE, "progress never persisted");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let rest = app.events(&id, Some(last_seen), |_| false).await;

    assert!(
        rest.iter().all(|e| e.id > last_seen),
        "nothing at or before {last_seen} again"
    );
    assert_ne!(
        rest[0].event, "snapshot",
        "a resumable reconnect replays instead of restarting"
    );
    let before = first
        .iter()
        .filter(|e| e.event == "progress")
        .map(|e| e.data["progress"].as_f64().unwrap_or(0.0))
        .fold(0.0, f64::max);
    let after: Vec<f64> = rest
        .iter()
        .filter(|e| e.event == "progress")
        .map(|e| e.data["progress"].as_f64().unwrap_or(0.0))
        .collect();
    assert!(
        after.iter().all(|p| *p >= before),
        "progress continues from {before}: {after:?}"
    );
    assert_eq!(rest.last().expect("events").event, "ready");
    assert_eq!(
        rest.iter()
            .filter(|e| TERMINAL.contains(&e.event.as_str()))
            .count(),
        1
    );
}

#[tokio::test]
async fn a_finished_video_answers_with_its_snapshot_and_terminal_event() {
    let app = TestApp::spawn(&[]);
    let id = app.upload_id(&fixtures::silent()).await;
    app.wait_for(&id, "ready").await;
    let events = app.events(&id, None, |_| false).await;
    let names: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(names, ["snapshot", "ready"]);
    let (status, _) = app
        .get_json(&format!("/api/v1/videos/{}/events", uuid_like()))
        .await;
    assert_eq!(status, 404);
}

fn uuid_like() -> &'static str {
    "01900000-0000-7000-8000-000000000000"
}
