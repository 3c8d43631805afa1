//! Scale-out on PostgreSQL: API nodes and workers as separate processes sharing one database
//! and one media volume. Ignored by a plain `cargo test` (they need the throwaway cluster that
//! `scripts/test` starts); `scripts/test` runs them with `--include-ignored`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::Value;
use tempfile::TempDir;

use crate::fixtures;
use crate::helpers::{DEADLINE, TestApp, follow, postgres_database, postgres_url};

/// A deployment: one media volume, one database, any number of `reel` processes.
struct Cluster {
    media: TempDir,
    database: String,
    /// Every ffmpeg invocation of every process, one line each (`<unix time> <args>`).
    ffmpeg_log: PathBuf,
    ffmpeg: PathBuf,
    _bin: TempDir,
}

impl Cluster {
    fn new() -> Cluster {
        let admin = postgres_url()
            .expect("scale-out specs need REEL_TEST_POSTGRES_URL: run them through scripts/test");
        let media = tempfile::tempdir().expect("media");
        let database = postgres_database(&admin, &media.path().to_string_lossy());
        let bin = tempfile::tempdir().expect("bin");
        let ffmpeg_log = bin.path().join("ffmpeg.log");
        let ffmpeg = logging_ffmpeg(bin.path(), &ffmpeg_log);
        Cluster {
            media,
            database,
            ffmpeg_log,
            ffmpeg,
            _bin: bin,
        }
    }

    fn start(&self, role: &str, extra: &[&str]) -> TestApp {
        let mut args = vec![
            "--database-url",
            self.database.as_str(),
            "--ffmpeg",
            self.ffmpeg.to_str().expect("path"),
        ];
        args.extend_from_slice(extra);
        if !extra.contains(&"--lease-secs") {
            args.extend(["--lease-secs", "4"]);
        }
        TestApp::start(role, self.media.path(), &args, Vec::new())
    }

    /// An API node without encoders.
    fn api(&self) -> TestApp {
        self.start("serve", &["--encoders", "0"])
    }

    fn worker(&self, extra: &[&str]) -> TestApp {
        self.start("work", extra)
    }

    /// Ladder runs (the ffmpeg that writes every rung) per video id.
    fn ladder_runs(&self, id: &str) -> usize {
        std::fs::read_to_string(&self.ffmpeg_log)
            .unwrap_or_default()
            .lines()
            .filter(|line| line.contains("-var_stream_map") && line.contains(id))
            .count()
    }

    fn files(&self, sub: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        walk(&self.media.path().join(sub), &mut out);
        out
    }

    /// Waits until nothing is left in `tmp/`: a job's work folder goes just after its commit
    /// (and a stopped attempt's once it noticed), not before the `ready` a spec saw.
    async fn tmp_emptied(&self) {
        wait_until("nothing left in tmp/", DEADLINE, async || {
            self.files("tmp").is_empty()
        })
        .await;
    }
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, out);
        }
        out.push(path);
    }
}

/// An ffmpeg that logs every invocation, then becomes the real one (same pid, so reel's
/// supervision and the parent-death signal apply unchanged).
fn logging_ffmpeg(dir: &Path, log: &Path) -> PathBuf {
    let path = dir.join("ffmpeg");
    std::fs::write(
        &path,
        format!(
            "#!/bin/bash\necho \"$(date +%s.%N) $*\" >> {}\nexec ffmpeg \"$@\"\n",
            log.display()
        ),
    )
    .expect("write wrapper");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

async fn wait_until(what: &str, deadline: Duration, mut done: impl AsyncFnMut() -> bool) {
    let started = Instant::now();
    while !done().await {
        assert!(
            started.elapsed() < deadline,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The pid of the process running the ladder ffmpeg of `id`, and that ffmpeg's pid.
fn ladder_process(id: &str) -> Option<(u32, u32)> {
    TestApp::processes_with(id).into_iter().find_map(|pid| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let text = String::from_utf8_lossy(&cmdline);
        if !text.contains("-var_stream_map") {
            return None;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let parent = stat
            .rsplit(')')
            .next()?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()?;
        Some((parent, pid))
    })
}

fn history_kinds(history: &Value) -> Vec<String> {
    history["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|e| e["kind"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test runs it"]
async fn one_api_node_and_three_workers_encode_each_upload_exactly_once() {
    let cluster = Cluster::new();
    let api = cluster.api();
    let workers: Vec<TestApp> = (0..3).map(|_| cluster.worker(&[])).collect();
    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(api.upload_id(&fixtures::tiny()).await);
    }
    for id in &ids {
        api.wait_for(id, "ready").await;
    }
    for id in &ids {
        assert_eq!(cluster.ladder_runs(id), 1, "video {id} was encoded once");
        let (status, history) = api.get_json(&format!("/api/v1/videos/{id}/history")).await;
        assert_eq!(status, 200);
        let kinds = history_kinds(&history);
        assert_eq!(
            kinds.iter().filter(|k| *k == "processing").count(),
            1,
            "{kinds:?}"
        );
        assert!(
            cluster
                .media
                .path()
                .join("hls")
                .join(id)
                .join("master.m3u8")
                .is_file()
        );
    }
    cluster.tmp_emptied().await;
    // Every worker took part: the queue is shared, not drained by one process.
    let busy = workers
        .iter()
        .filter(|w| w.logs().contains("job claimed"))
        .count();
    assert!(busy >= 2, "at least two of the three workers ran jobs");
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test runs it"]
async fn workers_racing_for_one_job_never_both_start_ffmpeg_and_an_idle_one_starts_at_once() {
    let cluster = Cluster::new();
    let api = cluster.api();
    let _workers: Vec<TestApp> = (0..4).map(|_| cluster.worker(&[])).collect();
    let mut delays = Vec::new();
    for _ in 0..5 {
        let id = api.upload_id(&fixtures::tiny()).await;
        api.wait_for(&id, "ready").await;
        assert_eq!(cluster.ladder_runs(&id), 1, "one ffmpeg for {id}");
        // From the commit that queued the job to the claim's commit, both stamped by the
        // database: no upload, probe or test overhead in it.
        let (_, history) = api.get_json(&format!("/api/v1/videos/{id}/history")).await;
        let at = |kind: &str| {
            let event = history["items"]
                .as_array()
                .expect("items")
                .iter()
                .find(|e| e["kind"] == kind)
                .unwrap_or_else(|| panic!("no {kind} event: {history}"));
            humantime::parse_rfc3339_weak(event["at"].as_str().expect("at")).expect("RFC 3339")
        };
        let claimed = at("processing")
            .duration_since(at("queued"))
            .unwrap_or_default();
        delays.push(claimed.as_secs_f64());
    }
    delays.sort_by(f64::total_cmp);
    // A worker woken by NOTIFY claims within milliseconds (scripts/bench measures it); the
    // 2 s safety poll alone would put the median near a second (below 0.3 s in under 3 % of
    // runs).
    assert!(
        delays[2] < 0.3,
        "median claim delay {:.3} s: {delays:?}",
        delays[2]
    );
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test runs it"]
async fn a_killed_worker_s_job_is_finished_by_another_after_its_lease() {
    let cluster = Cluster::new();
    let api = cluster.api();
    let mut first = cluster.worker(&["--x264-preset", "medium"]);
    let id = api.upload_id(&fixtures::long()).await;
    let mut running = None;
    wait_until(
        "the first worker's ffmpeg",
        Duration::from_secs(30),
        async || {
            running = ladder_process(&id);
            running.is_some()
        },
    )
    .await;
    let (_, ffmpeg) = running.expect("running");
    let _second = cluster.worker(&[]);
    first.crash();
    wait_until(
        "the killed worker's ffmpeg to die with it",
        Duration::from_secs(10),
        async || !Path::new(&format!("/proc/{ffmpeg}")).exists(),
    )
    .await;
    let ready = api.wait_for(&id, "ready").await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(
        cluster.ladder_runs(&id),
        2,
        "the second worker encoded it again"
    );
    let (_, history) = api.get_json(&format!("/api/v1/videos/{id}/history")).await;
    let kinds = history_kinds(&history);
    assert_eq!(
        kinds.iter().filter(|k| *k == "processing").count(),
        2,
        "{kinds:?}"
    );
    cluster.tmp_emptied().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test runs it"]
async fn a_worker_stopped_with_sigterm_hands_its_job_back_at_once_and_another_finishes_it() {
    let cluster = Cluster::new();
    let api = cluster.api();
    // A lease far longer than the spec: only an explicit hand-back lets the other worker in.
    let mut first = cluster.worker(&["--x264-preset", "medium", "--lease-secs", "120"]);
    let id = api.upload_id(&fixtures::long()).await;
    let mut running = None;
    wait_until(
        "the first worker's ffmpeg",
        Duration::from_secs(30),
        async || {
            running = ladder_process(&id);
            running.is_some()
        },
    )
    .await;
    let (_, ffmpeg) = running.expect("running");
    let _second = cluster.worker(&[]);
    assert!(first.terminate().success(), "a clean exit on SIGTERM");
    assert!(
        !Path::new(&format!("/proc/{ffmpeg}")).exists(),
        "its ffmpeg stopped before it exited"
    );
    wait_until(
        "the other worker to claim the job",
        Duration::from_secs(10),
        async || {
            let (_, history) = api.get_json(&format!("/api/v1/videos/{id}/history")).await;
            history_kinds(&history)
                .iter()
                .filter(|k| *k == "processing")
                .count()
                == 2
        },
    )
    .await;
    let ready = api.wait_for(&id, "ready").await;
    assert_eq!(ready["status"], "ready");
    let (_, history) = api.get_json(&format!("/api/v1/videos/{id}/history")).await;
    let handed_back: Vec<&Value> = history["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|e| e["kind"] == "retried")
        .collect();
    assert!(
        handed_back.len() == 1
            && handed_back[0]["data"]["reason"] == "shutdown"
            && handed_back[0]["data"]["delay_seconds"] == 0.0,
        "handed back at once, not charged as a failed attempt: {history}"
    );
    cluster.tmp_emptied().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test runs it"]
async fn a_paused_worker_that_lost_its_lease_kills_its_ffmpeg_and_publishes_nothing() {
    let cluster = Cluster::new();
    let api = cluster.api();
    let paused = cluster.worker(&["--x264-preset", "medium", "--lease-secs", "3"]);
    let id = api.upload_id(&fixtures::long()).await;
    let mut running = None;
    wait_until(
        "the first worker's ffmpeg",
        Duration::from_secs(30),
        async || {
            running = ladder_process(&id);
            running.is_some()
        },
    )
    .await;
    let (worker_pid, first_ffmpeg) = running.expect("running");
    assert_eq!(worker_pid, paused.pid());
    paused.signal("STOP");
    let _second = cluster.worker(&["--lease-secs", "3"]);
    wait_until(
        "the second worker to take the job over",
        Duration::from_secs(30),
        async || cluster.ladder_runs(&id) == 2,
    )
    .await;
    let ready = api.wait_for(&id, "ready").await;
    let master = cluster
        .media
        .path()
        .join("hls")
        .join(&id)
        .join("master.m3u8");
    let published = std::fs::metadata(&master)
        .and_then(|m| m.modified())
        .expect("published");
    paused.signal("CONT");
    wait_until(
        "the paused worker to notice",
        Duration::from_secs(20),
        async || {
            // The heartbeat finds the lease taken, or (when its ffmpeg, which SIGSTOP did not
            // stop, finished meanwhile) the fenced commit matches no row.
            let logs = paused.logs();
            logs.contains("lease lost")
                || logs.contains("another worker holds")
                || logs.contains("the job ended elsewhere")
        },
    )
    .await;
    wait_until(
        "its ffmpeg to be gone",
        Duration::from_secs(10),
        async || !Path::new(&format!("/proc/{first_ffmpeg}")).exists(),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(
        std::fs::metadata(&master)
            .and_then(|m| m.modified())
            .expect("still there"),
        published,
        "the ladder is the second worker's, untouched"
    );
    assert_eq!(api.video(&id).await["renditions"], ready["renditions"]);
    let (_, history) = api.get_json(&format!("/api/v1/videos/{id}/history")).await;
    let kinds = history_kinds(&history);
    assert_eq!(
        kinds.iter().filter(|k| *k == "ready").count(),
        1,
        "{kinds:?}"
    );
    cluster.tmp_emptied().await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test runs it"]
async fn progress_and_cancel_cross_api_nodes_and_event_ids_are_global() {
    let cluster = Cluster::new();
    let (a, b) = (cluster.api(), cluster.api());
    let _worker = cluster.worker(&["--x264-preset", "medium"]);

    // Upload through A, follow on B to ready.
    let id = a.upload_id(&fixtures::standard()).await;
    let events = b.events(&id, None, |_| false).await;
    assert_eq!(events.first().map(|e| e.event.as_str()), Some("snapshot"));
    assert_eq!(events.last().map(|e| e.event.as_str()), Some("ready"));
    assert!(
        events.windows(2).all(|w| w[0].id < w[1].id),
        "ids grow: {events:?}"
    );

    // A second job: an id seen on B resumes on A without repeats.
    let id = a.upload_id(&fixtures::long()).await;
    let seen = b
        .events(&id, None, |e| {
            e.event == "progress" && e.data["step"] == "encoding"
        })
        .await;
    let last = seen.last().expect("a progress event").id;
    let resumed = a
        .events(&id, Some(last), |e| {
            e.event == "progress" && e.data["progress"].as_f64() > Some(0.1)
        })
        .await;
    // A does not hold B's events: it resumes from state (a snapshot no older than what the
    // client saw), and every event after it is new.
    assert_eq!(resumed[0].event, "snapshot", "{resumed:?}");
    assert!(
        resumed[0].id >= last
            && resumed[0].data["progress"].as_f64()
                >= seen.last().and_then(|e| e.data["progress"].as_f64())
    );
    assert!(
        resumed[1..].iter().all(|e| e.id > last),
        "no repeats across nodes: {resumed:?}"
    );

    // DELETE on A while B listens: B gets `canceled`, ffmpeg stops, files go.
    let listener = follow(&b, &id).await;
    wait_until("the ladder ffmpeg", Duration::from_secs(30), async || {
        ladder_process(&id).is_some()
    })
    .await;
    let asked = Instant::now();
    assert_eq!(a.delete(&id).await, 204);
    assert!(
        ladder_process(&id).is_none(),
        "ffmpeg stopped before the 204"
    );
    assert!(
        asked.elapsed() < Duration::from_secs(3),
        "stopped in {:?}",
        asked.elapsed()
    );
    let stream = tokio::time::timeout(Duration::from_secs(20), listener)
        .await
        .expect("B's stream ended")
        .expect("task");
    assert!(stream.contains("event: canceled"), "{stream}");
    assert_eq!(b.get_json(&format!("/api/v1/videos/{id}")).await.0, 404);
    assert!(!cluster.media.path().join("sources").join(&id).exists());
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test runs it"]
async fn queue_capacity_positions_and_depth_are_global() {
    let cluster = Cluster::new();
    let (a, b) = (
        cluster.start("serve", &["--encoders", "0", "--queue-capacity", "2"]),
        cluster.start("serve", &["--encoders", "0", "--queue-capacity", "2"]),
    );
    let first = a.upload(&fixtures::tiny()).await;
    let second = b.upload(&fixtures::tiny()).await;
    assert_eq!(
        (
            first["queue_position"].as_u64(),
            second["queue_position"].as_u64()
        ),
        (Some(1), Some(2))
    );
    let refused = a.upload_raw(&fixtures::tiny(), "video/mp4").await;
    assert_eq!(refused.status(), 503, "the shared queue is full");
    assert!(refused.headers().contains_key("retry-after"));
    for node in [&a, &b] {
        assert_eq!(node.metric("reel_queue_depth").await, 2.0);
    }
    let _worker = cluster.worker(&[]);
    for video in [&first, &second] {
        a.wait_for(video["id"].as_str().expect("id"), "ready").await;
    }
}

/// A PostgreSQL cluster of its own (this spec stops and starts it; the shared one must stay up
/// for the specs running beside it).
struct OwnPostgres {
    url: String,
    ctl: String,
    dir: String,
}

impl OwnPostgres {
    fn start() -> OwnPostgres {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-cluster");
        let output = std::process::Command::new(script)
            .arg("start")
            .output()
            .expect("pg-cluster");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let text = String::from_utf8_lossy(&output.stdout);
        let value = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("export {name}=")))
                .unwrap_or_else(|| panic!("{name} in {text}"))
                .to_owned()
        };
        OwnPostgres {
            url: value("REEL_TEST_POSTGRES_URL"),
            ctl: value("REEL_TEST_PGCTL"),
            dir: value("REEL_TEST_PGDIR"),
        }
    }

    fn ctl(&self, action: &str) {
        let status = std::process::Command::new(&self.ctl)
            .args([action, "-m", "fast"])
            .stdout(std::process::Stdio::null())
            .status()
            .expect("pg_ctl");
        assert!(status.success(), "pg_ctl {action}");
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/pg-cluster");
        let _ = std::process::Command::new(script)
            .args(["stop", &self.dir])
            .status();
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test runs it"]
async fn postgres_going_away_mid_encode_gets_503s_and_the_job_still_ends_ready() {
    let pg = OwnPostgres::start();
    let media = tempfile::tempdir().expect("media");
    let database = postgres_database(&pg.url, &media.path().to_string_lossy());
    let app = TestApp::start(
        "serve",
        media.path(),
        &[
            "--database-url",
            &database,
            "--x264-preset",
            "slow",
            "--lease-secs",
            "30",
        ],
        Vec::new(),
    );
    let id = app.upload_id(&fixtures::long()).await;
    wait_until("the ladder ffmpeg", Duration::from_secs(30), async || {
        ladder_process(&id).is_some()
    })
    .await;
    let follower = follow(&app, &id).await;

    pg.ctl("stop");
    assert!(
        ladder_process(&id).is_some(),
        "the encode goes on without the database"
    );
    let response = app
        .client
        .get(app.url(&format!("/api/v1/videos/{id}")))
        .send()
        .await
        .expect("an answer, not a hang");
    assert_eq!(response.status(), 503);
    assert!(response.headers().contains_key("retry-after"));
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "database_unavailable", "{body}");
    let refused = app.upload_raw(&fixtures::tiny(), "video/mp4").await;
    assert_eq!(refused.status(), 503);
    assert_eq!(app.get_json("/readyz").await.0, 503);
    pg.ctl("start");

    let ready = app.wait_for(&id, "ready").await;
    assert_eq!(ready["status"], "ready");
    let stream = tokio::time::timeout(Duration::from_secs(60), follower)
        .await
        .expect("the SSE stream ended")
        .expect("task");
    assert_eq!(stream.matches("event: ready").count(), 1, "{stream}");
    assert_eq!(app.get_json("/readyz").await.0, 200);
    wait_until("nothing left in tmp/", DEADLINE, async || {
        app.files_in("tmp").is_empty()
    })
    .await;
}
