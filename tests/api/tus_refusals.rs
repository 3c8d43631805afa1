//! tus refusals against the real server: the statuses the protocol names, a non-video removed
//! at its first bytes, checksums (460), a nearly full disk (507), a stalled request (408).

use base64::Engine as _;
use sha1::Digest as _;

use crate::fixtures;
use crate::helpers::TestApp;
use crate::tus::{UPLOADS, create, created, error_code, head, header, offset_of, patch, terminate};

fn b64(bytes: impl AsRef<[u8]>) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[tokio::test]
async fn protocol_refusals_use_the_statuses_tus_names() {
    let app = TestApp::spawn(&["--max-upload-bytes", "1MiB"]);
    // No Tus-Resumable: 412 with the versions spoken.
    let response = app
        .client
        .post(app.url(UPLOADS))
        .header("Upload-Length", "10")
        .send()
        .await
        .expect("POST");
    assert_eq!(response.status(), 412);
    assert_eq!(header(&response, "tus-version"), Some("1.0.0"));
    // Over the limit at creation, no length, a bad length, bad metadata.
    let response = create(&app, 2 << 20, &[]).await;
    assert_eq!(response.status(), 413);
    assert_eq!(error_code(response).await, "payload_too_large");
    for (length, metadata) in [(None, ""), (Some("-5"), ""), (Some("10"), "title ***")] {
        let mut request = app
            .client
            .post(app.url(UPLOADS))
            .header("Tus-Resumable", "1.0.0");
        if let Some(length) = length {
            request = request.header("Upload-Length", length);
        }
        let response = request
            .header("Upload-Metadata", metadata)
            .send()
            .await
            .expect("POST");
        assert_eq!(response.status(), 400, "{length:?} {metadata:?}");
    }
    let url = created(&app, 1000).await;
    // Wrong offset, wrong content type, more than the length, unknown id, bad checksum name.
    let response = patch(&app, &url, 5, vec![0; 10], &[]).await.expect("PATCH");
    assert_eq!(response.status(), 409);
    assert_eq!(error_code(response).await, "offset_mismatch");
    let response = app
        .client
        .patch(&url)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("Content-Type", "video/mp4")
        .body(vec![0; 10])
        .send()
        .await
        .expect("PATCH");
    assert_eq!(response.status(), 415);
    let response = patch(&app, &url, 0, vec![0; 1001], &[])
        .await
        .expect("PATCH");
    assert_eq!(response.status(), 413);
    let unknown = app.url(&format!("{UPLOADS}/01900000-0000-7000-8000-000000000000"));
    assert_eq!(head(&app, &unknown).await.status(), 404);
    assert_eq!(
        head(&app, &app.url(&format!("{UPLOADS}/nope")))
            .await
            .status(),
        404
    );
    let response = patch(
        &app,
        &url,
        0,
        vec![0; 10],
        &[("Upload-Checksum", "crc32 AAAA".into())],
    )
    .await
    .expect("PATCH");
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "unsupported_checksum_algorithm");
    assert_eq!(offset_of(&app, &url).await, 0, "no refusal wrote anything");

    // Termination: 204, then the upload is gone with its file.
    assert_eq!(terminate(&app, &url).await.status(), 204);
    assert_eq!(head(&app, &url).await.status(), 404);
    assert!(app.files_in("uploads").is_empty());
}

#[tokio::test]
async fn bytes_that_are_not_a_video_are_a_415_and_the_upload_is_removed() {
    let app = TestApp::spawn(&[]);
    let url = created(&app, 100_000).await;
    let response = patch(&app, &url, 0, vec![b'x'; 600], &[])
        .await
        .expect("PATCH");
    assert_eq!(response.status(), 415);
    assert_eq!(error_code(response).await, "unsupported_media_type");
    assert_eq!(head(&app, &url).await.status(), 404);
    assert!(
        app.files_in("uploads").is_empty(),
        "{:?}",
        app.files_in("uploads")
    );
    assert!(app.files_in("sources").is_empty());
}

#[tokio::test]
async fn a_checksum_mismatch_is_a_460_and_keeps_nothing_of_that_request() {
    let app = TestApp::spawn(&[]);
    let data = std::fs::read(fixtures::tiny()).expect("fixture");
    let url = created(&app, data.len() as u64).await;
    let first = &data[..40_000];
    let sha1 = |bytes: &[u8]| format!("sha1 {}", b64(sha1::Sha1::digest(bytes)));
    let wrong = patch(
        &app,
        &url,
        0,
        first.to_vec(),
        &[("Upload-Checksum", sha1(b"other"))],
    )
    .await
    .expect("PATCH");
    assert_eq!(wrong.status(), 460);
    assert_eq!(error_code(wrong).await, "checksum_mismatch");
    assert_eq!(offset_of(&app, &url).await, 0);

    let right = patch(
        &app,
        &url,
        0,
        first.to_vec(),
        &[("Upload-Checksum", sha1(first))],
    )
    .await
    .expect("PATCH");
    assert_eq!(right.status(), 204);
    assert_eq!(offset_of(&app, &url).await, 40_000);
    let rest = &data[40_000..];
    let sha256 = format!("sha256 {}", b64(sha2::Sha256::digest(rest)));
    let last = patch(
        &app,
        &url,
        40_000,
        rest.to_vec(),
        &[("Upload-Checksum", sha256)],
    )
    .await
    .expect("PATCH");
    assert_eq!(last.status(), 204);
    assert!(header(&last, "x-reel-video").is_some());
}

#[tokio::test]
async fn a_nearly_full_disk_refuses_the_creation_with_507() {
    let app = TestApp::spawn(&["--min-free-bytes", "1000000GiB"]);
    let response = create(&app, 1000, &[]).await;
    assert_eq!(response.status(), 507);
    assert_eq!(error_code(response).await, "insufficient_storage");
}

#[tokio::test]
async fn a_stalled_patch_is_cut_off_with_408_and_keeps_what_arrived() {
    let app = TestApp::spawn(&["--upload-idle-timeout-secs", "1"]);
    let data = std::fs::read(fixtures::tiny()).expect("fixture");
    let url = created(&app, data.len() as u64).await;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    tx.send(Ok(data[..30_000].to_vec())).await.expect("send");
    let body = reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx));
    // The body never ends: the server gives up after a second without a byte.
    let response = patch(&app, &url, 0, body, &[]).await;
    if let Ok(response) = response {
        assert_eq!(response.status(), 408);
    }
    drop(tx);
    assert_eq!(offset_of(&app, &url).await, 30_000, "what arrived is kept");
}
