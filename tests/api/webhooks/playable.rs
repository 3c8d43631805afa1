//! `video.playable` end to end: a receiver subscribed to it gets it signed (verified with the
//! `standardwebhooks` library), before `video.ready`, with what docs/webhooks.md promises:
//! `type`, `timestamp` (the history event's time), `data` with `id`, `owner` and `seq` (the
//! `playable` event has no further facts), and `webhook-id: evt_<seq>`.

use std::time::{Duration, SystemTime};

use serde_json::{Value, json};

use super::support::{Receiver, allow_private, endpoint, eventually};
use crate::fixtures;
use crate::helpers::TestApp;

fn time(rfc3339: &Value) -> SystemTime {
    let text = rfc3339.as_str().unwrap_or_default();
    humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("not RFC 3339: {rfc3339}: {e}"))
}

#[tokio::test]
async fn a_subscriber_gets_a_signed_video_playable_before_video_ready() {
    let receiver = Receiver::start();
    // A preset slow enough that the 40 s clip is watched well before it is done.
    let flags = [allow_private(), vec!["--x264-preset", "medium"]].concat();
    let app = TestApp::spawn(&flags);
    let events = json!(["video.playable", "video.ready"]);
    endpoint(&app, &receiver, "/live", events).await;

    let id = app.upload_id(&fixtures::long_small()).await;
    let video = app.wait_for(&id, "ready").await;
    // Both answered, not only received: the receiver logs the answer after the call arrived.
    let calls = eventually(&app, "video.playable and video.ready", || async {
        let calls = receiver.calls("/live", "received");
        (calls.len() >= 2 && receiver.delivered("/live").len() >= 2).then_some(calls)
    })
    .await;
    let (status, page) = app
        .get_json(&format!("/api/v1/videos/{id}/history?limit=1000"))
        .await;
    assert_eq!(status, 200, "{page}");
    let history = page["items"].as_array().expect("items");
    let item = |kind: &str| {
        history
            .iter()
            .find(|e| e["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in {page}"))
            .clone()
    };
    let (playable, ready) = (item("playable"), item("ready"));

    // Exactly the two subscribed types, each once, playable first, each verified.
    let types: Vec<&str> = calls.iter().filter_map(|c| c["type"].as_str()).collect();
    assert_eq!(types, ["video.playable", "video.ready"], "{calls:?}");
    assert!(calls.iter().all(|c| c["verified"] == true), "{calls:?}");
    assert_eq!(
        receiver.delivered("/live"),
        [
            format!("evt_{}", playable["seq"]),
            format!("evt_{}", ready["seq"])
        ]
    );

    let call = &calls[0];
    let body = &call["payload"];
    assert_eq!(body["type"], "video.playable", "{body}");
    assert_eq!(
        body["timestamp"], playable["at"],
        "the history event's time"
    );
    let mut fields: Vec<&str> = body["data"]
        .as_object()
        .expect("data")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["id", "owner", "seq"], "{body}");
    assert_eq!(body["data"]["id"], id.as_str());
    assert_eq!(body["data"]["owner"], Value::Null, "no auth: no owner");
    assert_eq!(body["data"]["seq"], playable["seq"]);
    assert_eq!(call["id"], format!("evt_{}", playable["seq"]));
    let (sent, playable_at) = (time(&body["timestamp"]), time(&video["playable_at"]));
    let apart = sent
        .duration_since(playable_at)
        .unwrap_or_else(|early| early.duration());
    assert!(
        apart < Duration::from_secs(1),
        "the event's time is when the video became playable: {body} vs {video}"
    );
    assert!(
        time(&calls[1]["payload"]["timestamp"]) >= sent,
        "ready comes after playable: {calls:?}"
    );
    assert!(playable["seq"].as_i64() < ready["seq"].as_i64());
}
