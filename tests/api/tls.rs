//! HTTPS served by reel and its certificate pins, checked with real clients: curl's
//! `--pinnedpubkey`, openssl's own pin computation, `reel pin`, and a SIGHUP reload while a
//! connection made with the old certificate stays open.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fixtures;
use crate::helpers::{TestApp, error_code};

const DEADLINE: Duration = Duration::from_secs(30);

/// A self-signed certificate for localhost and 127.0.0.1 (`kind`: `ec` P-256 or `rsa`).
fn certificate(dir: &Path, name: &str, kind: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    let algorithm: &[&str] = match kind {
        "rsa" => &["-newkey", "rsa:2048"],
        _ => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    };
    let status = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
        ])
        .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
        .args(algorithm)
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(status.success(), "openssl req");
    (cert, key)
}

/// The pin as openssl computes it: SHA-256 of the DER SubjectPublicKeyInfo, base64.
fn openssl_pin(cert: &Path) -> String {
    let script = format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der \
         | openssl dgst -sha256 -binary | openssl base64 -A",
        cert.display()
    );
    let output = Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("sh");
    assert!(output.status.success());
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

fn reel_pin(cert: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_reel"))
        .arg("pin")
        .arg(cert)
        .output()
        .expect("reel pin");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned()
}

fn https(app: &TestApp, path: &str) -> String {
    let port = app.base.rsplit(':').next().expect("port");
    format!("https://localhost:{port}{path}")
}

/// `curl` over HTTPS trusting `ca` and requiring `pin`: its exit code and body.
fn curl(url: &str, ca: &Path, pin: Option<&str>, extra: &[&str]) -> (i32, String) {
    let mut command = Command::new("curl");
    command
        .args(["-sS", "--max-time", "20", "--cacert"])
        .arg(ca);
    if let Some(pin) = pin {
        command.arg("--pinnedpubkey").arg(format!("sha256//{pin}"));
    }
    let output = command.args(extra).arg(url).output().expect("curl");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[tokio::test]
async fn published_pins_match_openssl_and_curl_enforces_them() {
    let dir = tempfile::tempdir().expect("dir");
    let (cert, key) = certificate(dir.path(), "served", "ec");
    let (spare, _) = certificate(dir.path(), "spare", "rsa");
    let pin = openssl_pin(&cert);
    let backup = openssl_pin(&spare);
    assert_eq!(reel_pin(&cert), pin, "reel pin = openssl (EC)");
    assert_eq!(reel_pin(&spare), backup, "reel pin = openssl (RSA)");

    let app = TestApp::spawn(&[
        "--tls-cert",
        cert.to_str().expect("path"),
        "--tls-key",
        key.to_str().expect("path"),
        "--tls-backup-pin",
        &backup,
    ]);
    let (code, body) = curl(&https(&app, "/api/v1/tls/pins"), &cert, Some(&pin), &[]);
    assert_eq!(code, 0, "the published pin is accepted: {body}");
    let pins: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(pins["current"], pin.as_str());
    assert_eq!(pins["pins"], serde_json::json!([pin, backup]));
    assert_eq!(pins["curl"], format!("sha256//{pin};sha256//{backup}"));
    // A wrong pin (a real key, just not this one) is refused by curl: exit 90.
    let (code, _) = curl(&https(&app, "/healthz"), &cert, Some(&backup), &[]);
    assert_eq!(code, 90, "CURLE_SSL_PINNEDPUBKEYNOTMATCH");
    // curl's own list form, as published.
    let (code, _) = curl(
        &https(&app, "/healthz"),
        &cert,
        None,
        &["--pinnedpubkey", pins["curl"].as_str().expect("curl")],
    );
    assert_eq!(code, 0);

    // TLS ended in front (nginx): reel publishes the pin of --tls-pin-cert over plain HTTP.
    let behind = TestApp::spawn(&["--tls-pin-cert", cert.to_str().expect("path")]);
    let (status, published) = behind.get_json("/api/v1/tls/pins").await;
    assert_eq!(status, 200);
    assert_eq!(published["pins"], serde_json::json!([pin]));
    let plain = TestApp::spawn(&[]);
    let response = plain
        .client
        .get(plain.url("/api/v1/tls/pins"))
        .send()
        .await
        .expect("pins");
    assert_eq!(error_code(response, 404).await, "no_pins");
}

#[tokio::test]
async fn sighup_serves_the_new_certificate_while_an_open_connection_keeps_working() {
    let dir = tempfile::tempdir().expect("dir");
    let (old_cert, old_key) = certificate(dir.path(), "old", "ec");
    let (new_cert, new_key) = certificate(dir.path(), "new", "ec");
    let (cert, key) = (dir.path().join("tls.pem"), dir.path().join("tls.key"));
    std::fs::copy(&old_cert, &cert).expect("copy");
    std::fs::copy(&old_key, &key).expect("copy");
    let (old_pin, new_pin) = (openssl_pin(&old_cert), openssl_pin(&new_cert));
    let app = TestApp::spawn(&[
        "--tls-cert",
        cert.to_str().expect("path"),
        "--tls-key",
        key.to_str().expect("path"),
    ]);

    // A long-lived connection made with the old certificate: the change feed's stream.
    let mut stream = Command::new("curl")
        .args(["-sSN", "--max-time", "60", "--cacert"])
        .arg(&old_cert)
        .arg("--pinnedpubkey")
        .arg(format!("sha256//{old_pin}"))
        .arg(https(&app, "/api/v1/changes/stream"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl stream");
    let (lines, received) = mpsc::channel();
    let stdout = stream.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    // The stream is open once its first bytes (retry, keep-alive) arrive.
    received.recv_timeout(DEADLINE).expect("the stream opened");

    // Renew: new files in place (renamed, as certbot does), then SIGHUP.
    std::fs::copy(&new_cert, dir.path().join("next.pem")).expect("copy");
    std::fs::copy(&new_key, dir.path().join("next.key")).expect("copy");
    std::fs::rename(dir.path().join("next.key"), &key).expect("rename");
    std::fs::rename(dir.path().join("next.pem"), &cert).expect("rename");
    app.signal("HUP");
    let started = Instant::now();
    while curl(&https(&app, "/healthz"), &new_cert, Some(&new_pin), &[]).0 != 0 {
        assert!(
            started.elapsed() < DEADLINE,
            "the new certificate was never served"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        curl(&https(&app, "/healthz"), &old_cert, Some(&old_pin), &[]).0,
        60,
        "new connections no longer get the old certificate (curl: peer not trusted)"
    );
    let (_, body) = curl(&https(&app, "/api/v1/tls/pins"), &new_cert, None, &[]);
    assert!(body.contains(&new_pin), "the published pin follows: {body}");

    // The old connection still works: an upload made now reaches it.
    let clip = fixtures::tiny();
    let (code, body) = curl(
        &https(&app, "/api/v1/videos"),
        &new_cert,
        None,
        &[
            "-H",
            "Content-Type: video/mp4",
            "--data-binary",
            &format!("@{}", clip.display()),
        ],
    );
    assert_eq!(code, 0);
    let video: Value = serde_json::from_str(&body).expect("resource");
    let id = video["id"].as_str().expect("id").to_owned();
    let started = Instant::now();
    loop {
        let left = DEADLINE.saturating_sub(started.elapsed());
        let line = received
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("the old connection got no event of {id}"));
        if line.starts_with("data:") && line.contains(&id) {
            break;
        }
    }

    // A broken renewal keeps the certificate in use.
    std::fs::write(&cert, "not a certificate\n").expect("write");
    app.signal("HUP");
    let started = Instant::now();
    while !app.logs().contains("TLS reload failed") {
        assert!(started.elapsed() < DEADLINE, "no log of the failed reload");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        curl(&https(&app, "/healthz"), &new_cert, Some(&new_pin), &[]).0,
        0
    );
    let _ = stream.kill();
    let _ = stream.wait();
}
