//! The change feed: every committed history event, once per cursor position, in `seq` order,
//! also while many writers commit at once (run on SQLite and, in the PostgreSQL pass, on
//! PostgreSQL, where sequence order and commit order would differ without the feed's lock).

use std::collections::BTreeSet;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;

use crate::fixtures;
use crate::helpers::TestApp;

/// Follows `/api/v1/changes` with long polls from `after` until `done` says so; returns the
/// events in the order received.
async fn follow(app: &TestApp, mut after: i64, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut seen = Vec::new();
    let started = tokio::time::Instant::now();
    while !done(&seen) {
        assert!(
            started.elapsed() < Duration::from_secs(180),
            "the feed did not deliver everything: {} events",
            seen.len()
        );
        let (status, page) = app
            .get_json(&format!("/api/v1/changes?after={after}&limit=7&wait=5"))
            .await;
        assert_eq!(status, 200, "{page}");
        for item in page["items"].as_array().expect("items") {
            seen.push(item.clone());
        }
        after = page["next_cursor"].as_i64().expect("cursor");
    }
    seen
}

fn seqs(events: &[Value]) -> Vec<i64> {
    events
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect()
}

#[tokio::test]
async fn a_consumer_sees_every_event_once_in_order_while_four_writers_commit() {
    let app = TestApp::spawn(&["--encoders", "1", "--queue-capacity", "100"]);
    let base = app.base.clone();
    // Four writers: each uploads five clips as fast as it can, while the encoder commits its
    // own events (processing, ready) in between.
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let base = base.clone();
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                let bytes = tokio::fs::read(fixtures::tiny()).await.expect("fixture");
                let mut ids = Vec::new();
                for _ in 0..5 {
                    let response = client
                        .post(format!("{base}/api/v1/videos"))
                        .header("Content-Type", "video/mp4")
                        .body(bytes.clone())
                        .send()
                        .await
                        .expect("upload");
                    assert_eq!(response.status(), 202);
                    let body: Value = response.json().await.expect("json");
                    ids.push(body["id"].as_str().expect("id").to_owned());
                }
                ids
            })
        })
        .collect();
    let consumer = {
        let app_base = base.clone();
        tokio::spawn(async move {
            let probe = TestAppView(app_base);
            probe.follow_until_ready(20).await
        })
    };
    let mut ids = BTreeSet::new();
    for writer in writers {
        ids.extend(writer.await.expect("writer"));
    }
    for id in &ids {
        app.wait_for(id, "ready").await;
    }
    let received = consumer.await.expect("consumer");
    // Everything committed, read afterwards in one go, is exactly what the consumer saw.
    let everything = follow(&app, 0, |seen| {
        seen.iter().filter(|e| e["kind"] == "ready").count() >= ids.len()
    })
    .await;
    let received_seqs = seqs(&received);
    assert!(
        received_seqs.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing: {received_seqs:?}"
    );
    let all_seqs = seqs(&everything);
    assert_eq!(
        received_seqs,
        all_seqs[..received_seqs.len()],
        "no event skipped, none twice"
    );
    for id in &ids {
        let kinds: Vec<&str> = received
            .iter()
            .filter(|e| e["video"] == id.as_str())
            .filter_map(|e| e["kind"].as_str())
            .collect();
        assert_eq!(kinds, ["uploaded", "queued", "processing", "ready"], "{id}");
    }
    // Resuming from a cursor in the middle gives exactly the rest.
    let middle = received_seqs[received_seqs.len() / 2];
    let rest = follow(&app, middle, |seen| {
        seen.last().and_then(|e| e["seq"].as_i64()) >= received_seqs.last().copied()
    })
    .await;
    assert_eq!(
        seqs(&rest)[..],
        all_seqs[received_seqs.len() / 2 + 1..received_seqs.len()]
    );
}

/// A consumer with its own HTTP client (the spawned task cannot borrow the `TestApp`).
struct TestAppView(String);

impl TestAppView {
    /// Follows the feed from 0 until `count` videos are ready.
    async fn follow_until_ready(&self, count: usize) -> Vec<Value> {
        let client = reqwest::Client::new();
        let (mut after, mut seen) = (0_i64, Vec::<Value>::new());
        let started = tokio::time::Instant::now();
        while seen.iter().filter(|e| e["kind"] == "ready").count() < count {
            assert!(
                started.elapsed() < Duration::from_secs(180),
                "consumer timed out"
            );
            let page: Value = client
                .get(format!(
                    "{}/api/v1/changes?after={after}&limit=3&wait=10",
                    self.0
                ))
                .send()
                .await
                .expect("changes")
                .json()
                .await
                .expect("json");
            seen.extend(page["items"].as_array().expect("items").iter().cloned());
            after = page["next_cursor"].as_i64().expect("cursor");
        }
        seen
    }
}

#[tokio::test]
async fn a_long_poll_answers_at_the_next_commit_and_the_stream_resumes_by_seq() {
    let app = TestApp::spawn(&[]);
    let (_, now) = app.get_json("/api/v1/changes?after=0&limit=1000").await;
    let cursor = now["next_cursor"].as_i64().expect("cursor");
    let empty = tokio::time::Instant::now();
    let (status, page) = app
        .get_json(&format!("/api/v1/changes?after={cursor}&wait=1"))
        .await;
    assert_eq!(status, 200);
    assert!(page["items"].as_array().expect("items").is_empty());
    assert!(
        empty.elapsed() >= Duration::from_millis(900),
        "waited for the long poll"
    );

    let waiting = {
        let url = app.url(&format!("/api/v1/changes?after={cursor}&wait=30"));
        tokio::spawn(async move {
            let asked = tokio::time::Instant::now();
            let page: Value = reqwest::get(url)
                .await
                .expect("poll")
                .json()
                .await
                .expect("json");
            (asked.elapsed(), page)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let id = app.upload_id(&fixtures::tiny()).await;
    let (waited, page) = waiting.await.expect("poll");
    assert!(
        waited < Duration::from_secs(10),
        "answered at the commit, not at the deadline: {waited:?}"
    );
    assert_eq!(page["items"][0]["video"], id.as_str(), "{page}");
    assert_eq!(page["items"][0]["kind"], "uploaded");

    for bad in ["wait=61", "wait=-1", "limit=0", "limit=1001", "after=-5"] {
        let (status, body) = app.get_json(&format!("/api/v1/changes?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
    }

    // The stream: `change` events whose id is the seq; Last-Event-ID resumes after it.
    let first = page["items"][0]["seq"].as_i64().expect("seq");
    let response = app
        .client
        .get(app.url("/api/v1/changes/stream"))
        .header("Last-Event-ID", first.to_string())
        .send()
        .await
        .expect("stream");
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut events = eventsource_stream::EventStream::new(response.bytes_stream());
    let next = tokio::time::timeout(Duration::from_secs(20), events.next())
        .await
        .expect("an event")
        .expect("open")
        .expect("well-formed");
    assert_eq!(next.event, "change");
    let item: Value = serde_json::from_str(&next.data).expect("json");
    assert_eq!(next.id, item["seq"].to_string());
    assert!(
        item["seq"].as_i64() > Some(first),
        "resumed after the Last-Event-ID"
    );
    assert_eq!(item["video"], id.as_str());
}
