//! Webhooks against real processes: reel, and a receiver (tests/api/webhooks/receiver.py) that
//! verifies every call with the PyPI `standardwebhooks` library, independent of reel.

mod playable;
mod support;

use serde_json::{Value, json};

use crate::fixtures;
use crate::helpers::{TestApp, postgres_database, postgres_url};
use support::{Receiver, allow_private, create, endpoint, eventually, expected_ids, webhook};

#[tokio::test]
async fn a_webhook_is_created_with_its_secret_shown_once_listed_read_and_deleted() {
    let app = TestApp::spawn(&allow_private());
    let (status, created) = create(
        &app,
        json!({"url": "http://127.0.0.1:9/hook", "events": ["video.failed", "video.ready"],
               "description": "ops"}),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_owned();
    let secret = created["secret"].as_str().expect("secret");
    let key = secret.strip_prefix("whsec_").expect("whsec_ prefix");
    assert!(key.len() >= 32, "a 32-byte key in base64: {secret}");
    assert_eq!(created["events"], json!(["video.ready", "video.failed"]));
    assert_eq!(created["delivery"]["circuit"], "closed");
    assert_eq!(created["delivery"]["dead_letters"], 0);

    let (status, list) = app.get_json("/api/v1/webhooks").await;
    assert_eq!(status, 200);
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["id"], id.as_str());
    assert!(
        items[0].get("secret").is_none(),
        "the secret is shown only once"
    );
    let one = webhook(&app, &id).await;
    assert!(one.get("secret").is_none());
    assert_eq!(one["description"], "ops");

    for (body, code) in [
        (json!({"url": "ftp://example.com/"}), "invalid_url"),
        (json!({"url": "not a url"}), "invalid_url"),
        (
            json!({"url": "http://127.0.0.1:9/", "events": ["video.exploded"]}),
            "invalid_events",
        ),
        (
            json!({"url": "http://127.0.0.1:9/", "events": []}),
            "invalid_events",
        ),
        (json!({"events": ["video.ready"]}), "invalid_body"),
    ] {
        let (status, error) = create(&app, body.clone()).await;
        assert_eq!(
            (status, error["error"]["code"].as_str()),
            (400, Some(code)),
            "{body}"
        );
    }
    let not_json = app
        .client
        .post(app.url("/api/v1/webhooks"))
        .body("url=x")
        .send()
        .await
        .expect("POST");
    assert_eq!(not_json.status(), 415);

    let gone = app
        .client
        .delete(app.url(&format!("/api/v1/webhooks/{id}")))
        .send()
        .await
        .expect("DELETE");
    assert_eq!(gone.status(), 204);
    let (status, error) = app.get_json(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(
        (status, error["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, _) = app
        .get_json("/api/v1/webhooks/not-an-id/dead-letters")
        .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn private_destinations_are_refused_at_creation_and_again_at_delivery_without_the_flag() {
    let receiver = Receiver::start();
    let strict = TestApp::spawn(&[]);
    for url in [
        receiver.url("/x"),
        format!("http://localhost:{}/x", receiver.port),
        "http://[::1]/x".to_owned(),
        "http://169.254.169.254/latest/meta-data".to_owned(),
        "http://10.0.0.1/x".to_owned(),
        "http://[fd00::1]/x".to_owned(),
    ] {
        let (status, error) = create(&strict, json!({ "url": url })).await;
        assert_eq!(status, 400, "{url}: {error}");
        assert_eq!(error["error"]["code"], "destination_not_allowed", "{url}");
    }
    drop(strict);

    // Created while private destinations were allowed; the server restarts without the flag:
    // the address is checked again when it is dialled, and nothing reaches the receiver.
    let media = tempfile::tempdir().expect("media");
    let dir = media.path().to_path_buf();
    let mut lenient = TestApp::spawn_in(&dir, &allow_private(), Vec::new());
    let created = endpoint(&lenient, &receiver, "/x", json!(["video.uploaded"])).await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert!(lenient.terminate().success());
    let app = TestApp::spawn_in(&dir, &[], vec![media]);
    app.upload_id(&fixtures::tiny()).await;
    let refused = eventually(&app, "a refused delivery", || async {
        let state = webhook(&app, &id).await;
        let error = state["delivery"]["last_error"].as_str().unwrap_or_default();
        error.contains("not a public address").then_some(state)
    })
    .await;
    assert!(refused["delivery"]["consecutive_failures"].as_u64() >= Some(1));
    let metrics = app.metrics_text().await;
    assert!(
        metrics.contains(r#"reel_webhook_deliveries_total{outcome="refused"}"#),
        "{metrics}"
    );
    assert!(receiver.calls("/x", "received").is_empty());
}

#[tokio::test]
async fn events_arrive_signed_in_order_and_verify_with_the_standard_webhooks_library() {
    let receiver = Receiver::start();
    let app = TestApp::spawn(&allow_private());
    let all = endpoint(&app, &receiver, "/all", json!(null)).await;
    endpoint(&app, &receiver, "/ready", json!(["video.ready"])).await;

    let video = app.upload_id(&fixtures::tiny()).await;
    app.wait_for(&video, "ready").await;
    assert_eq!(app.delete(&video).await, 204);
    let videos = vec![video.clone()];
    let expected = expected_ids(&app, &videos).await;
    assert!(
        expected.len() >= 4,
        "uploaded, processing, ready, deleted: {expected:?}"
    );
    let got = eventually(&app, "every event on /all", || async {
        let got = receiver.delivered("/all");
        (got.len() >= expected.len()).then_some(got)
    })
    .await;
    assert_eq!(got, expected, "every event once, in seq order");

    let calls = receiver.calls("/all", "received");
    assert!(calls.iter().all(|c| c["verified"] == true), "{calls:?}");
    let types: Vec<&str> = calls.iter().filter_map(|c| c["type"].as_str()).collect();
    assert_eq!(types.first(), Some(&"video.uploaded"));
    assert_eq!(types.last(), Some(&"video.deleted"));
    assert!(calls.iter().all(|c| c["video"] == video.as_str()));
    for call in &calls {
        assert_eq!(call["id"], format!("evt_{}", call["seq"]));
    }
    let ready = eventually(&app, "video.ready on /ready", || async {
        let calls = receiver.calls("/ready", "received");
        (!calls.is_empty()).then_some(calls)
    })
    .await;
    assert_eq!(ready.len(), 1);
    assert_eq!(ready[0]["type"], "video.ready");
    assert_eq!(ready[0]["verified"], true);

    // The receiver records a call before it answers, and the cursor moves once the answer is
    // back: wait for the last event's cursor rather than read it the moment the call arrived.
    let all_id = all["id"].as_str().expect("id");
    let last_seq: i64 = expected.last().expect("events")[4..].parse().expect("seq");
    let state = eventually(&app, "the cursor past the last event", || async {
        let state = webhook(&app, all_id).await;
        (state["delivery"]["cursor"].as_i64() >= Some(last_seq)).then_some(state)
    })
    .await;
    assert_eq!(state["delivery"]["last_status"], 204);
    assert_eq!(state["delivery"]["circuit"], "closed");
}

#[tokio::test]
async fn a_receiver_that_is_down_opens_the_breaker_and_gets_everything_in_order_once_back() {
    let mut receiver = Receiver::start();
    let app = TestApp::spawn(&[
        "--webhook-allow-private",
        "--webhook-backoff-base-ms",
        "100",
        "--webhook-breaker-failures",
        "3",
        "--webhook-breaker-cooldown-secs",
        "2",
        "--webhook-max-attempts",
        "1000",
    ]);
    let created = endpoint(&app, &receiver, "/hook", json!(null)).await;
    let id = created["id"].as_str().expect("id").to_owned();
    receiver.down();

    let mut videos = Vec::new();
    for _ in 0..3 {
        videos.push(app.upload_id(&fixtures::tiny()).await);
    }
    let gauge = format!(r#"reel_webhook_circuit_state{{endpoint="{id}"}}"#);
    let open = eventually(&app, "the breaker to open", || async {
        let state = webhook(&app, &id).await;
        (state["delivery"]["circuit"] == "open").then_some(state)
    })
    .await;
    assert!(open["delivery"]["consecutive_failures"].as_u64() >= Some(3));
    assert!(open["delivery"]["next_attempt_at"].is_string());
    assert!(open["delivery"]["last_error"].is_string());
    eventually(&app, "open (1) in /metrics", || async {
        (app.metric(&gauge).await == 1.0).then_some(())
    })
    .await;

    for video in &videos {
        app.wait_for(video, "ready").await;
    }
    receiver.up();
    receiver
        .control(json!({"secrets": {"/hook": created["secret"]}}))
        .await;
    let expected = expected_ids(&app, &videos).await;
    let got = eventually(&app, "every event after the receiver came back", || async {
        let got = receiver.delivered("/hook");
        (got.len() >= expected.len()).then_some(got)
    })
    .await;
    assert_eq!(got, expected, "nothing lost, in seq order");
    assert!(
        receiver
            .calls("/hook", "received")
            .iter()
            .all(|c| c["verified"] == true)
    );
    let closed = webhook(&app, &id).await;
    assert_eq!(closed["delivery"]["circuit"], "closed");
    assert_eq!(closed["delivery"]["consecutive_failures"], 0);
    assert_eq!(app.metric(&gauge).await, 0.0, "closed is 0 in /metrics");
    let metrics = app.metrics_text().await;
    assert!(metrics.contains(r#"reel_webhook_deliveries_total{outcome="unreachable"}"#));
    assert!(metrics.contains("reel_webhook_delivery_duration_seconds_bucket"));
}

#[tokio::test]
async fn an_event_in_flight_when_reel_is_killed_is_delivered_again_after_a_restart() {
    let receiver = Receiver::start();
    let media = tempfile::tempdir().expect("media");
    let dir = media.path().to_path_buf();
    let mut first = TestApp::spawn_in(&dir, &allow_private(), Vec::new());
    let created = endpoint(&first, &receiver, "/hook", json!(null)).await;
    receiver.control(json!({"delay_ms": 4000})).await;
    let video = first.upload_id(&fixtures::tiny()).await;
    let in_flight = eventually(&first, "the first call to arrive", || async {
        receiver.calls("/hook", "received").first().cloned()
    })
    .await;
    first.crash();
    receiver.control(json!({"delay_ms": 0})).await;

    let app = TestApp::spawn_in(&dir, &allow_private(), vec![media]);
    app.wait_for(&video, "ready").await;
    let expected = expected_ids(&app, std::slice::from_ref(&video)).await;
    let got = eventually(&app, "every event after the restart", || async {
        let got = receiver.delivered("/hook");
        (got.len() >= expected.len()).then_some(got)
    })
    .await;
    assert_eq!(got, expected, "at least once, in order, no gap");
    let first_id = in_flight["id"].as_str().expect("id");
    let sent = receiver
        .calls("/hook", "received")
        .iter()
        .filter(|c| c["id"] == first_id)
        .count();
    assert!(sent >= 2, "the call cut by the kill was made again");
    let state = webhook(&app, created["id"].as_str().expect("id")).await;
    assert_eq!(state["delivery"]["circuit"], "closed");
}

#[tokio::test]
async fn an_event_that_keeps_failing_is_dead_lettered_and_redelivered_with_one_call() {
    let receiver = Receiver::start();
    let app = TestApp::spawn(&[
        "--webhook-allow-private",
        "--webhook-max-attempts",
        "2",
        "--webhook-backoff-base-ms",
        "50",
        "--webhook-breaker-failures",
        "1000",
    ]);
    let created = endpoint(&app, &receiver, "/hook", json!(["video.uploaded"])).await;
    let id = created["id"].as_str().expect("id").to_owned();
    receiver.control(json!({"status": 500})).await;
    let dead_videos = vec![
        app.upload_id(&fixtures::tiny()).await,
        app.upload_id(&fixtures::tiny()).await,
    ];
    eventually(&app, "two dead letters", || async {
        (webhook(&app, &id).await["delivery"]["dead_letters"] == 2).then_some(())
    })
    .await;
    let (status, page) = app
        .get_json(&format!("/api/v1/webhooks/{id}/dead-letters"))
        .await;
    assert_eq!(status, 200);
    let dead = page["items"].as_array().expect("items").clone();
    assert_eq!(dead.len(), 2);
    for (letter, video) in dead.iter().zip(&dead_videos) {
        assert_eq!(letter["type"], "video.uploaded");
        assert_eq!(letter["attempts"], 2);
        assert_eq!(letter["last_error"], "HTTP 500");
        assert_eq!(letter["payload"]["data"]["id"], video.as_str());
        assert_eq!(letter["message_id"], format!("evt_{}", letter["seq"]));
    }

    // Delivery moved on: a later event goes through once the receiver answers again.
    receiver.control(json!({"status": 204})).await;
    let later = app.upload_id(&fixtures::tiny()).await;
    let later_ids = expected_ids(&app, std::slice::from_ref(&later)).await;
    eventually(&app, "the later event", || async {
        receiver
            .delivered("/hook")
            .contains(&later_ids[0])
            .then_some(())
    })
    .await;

    let response = app
        .client
        .post(app.url(&format!("/api/v1/webhooks/{id}/dead-letters/redeliver")))
        .send()
        .await
        .expect("redeliver");
    assert_eq!(response.status(), 202);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["redelivering"], 2);
    eventually(&app, "the dead letters to be delivered", || async {
        (webhook(&app, &id).await["delivery"]["dead_letters"] == 0).then_some(())
    })
    .await;
    // The receiver logs a call as answered after the answer went out, so reel may have taken
    // the letters off before that line is written: wait for it rather than read it once.
    let redelivered: Vec<String> = dead
        .iter()
        .map(|letter| letter["message_id"].as_str().expect("id").to_owned())
        .collect();
    eventually(
        &app,
        "the redelivered letters logged as answered",
        || async {
            let delivered = receiver.delivered("/hook");
            redelivered
                .iter()
                .all(|id| delivered.contains(id))
                .then_some(())
        },
    )
    .await;
    assert!(app.metric("reel_webhook_dead_letters_total").await >= 2.0);
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test runs it"]
async fn two_api_nodes_never_send_one_endpoints_events_at_the_same_time() {
    let admin = postgres_url().expect("scripts/test sets REEL_TEST_POSTGRES_URL");
    let media = tempfile::tempdir().expect("media");
    let dir = media.path().to_path_buf();
    let database = postgres_database(&admin, &dir.to_string_lossy());
    let flags = [
        "--database-url",
        database.as_str(),
        "--webhook-allow-private",
    ];
    let one = TestApp::start("serve", &dir, &flags, vec![media]);
    let two = TestApp::start("serve", &dir, &flags, Vec::new());
    let receiver = Receiver::start();
    endpoint(&one, &receiver, "/hook", json!(null)).await;
    // Slow answers: two senders of one endpoint would overlap.
    receiver.control(json!({"delay_ms": 200})).await;
    let mut videos = Vec::new();
    for node in [&one, &two, &one, &two] {
        videos.push(node.upload_id(&fixtures::tiny()).await);
    }
    for video in &videos {
        one.wait_for(video, "ready").await;
    }
    let expected = expected_ids(&one, &videos).await;
    let got = eventually(&one, "every event", || async {
        let got = receiver.delivered("/hook");
        (got.len() >= expected.len()).then_some(got)
    })
    .await;
    assert_eq!(got, expected);
    let calls = receiver.calls("/hook", "received");
    assert!(
        calls.iter().all(|c| c["concurrent"] == 1),
        "one call at a time: {calls:?}"
    );
}

#[tokio::test]
async fn a_process_started_without_delivery_serves_the_api_but_calls_nobody() {
    let receiver = Receiver::start();
    let app = TestApp::spawn(&["--webhook-allow-private", "--webhook-delivery", "false"]);
    let created = endpoint(&app, &receiver, "/hook", json!(null)).await;
    let video = app.upload_id(&fixtures::tiny()).await;
    app.wait_for(&video, "ready").await;
    // A delivering process sends `video.uploaded` within milliseconds of the commit; by the
    // time the encode is done, nothing has been sent and the cursor has not moved.
    assert!(receiver.calls("/hook", "received").is_empty());
    let state = webhook(&app, created["id"].as_str().expect("id")).await;
    assert_eq!(state["delivery"]["cursor"], created["delivery"]["cursor"]);
    assert!(state["delivery"]["last_attempt_at"].is_null());
}

#[tokio::test]
async fn receivers_that_hang_never_delay_another_endpoint_and_are_cut_off_after_10_s() {
    let slow = Receiver::start();
    let fast = Receiver::start();
    let app = TestApp::spawn(&allow_private());
    // Two endpoints whose receiver answers after a minute (each call is cut off at 10 s),
    // next to one that answers at once.
    for path in ["/hang-1", "/hang-2"] {
        endpoint(&app, &slow, path, json!(null)).await;
    }
    slow.control(json!({"delay_ms": 60_000})).await;
    endpoint(&app, &fast, "/fast", json!(null)).await;

    let video = app.upload_id(&fixtures::tiny()).await;
    app.wait_for(&video, "ready").await;
    let expected = expected_ids(&app, std::slice::from_ref(&video)).await;
    let got = eventually(&app, "every event on the fast endpoint", || async {
        let got = fast.delivered("/fast");
        (got.len() >= expected.len()).then_some(got)
    })
    .await;
    assert_eq!(got, expected, "in order, while the others hang");
    // The hanging receivers have not answered one call yet: the fast one did not wait for them.
    for path in ["/hang-1", "/hang-2"] {
        assert!(slow.delivered(path).is_empty(), "{path} still hangs");
        assert!(
            !slow.calls(path, "received").is_empty(),
            "{path} was called"
        );
    }
    let hung = eventually(&app, "a hanging call cut off as a timeout", || async {
        let (_, list) = app.get_json("/api/v1/webhooks").await;
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|w| {
                w["url"].as_str().is_some_and(|u| u.ends_with("/hang-1"))
                    && w["delivery"]["last_error"].is_string()
            })
            .cloned()
    })
    .await;
    assert!(
        hung["delivery"]["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("10 s")),
        "{hung}"
    );
}
