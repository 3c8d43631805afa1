//! Uploads into a bucket that end without a video: a client that drops its connection, one
//! that stalls past the idle time-out (408), and one whose filing finds the queue full (503).
//! Each had a multipart upload under way in the bucket; none leaves an object or an unfinished
//! multipart upload behind. Raw sockets, so the spec decides exactly when bytes stop.
//! Ignored in the plain pass like [`crate::bucket`]; `scripts/test` runs them once.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::bucket::{BUCKET, assert_no_local_media, assert_no_multipart_uploads, bucket_app};
use crate::fixtures;
use crate::helpers::{DEADLINE, TestApp, wait_until};
use crate::s3::S3Server;

/// Bytes of a raw upload: a real clip's head, padded to `len`.
fn clip_of(len: usize) -> Vec<u8> {
    let mut body = std::fs::read(fixtures::standard()).expect("fixture");
    body.resize(len, 0);
    body
}

/// A raw `POST /api/v1/videos` declaring `length` bytes, of which only the headers are sent.
async fn raw_upload(app: &TestApp, length: usize) -> TcpStream {
    let mut socket = TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .expect("connect");
    let head = format!(
        "POST /api/v1/videos HTTP/1.1\r\nHost: reel\r\nContent-Type: video/mp4\r\n\
         Content-Length: {length}\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.expect("headers");
    socket
}

/// Waits until the upload's multipart upload exists in the bucket (so the spec is about
/// removing one).
async fn wait_for_multipart_upload(s3: &S3Server) {
    wait_until("a multipart upload under way", DEADLINE, async || {
        !s3.multipart_uploads(BUCKET).await.is_empty()
    })
    .await;
}

/// What reel answered on `socket`, up to its close (bounded).
async fn answer(mut socket: TcpStream) -> String {
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(60), socket.read_to_end(&mut answer)).await;
    assert!(read.is_ok(), "reel answered and closed");
    String::from_utf8_lossy(&answer).to_ascii_lowercase()
}

/// Nothing is left of a refused upload: no object, no multipart upload, no local file, no video.
async fn assert_nothing_left(s3: &S3Server, app: &TestApp) {
    assert_no_multipart_uploads(s3).await;
    assert_eq!(s3.keys(BUCKET, "").await, Vec::<String>::new());
    assert_no_local_media(app);
    let tmp = app.files_in("tmp");
    assert!(tmp.is_empty(), "tmp/ holds {tmp:?}");
    let (_, list) = app.get_json("/api/v1/videos").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn a_client_that_drops_its_connection_mid_upload_leaves_no_object() {
    let (s3, app) = bucket_app("dropped", &[]).await;
    let mut socket = raw_upload(&app, 20 << 20).await;
    // More than a part (8 MiB): the bucket holds part of it when the client goes.
    socket.write_all(&clip_of(12 << 20)).await.expect("bytes");
    wait_for_multipart_upload(&s3).await;
    drop(socket);
    assert_nothing_left(&s3, &app).await;
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn a_client_that_stalls_mid_upload_gets_a_408_and_leaves_no_object() {
    let (s3, app) = bucket_app("stalled", &["--upload-idle-timeout-secs", "2"]).await;
    let mut socket = raw_upload(&app, 20 << 20).await;
    socket.write_all(&clip_of(12 << 20)).await.expect("bytes");
    wait_for_multipart_upload(&s3).await;
    // Then nothing more: the idle time-out answers.
    let answer = answer(socket).await;
    assert!(answer.starts_with("http/1.1 408"), "{answer}");
    assert!(answer.contains("upload_timeout"), "{answer}");
    assert_nothing_left(&s3, &app).await;
}

/// An ffprobe that hangs (as `<name>-running`) on every file, and answers reel's start-up
/// check through the real one: the only encoder stays busy probing the first video.
fn hanging_ffprobe(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "#!/bin/bash\nfor a in \"$@\"; do case \"$a\" in -version|-filters|-encoders) exec ffprobe \"$@\";; esac; done\nexec -a {name}-running sleep 600\n"
        ),
    )
    .expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn an_upload_whose_filing_finds_the_queue_full_gets_a_503_and_leaves_no_object() {
    let bin = tempfile::tempdir().expect("bin");
    let ffprobe = hanging_ffprobe(bin.path(), "bucket-queue-ffprobe");
    let ffprobe = ffprobe.to_str().expect("path");
    let flags = [
        "--queue-capacity",
        "1",
        "--encoders",
        "1",
        "--ffprobe",
        ffprobe,
    ];
    let (s3, app) = bucket_app("full", &flags).await;

    // The encoder is busy with a first video; the queue (capacity 1) is empty.
    let running = app.upload_id(&fixtures::tiny()).await;
    app.wait_for(&running, "processing").await;
    wait_until("the probe of the first video", DEADLINE, async || {
        !TestApp::processes_with("bucket-queue-ffprobe-running").is_empty()
    })
    .await;

    // A slow upload is admitted and streams into the bucket…
    let body = clip_of(12 << 20);
    let mut socket = raw_upload(&app, body.len()).await;
    socket.write_all(&body[..9 << 20]).await.expect("bytes");
    wait_for_multipart_upload(&s3).await;
    // …while a quick one takes the last place in the queue…
    let queued = app.upload_id(&fixtures::tiny()).await;
    assert_eq!(app.video(&queued).await["status"], "queued");
    // …so when the slow one ends, filing it finds the queue full.
    socket.write_all(&body[9 << 20..]).await.expect("bytes");
    let answer = answer(socket).await;
    assert!(answer.starts_with("http/1.1 503"), "{answer}");
    assert!(answer.contains("queue_full"), "{answer}");
    assert!(answer.contains("retry-after:"), "{answer}");

    // Refused at admission too (the queue is still full): nothing is started.
    let refused = app.upload_raw(&fixtures::tiny(), "video/mp4").await;
    assert_eq!(refused.status(), 503);

    assert_no_multipart_uploads(&s3).await;
    let mut expected = vec![
        format!("full/sources/{queued}"),
        format!("full/sources/{running}"),
    ];
    expected.sort();
    assert_eq!(
        s3.keys(BUCKET, "").await,
        expected,
        "only the two accepted sources"
    );
    let (_, list) = app.get_json("/api/v1/videos").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(2), "{list}");

    assert_eq!(app.delete(&running).await, 204);
    assert_eq!(app.delete(&queued).await, 204);
    assert_nothing_left(&s3, &app).await;
}
