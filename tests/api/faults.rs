//! Injected faults: stalled processes, stalled and dropped clients, a full disk, vanishing SSE
//! clients, racing deletes. The server stays up, loses nothing and leaves nothing behind.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fixtures;
use crate::helpers::{TestApp, streamed, wait_until};

/// A stand-in binary that hangs like a wedged ffmpeg or ffprobe would; while it runs, its
/// command line is `<name>-running 600`. It answers reel's start-up check (`-version`,
/// `-filters`, `-encoders`) through the real `tool`, as a binary that wedges on one file would.
fn hanging_binary(dir: &Path, name: &str, tool: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "#!/bin/bash\nfor a in \"$@\"; do case \"$a\" in -version|-filters|-encoders) exec {tool} \"$@\";; esac; done\nexec -a {name}-running sleep 600\n"
        ),
    )
    .expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

fn mp4_head() -> Vec<u8> {
    let mut head = vec![0, 0, 0, 0x18];
    head.extend_from_slice(b"ftypisom\0\0\x02\0isomiso2");
    head.resize(4096, 0);
    head
}

/// A raw upload declaring 10 MiB, of which only the headers are sent yet.
async fn start_raw_upload(app: &TestApp) -> TcpStream {
    let mut socket = TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .expect("connect");
    let head = format!(
        "POST /api/v1/videos HTTP/1.1\r\nHost: reel\r\nContent-Type: video/mp4\r\nContent-Length: {}\r\n\r\n",
        10 << 20
    );
    socket.write_all(head.as_bytes()).await.expect("headers");
    socket
}

#[tokio::test]
async fn a_stalled_ffmpeg_is_killed_and_the_job_fails_with_a_reason() {
    let bin = tempfile::tempdir().expect("dir");
    let stuck = hanging_binary(bin.path(), "stuck-ffmpeg", "ffmpeg");
    let app = TestApp::spawn(&[
        "--ffmpeg",
        stuck.to_str().expect("path"),
        "--stall-timeout-secs",
        "5",
    ]);
    let id = app.upload_id(&fixtures::silent()).await;
    let failed = app.wait_for(&id, "failed").await;
    assert_eq!(failed["error"]["code"], "encode_stalled", "{failed}");
    assert!(
        failed["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("no progress")
    );
    assert!(
        TestApp::processes_with("stuck-ffmpeg-running").is_empty(),
        "the stalled process was killed"
    );
    assert!(app.files_in("tmp").is_empty());
}

#[tokio::test]
async fn deleting_during_the_probe_stops_it_and_removes_everything() {
    let bin = tempfile::tempdir().expect("dir");
    let stuck = hanging_binary(bin.path(), "stuck-ffprobe", "ffprobe");
    let app = TestApp::spawn(&["--ffprobe", stuck.to_str().expect("path")]);
    let id = app.upload_id(&fixtures::silent()).await;
    wait_until("the probe to start", Duration::from_secs(20), async || {
        !TestApp::processes_with("stuck-ffprobe-running").is_empty()
    })
    .await;
    assert_eq!(app.delete(&id).await, 204);
    wait_until("ffprobe to be killed", Duration::from_secs(5), async || {
        TestApp::processes_with("stuck-ffprobe-running").is_empty()
    })
    .await;
    assert!(app.files_in("sources").is_empty() && app.files_in("tmp").is_empty());
    assert_eq!(
        app.get_json(&format!("/api/v1/videos/{id}")).await.0,
        404,
        "nothing resurrects it"
    );
}

#[tokio::test]
async fn two_racing_deletes_get_one_204_and_one_404() {
    let app = TestApp::spawn(&[]);
    let id = app.upload_id(&fixtures::long()).await;
    let (a, b) = tokio::join!(app.delete(&id), app.delete(&id));
    let mut statuses = [a, b];
    statuses.sort();
    assert_eq!(statuses, [204, 404]);
    assert!(app.files_in("sources").is_empty() && app.files_in("hls").is_empty());
}

#[tokio::test]
async fn a_stalled_upload_is_cut_off_and_its_partial_file_removed() {
    let app = TestApp::spawn(&["--upload-idle-timeout-secs", "2"]);
    let mut socket = start_raw_upload(&app).await;
    socket.write_all(&mp4_head()).await.expect("first bytes");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), socket.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "the server answered and closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("upload_timeout"));
    assert!(app.files_in("tmp").is_empty() && app.files_in("sources").is_empty());
}

#[tokio::test]
async fn a_dropped_upload_leaves_nothing_behind() {
    let app = TestApp::spawn(&[]);
    {
        let mut socket = start_raw_upload(&app).await;
        let mut body = mp4_head();
        body.resize(300 * 1024, 7);
        socket.write_all(&body).await.expect("some bytes");
        // The spec is about removing a partial file, so first there must be one.
        wait_until(
            "the partial upload in tmp/",
            Duration::from_secs(10),
            async || !app.files_in("tmp").is_empty(),
        )
        .await;
    }
    wait_until(
        "the partial upload to be removed",
        Duration::from_secs(10),
        async || app.files_in("tmp").is_empty(),
    )
    .await;
    assert!(app.files_in("sources").is_empty());
    assert_eq!(
        app.get_json("/api/v1/videos").await.1["items"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );
    let accepted = app.upload(&fixtures::tiny()).await;
    app.wait_for(accepted["id"].as_str().expect("id"), "ready")
        .await;
}

/// A small tmpfs as the media volume; unmounted on drop.
pub struct SmallDisk {
    pub dir: tempfile::TempDir,
}

impl SmallDisk {
    /// Panics when the mount fails: the spec needs root (as the test command and CI run), and
    /// a spec that did not run must not pass.
    pub fn mount(megabytes: u32) -> SmallDisk {
        let dir = tempfile::tempdir().expect("mount point");
        let output = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .expect("run mount (util-linux)");
        assert!(
            output.status.success(),
            "cannot mount a {megabytes} MiB tmpfs for the full-disk spec (it needs root, as \
             scripts/test and CI run): {}",
            String::from_utf8_lossy(&output.stderr)
        );
        SmallDisk { dir }
    }

    pub fn free(&self) -> u64 {
        let stats = rustix::fs::statvfs(self.dir.path()).expect("statvfs");
        stats.f_bavail * stats.f_frsize
    }

    /// Fills the disk until only `leave` bytes are free.
    pub fn fill_leaving(&self, leave: u64) -> PathBuf {
        let filler = self.dir.path().join("filler");
        let size = self.free().saturating_sub(leave);
        std::fs::write(&filler, vec![0u8; usize::try_from(size).expect("size")]).expect("fill");
        filler
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_fails_one_upload_and_one_job_cleanly_and_work_resumes_when_space_is_back() {
    let disk = SmallDisk::mount(48);
    let database = tempfile::tempdir().expect("db dir");
    let database_url = format!("sqlite://{}/reel.db", database.path().display());
    let app = TestApp::spawn_in(
        disk.dir.path(),
        &["--database-url", &database_url],
        Vec::new(),
    );

    // An upload of unknown length that does not fit: ENOSPC while streaming.
    let mut big = mp4_head();
    big.resize(64 << 20, 0);
    let response = app.post_video(streamed(big.clone())).await;
    if let Ok(response) = response {
        assert_eq!(response.status(), 507);
    }
    assert!(
        app.files_in("tmp").is_empty() && app.files_in("sources").is_empty(),
        "the partial upload is gone"
    );

    // A declared length that cannot fit is refused before a byte is written.
    let declared = app.post_video(big).await.expect("post");
    assert_eq!(declared.status(), 507);

    // Room for the source but not for its ladder: the job fails, the server stays up.
    let source = fixtures::long();
    let filler = disk.fill_leaving(std::fs::metadata(&source).expect("size").len() + 256 * 1024);
    let id = app.upload_id(&source).await;
    let failed = app.wait_for(&id, "failed").await;
    assert_eq!(failed["error"]["code"], "insufficient_storage", "{failed}");
    assert!(
        app.files_in("tmp").is_empty() && app.files_in("hls").is_empty(),
        "no partial ladder"
    );

    std::fs::remove_file(filler).expect("free the space");
    let id = app.upload_id(&fixtures::standard()).await;
    app.wait_for(&id, "ready").await;
    drop(app);
}

#[tokio::test]
async fn a_thousand_sse_clients_that_vanish_release_their_memory() {
    let limit = 4096;
    let _ = rustix::process::setrlimit(
        rustix::process::Resource::Nofile,
        rustix::process::Rlimit {
            current: Some(limit),
            maximum: Some(limit),
        },
    );
    // The job must outlast three waves whatever the encoder's speed: this ffmpeg reads its
    // input at a quarter of real time (`-readrate`), so the 20 s clip takes at least 80 s.
    let bin = tempfile::tempdir().expect("dir");
    let slow = bin.path().join("ffmpeg");
    std::fs::write(&slow, "#!/bin/sh\nexec ffmpeg -readrate 0.25 \"$@\"\n").expect("script");
    std::fs::set_permissions(&slow, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let app = TestApp::spawn(&["--ffmpeg", slow.to_str().expect("path")]);
    let id = app.upload_id(&fixtures::long()).await;
    app.events(&id, None, |e| {
        e.event == "progress" && e.data["step"] == "encoding"
    })
    .await;
    let baseline = app.rss();

    let address = app.base.trim_start_matches("http://").to_owned();
    let request = format!("GET /api/v1/videos/{id}/events HTTP/1.1\r\nHost: reel\r\n\r\n");
    let mut after_wave = Vec::new();
    for wave in 0..3 {
        let mut sockets = Vec::new();
        for _ in 0..1000 {
            let mut socket = TcpStream::connect(&address).await.expect("connect");
            socket.write_all(request.as_bytes()).await.expect("request");
            sockets.push(socket);
        }
        for socket in &mut sockets {
            let mut first = [0u8; 64];
            let n = socket.read(&mut first).await.expect("response starts");
            assert!(first[..n].starts_with(b"HTTP/1.1 200"));
        }
        wait_until("1000 streams", Duration::from_secs(20), async || {
            app.metric("reel_sse_clients").await >= 1000.0
        })
        .await;
        let loaded = app.rss();
        drop(sockets);
        wait_until(
            "vanished clients to be noticed",
            Duration::from_secs(40),
            async || app.metric("reel_sse_clients").await == 0.0,
        )
        .await;
        assert_eq!(
            app.video(&id).await["status"],
            "processing",
            "noticed while the job still runs"
        );
        after_wave.push(app.rss());
        eprintln!(
            "SSE wave {wave}: baseline {} KiB, 1000 clients {} KiB, after {} KiB",
            baseline >> 10,
            loaded >> 10,
            app.rss() >> 10
        );
    }
    // The allocator keeps freed pages, so the first wave leaves RSS raised; later waves must
    // reuse that memory (a leak of what 1000 streams hold would add ~20 MiB per wave).
    assert!(
        after_wave[0] <= baseline + (32 << 20),
        "near the baseline: {baseline} -> {}",
        after_wave[0]
    );
    assert!(
        after_wave[2] <= after_wave[0] + (12 << 20),
        "no leak across waves: {after_wave:?}"
    );
    assert_eq!(app.delete(&id).await, 204);
}
