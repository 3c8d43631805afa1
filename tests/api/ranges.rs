//! Files served by reel (`/api/v1/videos/{id}/source`, `/hls/…`): byte ranges and validators
//! per RFC 9110, download names per RFC 6266 / RFC 8187, the source's real media type.

use reqwest::header::HeaderMap;

use crate::fixtures;
use crate::helpers::{TestApp, error_code};

struct Fetched {
    status: u16,
    headers: HeaderMap,
    body: Vec<u8>,
}

async fn fetch(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> Fetched {
    let mut request = app.client.request(method, app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.bytes().await.expect("body").to_vec();
    Fetched {
        status,
        headers,
        body,
    }
}

fn header<'a>(fetched: &'a Fetched, name: &str) -> &'a str {
    fetched
        .headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Every rule of RFC 9110 §13–14 that reel's file serving decides, on one file.
async fn check_ranges(app: &TestApp, path: &str, file: &[u8]) {
    let len = file.len();
    let get = |headers: &'static [(&'static str, &'static str)]| {
        fetch(app, reqwest::Method::GET, path, headers)
    };
    let whole = get(&[]).await;
    assert_eq!(whole.status, 200, "{path}");
    assert_eq!(whole.body, file, "{path}: the whole file");
    assert_eq!(header(&whole, "accept-ranges"), "bytes");
    let etag = header(&whole, "etag").to_owned();
    let last_modified = header(&whole, "last-modified").to_owned();
    assert!(etag.starts_with('"'), "{path}: a strong ETag, got {etag:?}");

    let one = get(&[("Range", "bytes=10-109")]).await;
    assert_eq!(one.status, 206, "{path}: one range");
    assert_eq!(header(&one, "content-range"), format!("bytes 10-109/{len}"));
    assert_eq!(one.body, &file[10..110]);
    let suffix = get(&[("Range", "bytes=-20")]).await;
    assert_eq!(
        (suffix.status, suffix.body.as_slice()),
        (206, &file[len - 20..])
    );

    // Ignored Range headers: the whole file, 200.
    for (label, range) in [
        ("an unknown unit", "items=0-5"),
        ("two ranges", "bytes=0-1,5-6"),
        ("two ranges, one past the end", "bytes=0-1,999999999-"),
        ("overlapping ranges", "bytes=0-99,50-150"),
        ("malformed", "bytes=5-1"),
        ("an empty set", "bytes="),
    ] {
        let fetched = fetch(app, reqwest::Method::GET, path, &[("Range", range)]).await;
        let multipart = header(&fetched, "content-type").starts_with("multipart/byteranges");
        assert!(
            fetched.status == 200 && fetched.body == file || fetched.status == 206 && multipart,
            "{path}: {label} ({range}) gives the whole file or multipart/byteranges, got {} {:?}",
            fetched.status,
            header(&fetched, "content-range")
        );
    }

    // If-Range: the range only when the validator is the current one.
    let weak = format!("W/{etag}");
    for (label, validator, expected) in [
        ("the current ETag", etag.as_str(), 206),
        ("another ETag", "\"not-this-one\"", 200),
        ("a weak ETag", weak.as_str(), 200),
        ("the Last-Modified date", last_modified.as_str(), 206),
        ("an older date", "Mon, 01 Jan 2001 00:00:00 GMT", 200),
        ("garbage", "yesterday", 200),
    ] {
        let fetched = fetch(
            app,
            reqwest::Method::GET,
            path,
            &[("Range", "bytes=0-9"), ("If-Range", validator)],
        )
        .await;
        assert_eq!(fetched.status, expected, "{path}: If-Range with {label}");
        let body: &[u8] = if expected == 206 { &file[..10] } else { file };
        assert_eq!(fetched.body, body, "{path}: If-Range with {label}");
    }

    for range in [
        "bytes=999999999-",
        "bytes=-0",
        "bytes=999999999-,888888888-",
    ] {
        let response = app
            .client
            .get(app.url(path))
            .header("Range", range)
            .send()
            .await
            .expect("GET");
        let content_range = response.headers()["content-range"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert_eq!(content_range, format!("bytes */{len}"), "{path}: {range}");
        error_code(response, 416).await;
    }

    let head = fetch(app, reqwest::Method::HEAD, path, &[("Range", "bytes=0-9")]).await;
    assert_eq!(
        (head.status, header(&head, "content-range")),
        (206, format!("bytes 0-9/{len}").as_str())
    );
    assert!(head.body.is_empty());
    let not_modified = fetch(
        app,
        reqwest::Method::GET,
        path,
        &[("If-None-Match", etag.as_str())],
    )
    .await;
    assert_eq!(not_modified.status, 304, "{path}");
    let response = app
        .client
        .get(app.url(path))
        .header("If-Match", "\"not-this-one\"")
        .send()
        .await
        .expect("GET");
    error_code(response, 412).await;
}

#[tokio::test]
async fn files_served_by_reel_follow_rfc_9110_ranges_and_validators() {
    let app = TestApp::spawn(&[]);
    let id = app.upload_id(&fixtures::tiny()).await;
    app.wait_for(&id, "ready").await;
    let source = std::fs::read(fixtures::tiny()).expect("fixture");
    check_ranges(&app, &format!("/api/v1/videos/{id}/source"), &source).await;
    let master =
        std::fs::read(app.media.join("hls").join(&id).join("master.m3u8")).expect("master");
    check_ranges(&app, &format!("/hls/{id}/master.m3u8"), &master).await;
}

async fn upload_named(app: &TestApp, path: &std::path::Path, name: &str) -> String {
    let response = app
        .client
        .post(app.url("/api/v1/videos"))
        .header("Content-Type", "application/octet-stream")
        .header("X-Filename", name)
        .body(std::fs::read(path).expect("fixture"))
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 202);
    let body: serde_json::Value = response.json().await.expect("json");
    body["id"].as_str().expect("id").to_owned()
}

#[tokio::test]
async fn downloads_carry_an_ascii_and_a_utf8_name_and_the_containers_media_type() {
    let webm = fixtures::make(
        "tiny.webm",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=15:duration=1",
            "-c:v",
            "libvpx",
            "-deadline",
            "realtime",
        ],
    );
    let mkv = fixtures::make(
        "tiny.mkv",
        &[
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=160x120:rate=15:duration=1",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
        ],
    );
    let cases = [
        (
            fixtures::tiny(),
            "%C3%89t%C3%A9%20%C3%A0%20No%C3%ABl.mp4",
            "video/mp4",
            "attachment; filename=\"Ete a Noel.mp4\"; filename*=UTF-8''%C3%89t%C3%A9%20%C3%A0%20No%C3%ABl.mp4",
        ),
        (
            webm,
            "%E8%A7%86%E9%A2%91.webm",
            "video/webm",
            "attachment; filename=\"Shi Pin .webm\"; filename*=UTF-8''%E8%A7%86%E9%A2%91.webm",
        ),
        (
            mkv,
            "say%20%22hi%22.mkv",
            "video/x-matroska",
            "attachment; filename=\"say _hi_.mkv\"; filename*=UTF-8''say%20%22hi%22.mkv",
        ),
    ];
    for accel in [false, true] {
        let app = TestApp::spawn(if accel { &["--accel-redirect"] } else { &[] });
        for (fixture, name, media_type, disposition) in &cases {
            let id = upload_named(&app, fixture, name).await;
            let fetched = fetch(
                &app,
                reqwest::Method::GET,
                &format!("/api/v1/videos/{id}/source"),
                &[],
            )
            .await;
            assert_eq!(fetched.status, 200);
            assert_eq!(
                header(&fetched, "content-type"),
                *media_type,
                "{name} accel={accel}"
            );
            assert_eq!(
                header(&fetched, "content-disposition"),
                *disposition,
                "{name} accel={accel}"
            );
            if accel {
                assert_eq!(
                    header(&fetched, "x-accel-redirect"),
                    format!("/_sources/{id}")
                );
                assert!(fetched.body.is_empty(), "nginx sends the bytes");
            } else {
                assert_eq!(fetched.body, std::fs::read(fixture).expect("fixture"));
            }
        }
    }
}
