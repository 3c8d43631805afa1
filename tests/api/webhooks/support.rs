//! What the webhook specs share: the receiver process (`receiver.py`) and what it logged,
//! and typed calls of the webhook API.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::helpers::{DEADLINE, TestApp};

/// A receiver process; its log outlives restarts.
pub struct Receiver {
    child: Option<Child>,
    pub port: u16,
    log: PathBuf,
    _dir: TempDir,
}

impl Receiver {
    pub fn start() -> Receiver {
        let dir = tempfile::tempdir().expect("receiver dir");
        let log = dir.path().join("calls.jsonl");
        let mut receiver = Receiver {
            child: None,
            port: 0,
            log,
            _dir: dir,
        };
        receiver.up();
        receiver
    }

    /// Starts the process (again, on the same port once it has one).
    pub fn up(&mut self) {
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut child = Command::new("python3")
            .arg(manifest.join("tests/api/webhooks/receiver.py"))
            .arg(&self.log)
            .arg(self.port.to_string())
            .env("PYTHONPATH", manifest.join("target/python"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("python3 (scripts/install-deps test installs it)");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx.recv_timeout(Duration::from_secs(20)).unwrap_or_default();
        let Some(port) = line
            .trim()
            .strip_prefix("listening ")
            .and_then(|p| p.parse().ok())
        else {
            let _ = child.kill();
            let output = child.wait_with_output().expect("receiver output");
            panic!(
                "the receiver did not start (run `scripts/install-deps test` for the pinned \
                 standardwebhooks package): {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        self.port = port;
        self.child = Some(child);
    }

    /// SIGKILL: the receiver is down (connections are refused).
    pub fn down(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// Sets secrets per path, the status answered and a delay (see the receiver's docs).
    pub async fn control(&self, settings: Value) {
        let response = reqwest::Client::new()
            .post(self.url("/_control"))
            .json(&settings)
            .send()
            .await
            .expect("receiver control");
        assert_eq!(response.status(), 204);
    }

    /// Every logged line of `phase` for `path`, in arrival order.
    pub fn calls(&self, path: &str, phase: &str) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|entry| entry["path"] == path && entry["phase"] == phase)
            .collect()
    }

    /// The `webhook-id`s answered 2xx on `path`, first arrival first, duplicates removed.
    pub fn delivered(&self, path: &str) -> Vec<String> {
        let mut ids: Vec<String> = Vec::new();
        for call in self.calls(path, "answered") {
            let ok = call["status"]
                .as_u64()
                .is_some_and(|s| (200..300).contains(&s));
            let id = call["id"].as_str().unwrap_or_default().to_owned();
            if ok && !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.down();
    }
}

/// Polls `check` until it returns `Some`, or panics with `what` after [`DEADLINE`].
pub async fn eventually<T, F, Fut>(app: &TestApp, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let started = Instant::now();
    loop {
        if let Some(found) = check().await {
            return found;
        }
        if started.elapsed() > DEADLINE {
            panic!("timed out waiting for {what}\n{}", app.logs());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub async fn create(app: &TestApp, body: Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url("/api/v1/webhooks"))
        .json(&body)
        .send()
        .await
        .expect("POST webhook");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Creates an endpoint on the receiver's `path` and tells the receiver its secret.
pub async fn endpoint(app: &TestApp, receiver: &Receiver, path: &str, events: Value) -> Value {
    let (status, webhook) = create(app, json!({"url": receiver.url(path), "events": events})).await;
    assert_eq!(status, 201, "{webhook}");
    receiver
        .control(json!({"secrets": {path: webhook["secret"]}}))
        .await;
    webhook
}

pub async fn webhook(app: &TestApp, id: &str) -> Value {
    let (status, body) = app.get_json(&format!("/api/v1/webhooks/{id}")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The `webhook-id`s a subscriber of every event type should get for `videos`, in seq order.
pub async fn expected_ids(app: &TestApp, videos: &[String]) -> Vec<String> {
    const CARRIED: [&str; 7] = [
        "uploaded",
        "processing",
        "playable",
        "ready",
        "failed",
        "canceled",
        "deleted",
    ];
    let mut seqs = Vec::new();
    for id in videos {
        let (status, page) = app
            .get_json(&format!("/api/v1/videos/{id}/history?limit=1000"))
            .await;
        assert_eq!(status, 200);
        for item in page["items"].as_array().expect("items") {
            if CARRIED.contains(&item["kind"].as_str().unwrap_or_default()) {
                seqs.push(item["seq"].as_i64().expect("seq"));
            }
        }
    }
    seqs.sort_unstable();
    seqs.into_iter().map(|s| format!("evt_{s}")).collect()
}

pub fn allow_private() -> Vec<&'static str> {
    vec!["--webhook-allow-private"]
}
