//! Who sees which endpoint, and whose events an endpoint gets: the service with real callers,
//! a real SQLite store, the real delivery task and a minimal HTTP receiver on loopback.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use super::breaker::Policy;
use super::webhooks::{Settings, spawn};
use crate::auth::{Caller, Role};
use crate::domain::{HistoryKind, NewEvent, VideoId};
use crate::service::{ServiceError, WebhookInput, Webhooks};
use crate::store::Store;

fn creator(name: &str) -> Caller {
    Caller::user(name, vec![Role::Creator], serde_json::json!({}))
}

fn input(url: &str) -> WebhookInput {
    WebhookInput {
        url: url.into(),
        ..WebhookInput::default()
    }
}

/// Accepts HTTP/1.1 requests on loopback, answers 204 and keeps `(path, body)` of each.
async fn receiver() -> (String, Arc<Mutex<Vec<(String, String)>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let kept = seen.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let kept = kept.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = socket.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request).to_string();
                    let Some((head, body)) = text.split_once("\r\n\r\n") else {
                        continue;
                    };
                    let length = head
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().to_owned())
                        })
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() < length {
                        continue;
                    }
                    let path = head.split(' ').nth(1).unwrap_or_default().to_owned();
                    kept.lock().expect("lock").push((path, body.to_owned()));
                    let _ = socket
                        .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                        .await;
                    return;
                }
            });
        }
    });
    (base, seen)
}

#[tokio::test]
async fn creators_see_their_own_endpoints_admins_all_and_viewers_none() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::connect(&Store::sqlite_url_in(dir.path()), 4)
        .await
        .expect("store");
    let hooks = Webhooks::new(&store, true);
    let alice = creator("alice");
    let bob = creator("bob");
    let admin = Caller::user("root", vec![Role::Admin], serde_json::json!({}));
    let viewer = Caller::user("v", vec![Role::Viewer], serde_json::json!({}));

    let own = hooks
        .create(&alice, input("http://127.0.0.1:9/a"))
        .await
        .expect("create");
    assert_eq!(own.scope.as_deref(), Some("alice"), "only alice's videos");
    let all = hooks
        .create(&admin, input("http://127.0.0.1:9/all"))
        .await
        .expect("create");
    assert_eq!(
        all.scope, None,
        "an admin's endpoint gets every video's events"
    );

    assert!(matches!(
        hooks.get(&bob, own.id).await,
        Err(ServiceError::NoSuchWebhook)
    ));
    assert!(matches!(
        hooks.delete(&bob, own.id).await,
        Err(ServiceError::NoSuchWebhook)
    ));
    assert!(hooks.list(&bob).await.expect("list").is_empty());
    assert_eq!(hooks.list(&alice).await.expect("list").len(), 1);
    assert_eq!(hooks.list(&admin).await.expect("list").len(), 2);
    assert!(hooks.get(&admin, own.id).await.is_ok());
    assert!(matches!(
        hooks.create(&viewer, input("http://127.0.0.1:9/v")).await,
        Err(ServiceError::Forbidden)
    ));
    assert!(matches!(
        hooks.list(&viewer).await,
        Err(ServiceError::Forbidden)
    ));
    let strict = Webhooks::new(&store, false);
    assert!(matches!(
        strict.create(&alice, input("http://127.0.0.1:9/a")).await,
        Err(ServiceError::Invalid {
            code: "destination_not_allowed",
            ..
        })
    ));
}

#[tokio::test]
async fn a_creators_endpoint_receives_only_their_videos_events() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::connect(&Store::sqlite_url_in(dir.path()), 4)
        .await
        .expect("store");
    let (base, seen) = receiver().await;
    let hooks = Webhooks::new(&store, true);
    let alice = creator("alice");
    let admin = Caller::user("root", vec![Role::Admin], serde_json::json!({}));
    let own = hooks
        .create(&alice, input(&format!("{base}/alice")))
        .await
        .expect("create");
    let all = hooks
        .create(&admin, input(&format!("{base}/admin")))
        .await
        .expect("create");

    let settings = Settings {
        policy: Policy {
            max_attempts: 3,
            backoff_base: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            threshold: 5,
            cooldown: Duration::from_secs(1),
        },
        allow_private: true,
        concurrency: 4,
    };
    let stop = CancellationToken::new();
    let task = spawn(store.clone(), settings, false, stop.clone()).expect("client");
    let (alices, bobs) = (VideoId::new(), VideoId::new());
    for (video, owner) in [
        (alices, "alice"),
        (bobs, "bob"),
        (alices, "alice"),
        (bobs, "bob"),
    ] {
        let event = NewEvent::bare(HistoryKind::Uploaded);
        store
            .record_event(video, Some(owner), &event)
            .await
            .expect("append");
    }
    let head = store.last_seq().await.expect("head");
    let started = Instant::now();
    loop {
        let a = store.webhook(own.id).await.expect("read").expect("own");
        let b = store.webhook(all.id).await.expect("read").expect("all");
        if a.delivery.cursor >= head && b.delivery.cursor >= head {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not delivered in time"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    let _ = task.await;

    let seen = seen.lock().expect("lock").clone();
    let to = |path: &str| -> Vec<String> {
        seen.iter()
            .filter(|(p, _)| p == path)
            .map(|(_, body)| {
                let body: serde_json::Value = serde_json::from_str(body).expect("json");
                body["data"]["id"].as_str().expect("id").to_owned()
            })
            .collect()
    };
    assert_eq!(
        to("/alice"),
        vec![alices.to_string(); 2],
        "alice's videos only"
    );
    let admins = to("/admin");
    assert_eq!(admins.len(), 4, "the admin's endpoint gets everyone's");
    assert!(admins.contains(&bobs.to_string()));
}
