//! The rest of the v1 contract: limits, errors, listing, health, metrics, OpenAPI.

use crate::fixtures;
use crate::helpers::{DEADLINE, TestApp, series_value, streamed, wait_until};

#[tokio::test]
async fn an_upload_over_the_size_limit_is_a_413_and_leaves_nothing_behind() {
    let app = TestApp::spawn(&["--max-upload-bytes", "100KiB"]);
    let response = app.upload_raw(&fixtures::standard(), "video/mp4").await;
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "payload_too_large");

    // Without a Content-Length the limit is enforced while streaming.
    let body = streamed(std::fs::read(fixtures::standard()).expect("fixture"));
    let response = app.post_video(body).await;
    if let Ok(response) = response {
        assert_eq!(response.status(), 413);
    }
    assert!(
        app.files_in("sources").is_empty(),
        "{:?}",
        app.files_in("sources")
    );
    assert!(app.files_in("tmp").is_empty(), "{:?}", app.files_in("tmp"));
    let (_, list) = app.get_json("/api/v1/videos").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0));
}

#[tokio::test]
async fn a_body_of_the_wrong_content_type_is_a_415() {
    let app = TestApp::spawn(&[]);
    let response = app.upload_raw(&fixtures::silent(), "text/plain").await;
    assert_eq!(response.status(), 415);
    let body: serde_json::Value = response.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unsupported_media_type");
}

#[tokio::test]
async fn unknown_and_malformed_ids_are_404s_in_the_error_shape() {
    let app = TestApp::spawn(&[]);
    for path in [
        "/api/v1/videos/01900000-0000-7000-8000-000000000000",
        "/api/v1/videos/../../etc/passwd",
        "/api/v1/videos/nope",
    ] {
        let (status, body) = app.get_json(path).await;
        assert_eq!(status, 404, "{path}");
        if !body.is_null() {
            assert_eq!(body["error"]["code"], "not_found");
        }
    }
    assert_eq!(
        app.delete("01900000-0000-7000-8000-000000000000").await,
        404
    );
    let (status, _) = app
        .get_json("/hls/01900000-0000-7000-8000-000000000000/../../reel.db")
        .await;
    assert_eq!(status, 404);
}

/// Ids of a list page, in order.
fn item_ids(page: &serde_json::Value) -> Vec<&str> {
    let items = page["items"].as_array().expect("items");
    items
        .iter()
        .map(|v| v["id"].as_str().unwrap_or(""))
        .collect()
}

#[tokio::test]
async fn the_list_is_newest_first_with_a_cursor_and_a_status_filter() {
    let app = TestApp::spawn(&[]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.upload_id(&fixtures::tiny()).await);
    }
    let (status, page) = app.get_json("/api/v1/videos?limit=2").await;
    assert_eq!(status, 200);
    let first = item_ids(&page);
    assert_eq!(first, [ids[2].as_str(), ids[1].as_str()]);
    let cursor = page["next_cursor"].as_str().expect("a next page");
    let (_, rest) = app
        .get_json(&format!("/api/v1/videos?limit=2&cursor={cursor}"))
        .await;
    let second = item_ids(&rest);
    assert_eq!(second, [ids[0].as_str()]);
    assert!(rest["next_cursor"].is_null());

    for id in &ids {
        app.wait_for(id, "ready").await;
    }
    let (_, ready) = app.get_json("/api/v1/videos?status=ready").await;
    assert_eq!(ready["items"].as_array().map(Vec::len), Some(3));
    let (_, failed) = app.get_json("/api/v1/videos?status=failed").await;
    assert_eq!(failed["items"].as_array().map(Vec::len), Some(0));
    let (status, body) = app.get_json("/api/v1/videos?limit=1000").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_limit"))
    );
}

#[tokio::test]
async fn health_readiness_metrics_and_openapi_are_served() {
    let app = TestApp::spawn(&[]);
    let (status, _) = app.get_json("/healthz").await;
    assert_eq!(status, 200);
    let (status, ready) = app.get_json("/readyz").await;
    assert_eq!(
        (
            status,
            ready["database"].as_bool(),
            ready["media"].as_bool()
        ),
        (200, Some(true), Some(true))
    );

    let id = app.upload_id(&fixtures::tiny()).await;
    app.wait_for(&id, "ready").await;
    // The worker counts the job and frees its encoder just after the `ready` commit the poll
    // saw: wait for that before reading the series.
    wait_until(
        "the job counted and its encoder free",
        DEADLINE,
        async || {
            let text = app.metrics_text().await;
            series_value(&text, "reel_jobs_total{outcome=\"ready\"}").is_some()
                && series_value(&text, "reel_encoders_busy") == Some(0.0)
        },
    )
    .await;
    let size = std::fs::metadata(fixtures::tiny()).expect("fixture").len() as f64;
    for (series, value) in [
        ("reel_uploads_total{outcome=\"accepted\"}", 1.0),
        ("reel_upload_bytes_total", size),
        ("reel_queue_depth", 0.0),
        ("reel_encoders_busy", 0.0),
        ("reel_jobs_total{outcome=\"ready\"}", 1.0),
        (
            "reel_job_duration_seconds_bucket{outcome=\"ready\",le=\"+Inf\"}",
            1.0,
        ),
    ] {
        assert_eq!(app.metric(series).await, value, "{series}");
    }

    let (status, document) = app.get_json("/api/v1/openapi.json").await;
    assert_eq!(status, 200);
    for path in [
        "/api/v1/videos",
        "/api/v1/videos/{id}",
        "/api/v1/videos/{id}/events",
        "/api/v1/videos/{id}/source",
    ] {
        assert!(document["paths"].get(path).is_some(), "{path} documented");
    }
    assert!(
        document["paths"]["/api/v1/videos"]["post"]["responses"]
            .get("413")
            .is_some()
    );
    assert!(
        document["components"]["schemas"]
            .get("VideoResource")
            .is_some()
    );
}

#[tokio::test]
async fn the_web_page_is_served_when_no_nginx_is_in_front() {
    let app = TestApp::spawn(&[]);
    let page = app.client.get(app.url("/")).send().await.expect("page");
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/html")
    );
    let html = page.text().await.expect("html");
    assert!(
        html.contains("id=\"file-input\"") && html.contains("/js/library.js"),
        "{html}"
    );
    let script = app
        .client
        .get(app.url("/js/library.js"))
        .send()
        .await
        .expect("script");
    assert_eq!(script.status(), 200);
}

#[tokio::test]
async fn a_bad_setting_stops_start_up_with_a_clear_message() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_reel"))
        .args(["serve", "--segment-seconds", "0", "--media-dir"])
        .arg(tempfile::tempdir().expect("dir").path())
        .output()
        .expect("run reel");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("--segment-seconds must be between 1 and 30"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"));
}
