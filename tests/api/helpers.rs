//! `TestApp`: a real `reel serve` process on port 0 with its own media dir, plus typed helpers.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::Value;
use tempfile::TempDir;

pub const DEADLINE: Duration = Duration::from_secs(90);

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub media: PathBuf,
    child: Child,
    log: PathBuf,
    _dirs: Vec<TempDir>,
}

/// One server-sent event as a client sees it.
#[derive(Debug, Clone)]
pub struct Sse {
    pub id: u64,
    pub event: String,
    pub data: Value,
}

impl TestApp {
    /// A server with test settings (fast preset, 1 s segments) plus `extra` flags.
    pub fn spawn(extra: &[&str]) -> TestApp {
        let media = tempfile::tempdir().expect("media dir");
        let path = media.path().to_path_buf();
        TestApp::spawn_in(&path, extra, vec![media])
    }

    /// A server on an existing media dir (restarts).
    pub fn spawn_in(media: &Path, extra: &[&str], keep: Vec<TempDir>) -> TestApp {
        TestApp::start("serve", media, extra, keep)
    }

    /// `reel <role>` (`serve` or `work`) on `media`, on the engine the specs run on (see
    /// [`database_url`]): the same media dir always gets the same database.
    pub fn start(role: &str, media: &Path, extra: &[&str], keep: Vec<TempDir>) -> TestApp {
        TestApp::start_with_env(role, media, extra, keep, &[])
    }

    /// [`TestApp::start`] with extra environment variables for the server.
    pub fn start_with_env(
        role: &str,
        media: &Path,
        extra: &[&str],
        keep: Vec<TempDir>,
        env: &[(&str, &str)],
    ) -> TestApp {
        let logs = tempfile::tempdir().expect("log dir");
        let log = logs.path().join("reel.log");
        let log_file = std::fs::File::create(&log).expect("log file");
        let mut engine: Vec<String> = Vec::new();
        if let Some(url) = database_url(media)
            && !extra.contains(&"--database-url")
        {
            engine.extend(["--database-url".into(), url]);
            if !extra.contains(&"--lease-secs") {
                // Shared-queue recovery waits for leases: keep them short in specs.
                engine.extend(["--lease-secs".into(), "5".into()]);
            }
        }
        let child = Command::new(env!("CARGO_BIN_EXE_reel"))
            .args(["--log-format", "json", role, "--listen", "127.0.0.1:0"])
            .arg("--media-dir")
            .arg(media)
            .args(defaults_unless_given(extra))
            .args(&engine)
            .args(extra)
            .env("RUST_LOG", "info,sqlx=warn")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("start reel");
        let mut dirs = keep;
        dirs.push(logs);
        let mut app = TestApp {
            base: String::new(),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(120))
                .build()
                .expect("client"),
            media: media.to_path_buf(),
            child,
            log,
            _dirs: dirs,
        };
        app.base = format!("http://127.0.0.1:{}", app.wait_for_port());
        app
    }

    fn wait_for_port(&mut self) -> u16 {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("reel exited at start ({status}):\n{}", self.logs());
            }
            if let Ok(file) = std::fs::File::open(&self.log) {
                for line in BufReader::new(file).lines().map_while(Result::ok) {
                    let Ok(entry) = serde_json::from_str::<Value>(&line) else {
                        continue;
                    };
                    if entry["fields"]["message"] == "listening" {
                        let addr = entry["fields"]["addr"].as_str().expect("addr field");
                        return addr
                            .rsplit(':')
                            .next()
                            .and_then(|p| p.parse().ok())
                            .expect("port");
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("reel did not start listening:\n{}", self.logs());
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Resident memory of the server process, in bytes.
    pub fn rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS");
        kib * 1024
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics_text(&self) -> String {
        let response = self
            .client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics");
        response.text().await.expect("text")
    }

    /// The value of one series from `/metrics`, named exactly as exposed: the metric name
    /// plus its labels, e.g. `reel_uploads_total{outcome="accepted"}`. Panics when the series
    /// is missing, so a renamed metric fails instead of reading as 0.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics_text().await;
        series_value(&text, series)
            .unwrap_or_else(|| panic!("no series {series} in /metrics:\n{text}"))
    }

    /// Processes (by pid) whose command line contains `needle`.
    pub fn processes_with(needle: &str) -> Vec<u32> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            if String::from_utf8_lossy(&cmdline).contains(needle) {
                found.push(pid);
            }
        }
        found
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends `SIG<name>` (`STOP`, `CONT`, …) to the server.
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name}");
    }

    /// SIGKILL: a crash, with no chance to clean up.
    pub fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let started = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            assert!(
                started.elapsed() < Duration::from_secs(40),
                "reel did not stop on SIGTERM:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub async fn upload_raw(&self, path: &Path, content_type: &str) -> reqwest::Response {
        let bytes = tokio::fs::read(path).await.expect("read fixture");
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("clip");
        self.client
            .post(self.url("/api/v1/videos"))
            .header("Content-Type", content_type)
            .header("X-Filename", name)
            .body(bytes)
            .send()
            .await
            .expect("upload request")
    }

    /// `POST /api/v1/videos` with a `video/mp4` body; an `Err` means the server cut the
    /// connection before answering (allowed when it refuses a body mid-stream).
    pub async fn post_video(
        &self,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Result<reqwest::Response> {
        self.client
            .post(self.url("/api/v1/videos"))
            .header("Content-Type", "video/mp4")
            .body(body)
            .send()
            .await
    }

    /// Uploads a fixture raw and returns the accepted resource.
    pub async fn upload(&self, path: &Path) -> Value {
        let response = self.upload_raw(path, "video/mp4").await;
        assert_eq!(
            response.status(),
            202,
            "upload of {} refused",
            path.display()
        );
        response.json().await.expect("resource json")
    }

    /// Uploads a fixture and returns the new video's id.
    pub async fn upload_id(&self, path: &Path) -> String {
        self.upload(path).await["id"]
            .as_str()
            .expect("id")
            .to_owned()
    }

    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(self.url(path)).send().await.expect("GET");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn video(&self, id: &str) -> Value {
        let (status, body) = self.get_json(&format!("/api/v1/videos/{id}")).await;
        assert_eq!(status, 200, "GET video {id}: {body}");
        body
    }

    /// Polls until the video reaches `status`; panics with the last state on timeout.
    pub async fn wait_for(&self, id: &str, status: &str) -> Value {
        self.wait_for_one_of(id, &[status]).await
    }

    /// Polls until the video reaches one of `statuses`; panics after [`DEADLINE`] naming
    /// them and the last state seen.
    pub async fn wait_for_one_of(&self, id: &str, statuses: &[&str]) -> Value {
        let started = Instant::now();
        loop {
            let video = self.video(id).await;
            if statuses.contains(&video["status"].as_str().unwrap_or("")) {
                return video;
            }
            if started.elapsed() > DEADLINE {
                panic!(
                    "video {id} never became {statuses:?} within {DEADLINE:?}; last: {video}\n{}",
                    self.logs()
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Reads the event stream until it ends (or `stop` says so), with a deadline.
    pub async fn events(
        &self,
        id: &str,
        last_event_id: Option<u64>,
        stop: impl Fn(&Sse) -> bool,
    ) -> Vec<Sse> {
        let mut request = self
            .client
            .get(self.url(&format!("/api/v1/videos/{id}/events")));
        if let Some(last) = last_event_id {
            request = request.header("Last-Event-ID", last.to_string());
        }
        let response = request.send().await.expect("events request");
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        let mut stream = eventsource_stream::EventStream::new(response.bytes_stream());
        let mut seen = Vec::new();
        let read = async {
            while let Some(event) = stream.next().await {
                let event = event.expect("well-formed SSE");
                let sse = Sse {
                    id: event.id.parse().expect("numeric event id"),
                    event: event.event.clone(),
                    data: serde_json::from_str(&event.data).expect("JSON data"),
                };
                let done = stop(&sse);
                seen.push(sse);
                if done {
                    break;
                }
            }
        };
        if tokio::time::timeout(DEADLINE, read).await.is_err() {
            panic!(
                "event stream of {id} did not end; got {seen:?}\n{}",
                self.logs()
            );
        }
        seen
    }

    pub async fn delete(&self, id: &str) -> u16 {
        self.client
            .delete(self.url(&format!("/api/v1/videos/{id}")))
            .send()
            .await
            .expect("DELETE")
            .status()
            .as_u16()
    }

    /// Files below a media sub-folder, recursively.
    pub fn files_in(&self, sub: &str) -> Vec<PathBuf> {
        fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    out.push(path.clone());
                    walk(&path, out);
                } else {
                    out.push(path);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.media.join(sub), &mut out);
        out
    }

    /// ffmpeg processes working on this server's media dir.
    pub fn ffmpeg_processes(&self) -> Vec<u32> {
        let media = self.media.canonicalize().unwrap_or(self.media.clone());
        // reel runs the tool by the absolute path its start-up check resolved.
        let is_ffmpeg = |pid: &u32| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                let program = c.split(|b| *b == 0).next().unwrap_or_default();
                program == b"ffmpeg" || program.ends_with(b"/ffmpeg")
            })
        };
        TestApp::processes_with(&media.to_string_lossy())
            .into_iter()
            .filter(is_ffmpeg)
            .collect()
    }
}

/// The PostgreSQL cluster of this test run (`scripts/pg-cluster`), when the specs run on it.
pub fn postgres_url() -> Option<String> {
    std::env::var("REEL_TEST_POSTGRES_URL").ok()
}

/// True when the specs run on PostgreSQL (`REEL_TEST_ENGINE=postgres`).
pub fn on_postgres() -> bool {
    std::env::var("REEL_TEST_ENGINE").is_ok_and(|e| e == "postgres")
}

/// The database of the reel serving `media`: `None` (the SQLite default) unless the specs run
/// on PostgreSQL, where each media dir gets its own database, created on first use.
pub fn database_url(media: &Path) -> Option<String> {
    if !on_postgres() {
        return None;
    }
    let admin = postgres_url()
        .expect("REEL_TEST_ENGINE=postgres needs REEL_TEST_POSTGRES_URL (scripts/test sets both)");
    Some(postgres_database(&admin, &media.to_string_lossy()))
}

/// A database named after `key` on the cluster at `admin` (created if missing); its URL.
pub fn postgres_database(admin: &str, key: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut hasher);
    let name = format!("t{:016x}", hasher.finish());
    let output = Command::new("psql")
        .args([
            admin,
            "-qAtc",
            &format!("SELECT 1 FROM pg_database WHERE datname = '{name}'"),
        ])
        .output()
        .expect("psql (installed with PostgreSQL)");
    assert!(
        output.status.success(),
        "psql: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    if output.stdout.is_empty() {
        let created = Command::new("psql")
            .args([admin, "-qc", &format!("CREATE DATABASE {name}")])
            .output()
            .expect("psql");
        assert!(
            created.status.success()
                || String::from_utf8_lossy(&created.stderr).contains("already exists"),
            "CREATE DATABASE: {}",
            String::from_utf8_lossy(&created.stderr)
        );
    }
    let base = admin.rsplit_once('/').map_or(admin, |(base, _)| base);
    format!("{base}/{name}")
}

/// The value of `series` (name and labels, exactly) in Prometheus text, if it is there.
pub fn series_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            (name == series).then(|| value.parse().ok()).flatten()
        })
}

/// Polls `done` every 50 ms; panics after `deadline`, naming what it waited for.
pub async fn wait_until(what: &str, deadline: Duration, mut done: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !done().await {
        assert!(
            started.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Asserts that `response` is the JSON error envelope with `status`; returns its code.
pub async fn error_code(response: reqwest::Response, status: u16) -> String {
    let what = format!("{} {}", response.status(), response.url());
    assert_eq!(response.status().as_u16(), status, "{what}");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    assert!(
        content_type.starts_with("application/json"),
        "{what}: content type {content_type:?}"
    );
    let body: Value = response.json().await.expect("JSON error body");
    let code = body["error"]["code"].as_str();
    let message = body["error"]["message"].as_str();
    assert!(
        code.is_some_and(|c| !c.is_empty()) && message.is_some_and(|m| !m.is_empty()),
        "{what}: not the envelope: {body}"
    );
    code.unwrap_or_default().to_owned()
}

/// Test settings (fast preset, 1 s segments, one encoder), unless a test sets them itself.
fn defaults_unless_given<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let defaults = [
        ("--x264-preset", "ultrafast"),
        ("--segment-seconds", "1"),
        ("--min-free-bytes", "0"),
        ("--encoders", "1"),
    ];
    let mut args = Vec::new();
    for (flag, value) in defaults {
        if !extra.contains(&flag) {
            args.extend([flag, value]);
        }
    }
    args
}

/// Subscribes to a video's events on `app` and returns the task reading the stream to its end,
/// once the subscription stands (its snapshot arrived): what the stream says after that is
/// sure to reach the task.
pub async fn follow(app: &TestApp, id: &str) -> tokio::task::JoinHandle<String> {
    let response = reqwest::get(app.url(&format!("/api/v1/videos/{id}/events")))
        .await
        .expect("events");
    assert_eq!(response.status(), 200);
    let mut body = response.bytes_stream();
    let mut text = String::new();
    while !text.contains("event: snapshot") {
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("a snapshot within 10 s")
            .expect("stream open")
            .expect("bytes");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    tokio::spawn(async move {
        while let Some(Ok(chunk)) = body.next().await {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
        text
    })
}

/// A request body sent in 256 KiB chunks with no Content-Length, as a browser stream would.
pub fn streamed(bytes: Vec<u8>) -> reqwest::Body {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        bytes.chunks(256 * 1024).map(|c| Ok(c.to_vec())).collect();
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

impl Drop for TestApp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() || std::env::var_os("TEST_LOG").is_some() {
            eprintln!("--- reel log ---\n{}", self.logs());
        }
    }
}

/// Runs ffprobe and returns its JSON.
pub fn ffprobe(path: &Path, args: &[&str]) -> Value {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-of", "json"])
        .args(args)
        .arg(path)
        .output()
        .expect("ffprobe");
    assert!(
        output.status.success(),
        "ffprobe {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("ffprobe json")
}
