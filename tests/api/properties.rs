//! Client metadata and properties by JSONPath: through every way in (raw, multipart, tus), at
//! upload and after the probe, in the resource, the list filter, the history and the metrics.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};

use crate::fixtures;
use crate::helpers::{TestApp, error_code};

const PROPERTIES: [&str; 8] = [
    "--property",
    "album=$.metadata.album",
    "--property",
    "codec=$.probe.streams[?@.codec_type == 'video'].codec_name",
    "--property",
    "where=$.request.country",
    "--property",
    "kind=$.request.content_type",
];

fn spawn(extra: &[&str]) -> TestApp {
    let mut args = PROPERTIES.to_vec();
    args.extend([
        "--country-header",
        "X-Test-Country",
        "--trusted-proxies",
        "127.0.0.1/32",
        "--metric-label",
        "album",
        "--metric-label-cap",
        "2",
    ]);
    args.extend(extra);
    TestApp::spawn(&args)
}

async fn raw(app: &TestApp, metadata: &Value, country: &str) -> reqwest::Response {
    let bytes = tokio::fs::read(fixtures::tiny()).await.expect("fixture");
    app.client
        .post(app.url("/api/v1/videos"))
        .header("Content-Type", "video/mp4")
        .header("X-Metadata", URL_SAFE_NO_PAD.encode(metadata.to_string()))
        .header("X-Test-Country", country)
        .body(bytes)
        .send()
        .await
        .expect("raw upload")
}

async fn multipart(app: &TestApp, metadata: &str) -> reqwest::Response {
    let bytes = tokio::fs::read(fixtures::tiny()).await.expect("fixture");
    let form = reqwest::multipart::Form::new()
        .text("metadata", metadata.to_owned())
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes)
                .file_name("tiny.mp4")
                .mime_str("video/mp4")
                .expect("mime"),
        );
    app.client
        .post(app.url("/api/v1/videos"))
        .multipart(form)
        .send()
        .await
        .expect("multipart upload")
}

/// A tus creation-with-upload carrying the whole file; the video's id.
async fn tus(app: &TestApp, metadata: &Value) -> String {
    let bytes = tokio::fs::read(fixtures::tiny()).await.expect("fixture");
    let response = app
        .client
        .post(app.url("/api/v1/uploads"))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", bytes.len().to_string())
        .header(
            "Upload-Metadata",
            format!("metadata {}", STANDARD.encode(metadata.to_string())),
        )
        .header("Content-Type", "application/offset+octet-stream")
        .body(bytes)
        .send()
        .await
        .expect("tus upload");
    assert_eq!(response.status(), 201);
    let video = response.headers()["x-reel-video"]
        .to_str()
        .expect("header")
        .to_owned();
    video.rsplit('/').next().expect("id").to_owned()
}

#[tokio::test]
async fn metadata_from_every_way_in_feeds_properties_at_upload_and_after_the_probe() {
    let app = spawn(&[]);
    // Raw: X-Metadata; the country comes from the trusted edge's header.
    let response = raw(&app, &json!({"album": "Summer", "n": 1}), "de").await;
    assert_eq!(response.status(), 202);
    let raw_video: Value = response.json().await.expect("json");
    assert_eq!(raw_video["metadata"], json!({"album": "Summer", "n": 1}));
    let props = &raw_video["properties"];
    assert_eq!(props["album"], "Summer");
    assert_eq!(props["where"], "DE");
    assert_eq!(props["kind"], "video/mp4");
    assert!(
        props.get("codec").is_none(),
        "the probe has not run: {props}"
    );

    let response = multipart(&app, r#"{"album": "Winter"}"#).await;
    assert_eq!(response.status(), 202);
    let form_video: Value = response.json().await.expect("json");
    assert_eq!(form_video["metadata"]["album"], "Winter");
    assert_eq!(form_video["properties"]["where"], "XX", "no country header");

    let tus_id = tus(&app, &json!({"album": "Autumn"})).await;

    let ids = [
        raw_video["id"].as_str().expect("id").to_owned(),
        form_video["id"].as_str().expect("id").to_owned(),
        tus_id.clone(),
    ];
    for id in &ids {
        let ready = app.wait_for(id, "ready").await;
        assert_eq!(
            ready["properties"]["codec"], "h264",
            "after the probe: {ready}"
        );
    }
    assert_eq!(app.video(&tus_id).await["properties"]["album"], "Autumn");

    // The list filters by properties, compared as text.
    let (status, page) = app
        .get_json("/api/v1/videos?property.codec=h264&property.album=Winter")
        .await;
    assert_eq!(status, 200, "{page}");
    let found: Vec<&str> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|v| v["id"].as_str())
        .collect();
    assert_eq!(found, vec![ids[1].as_str()]);
    let (_, all) = app.get_json("/api/v1/videos?property.codec=h264").await;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(3));
    let response = app
        .client
        .get(app.url("/api/v1/videos?property.nope=1"))
        .send()
        .await
        .expect("list");
    assert_eq!(error_code(response, 400).await, "invalid_query");

    // History: `uploaded` has the upload's properties, `updated` the probe's.
    let (_, history) = app
        .get_json(&format!("/api/v1/videos/{}/history", ids[0]))
        .await;
    let events = history["items"].as_array().expect("items");
    let uploaded = events
        .iter()
        .find(|e| e["kind"] == "uploaded")
        .expect("uploaded");
    assert_eq!(uploaded["data"]["properties"]["album"], "Summer");
    assert_eq!(uploaded["data"]["country"], "DE");
    let updated = events
        .iter()
        .find(|e| e["kind"] == "updated")
        .expect("updated");
    assert_eq!(updated["data"]["properties"]["codec"], "h264");
    assert_eq!(updated["data"]["properties"]["album"], "Summer");

    // The metric label keeps two distinct albums; the third is `other`.
    let metrics = app.metrics_text().await;
    for (country, album) in [("DE", "Summer"), ("XX", "Winter"), ("XX", "other")] {
        let series = format!(
            r#"reel_uploads_by_country_total{{country="{country}",content_type="video/mp4",outcome="accepted",album="{album}"}}"#
        );
        assert_eq!(app.metric(&series).await, 1.0, "{series}\n{metrics}");
    }
    assert!(metrics.contains(r#"reel_upload_size_bytes_bucket{country="DE",album="Summer""#));
}

#[tokio::test]
async fn metadata_that_is_too_large_or_not_an_object_is_refused_clearly() {
    let app = spawn(&[]);
    let big = json!({ "a": "x".repeat(16 * 1024) });
    assert_eq!(
        error_code(raw(&app, &big, "FR").await, 413).await,
        "metadata_too_large"
    );
    assert_eq!(
        error_code(raw(&app, &json!([1, 2]), "FR").await, 400).await,
        "invalid_metadata"
    );
    let bytes = tokio::fs::read(fixtures::tiny()).await.expect("fixture");
    let response = app
        .client
        .post(app.url("/api/v1/videos"))
        .header("Content-Type", "video/mp4")
        .header("X-Metadata", "not base64!")
        .body(bytes)
        .send()
        .await
        .expect("upload");
    assert_eq!(error_code(response, 400).await, "invalid_metadata");
    assert_eq!(
        error_code(multipart(&app, &big.to_string()).await, 413).await,
        "metadata_too_large"
    );
    assert_eq!(
        error_code(multipart(&app, "{broken").await, 400).await,
        "invalid_metadata"
    );
    let response = app
        .client
        .post(app.url("/api/v1/uploads"))
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Length", "1000")
        .header(
            "Upload-Metadata",
            format!("metadata {}", STANDARD.encode("\"text\"")),
        )
        .send()
        .await
        .expect("tus creation");
    assert_eq!(error_code(response, 400).await, "invalid_metadata");
    // Refusals are counted by country too (content type unknown: nothing was sniffed).
    let series = r#"reel_uploads_by_country_total{country="FR",content_type="unknown",outcome="metadata_too_large",album="none"}"#;
    assert_eq!(app.metric(series).await, 1.0);
    let (_, page) = app.get_json("/api/v1/videos").await;
    assert_eq!(
        page["items"].as_array().map(Vec::len),
        Some(0),
        "nothing filed"
    );
}

#[tokio::test]
async fn claims_are_part_of_the_document() {
    let secret = "properties-spec-secret-0123456789abcdef";
    let app = TestApp::spawn(&[
        "--auth",
        "jwt",
        "--jwt-secret",
        secret,
        "--property",
        "who=$.claims.sub",
        "--property",
        "plan=$.claims.plan",
    ]);
    let token = std::process::Command::new(env!("CARGO_BIN_EXE_reel"))
        .args([
            "token",
            "--sub",
            "alice",
            "--roles",
            "creator",
            "--jwt-secret",
            secret,
        ])
        .output()
        .expect("reel token");
    assert!(token.status.success());
    let token = String::from_utf8(token.stdout).expect("utf-8");
    let bytes = tokio::fs::read(fixtures::tiny()).await.expect("fixture");
    let response = app
        .client
        .post(app.url("/api/v1/videos"))
        .bearer_auth(token.trim())
        .header("Content-Type", "video/mp4")
        .body(bytes)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 202);
    let video: Value = response.json().await.expect("json");
    assert_eq!(
        video["properties"],
        json!({"who": "alice"}),
        "no `plan` claim: absent"
    );
}

#[test]
fn an_invalid_expression_stops_start_up_with_its_position() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_reel"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--property",
            "bad=$.a[?@.b ==]",
        ])
        .output()
        .expect("reel");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("property `bad`"), "{stderr}");
    assert!(stderr.contains("at position"), "{stderr}");
    assert!(stderr.contains('^'), "{stderr}");
}
