//! Resumable uploads (tus 1.0) against the real server: the protocol's answers, locking,
//! expiry and the full-queue final step, with the helpers the other tus specs share.
//! Refusals are in `tus_refusals`, crashes and cut connections in `tus_faults`;
//! interoperability with independent clients (tus-js-client, tuspy) in tests/edge/tus.test.mjs.

use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Response;

use crate::fixtures;
use crate::helpers::TestApp;

pub const UPLOADS: &str = "/api/v1/uploads";

fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `POST /api/v1/uploads`; returns the response (201 carries `Location`).
pub async fn create(app: &TestApp, length: u64, metadata: &[(&str, &str)]) -> Response {
    let metadata: Vec<String> = metadata
        .iter()
        .map(|(k, v)| format!("{k} {}", b64(v)))
        .collect();
    app.client
        .post(app.url(UPLOADS))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", length.to_string())
        .header("Upload-Metadata", metadata.join(","))
        .send()
        .await
        .expect("create")
}

/// Creates an upload and returns its URL.
pub async fn created(app: &TestApp, length: u64) -> String {
    let response = create(app, length, &[("filename", "clip.mp4")]).await;
    assert_eq!(response.status(), 201);
    app.url(response.headers()["location"].to_str().expect("location"))
}

/// `PATCH` of `body` at `offset` with `extra` headers.
pub async fn patch(
    app: &TestApp,
    url: &str,
    offset: u64,
    body: impl Into<reqwest::Body>,
    extra: &[(&str, String)],
) -> reqwest::Result<Response> {
    let mut request = app
        .client
        .patch(url)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", offset.to_string())
        .header("Content-Type", "application/offset+octet-stream");
    for (name, value) in extra {
        request = request.header(*name, value);
    }
    request.body(body).send().await
}

/// `DELETE` of an upload (termination).
pub async fn terminate(app: &TestApp, url: &str) -> Response {
    app.client
        .delete(url)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .expect("DELETE")
}

pub async fn head(app: &TestApp, url: &str) -> Response {
    app.client
        .head(url)
        .header("Tus-Resumable", "1.0.0")
        .send()
        .await
        .expect("HEAD")
}

pub fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

pub async fn offset_of(app: &TestApp, url: &str) -> u64 {
    let response = head(app, url).await;
    assert_eq!(response.status(), 200, "HEAD {url}");
    header(&response, "upload-offset")
        .and_then(|v| v.parse().ok())
        .expect("Upload-Offset")
}

pub async fn error_code(response: Response) -> String {
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    body["error"]["code"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn options_advertise_tus_1_0_its_extensions_and_the_upload_limit() {
    let app = TestApp::spawn(&["--max-upload-bytes", "5MiB"]);
    let response = app
        .client
        .request(reqwest::Method::OPTIONS, app.url(UPLOADS))
        .send()
        .await
        .expect("OPTIONS");
    assert_eq!(response.status(), 204);
    assert_eq!(header(&response, "tus-resumable"), Some("1.0.0"));
    assert_eq!(header(&response, "tus-version"), Some("1.0.0"));
    assert_eq!(header(&response, "tus-max-size"), Some("5242880"));
    let extensions = header(&response, "tus-extension").unwrap_or_default();
    for extension in [
        "creation",
        "creation-with-upload",
        "termination",
        "expiration",
        "checksum",
    ] {
        assert!(
            extensions.split(',').any(|e| e == extension),
            "{extensions}"
        );
    }
    assert!(header(&response, "tus-checksum-algorithm").is_some_and(|a| a.contains("sha1")));
}

#[tokio::test]
async fn an_upload_in_pieces_becomes_the_video_named_in_x_reel_video() {
    let app = TestApp::spawn(&[]);
    let data = std::fs::read(fixtures::standard()).expect("fixture");
    let length = data.len() as u64;
    let response = create(
        &app,
        length,
        &[
            ("filename", "beach.mp4"),
            ("title", "Beach day"),
            ("visibility", "public"),
            ("metadata", r#"{"album":"summer"}"#),
        ],
    )
    .await;
    assert_eq!(response.status(), 201);
    assert!(header(&response, "upload-expires").is_some_and(|d| d.ends_with(" GMT")));
    let url = app.url(header(&response, "location").expect("Location"));

    // Three requests; HEAD in between reports each offset.
    let cuts = [0, 100, 300_000, data.len()];
    for piece in cuts.windows(2) {
        let (from, to) = (piece[0], piece[1]);
        assert_eq!(offset_of(&app, &url).await, from as u64);
        let response = patch(&app, &url, from as u64, data[from..to].to_vec(), &[])
            .await
            .expect("PATCH");
        assert_eq!(response.status(), 204);
        assert_eq!(
            header(&response, "upload-offset"),
            Some(to.to_string().as_str())
        );
        assert_eq!(header(&response, "tus-resumable"), Some("1.0.0"));
        assert_eq!(
            header(&response, "x-reel-video").is_some(),
            to == data.len()
        );
    }
    let head = head(&app, &url).await;
    let video_url = header(&head, "x-reel-video")
        .expect("HEAD names the video")
        .to_owned();
    assert_eq!(
        header(&head, "upload-offset"),
        Some(length.to_string().as_str())
    );
    assert!(header(&head, "upload-metadata").is_some_and(|m| m.contains("filename ")));

    let video = app.video(video_url.rsplit('/').next().expect("id")).await;
    assert_eq!(video["title"], "Beach day");
    assert_eq!(video["filename"], "beach.mp4");
    assert_eq!(video["metadata"]["album"], "summer");
    let id = video["id"].as_str().expect("id").to_owned();
    let source = std::fs::read(app.media.join("sources").join(&id)).expect("source");
    assert!(source == data, "the source is byte-identical to the file");
    assert!(
        app.files_in("uploads").is_empty(),
        "{:?}",
        app.files_in("uploads")
    );

    // A retried final request learns the same video; nothing is filed twice.
    let again = patch(&app, &url, length, Vec::new(), &[])
        .await
        .expect("PATCH");
    assert_eq!(again.status(), 204);
    assert_eq!(header(&again, "x-reel-video"), Some(video_url.as_str()));
    let (_, list) = app.get_json("/api/v1/videos").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    app.wait_for(&id, "ready").await;
}

#[tokio::test]
async fn creation_with_upload_takes_the_first_bytes_with_the_creation() {
    let app = TestApp::spawn(&[]);
    let data = std::fs::read(fixtures::tiny()).expect("fixture");
    let response = app
        .client
        .post(app.url(UPLOADS))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", data.len().to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .body(data[..1000].to_vec())
        .send()
        .await
        .expect("create");
    assert_eq!(response.status(), 201);
    assert_eq!(header(&response, "upload-offset"), Some("1000"));
    let url = app.url(header(&response, "location").expect("Location"));
    let done = patch(&app, &url, 1000, data[1000..].to_vec(), &[])
        .await
        .expect("PATCH");
    assert_eq!(done.status(), 204);
    assert!(header(&done, "x-reel-video").is_some());
}

#[tokio::test]
async fn a_second_patch_while_one_is_writing_is_refused_with_423() {
    let app = TestApp::spawn(&[]);
    let data = std::fs::read(fixtures::standard()).expect("fixture");
    let url = created(&app, data.len() as u64).await;
    // The first request sends 200 kB, then waits for the test.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    let first = tokio::spawn({
        let (client, url) = (app.client.clone(), url.clone());
        async move {
            client
                .patch(&url)
                .header("Tus-Resumable", "1.0.0")
                .header("Upload-Offset", "0")
                .header("Content-Type", "application/offset+octet-stream")
                .body(body)
                .send()
                .await
        }
    });
    tx.send(Ok(data[..200_000].to_vec())).await.expect("send");
    // The first request holds the lock once its bytes reach the file.
    let started = Instant::now();
    let written = || {
        app.files_in("uploads")
            .first()
            .and_then(|f| std::fs::metadata(f).ok())
            .map_or(0, |m| m.len())
    };
    while written() < 200_000 {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the first request wrote nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let second = patch(&app, &url, 0, data.clone(), &[])
        .await
        .expect("PATCH");
    assert_eq!(second.status(), 423, "the second writer is refused");
    assert!(header(&second, "retry-after").is_some());
    tx.send(Ok(data[200_000..].to_vec())).await.expect("send");
    drop(tx);
    let first = first.await.expect("join").expect("first PATCH");
    assert_eq!(first.status(), 204);
    assert!(header(&first, "x-reel-video").is_some());
}

#[tokio::test]
async fn an_expired_upload_is_swept_with_its_file() {
    let app = TestApp::spawn(&["--upload-expiry", "2s"]);
    let data = std::fs::read(fixtures::tiny()).expect("fixture");
    let url = created(&app, data.len() as u64).await;
    let response = patch(&app, &url, 0, data[..5000].to_vec(), &[])
        .await
        .expect("PATCH");
    assert_eq!(response.status(), 204);
    assert_eq!(app.files_in("uploads").len(), 1);
    let started = Instant::now();
    while !app.files_in("uploads").is_empty() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the expired upload's file stayed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(head(&app, &url).await.status(), 404);
    let response = patch(&app, &url, 5000, data[5000..].to_vec(), &[])
        .await
        .expect("PATCH");
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn a_full_queue_refuses_the_final_step_keeps_the_bytes_and_a_retry_files_it() {
    let app = TestApp::spawn(&["--queue-capacity", "1"]);
    let data = std::fs::read(fixtures::tiny()).expect("fixture");
    let url = created(&app, data.len() as u64).await;
    let split = data.len() - 1000;
    let response = patch(&app, &url, 0, data[..split].to_vec(), &[])
        .await
        .expect("PATCH");
    assert_eq!(response.status(), 204);

    let running = app.upload_id(&fixtures::long()).await;
    while app.video(&running).await["status"] != "processing" {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let queued = app.upload_id(&fixtures::tiny()).await;
    let refused = patch(&app, &url, split as u64, data[split..].to_vec(), &[])
        .await
        .expect("PATCH");
    assert_eq!(refused.status(), 503);
    assert!(header(&refused, "retry-after").is_some());
    assert_eq!(error_code(refused).await, "queue_full");
    let kept = head(&app, &url).await;
    assert_eq!(
        header(&kept, "upload-offset"),
        Some(data.len().to_string().as_str())
    );
    assert!(header(&kept, "x-reel-video").is_none());

    assert_eq!(app.delete(&queued).await, 204);
    let retried = patch(&app, &url, data.len() as u64, Vec::new(), &[])
        .await
        .expect("PATCH");
    assert_eq!(retried.status(), 204);
    let video = header(&retried, "x-reel-video")
        .expect("the video")
        .to_owned();
    let id = video.rsplit('/').next().expect("id");
    let source = std::fs::read(app.media.join("sources").join(id)).expect("source");
    assert!(source == data, "the kept bytes became the source");
}
