//! The shape of every answer: the JSON error envelope everywhere under `/api/`, one spelling
//! per video URL, security headers, log levels, consistent resources.

use std::time::Duration;

use reqwest::Method;
use serde_json::Value;

use crate::fixtures;
use crate::helpers::{TestApp, error_code};

const UNKNOWN: &str = "01900000-0000-7000-8000-000000000000";

#[tokio::test]
async fn every_error_under_api_is_the_json_envelope() {
    let app = TestApp::spawn(&[]);
    let query = |q: &str| format!("/api/v1/videos?{q}");
    let cases: Vec<(Method, String, u16, &str)> = vec![
        (Method::GET, query("status=bogus"), 400, "invalid_query"),
        (Method::GET, query("limit=-1"), 400, "invalid_query"),
        (Method::GET, query("limit=abc"), 400, "invalid_query"),
        (
            Method::GET,
            query("limit=99999999999"),
            400,
            "invalid_query",
        ),
        (Method::GET, query("limit=1&limit=2"), 400, "invalid_query"),
        (
            Method::GET,
            query("status=ready&status=failed"),
            400,
            "invalid_query",
        ),
        (Method::GET, query("limit=0"), 400, "invalid_limit"),
        (Method::GET, query("cursor=zzz"), 400, "invalid_cursor"),
        (
            Method::GET,
            query("cursor=01900000-0000-7000-8000-00000000ABCD"),
            400,
            "invalid_cursor",
        ),
        (
            Method::from_bytes(b"TRACE").expect("method"),
            "/healthz".into(),
            405,
            "method_not_allowed",
        ),
        (Method::POST, "/readyz".into(), 405, "method_not_allowed"),
        (Method::GET, "/api/nope".into(), 404, "not_found"),
        (Method::GET, "/api".into(), 404, "not_found"),
        (Method::GET, "/api/v1/".into(), 404, "not_found"),
        (Method::GET, "/api/v1/videos/".into(), 404, "not_found"),
        (
            Method::GET,
            format!("/api/v1/videos/{UNKNOWN}/nope"),
            404,
            "not_found",
        ),
        (
            Method::GET,
            format!("/api/v1/videos/{UNKNOWN}"),
            404,
            "not_found",
        ),
        (
            Method::GET,
            format!("/api/v1/videos/{UNKNOWN}/source"),
            404,
            "not_found",
        ),
        (
            Method::GET,
            format!("/api/v1/videos/{UNKNOWN}/events"),
            404,
            "not_found",
        ),
        (
            Method::DELETE,
            format!("/api/v1/videos/{UNKNOWN}"),
            404,
            "not_found",
        ),
        (
            Method::PUT,
            "/api/v1/videos".into(),
            405,
            "method_not_allowed",
        ),
        (
            Method::DELETE,
            "/api/v1/videos".into(),
            405,
            "method_not_allowed",
        ),
        (
            Method::POST,
            format!("/api/v1/videos/{UNKNOWN}"),
            405,
            "method_not_allowed",
        ),
        (
            Method::PATCH,
            format!("/api/v1/videos/{UNKNOWN}/source"),
            405,
            "method_not_allowed",
        ),
        (
            Method::POST,
            format!("/api/v1/videos/{UNKNOWN}/events"),
            405,
            "method_not_allowed",
        ),
        (
            Method::POST,
            "/api/v1/openapi.json".into(),
            405,
            "method_not_allowed",
        ),
        (
            Method::POST,
            "/api/v1/videos".into(),
            415,
            "unsupported_media_type",
        ),
    ];
    for (method, path, status, code) in cases {
        let response = app
            .client
            .request(method.clone(), app.url(&path))
            .header("Content-Type", "text/plain")
            .send()
            .await
            .expect("request");
        let allow = response
            .headers()
            .get("allow")
            .map(|v| v.to_str().unwrap_or("").to_owned());
        let got = error_code(response, status).await;
        assert_eq!(got, code, "{method} {path}");
        if status == 405 {
            let allow = allow.unwrap_or_else(|| panic!("{method} {path}: a 405 has Allow"));
            assert!(
                !allow.contains(method.as_str()),
                "{method} {path}: Allow {allow}"
            );
        }
    }
    let allow = app
        .client
        .put(app.url("/api/v1/videos"))
        .send()
        .await
        .expect("PUT")
        .headers()["allow"]
        .clone();
    assert_eq!(allow, "GET, POST");
}

#[tokio::test]
async fn a_video_has_one_url_and_other_uuid_spellings_are_404s() {
    let app = TestApp::spawn(&[]);
    let id = app.upload_id(&fixtures::tiny()).await;
    app.wait_for(&id, "ready").await;
    let spellings = [
        id.to_uppercase(),
        format!("{{{id}}}"),
        format!("urn:uuid:{id}"),
        id.replace('-', ""),
        format!("%7B{id}%7D"),
    ];
    for spelling in &spellings {
        for path in [
            format!("/api/v1/videos/{spelling}"),
            format!("/api/v1/videos/{spelling}/source"),
            format!("/api/v1/videos/{spelling}/events"),
            format!("/hls/{spelling}/master.m3u8"),
        ] {
            let response = app.client.get(app.url(&path)).send().await.expect("GET");
            error_code(response, 404).await;
        }
        let response = app
            .client
            .delete(app.url(&format!("/api/v1/videos/{spelling}")))
            .send()
            .await
            .expect("DELETE");
        error_code(response, 404).await;
    }
    assert_eq!(
        app.video(&id).await["status"],
        "ready",
        "the canonical URL still works"
    );
    let master = app
        .client
        .get(app.url(&format!("/hls/{id}/master.m3u8")))
        .send()
        .await
        .expect("master");
    assert_eq!(master.status(), 200);
}

#[tokio::test]
async fn every_response_says_nosniff_and_the_page_carries_a_content_security_policy() {
    let app = TestApp::spawn(&[]);
    for path in [
        "/",
        "/app.js",
        "/healthz",
        "/metrics",
        "/api/v1/videos",
        "/api/v1/openapi.json",
        "/api/nope",
        "/no-such-page",
    ] {
        let response = app.client.get(app.url(path)).send().await.expect("GET");
        assert_eq!(
            response
                .headers()
                .get("x-content-type-options")
                .map(|v| v.as_bytes()),
            Some(&b"nosniff"[..]),
            "{path}"
        );
    }
    let page = app.client.get(app.url("/")).send().await.expect("page");
    let csp = page.headers()["content-security-policy"]
        .to_str()
        .expect("ascii")
        .to_owned();
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "media-src 'self' blob:",
        "worker-src 'self' blob:",
    ] {
        assert!(csp.contains(directive), "{directive} in {csp}");
    }
    let html = page.text().await.expect("html");
    assert!(
        !html.contains("<script>") && !html.contains(" style=\"") && !html.contains(" onclick="),
        "the page has no inline script or style for the CSP to block"
    );
}

/// Log lines of a level, from reel's JSON log.
fn lines_at(app: &TestApp, level: &str) -> Vec<String> {
    app.logs()
        .lines()
        .filter(|line| {
            serde_json::from_str::<Value>(line).is_ok_and(|entry| entry["level"] == level)
        })
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn refusals_and_client_errors_are_not_logged_as_errors() {
    let app = TestApp::spawn(&["--min-free-bytes", "1000TiB"]);
    let refused = app.upload_raw(&fixtures::tiny(), "video/mp4").await;
    assert_eq!(refused.status(), 507);
    for path in [
        "/api/v1/videos?limit=abc",
        "/api/nope",
        "/api/v1/videos/nope",
    ] {
        let _ = app.get_json(path).await;
    }
    let _ = app.upload_raw(&fixtures::tiny(), "text/plain").await;
    // A request head actix-http cannot parse: answered 400 before reel sees it.
    let mut socket = tokio::net::TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .expect("connect");
    tokio::io::AsyncWriteExt::write_all(
        &mut socket,
        b"GET /healthz HTTP/1.1\r\nHost: reel\r\nBad\x01Name: y\r\n\r\n",
    )
    .await
    .expect("head");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut socket, &mut answer),
    )
    .await;
    assert!(
        answer.starts_with(b"HTTP/1.1 400"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    assert_eq!(app.metric("reel_http_unparsable_requests_total").await, 1.0);

    let bin = tempfile::tempdir().expect("dir");
    let probe = bin.path().join("slow-ffprobe");
    // Answers reel's start-up check through the real ffprobe, then hangs on every file.
    std::fs::write(
        &probe,
        "#!/bin/sh\nfor a in \"$@\"; do [ \"$a\" = -version ] && exec ffprobe \"$@\"; done\nexec sleep 600\n",
    )
    .expect("script");
    std::fs::set_permissions(&probe, std::os::unix::fs::PermissionsExt::from_mode(0o755))
        .expect("chmod");
    let full = TestApp::spawn(&[
        "--queue-capacity",
        "1",
        "--ffprobe",
        probe.to_str().expect("path"),
    ]);
    let claimed = full.upload_id(&fixtures::tiny()).await;
    full.wait_for(&claimed, "processing").await;
    full.upload(&fixtures::tiny()).await;
    let refused = full.upload_raw(&fixtures::tiny(), "video/mp4").await;
    assert_eq!(refused.status(), 503);
    tokio::time::sleep(Duration::from_millis(200)).await;

    for server in [&app, &full] {
        let errors = lines_at(server, "ERROR");
        assert!(errors.is_empty(), "ERROR lines: {errors:#?}");
    }
    assert!(
        !lines_at(&app, "WARN").is_empty(),
        "the 507 is logged as a warning"
    );
    assert!(
        !lines_at(&full, "WARN").is_empty(),
        "the 503 is logged as a warning"
    );
}

/// Queued with a position, or past the queue without one; never gone.
fn consistent(resource: &Value) -> bool {
    let status = resource["status"].as_str().unwrap_or("");
    ["queued", "processing", "ready"].contains(&status)
        && (status == "queued") == resource["queue_position"].is_u64()
}

#[tokio::test]
async fn a_resource_never_says_queued_without_its_place_in_the_queue() {
    // An idle encoder claims each upload at once: the race between "queued" and "claimed" is
    // as close as it gets.
    let app = TestApp::spawn(&[]);
    let mut ids = Vec::new();
    for _ in 0..6 {
        let resource = app.upload(&fixtures::tiny()).await;
        assert!(consistent(&resource), "202: {resource}");
        ids.push(resource["id"].as_str().expect("id").to_owned());
        let (_, page) = app.get_json("/api/v1/videos").await;
        for item in page["items"].as_array().expect("items") {
            assert!(consistent(item), "list: {item}");
        }
        let video = app.video(&ids[ids.len() - 1]).await;
        assert!(consistent(&video), "GET: {video}");
    }
    for id in &ids {
        app.wait_for(id, "ready").await;
    }
}
