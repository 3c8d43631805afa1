//! Credentials the bucket refuses, against a moto that checks them: it serves a few requests
//! unchecked (moto's `INITIAL_NO_AUTH_ACTION_COUNT`), spent on the bucket and on an IAM user
//! with an access key, then verifies every signature and permission like S3.
//! Ignored in the plain pass like [`crate::bucket`]; `scripts/test` runs them once.

use std::time::{Duration, Instant};

use crate::bucket::{BUCKET, refused_start};
use crate::fixtures;
use crate::helpers::TestApp;
use crate::s3::{KEY_ID, S3Server, SECRET};

/// `s3.flags(…)` with another key id and secret.
fn flags_with_key(s3: &S3Server, prefix: &str, key: &str, secret: &str) -> Vec<String> {
    s3.flags(BUCKET, prefix)
        .into_iter()
        .map(|flag| match flag.as_str() {
            KEY_ID => key.to_owned(),
            SECRET => secret.to_owned(),
            _ => flag,
        })
        .collect()
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn refused_credentials_stop_the_start_in_plain_words_and_the_right_key_starts() {
    // Four unchecked requests: the bucket, then the user, its policy and its key.
    let s3 = S3Server::start_enforcing_auth_after(4);
    s3.create_bucket(BUCKET).await;
    let (key, secret) = s3.create_access_key("reel").await;
    let wrong_secret = "wrong-secret-0123456789-wrong-secret";

    for (key_id, answer) in [
        ("AKIAUNKNOWNKEY000000", "InvalidAccessKeyId"),
        (key.as_str(), "SignatureDoesNotMatch"),
    ] {
        let started = Instant::now();
        let logged = refused_start(&flags_with_key(&s3, "auth", key_id, wrong_secret));
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "refused within the time-outs"
        );
        let line = logged
            .lines()
            .find(|l| l.contains("reel could not run"))
            .unwrap_or_else(|| panic!("one error line: {logged}"));
        assert!(
            line.contains(
                "the media store does not work: the bucket refused reel's credentials: \
                 check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            ),
            "{key_id}: names the credentials: {line}"
        );
        assert!(
            line.contains(&format!("the bucket answered {answer}: ")),
            "{key_id}: the bucket's reason: {line}"
        );
        assert!(
            !logged.contains(wrong_secret) && !logged.contains(&secret),
            "no secret echoed: {logged}"
        );
        assert!(
            !logged.contains("<Error>") && !logged.contains("StringToSign"),
            "no response body: {logged}"
        );
        assert!(!logged.contains("listening"), "it never listened: {logged}");
    }

    // The key made for reel: it starts, is ready, and a video goes through the bucket.
    let flags = flags_with_key(&s3, "auth", &key, &secret);
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = TestApp::spawn(&flags);
    let (status, ready) = app.get_json("/readyz").await;
    assert_eq!((status, &ready["storage"]), (200, &serde_json::json!(true)));
    let id = app.upload_id(&fixtures::tiny()).await;
    app.wait_for(&id, "ready").await;
    let master = app
        .client
        .get(app.url(&format!("/hls/{id}/master.m3u8")))
        .send()
        .await
        .expect("master");
    assert_eq!(master.status(), 200, "the ladder, read with the key");
    assert_eq!(app.delete(&id).await, 204);
    assert!(
        !app.logs().contains(&secret),
        "the secret is not logged by a running reel either"
    );
}
