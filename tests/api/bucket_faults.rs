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
    // Whatever a dead attempt left is invisible: no master, so nothing is served.
    let keys = s3.keys(BUCKET, &format!("restart/hls/{id}/")).await;
    assert!(
        !keys.iter().any(|k| k.ends_with("/master.m3u8")),
        "no master before the commit: {keys:?}"
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
    assert_eq!(app.delete(&id).await, 204);
    wait_until("the bucket is empty", DEADLINE, async || {
        s3.keys(BUCKET, "").await.is_empty()
    })
    .await;
    assert_no_multipart_uploads(&s3).await;
}
