//! Multipart uploads from hostile or broken clients: every way a form can go wrong ends that
//! request (400, 408, 413) and leaves nothing behind, and the server stays free for others.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::fixtures;
use crate::helpers::{TestApp, wait_until};

const BOUNDARY: &str = "reelboundary";

/// The opening of a part named `name` (with a file name for `file`).
fn part_head(name: &str) -> String {
    let filename = if name == "file" {
        "; filename=\"clip.mp4\""
    } else {
        ""
    };
    format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"{filename}\r\n\r\n")
}

/// A raw connection that has sent the request head of a multipart upload declaring
/// `declared` bytes of body.
async fn start_form(app: &TestApp, declared: usize) -> TcpStream {
    let mut socket = TcpStream::connect(app.base.trim_start_matches("http://"))
        .await
        .expect("connect");
    let head = format!(
        "POST /api/v1/videos HTTP/1.1\r\nHost: reel\r\n\
         Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {declared}\r\n\r\n"
    );
    socket.write_all(head.as_bytes()).await.expect("head");
    socket
}

/// Reads the server's answer until it closes the connection (or `within` passes).
async fn answer(socket: &mut TcpStream, within: Duration) -> String {
    let mut bytes = Vec::new();
    let read = tokio::time::timeout(within, socket.read_to_end(&mut bytes)).await;
    assert!(
        read.is_ok(),
        "no complete answer within {within:?}; got so far: {}",
        String::from_utf8_lossy(&bytes)
    );
    String::from_utf8_lossy(&bytes).into_owned()
}

async fn healthz_answers(app: &TestApp) {
    let response = tokio::time::timeout(
        Duration::from_secs(3),
        app.client.get(app.url("/healthz")).send(),
    )
    .await
    .expect("/healthz answered within 3 s: the only HTTP worker is free")
    .expect("healthz");
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_form_that_ends_or_breaks_inside_any_part_is_a_400_and_the_only_worker_stays_free() {
    let app = TestApp::spawn(&["--http-workers", "1"]);
    let file = std::fs::read(fixtures::tiny()).expect("fixture");
    // Bodies whose end (the declared length) comes inside a part, or whose framing is wrong.
    let mut cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "inside an unknown field",
            format!("{}hello", part_head("note")).into_bytes(),
        ),
        (
            "inside the title",
            format!("{}My ti", part_head("title")).into_bytes(),
        ),
        (
            "inside a part's headers",
            format!("--{BOUNDARY}\r\nContent-Disp").into_bytes(),
        ),
        ("before any boundary", b"no boundary here at all".to_vec()),
    ];
    let mut inside_file = part_head("file").into_bytes();
    inside_file.extend_from_slice(&file[..file.len() / 2]);
    cases.push(("inside the file", inside_file));
    let mut after_file = part_head("file").into_bytes();
    after_file.extend_from_slice(&file);
    after_file.extend_from_slice(format!("\r\n{}half a no", part_head("note")).as_bytes());
    cases.push(("in a field after a complete file", after_file));

    for (label, body) in &cases {
        let mut socket = start_form(&app, body.len()).await;
        socket.write_all(body).await.expect("body");
        let answer = answer(&mut socket, Duration::from_secs(10)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{label}: {answer}");
        assert!(answer.contains("\"error\""), "{label}: {answer}");
        healthz_answers(&app).await;
    }
    // A client that goes away inside a field: nobody to answer, but the worker must not spin.
    for name in ["note", "title", "file"] {
        let mut socket = start_form(&app, 1 << 20).await;
        socket
            .write_all(format!("{}partial", part_head(name)).as_bytes())
            .await
            .expect("part");
        tokio::time::sleep(Duration::from_millis(200)).await;
        drop(socket);
        healthz_answers(&app).await;
    }
    wait_until(
        "staged files to be removed",
        Duration::from_secs(5),
        async || app.files_in("tmp").is_empty(),
    )
    .await;
    assert!(app.files_in("sources").is_empty());
}

#[tokio::test]
async fn a_client_that_stalls_anywhere_in_a_form_gets_a_408_and_its_staged_file_is_removed() {
    let app = TestApp::spawn(&["--upload-idle-timeout-secs", "2"]);
    let file = std::fs::read(fixtures::tiny()).expect("fixture");
    let mut complete_file = part_head("file").into_bytes();
    complete_file.extend_from_slice(&file);
    complete_file.extend_from_slice(b"\r\n");
    let cases: Vec<(&str, Vec<u8>, bool)> = vec![
        ("after a complete file part", complete_file.clone(), true),
        (
            "inside a field after the file",
            {
                let mut body = complete_file.clone();
                body.extend_from_slice(format!("{}some", part_head("note")).as_bytes());
                body
            },
            true,
        ),
        (
            "inside the title, before any file",
            format!("{}A ti", part_head("title")).into_bytes(),
            false,
        ),
        (
            "between two parts",
            format!("{}x\r\n", part_head("note")).into_bytes(),
            false,
        ),
    ];
    for (label, body, staged) in cases {
        let mut socket = start_form(&app, body.len() + (1 << 20)).await;
        socket.write_all(&body).await.expect("body");
        if staged {
            // The spec is about removing the staged file, so first it must exist.
            wait_until(
                &format!("{label}: the staged file"),
                Duration::from_secs(5),
                async || !app.files_in("tmp").is_empty(),
            )
            .await;
        }
        let answer = answer(&mut socket, Duration::from_secs(15)).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{label}: {answer}");
        assert!(answer.contains("upload_timeout"), "{label}: {answer}");
        assert!(
            app.files_in("tmp").is_empty() && app.files_in("sources").is_empty(),
            "{label}: {:?}",
            app.files_in("tmp")
        );
    }
    let (_, list) = app.get_json("/api/v1/videos").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0));
}

/// A form body in memory: `(name, bytes)` parts in order.
fn form(parts: &[(&str, &[u8])]) -> Vec<u8> {
    let mut body = Vec::new();
    for (name, bytes) in parts {
        body.extend_from_slice(part_head(name).as_bytes());
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
    body
}

async fn post_form(app: &TestApp, body: Vec<u8>) -> reqwest::Result<reqwest::Response> {
    app.client
        .post(app.url("/api/v1/videos"))
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={BOUNDARY}"),
        )
        .body(body)
        .send()
        .await
}

#[tokio::test]
async fn every_part_of_a_form_counts_against_the_upload_limit() {
    let app = TestApp::spawn(&["--max-upload-bytes", "4MiB"]);
    let file = std::fs::read(fixtures::tiny()).expect("fixture");
    let junk = vec![b'j'; 6 << 20];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "a junk field before the file",
            form(&[("note", &junk), ("file", &file)]),
        ),
        (
            "a junk field after the file",
            form(&[("file", &file), ("note", &junk)]),
        ),
        ("many small fields", {
            let parts: Vec<(&str, &[u8])> = (0..12).map(|_| ("note", &junk[..512 << 10])).collect();
            form(&parts)
        }),
    ];
    for (label, body) in cases {
        match post_form(&app, body).await {
            Ok(response) => {
                assert_eq!(response.status(), 413, "{label}");
                let body: serde_json::Value = response.json().await.expect("json");
                assert_eq!(body["error"]["code"], "payload_too_large", "{label}");
            }
            // Refused mid-body: the server may close before the client finished sending.
            Err(error) => assert!(!error.is_timeout(), "{label}: {error}"),
        }
    }
    let (status, title) = (
        post_form(&app, form(&[("title", &[b't'; 5000]), ("file", &file)]))
            .await
            .expect("post")
            .status(),
        "a 5000-byte title",
    );
    assert_eq!(status, 400, "{title}");
    for (label, parts) in [
        ("two files", vec![("file", &file[..]), ("file", &file[..])]),
        (
            "two titles",
            vec![
                ("title", &b"a"[..]),
                ("title", &b"b"[..]),
                ("file", &file[..]),
            ],
        ),
    ] {
        let response = post_form(&app, form(&parts)).await.expect("post");
        assert_eq!(response.status(), 400, "{label}");
        let body: serde_json::Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "duplicate_part", "{label}");
    }
    let parts: Vec<(&str, &[u8])> = (0..20).map(|_| ("note", &b"x"[..])).collect();
    let response = post_form(&app, form(&parts)).await.expect("post");
    assert_eq!(response.status(), 400, "20 parts");
    assert!(app.files_in("tmp").is_empty() && app.files_in("sources").is_empty());
    let accepted = post_form(&app, form(&[("title", b"ok"), ("file", &file)]))
        .await
        .expect("post");
    assert_eq!(accepted.status(), 202, "a normal form still works");
}
