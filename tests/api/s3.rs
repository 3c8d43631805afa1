//! A real S3-compatible server for the bucket specs: the server mode of moto (PyPI
//! `moto[server]`, installed by `scripts/install-deps test` into `target/moto`), one per spec on
//! port 0, killed on drop; plus a view of the bucket read straight from it, for the "exactly the
//! expected objects" checks.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tempfile::TempDir;

/// Credentials reel is given; moto accepts any (unless it enforces auth: see
/// [`S3Server::start_enforcing_auth_after`]).
pub const KEY_ID: &str = "reel-spec";
pub const SECRET: &str = "reel-spec-secret";

pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
    child: Child,
    log: PathBuf,
    client: reqwest::Client,
    _dir: TempDir,
}

/// Where `moto_server` is: `REEL_TEST_MOTO_SERVER`, else the venv `scripts/install-deps test`
/// makes.
fn moto_server() -> PathBuf {
    std::env::var_os("REEL_TEST_MOTO_SERVER").map_or_else(
        || {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/target/moto/bin/moto_server"
            ))
        },
        PathBuf::from,
    )
}

impl S3Server {
    /// Starts a server on a free port and waits until it answers.
    pub fn start() -> S3Server {
        S3Server::start_with_env(&[])
    }

    /// A server that checks signatures and IAM permissions once `free` requests were served
    /// (moto's `INITIAL_NO_AUTH_ACTION_COUNT`): spend them on the bucket and on
    /// [`S3Server::create_access_key`]; from then on only a key made there is accepted.
    pub fn start_enforcing_auth_after(free: u32) -> S3Server {
        S3Server::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", &free.to_string())])
    }

    fn start_with_env(env: &[(&str, &str)]) -> S3Server {
        let dir = tempfile::tempdir().expect("moto dir");
        let log = dir.path().join("moto.log");
        let log_file = std::fs::File::create(&log).expect("moto log");
        let program = moto_server();
        let child = Command::new(&program)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .envs(env.iter().copied())
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log handle"))
            .stderr(log_file)
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {} ({e}): run scripts/install-deps test",
                    program.display()
                )
            });
        let mut server = S3Server {
            endpoint: String::new(),
            child,
            log,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .default_headers(signed_looking())
                .build()
                .expect("client"),
            _dir: dir,
        };
        server.endpoint = server.wait_for_endpoint();
        server
    }

    fn wait_for_endpoint(&mut self) -> String {
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(30) {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("moto_server exited at start ({status}):\n{}", self.logs());
            }
            if let Ok(file) = std::fs::File::open(&self.log) {
                for line in BufReader::new(file).lines().map_while(Result::ok) {
                    if let Some(at) = line.find("Running on http://") {
                        let url = line[at + "Running on ".len()..].trim();
                        return url.to_owned();
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("moto_server did not start:\n{}", self.logs());
    }

    fn resume_quietly(&self) {
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.id().to_string()])
            .status();
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops the server for good (a bucket gone away); moto keeps nothing.
    pub fn stop(&mut self) {
        self.resume_quietly();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGSTOP: the server stops answering (connections hang) until [`S3Server::resume`].
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`S3Server::pause`].
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{name}");
    }

    pub async fn create_bucket(&self, bucket: &str) {
        let response = self
            .client
            .put(format!("{}/{bucket}", self.endpoint))
            .send()
            .await
            .expect("create bucket");
        assert!(
            response.status().is_success(),
            "create bucket: {}",
            response.status()
        );
    }

    /// The flags that put reel's media in `s3://BUCKET/PREFIX` on this server. moto is slow
    /// under the parallel specs (an 8 MiB part may take seconds), hence a generous request
    /// time-out, and leases longer than the specs' default so that a write fits inside one.
    pub fn flags(&self, bucket: &str, prefix: &str) -> Vec<String> {
        [
            "--storage",
            &format!("s3://{bucket}/{prefix}"),
            "--s3-endpoint",
            &self.endpoint,
            "--s3-timeout-secs",
            "12",
            "--lease-secs",
            "30",
            "--aws-access-key-id",
            KEY_ID,
            "--aws-secret-access-key",
            SECRET,
        ]
        .map(str::to_owned)
        .to_vec()
    }

    /// Makes an IAM user allowed `s3:*` and an access key for it (three IAM requests, which
    /// count against [`S3Server::start_enforcing_auth_after`]); returns (key id, secret).
    pub async fn create_access_key(&self, user: &str) -> (String, String) {
        let policy = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}"#;
        self.iam(&[("Action", "CreateUser"), ("UserName", user)])
            .await;
        self.iam(&[
            ("Action", "PutUserPolicy"),
            ("UserName", user),
            ("PolicyName", "reel-s3"),
            ("PolicyDocument", policy),
        ])
        .await;
        let created = self
            .iam(&[("Action", "CreateAccessKey"), ("UserName", user)])
            .await;
        let first = |name: &str| {
            elements(&created, name)
                .into_iter()
                .next()
                .unwrap_or_else(|| panic!("{name} in {created}"))
        };
        (first("AccessKeyId"), first("SecretAccessKey"))
    }

    /// One IAM query-API request (moto tells services apart by the signing scope).
    async fn iam(&self, form: &[(&str, &str)]) -> String {
        let scope = format!(
            "AWS4-HMAC-SHA256 Credential={KEY_ID}/20260101/us-east-1/iam/aws4_request, \
             SignedHeaders=host, Signature=0"
        );
        let mut form = form.to_vec();
        form.push(("Version", "2010-05-08"));
        let response = self
            .client
            .post(format!("{}/", self.endpoint))
            .header(reqwest::header::AUTHORIZATION, scope)
            .form(&form)
            .send()
            .await
            .expect("IAM request");
        let status = response.status();
        let body = response.text().await.expect("IAM answer");
        assert!(status.is_success(), "IAM {form:?}: {status} {body}");
        body
    }

    /// Every object key below `prefix`, sorted (ListObjectsV2, every page).
    pub async fn keys(&self, bucket: &str, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut query = vec![("list-type", "2".to_owned()), ("prefix", prefix.to_owned())];
            if let Some(token) = &token {
                query.push(("continuation-token", token.clone()));
            }
            let body = self.get_text(bucket, &query).await;
            keys.extend(elements(&body, "Key"));
            token = elements(&body, "NextContinuationToken").into_iter().next();
            if token.is_none() {
                break;
            }
        }
        keys.sort();
        keys
    }

    /// Keys of the unfinished multipart uploads in the bucket.
    pub async fn multipart_uploads(&self, bucket: &str) -> Vec<String> {
        let body = self.get_text(bucket, &[("uploads", String::new())]).await;
        elements(&body, "Key")
    }

    /// Starts a multipart upload directly (what a crashed reel leaves behind); returns its id.
    pub async fn start_multipart(&self, bucket: &str, key: &str) -> String {
        let response = self
            .client
            .post(format!("{}/{bucket}/{key}?uploads", self.endpoint))
            .send()
            .await
            .expect("create multipart upload");
        assert!(response.status().is_success(), "{}", response.status());
        let body = response.text().await.expect("body");
        elements(&body, "UploadId")
            .into_iter()
            .next()
            .expect("UploadId")
    }

    /// The bytes of one object if it is there (`None` on a 404), straight from the server.
    pub async fn object_if_any(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let response = self
            .client
            .get(format!("{}/{bucket}/{key}", self.endpoint))
            .send()
            .await
            .expect("get object");
        if response.status() == reqwest::StatusCode::NOT_FOUND {
            return None;
        }
        assert!(
            response.status().is_success(),
            "{key}: {}",
            response.status()
        );
        Some(response.bytes().await.expect("object body").to_vec())
    }

    /// The bytes of one object, straight from the server.
    pub async fn object(&self, bucket: &str, key: &str) -> Vec<u8> {
        let response = self
            .client
            .get(format!("{}/{bucket}/{key}", self.endpoint))
            .send()
            .await
            .expect("get object");
        assert!(
            response.status().is_success(),
            "{key}: {}",
            response.status()
        );
        response.bytes().await.expect("object body").to_vec()
    }

    /// An object's `Last-Modified` header (when it was last written), straight from the server.
    pub async fn last_modified(&self, bucket: &str, key: &str) -> String {
        let response = self
            .client
            .head(format!("{}/{bucket}/{key}", self.endpoint))
            .send()
            .await
            .expect("head object");
        assert!(
            response.status().is_success(),
            "{key}: {}",
            response.status()
        );
        response.headers()["last-modified"]
            .to_str()
            .expect("Last-Modified")
            .to_owned()
    }

    async fn get_text(&self, bucket: &str, query: &[(&str, String)]) -> String {
        let response = self
            .client
            .get(format!("{}/{bucket}", self.endpoint))
            .query(query)
            .send()
            .await
            .expect("list bucket");
        assert!(response.status().is_success(), "{}", response.status());
        response.text().await.expect("listing")
    }
}

/// moto checks no signature, but answers requests without one as an anonymous user, whom
/// private objects are refused: the spec's requests carry an (unchecked) authorization.
fn signed_looking() -> reqwest::header::HeaderMap {
    let mut headers = reqwest::header::HeaderMap::new();
    let value = format!(
        "AWS4-HMAC-SHA256 Credential={KEY_ID}/20260101/us-east-1/s3/aws4_request, \
         SignedHeaders=host, Signature=0"
    );
    headers.insert(
        reqwest::header::AUTHORIZATION,
        value.parse().expect("header value"),
    );
    headers
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() || std::env::var_os("TEST_LOG").is_some() {
            eprintln!("--- moto_server log ---\n{}", self.logs());
        }
    }
}

/// The text of every `<name>…</name>` element (S3's listings are flat enough for this).
fn elements(xml: &str, name: &str) -> Vec<String> {
    let (open, close) = (format!("<{name}>"), format!("</{name}>"));
    let mut found = Vec::new();
    let mut rest = xml;
    while let Some(start) = rest.find(&open) {
        rest = &rest[start + open.len()..];
        let Some(end) = rest.find(&close) else { break };
        found.push(rest[..end].replace("&amp;", "&"));
        rest = &rest[end + close.len()..];
    }
    found
}
