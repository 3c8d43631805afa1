//! Accounts and ownership with `--auth jwt`: who gets 401, 403 and 404; HS256 and public-key
//! tokens; the decision to run open on a public address; fair turns across owners.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::RequestBuilder;
use serde_json::{Value, json};

use crate::fixtures;
use crate::helpers::{DEADLINE, TestApp, wait_until};

const SECRET: &str = "a-test-secret-that-is-long-enough-0123";

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

/// An HS256 token with `claims` (defaults: issuer `reel-tests`, audience `reel`, 10 min).
fn hs256(claims: Value, secret: &str) -> String {
    let mut all = json!({"iss": "reel-tests", "aud": "reel", "exp": now() + 600});
    for (key, value) in claims.as_object().expect("object") {
        all[key] = value.clone();
    }
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &all,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("sign")
}

fn token(sub: &str, roles: &[&str]) -> String {
    hs256(json!({"sub": sub, "roles": roles}), SECRET)
}

fn jwt_app(extra: &[&str]) -> TestApp {
    let mut args = vec![
        "--auth",
        "jwt",
        "--jwt-secret",
        SECRET,
        "--jwt-issuer",
        "reel-tests",
        "--jwt-audience",
        "reel",
    ];
    args.extend_from_slice(extra);
    TestApp::spawn(&args)
}

trait Bearer {
    fn bearer(self, token: &str) -> Self;
}

impl Bearer for RequestBuilder {
    fn bearer(self, token: &str) -> Self {
        self.header("Authorization", format!("Bearer {token}"))
    }
}

async fn upload_as(app: &TestApp, token: &str, path: &Path) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/videos"))
        .bearer(token)
        .header("Content-Type", "video/mp4")
        .body(tokio::fs::read(path).await.expect("fixture"))
        .send()
        .await
        .expect("upload")
}

async fn get_as(app: &TestApp, token: Option<&str>, path: &str) -> (u16, Value) {
    let mut request = app.client.get(app.url(path));
    if let Some(token) = token {
        request = request.bearer(token);
    }
    let response = request.send().await.expect("GET");
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn tokens_are_checked_and_owners_see_only_their_own_videos() {
    let app = jwt_app(&[]);
    let alice = token("alice", &["creator"]);
    let bob = token("bob", &["creator"]);
    let viewer = token("vera", &["viewer"]);
    let admin = token("root", &["admin"]);

    // No token, and every way a token can be wrong: 401 with the RFC 6750 challenge.
    let response = app
        .client
        .get(app.url("/api/v1/videos"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), 401);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(challenge.starts_with("Bearer"), "{challenge}");
    let wrong = [
        (
            "bad signature",
            hs256(
                json!({"sub": "alice", "roles": ["creator"]}),
                "another-secret-that-is-long-enough-000",
            ),
        ),
        (
            "expired",
            hs256(
                json!({"sub": "alice", "roles": ["creator"], "exp": now() - 3600}),
                SECRET,
            ),
        ),
        (
            "wrong audience",
            hs256(json!({"sub": "alice", "aud": "elsewhere"}), SECRET),
        ),
        (
            "wrong issuer",
            hs256(json!({"sub": "alice", "iss": "mallory"}), SECRET),
        ),
        ("no sub", hs256(json!({"roles": ["admin"]}), SECRET)),
        ("not a JWT", "abc.def.ghi".to_owned()),
    ];
    for (what, bad) in &wrong {
        let response = app
            .client
            .get(app.url("/api/v1/videos"))
            .bearer(bad)
            .send()
            .await
            .expect("GET");
        assert_eq!(response.status(), 401, "{what}");
        let challenge = response.headers()["www-authenticate"]
            .to_str()
            .expect("ascii")
            .to_owned();
        assert!(challenge.contains("invalid_token"), "{what}: {challenge}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body["error"]["code"], "invalid_token", "{what}");
    }

    // A viewer may not upload: 403.
    let refused = upload_as(&app, &viewer, &fixtures::tiny()).await;
    assert_eq!(refused.status(), 403);

    let mine: Value = upload_as(&app, &alice, &fixtures::tiny())
        .await
        .json()
        .await
        .expect("json");
    let id = mine["id"].as_str().expect("id").to_owned();
    assert_eq!(mine["owner"], "alice");
    let theirs: Value = upload_as(&app, &bob, &fixtures::tiny())
        .await
        .json()
        .await
        .expect("json");
    let bobs = theirs["id"].as_str().expect("id").to_owned();

    // Another owner's video does not exist for them, whatever they try.
    for path in [
        format!("/api/v1/videos/{id}"),
        format!("/api/v1/videos/{id}/history"),
        format!("/api/v1/videos/{id}/source"),
        format!("/api/v1/videos/{id}/events"),
    ] {
        assert_eq!(get_as(&app, Some(&bob), &path).await.0, 404, "{path}");
        assert_eq!(get_as(&app, Some(&viewer), &path).await.0, 404, "{path}");
    }
    let delete = app
        .client
        .delete(app.url(&format!("/api/v1/videos/{id}")))
        .bearer(&bob)
        .send()
        .await
        .expect("DELETE");
    assert_eq!(delete.status(), 404);
    let patch = app
        .client
        .patch(app.url(&format!("/api/v1/videos/{id}")))
        .bearer(&bob)
        .json(&json!({"title": "mine now"}))
        .send()
        .await
        .expect("PATCH");
    assert_eq!(patch.status(), 404);

    // Lists and the change feed are scoped; admins see everything.
    let ids = |page: &Value| -> Vec<String> {
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|v| v["id"].as_str().unwrap_or("").to_owned())
            .collect()
    };
    assert_eq!(
        ids(&get_as(&app, Some(&alice), "/api/v1/videos").await.1),
        vec![id.clone()]
    );
    assert_eq!(
        ids(&get_as(&app, Some(&bob), "/api/v1/videos").await.1),
        vec![bobs.clone()]
    );
    assert!(ids(&get_as(&app, Some(&viewer), "/api/v1/videos").await.1).is_empty());
    let all = ids(&get_as(&app, Some(&admin), "/api/v1/videos").await.1);
    assert!(all.contains(&id) && all.contains(&bobs));
    let (_, feed) = get_as(&app, Some(&bob), "/api/v1/changes?after=0&limit=1000").await;
    assert!(
        feed["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|e| e["video"] == bobs.as_str()),
        "bob's feed holds only his video: {feed}"
    );
    // SSE takes the token from the query (EventSource cannot send headers).
    let stream = app
        .client
        .get(app.url(&format!("/api/v1/videos/{id}/events?access_token={alice}")))
        .send()
        .await
        .expect("events");
    assert_eq!(stream.status(), 200);
    drop(stream);
    // The owner can still read the history after a delete; others cannot.
    assert_eq!(
        app.client
            .delete(app.url(&format!("/api/v1/videos/{id}")))
            .bearer(&alice)
            .send()
            .await
            .expect("DELETE")
            .status(),
        204
    );
    let (status, history) =
        get_as(&app, Some(&alice), &format!("/api/v1/videos/{id}/history")).await;
    assert_eq!(status, 200);
    let kinds: Vec<&str> = history["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(kinds.last(), Some(&"deleted"), "{kinds:?}");
    assert_eq!(
        history["items"]
            .as_array()
            .expect("items")
            .last()
            .expect("event")["data"]["by"],
        "alice"
    );
    assert_eq!(
        get_as(&app, Some(&bob), &format!("/api/v1/videos/{id}/history"))
            .await
            .0,
        404
    );
    assert_eq!(
        get_as(&app, Some(&admin), &format!("/api/v1/videos/{id}/history"))
            .await
            .0,
        200
    );
}

/// An ES256 key pair made with openssl: (private PEM, public PEM).
fn es256_keys(dir: &Path) -> (Vec<u8>, std::path::PathBuf) {
    let private = dir.join("es256.pem");
    let public = dir.join("es256.pub.pem");
    let made = std::process::Command::new("openssl")
        .args([
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
        ])
        .arg(&private)
        .status()
        .expect("openssl");
    assert!(made.success());
    let pkcs8 = dir.join("es256.pk8.pem");
    let converted = std::process::Command::new("openssl")
        .args(["pkcs8", "-topk8", "-nocrypt", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&pkcs8)
        .status()
        .expect("openssl");
    assert!(converted.success());
    let exported = std::process::Command::new("openssl")
        .args(["ec", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(exported.success());
    (std::fs::read(pkcs8).expect("key"), public)
}

#[tokio::test]
async fn a_public_key_verifies_es256_tokens_and_refuses_hs256_ones() {
    let dir = tempfile::tempdir().expect("dir");
    let (private, public) = es256_keys(dir.path());
    let app = TestApp::spawn(&[
        "--auth",
        "jwt",
        "--jwt-public-key-file",
        public.to_str().expect("path"),
    ]);
    let claims = json!({"sub": "erin", "roles": "creator viewer", "exp": now() + 600});
    let good = jsonwebtoken::encode(
        &Header::new(Algorithm::ES256),
        &claims,
        &EncodingKey::from_ec_pem(&private).expect("ec key"),
    )
    .expect("sign");
    let (status, page) = get_as(&app, Some(&good), "/api/v1/videos").await;
    assert_eq!(status, 200, "{page}");
    let uploaded = upload_as(&app, &good, &fixtures::tiny()).await;
    assert_eq!(uploaded.status(), 202, "roles as a space-separated string");
    // A token signed with the public key as an HMAC secret (algorithm confusion) is refused.
    let confused = hs256(
        json!({"sub": "erin", "roles": ["admin"]}),
        &std::fs::read_to_string(&public).expect("pem"),
    );
    assert_eq!(get_as(&app, Some(&confused), "/api/v1/videos").await.0, 401);
}

#[tokio::test]
async fn reel_token_prints_a_token_the_server_accepts() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_reel"))
        .args([
            "token",
            "--sub",
            "tom",
            "--roles",
            "creator,admin",
            "--ttl",
            "1h",
        ])
        .args([
            "--jwt-secret",
            SECRET,
            "--jwt-issuer",
            "reel-tests",
            "--jwt-audience",
            "reel",
        ])
        .output()
        .expect("reel token");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let printed = String::from_utf8(output.stdout)
        .expect("utf-8")
        .trim()
        .to_owned();
    let app = jwt_app(&[]);
    let (status, _) = get_as(&app, Some(&printed), "/api/v1/videos").await;
    assert_eq!(status, 200);
    let refused = std::process::Command::new(env!("CARGO_BIN_EXE_reel"))
        .args([
            "token",
            "--sub",
            "tom",
            "--roles",
            "wizard",
            "--jwt-secret",
            SECRET,
        ])
        .output()
        .expect("reel token");
    assert_eq!(
        refused.status.code(),
        Some(2),
        "an unknown role is a usage error"
    );
}

#[tokio::test]
async fn a_public_address_without_an_auth_decision_refuses_to_start() {
    let media = tempfile::tempdir().expect("media");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_reel"))
        .args(["serve", "--listen", "0.0.0.0:0", "--media-dir"])
        .arg(media.path())
        .output()
        .expect("reel");
    assert!(!output.status.success());
    let said = String::from_utf8_lossy(&output.stderr);
    assert!(said.contains("--auth"), "{said}");
    assert_eq!(
        said.matches("not a loopback address").count(),
        1,
        "said once: {said}"
    );
    // The explicit decision starts it.
    let log = media.path().join("open.log");
    let mut open = std::process::Command::new(env!("CARGO_BIN_EXE_reel"))
        .args([
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--auth",
            "none",
            "--media-dir",
        ])
        .arg(media.path())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("reel");
    let started = std::time::Instant::now();
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("listening")
    {
        assert!(
            open.try_wait().expect("wait").is_none(),
            "exited: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = open.kill();
    let _ = open.wait();
}

#[tokio::test]
async fn one_owners_many_uploads_do_not_starve_another_owners_one() {
    let app = jwt_app(&["--encoders", "1"]);
    let (a, b, admin) = (
        token("anna", &["creator"]),
        token("ben", &["creator"]),
        token("root", &["admin"]),
    );
    // A long first job keeps the encoder busy while the queue fills.
    let first: Value = upload_as(&app, &a, &fixtures::long())
        .await
        .json()
        .await
        .expect("json");
    let mut anna = vec![first["id"].as_str().expect("id").to_owned()];
    // Claimed by the encoder (which happens just after the upload's commit), or it would still
    // be first in the queue, ahead of ben's.
    let claimed = format!("/api/v1/videos/{}", anna[0]);
    wait_until("the long first job to be claimed", DEADLINE, async || {
        let (status, video) = get_as(&app, Some(&a), &claimed).await;
        status == 200 && video["status"] != "queued"
    })
    .await;
    for _ in 0..9 {
        let video: Value = upload_as(&app, &a, &fixtures::tiny())
            .await
            .json()
            .await
            .expect("json");
        anna.push(video["id"].as_str().expect("id").to_owned());
    }
    let bens: Value = upload_as(&app, &b, &fixtures::tiny())
        .await
        .json()
        .await
        .expect("json");
    let ben = bens["id"].as_str().expect("id").to_owned();
    let (_, seen) = get_as(&app, Some(&b), &format!("/api/v1/videos/{ben}")).await;
    assert_eq!(seen["queue_position"], 1, "ben's only job is next: {seen}");
    // The order in which jobs start, from the change feed.
    let started = tokio::time::Instant::now();
    let order = loop {
        let (_, feed) = get_as(&app, Some(&admin), "/api/v1/changes?after=0&limit=1000").await;
        let order: Vec<String> = feed["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|e| e["kind"] == "processing")
            .filter_map(|e| e["video"].as_str().map(str::to_owned))
            .collect();
        if order.len() >= 2 || started.elapsed() > Duration::from_secs(120) {
            break order;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(order.first(), Some(&anna[0]));
    assert_eq!(
        order.get(1),
        Some(&ben),
        "ben's job is among the first two to start: {order:?}"
    );
}

/// A key pair made with `openssl genpkey -algorithm <algorithm>`: (private PKCS#8 PEM, public
/// PEM file).
fn genpkey(dir: &Path, algorithm: &str, options: &[&str]) -> (Vec<u8>, std::path::PathBuf) {
    let private = dir.join(format!("{algorithm}.pem"));
    let public = dir.join(format!("{algorithm}.pub.pem"));
    let made = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", algorithm])
        .args(options)
        .arg("-out")
        .arg(&private)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl");
    assert!(made.success(), "openssl genpkey {algorithm}");
    let exported = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&private)
        .arg("-out")
        .arg(&public)
        .status()
        .expect("openssl");
    assert!(exported.success());
    (std::fs::read(private).expect("key"), public)
}

#[tokio::test]
async fn rs256_and_eddsa_public_keys_verify_their_tokens_and_refuse_another_key_s() {
    let dir = tempfile::tempdir().expect("dir");
    let cases: [(&str, &[&str], Algorithm); 2] = [
        (
            "RSA",
            &["-pkeyopt", "rsa_keygen_bits:2048"],
            Algorithm::RS256,
        ),
        ("ED25519", &[], Algorithm::EdDSA),
    ];
    for (kind, options, algorithm) in cases {
        let (private, public) = genpkey(dir.path(), kind, options);
        let other_dir = tempfile::tempdir().expect("dir");
        let (other, _) = genpkey(other_dir.path(), kind, options);
        let app = TestApp::spawn(&[
            "--auth",
            "jwt",
            "--jwt-public-key-file",
            public.to_str().expect("path"),
        ]);
        let sign = |pem: &[u8]| {
            let key = match algorithm {
                Algorithm::RS256 => EncodingKey::from_rsa_pem(pem),
                _ => EncodingKey::from_ed_pem(pem),
            }
            .expect("key");
            let claims = json!({"sub": "ines", "roles": ["creator"], "exp": now() + 600});
            jsonwebtoken::encode(&Header::new(algorithm), &claims, &key).expect("sign")
        };
        let good = sign(&private);
        let (status, page) = get_as(&app, Some(&good), "/api/v1/videos").await;
        assert_eq!(status, 200, "{kind}: {page}");
        let uploaded = upload_as(&app, &good, &fixtures::tiny()).await;
        assert_eq!(uploaded.status(), 202, "{kind}: a creator uploads");
        let forged = sign(&other);
        assert_eq!(
            get_as(&app, Some(&forged), "/api/v1/videos").await.0,
            401,
            "{kind}: another key's token"
        );
    }
}

#[tokio::test]
async fn resumable_uploads_need_a_creator_s_token_and_belong_to_whoever_created_them() {
    let app = jwt_app(&[]);
    let data = std::fs::read(fixtures::tiny()).expect("fixture");
    let create = |token: Option<String>| {
        let mut request = app
            .client
            .post(app.url("/api/v1/uploads"))
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Length", data.len().to_string());
        if let Some(token) = token {
            request = request.bearer(&token);
        }
        request.send()
    };
    assert_eq!(create(None).await.expect("create").status(), 401);
    let viewer = token("vic", &["viewer"]);
    assert_eq!(create(Some(viewer)).await.expect("create").status(), 403);
    let ana = token("ana", &["creator"]);
    let created = create(Some(ana.clone())).await.expect("create");
    assert_eq!(created.status(), 201);
    let location = created
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .expect("Location")
        .to_owned();
    let url = app.url(&location);

    // Someone else's upload does not exist for them, whatever the method.
    let bob = token("bob", &["creator"]);
    let head = |token: &str| {
        app.client
            .head(&url)
            .header("Tus-Resumable", "1.0.0")
            .bearer(token)
            .send()
    };
    assert_eq!(head(&bob).await.expect("HEAD").status(), 404);
    let stolen = app
        .client
        .patch(&url)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .bearer(&bob)
        .body(data.clone())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(stolen.status(), 404);
    let own = head(&ana).await.expect("HEAD");
    assert_eq!(
        own.headers()
            .get("upload-offset")
            .and_then(|v| v.to_str().ok()),
        Some("0")
    );
    let done = app
        .client
        .patch(&url)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", "0")
        .header("Content-Type", "application/offset+octet-stream")
        .bearer(&ana)
        .body(data.clone())
        .send()
        .await
        .expect("PATCH");
    assert_eq!(done.status(), 204);
    let video = done
        .headers()
        .get("x-reel-video")
        .and_then(|v| v.to_str().ok())
        .expect("X-Reel-Video")
        .to_owned();
    // `X-Reel-Video` is the video's path.
    let (status, resource) = get_as(&app, Some(&ana), &video).await;
    assert_eq!(
        (status, resource["owner"].as_str()),
        (200, Some("ana")),
        "{resource}"
    );
    assert_eq!(get_as(&app, Some(&bob), &video).await.0, 404);
}
