//! The bucket failing under reel (a server that stops answering mid-upload) and reel failing
//! over the bucket (a crash mid-encode): nothing half-done is left visible or stored.
//! Ignored in the plain pass like [`crate::bucket`]; `scripts/test` runs them once.

use std::time::Duration;

use crate::bucket::{BUCKET, assert_no_local_media, assert_no_multipart_uploads, bucket_app};
use crate::fixtures;
use crate::helpers::{DEADLINE, TestApp, wait_until};

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn a_bucket_that_stops_answering_mid_upload_is_a_503_with_retry_after_and_leaves_nothing() {
    let (s3, app) = bucket_app("paused", &[]).await;
    let mut body = std::fs::read(fixtures::long()).expect("fixture");
    // Enough that reel stops reading while every part in flight waits on the bucket.
    body.resize(64 << 20, 0);
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
    let upload = tokio::spawn({
        let request = app
            .client
            .post(app.url("/api/v1/videos"))
            .header("Content-Type", "video/mp4")
            .body(reqwest::Body::wrap_stream(stream));
        async move { request.send().await }
    });
    let mut chunks: Vec<Vec<u8>> = body.chunks(256 * 1024).map(<[u8]>::to_vec).collect();
    let rest = chunks.split_off(8);
    // The multipart upload starts while the bucket answers, then the server stops.
    for chunk in chunks {
        sender.send(Ok(chunk)).await.expect("send");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    s3.pause();
    // Feed the rest until reel answers: the next chunk, or the wait for a free part slot,
    // meets the failed part.
    let feeding = tokio::spawn(async move {
        for chunk in rest {
            if sender.send(Ok(chunk)).await.is_err() {
                break;
            }
        }
        // Keep the body open: the answer must come from the failed part, not the body's end.
        tokio::time::sleep(Duration::from_secs(120)).await;
    });
    let response = tokio::time::timeout(Duration::from_secs(60), upload)
        .await
        .expect("an answer within the time-outs")
        .expect("join")
        .expect("an answer, not a cut connection");
    feeding.abort();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "5");
    let body: serde_json::Value = response.json().await.expect("error body");
    assert_eq!(body["error"]["code"], "storage_unavailable", "{body}");

    s3.resume();
    assert_no_multipart_uploads(&s3).await;
    assert_eq!(s3.keys(BUCKET, "").await, Vec::<String>::new());
    assert_no_local_media(&app);
    let (_, list) = app.get_json("/api/v1/videos").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn a_crash_mid_encode_is_redone_after_the_restart_into_exactly_one_ladder() {
    let (s3, mut app) = bucket_app("restart", &["--x264-preset", "veryslow"]).await;
    let id = app.upload_id(&fixtures::long()).await;
    app.wait_for(&id, "processing").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.crash();
    // Whatever a dead attempt left is no finished ladder: no master (nothing is served), or a
    // ladder that was growing while it encoded, marked so (the restart wipes it).
    let keys = s3.keys(BUCKET, &format!("restart/hls/{id}/")).await;
    assert!(
        !keys.iter().any(|k| k.ends_with("/master.m3u8"))
            || keys.iter().any(|k| k.ends_with("/.growing")),
        "no finished ladder before the commit: {keys:?}"
    );

    let flags = s3.flags(BUCKET, "restart");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let media = app.media.clone();
    let app = TestApp::spawn_in(&media, &flags, Vec::new());
    app.wait_for(&id, "ready").await;
    let (status, _) = app.get_json(&format!("/api/v1/videos/{id}")).await;
    assert_eq!(status, 200);
    let keys = s3.keys(BUCKET, "").await;
    assert!(keys.contains(&format!("restart/sources/{id}")), "{keys:?}");
    assert!(
        keys.iter().all(|k| k == &format!("restart/sources/{id}")
            || k.starts_with(&format!("restart/hls/{id}/"))),
        "only the video's objects: {keys:?}"
    );
    assert!(!keys.iter().any(|k| k.ends_with("/.growing")), "{keys:?}");
    assert_eq!(app.delete(&id).await, 204);
    wait_until("the bucket is empty", DEADLINE, async || {
        s3.keys(BUCKET, "").await.is_empty()
    })
    .await;
    assert_no_multipart_uploads(&s3).await;
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn a_bucket_away_while_publishing_sends_the_job_back_to_the_queue_with_no_ladder_visible() {
    let (s3, app) = bucket_app("publish", &[]).await;
    let id = app.upload_id(&fixtures::long()).await;
    // Once encoding, the source is local: the bucket is needed again only to publish.
    wait_until("encoding", DEADLINE, async || {
        app.video(&id).await["step"] == "encoding"
    })
    .await;
    s3.pause();
    wait_until("back in the queue, not failed", DEADLINE, async || {
        let video = app.video(&id).await;
        assert_ne!(video["status"], "failed", "{video}");
        video["status"] == "queued"
    })
    .await;
    let away = app
        .client
        .get(app.url(&format!("/hls/{id}/master.m3u8")))
        .send()
        .await
        .expect("GET");
    assert_eq!(away.status(), 503, "the bucket is away");
    assert_eq!(away.headers()["retry-after"], "5");
    s3.resume();
    // The failed attempt published no finished ladder. A growing one that appeared before the
    // bucket went away is withdrawn (its master first) once the bucket answers again, or wiped
    // by the next attempt as it starts: no master of the first attempt stays.
    let (master, marker) = (
        format!("publish/hls/{id}/master.m3u8"),
        format!("publish/hls/{id}/.growing"),
    );
    let first = s3.object_if_any(BUCKET, &marker).await;
    wait_until("no master of the first attempt", DEADLINE, async || {
        let keys = s3.keys(BUCKET, &format!("publish/hls/{id}/")).await;
        !keys.contains(&master) || s3.object_if_any(BUCKET, &marker).await != first
    })
    .await;
    app.wait_for(&id, "ready").await;
    let keys = s3.keys(BUCKET, "").await;
    let own = |k: &String| {
        k == &format!("publish/sources/{id}") || k.starts_with(&format!("publish/hls/{id}/"))
    };
    assert!(keys.iter().all(own), "only the video's objects: {keys:?}");
    assert!(
        keys.contains(&master) && !keys.contains(&marker),
        "{keys:?}"
    );
    assert_no_multipart_uploads(&s3).await;
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn a_reel_killed_mid_upload_leaves_a_multipart_upload_that_the_restart_aborts() {
    // A single node on its own SQLite file, whatever engine the other specs run on: the
    // restart knows every multipart upload of its prefix died with it.
    let db = tempfile::tempdir().expect("db");
    let url = format!("sqlite://{}/reel.db", db.path().display());
    let single = ["--database-url", url.as_str()];
    let (s3, mut app) = bucket_app("killed", &single).await;
    let mut body = std::fs::read(fixtures::standard()).expect("fixture");
    body.resize(12 << 20, 0);
    let (sender, receiver) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let stream = tokio_stream::wrappers::ReceiverStream::new(receiver);
    let request = app
        .client
        .post(app.url("/api/v1/videos"))
        .header("Content-Type", "video/mp4")
        .body(reqwest::Body::wrap_stream(stream));
    let upload = tokio::spawn(async move { request.send().await });
    for chunk in body.chunks(256 * 1024) {
        sender.send(Ok(chunk.to_vec())).await.expect("send");
    }
    wait_until("a multipart upload under way", DEADLINE, async || {
        !s3.multipart_uploads(BUCKET).await.is_empty()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.crash();
    drop(sender);
    let _ = upload.await;
    assert_eq!(
        s3.multipart_uploads(BUCKET).await.len(),
        1,
        "the kill left it"
    );

    let flags = s3.flags(BUCKET, "killed");
    let mut flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    flags.extend(single);
    let media = app.media.clone();
    let app = TestApp::spawn_in(&media, &flags, Vec::new());
    assert_no_multipart_uploads(&s3).await;
    assert_eq!(s3.keys(BUCKET, "").await, Vec::<String>::new());
    let (_, list) = app.get_json("/api/v1/videos").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
}

/// A MiB of zeros, the padding of the large upload.
static ZEROS: [u8; 1 << 20] = [0; 1 << 20];

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn a_large_upload_streams_into_the_bucket_in_bounded_memory() {
    // media::bucket::sink: 8 MiB parts, 4 in flight plus the one filling = 40 MiB of body.
    const BOUND: u64 = 64 << 20;
    const SIZE_MIB: usize = 384;
    let (s3, app) = bucket_app("large", &[]).await;
    let before = app.rss();
    let head = std::fs::read(fixtures::standard()).expect("fixture");
    let chunks = std::iter::once(bytes::Bytes::from(head))
        .chain((0..SIZE_MIB).map(|_| bytes::Bytes::from_static(&ZEROS)))
        .map(Ok::<_, std::io::Error>);
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let pid = app.pid();
    let peak = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(before));
    let sampling = tokio::spawn({
        let peak = peak.clone();
        async move {
            loop {
                let status =
                    std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                let kib = status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmRSS:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                    .unwrap_or(0);
                peak.fetch_max(kib * 1024, std::sync::atomic::Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });
    let response = app
        .client
        .post(app.url("/api/v1/videos"))
        .header("Content-Type", "video/mp4")
        .body(body)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 202);
    sampling.abort();
    let peak = peak
        .load(std::sync::atomic::Ordering::Relaxed)
        .max(app.rss());
    let video: serde_json::Value = response.json().await.expect("resource");
    let id = video["id"].as_str().expect("id").to_owned();
    assert_eq!(app.delete(&id).await, 204);
    assert_eq!(s3.keys(BUCKET, "").await, Vec::<String>::new());
    assert!(
        peak.saturating_sub(before) < BOUND,
        "RSS grew by {} MiB during a {SIZE_MIB} MiB upload",
        peak.saturating_sub(before) >> 20
    );
}
