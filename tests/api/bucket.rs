//! Media in an S3-compatible bucket (`--storage s3://BUCKET/PREFIX`) against a real server (moto,
//! see [`crate::s3`]): uploads stream into the bucket, ladders are published to it with the
//! master last, reel serves both from it with Range, and after every spec the bucket holds
//! exactly the objects the videos own — no orphans, no unfinished multipart uploads.
//!
//! Ignored in the plain pass; `scripts/test` runs them once, in its `--include-ignored` pass.

use std::collections::BTreeSet;
use std::time::Duration;

use m3u8_rs::Playlist;

use crate::fixtures;
use crate::helpers::{DEADLINE, TestApp, error_code, wait_until};
use crate::s3::S3Server;

pub const BUCKET: &str = "reel-specs";

/// A reel on a fresh server's bucket, below `prefix`.
pub async fn bucket_app(prefix: &str, extra: &[&str]) -> (S3Server, TestApp) {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET).await;
    let mut flags = s3.flags(BUCKET, prefix);
    flags.extend(extra.iter().map(|s| (*s).to_owned()));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = TestApp::spawn(&flags);
    (s3, app)
}

/// The URIs a playlist names (segments, init maps, rung playlists).
fn uris(text: &[u8]) -> Vec<String> {
    match m3u8_rs::parse_playlist_res(text) {
        Ok(Playlist::MasterPlaylist(master)) => {
            let mut uris: Vec<String> = master.variants.iter().map(|v| v.uri.clone()).collect();
            uris.extend(master.alternatives.iter().filter_map(|a| a.uri.clone()));
            uris.sort();
            uris.dedup();
            uris
        }
        Ok(Playlist::MediaPlaylist(media)) => {
            let mut uris: Vec<String> = media
                .segments
                .iter()
                .filter_map(|s| s.map.as_ref().map(|m| m.uri.clone()))
                .collect();
            uris.extend(media.segments.iter().map(|s| s.uri.clone()));
            uris
        }
        Err(error) => panic!("not a playlist: {error:?}"),
    }
}

async fn fetch(app: &TestApp, path: &str, range: Option<&str>) -> (u16, Vec<u8>) {
    let mut request = app.client.get(app.url(path));
    if let Some(range) = range {
        request = request.header("Range", range);
    }
    let response = request.send().await.expect("GET");
    let status = response.status().as_u16();
    (status, response.bytes().await.expect("body").to_vec())
}

/// Nothing of the video is in the local media dir: sources and ladders live in the bucket.
pub fn assert_no_local_media(app: &TestApp) {
    for sub in ["sources", "hls"] {
        let files = app.files_in(sub);
        assert!(files.is_empty(), "local {sub}/ holds {files:?}");
    }
}

/// Waits until no multipart upload is left unfinished (aborts run in the background).
pub async fn assert_no_multipart_uploads(s3: &S3Server) {
    wait_until(
        "every multipart upload completed or aborted",
        DEADLINE,
        async || s3.multipart_uploads(BUCKET).await.is_empty(),
    )
    .await;
}

/// Fetches through `app` every file of the published ladder of `id` that its playlists, its
/// resource and its storyboard name, checks segments byte for byte against the bucket (below
/// `prefix`), and returns their keys plus the source's: exactly what the bucket should hold
/// for the video.
pub async fn published_keys(
    app: &TestApp,
    s3: &S3Server,
    prefix: &str,
    id: &str,
) -> BTreeSet<String> {
    // Playlists and segments through reel, byte for byte what the bucket holds; the bucket
    // holds exactly the source and the ladder the playlists name (plus the poster).
    let mut expected = BTreeSet::from([
        format!("{prefix}/sources/{id}"),
        format!("{prefix}/hls/{id}/master.m3u8"),
        format!("{prefix}/hls/{id}/poster.jpg"),
    ]);
    let (status, master) = fetch(app, &format!("/hls/{id}/master.m3u8"), None).await;
    assert_eq!(status, 200, "the master playlist through reel");
    for rung in uris(&master) {
        let rung_dir = rung.rsplit_once('/').map_or("", |(dir, _)| dir).to_owned();
        expected.insert(format!("{prefix}/hls/{id}/{rung}"));
        let (status, playlist) = fetch(app, &format!("/hls/{id}/{rung}"), None).await;
        assert_eq!(status, 200, "{rung}");
        for uri in uris(&playlist) {
            let rel = format!("{rung_dir}/{uri}");
            let key = format!("{prefix}/hls/{id}/{rel}");
            let (status, body) = fetch(app, &format!("/hls/{id}/{rel}"), None).await;
            assert_eq!(status, 200, "{rel}");
            assert_eq!(body, s3.object(BUCKET, &key).await, "{rel}: as stored");
            expected.insert(key);
        }
    }
    let (status, poster) = fetch(app, &format!("/hls/{id}/poster.jpg"), None).await;
    assert_eq!(
        (status, &poster[..2]),
        (200, &[0xff, 0xd8][..]),
        "a JPEG poster"
    );
    // Each rung's own multivariant playlist, and the storyboard with its sprite sheets.
    let video = app.video(id).await;
    for rendition in video["renditions"].as_array().expect("renditions") {
        let path = rendition["playlist"].as_str().expect("playlist link");
        assert_eq!(fetch(app, path, None).await.0, 200, "{path}");
        let path = path.split('?').next().unwrap_or(path);
        expected.insert(format!("{prefix}{path}"));
    }
    let (status, track) = fetch(app, &format!("/hls/{id}/storyboard.vtt"), None).await;
    assert_eq!(status, 200, "the storyboard track");
    expected.insert(format!("{prefix}/hls/{id}/storyboard.vtt"));
    for line in String::from_utf8_lossy(&track).lines() {
        if let Some(sprite) = line.split('#').next().filter(|l| l.ends_with(".jpg")) {
            assert_eq!(
                fetch(app, &format!("/hls/{id}/{sprite}"), None).await.0,
                200
            );
            expected.insert(format!("{prefix}/hls/{id}/{sprite}"));
        }
    }
    expected
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn a_raw_upload_into_a_bucket_plays_through_reel_and_its_delete_leaves_nothing() {
    let (s3, app) = bucket_app("specs", &[]).await;
    let clip = fixtures::standard();
    let original = std::fs::read(&clip).expect("fixture");
    let id = app.upload_id(&clip).await;
    app.wait_for(&id, "ready").await;

    let expected = published_keys(&app, &s3, "specs", &id).await;
    let stored: BTreeSet<String> = s3.keys(BUCKET, "").await.into_iter().collect();
    assert_eq!(
        stored, expected,
        "the bucket holds exactly the video's objects"
    );
    assert_no_local_media(&app);
    assert_no_multipart_uploads(&s3).await;

    // The source with and without Range, from the bucket.
    let source = format!("/api/v1/videos/{id}/source");
    assert_eq!(fetch(&app, &source, None).await, (200, original.clone()));
    assert_eq!(
        fetch(&app, &source, Some("bytes=10-109")).await,
        (206, original[10..110].to_vec())
    );
    let len = original.len();
    assert_eq!(
        fetch(&app, &source, Some("bytes=-20")).await,
        (206, original[len - 20..].to_vec())
    );
    let segment = expected
        .iter()
        .find(|k| k.ends_with(".m4s") || k.ends_with(".ts"))
        .expect("a segment")
        .trim_start_matches(&format!("specs/hls/{id}/"))
        .to_owned();
    let whole = s3
        .object(BUCKET, &format!("specs/hls/{id}/{segment}"))
        .await;
    assert_eq!(
        fetch(&app, &format!("/hls/{id}/{segment}"), Some("bytes=0-99")).await,
        (206, whole[..100].to_vec()),
        "a segment's range"
    );

    assert_eq!(app.delete(&id).await, 204);
    assert_eq!(
        s3.keys(BUCKET, "").await,
        Vec::<String>::new(),
        "delete removes every object"
    );
    assert_eq!(
        fetch(&app, &format!("/hls/{id}/master.m3u8"), None).await.0,
        404
    );
    assert_no_multipart_uploads(&s3).await;
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn refused_uploads_abort_their_multipart_upload_and_leave_no_object() {
    let (s3, app) = bucket_app("refused", &["--max-upload-bytes", "12000000"]).await;

    let not_a_video = app
        .client
        .post(app.url("/api/v1/videos"))
        .header("Content-Type", "video/mp4")
        .body(vec![b'x'; 64 * 1024])
        .send()
        .await
        .expect("upload");
    assert_eq!(error_code(not_a_video, 415).await, "unsupported_media_type");

    // Past the limit after more than one part (8 MiB) was sent: refused mid-stream.
    let mut body = std::fs::read(fixtures::standard()).expect("fixture");
    body.resize(20 * 1024 * 1024, 0);
    // A connection cut off mid-body is an allowed way of refusing.
    if let Ok(response) = app.post_video(crate::helpers::streamed(body)).await {
        assert_eq!(response.status(), 413);
    }

    assert_no_multipart_uploads(&s3).await;
    assert_eq!(s3.keys(BUCKET, "").await, Vec::<String>::new());
    assert_no_local_media(&app);
    let tmp = app.files_in("tmp");
    assert!(tmp.is_empty(), "tmp/ holds {tmp:?}");
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn a_single_node_aborts_stale_multipart_uploads_at_start_and_readyz_reports_the_bucket() {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET).await;
    // What a reel killed mid-upload leaves; another prefix's uploads are not reel's to touch.
    s3.start_multipart(BUCKET, "stale/sources/0190b0c0-0000-7000-8000-000000000000")
        .await;
    s3.start_multipart(BUCKET, "other/app/file").await;
    let flags = s3.flags(BUCKET, "stale");
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let mut s3 = s3;
    // One node on its own SQLite file, whatever engine the other specs run on: every upload of
    // its prefix died with the previous process (on a shared database only old ones are).
    let media = tempfile::tempdir().expect("media");
    let url = format!("sqlite://{}/reel.db", media.path().display());
    let mut args = flags.clone();
    args.extend(["--database-url", url.as_str()]);
    let path = media.path().to_path_buf();
    let app = TestApp::start("serve", &path, &args, vec![media]);
    wait_until("the stale upload is aborted", DEADLINE, async || {
        s3.multipart_uploads(BUCKET).await == ["other/app/file"]
    })
    .await;

    let (status, ready) = app.get_json("/readyz").await;
    assert_eq!((status, &ready["storage"]), (200, &serde_json::json!(true)));
    s3.stop();
    let (status, ready) = app.get_json("/readyz").await;
    assert_eq!(status, 503, "{ready}");
    assert_eq!(ready["storage"], false, "{ready}");
}

/// Runs `reel serve` expecting it to refuse to start; returns what it logged.
pub fn refused_start(flags: &[String]) -> String {
    let media = tempfile::tempdir().expect("media");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_reel"))
        .args(["serve", "--listen", "127.0.0.1:0", "--media-dir"])
        .arg(media.path())
        .args(flags)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run reel");
    assert!(!output.status.success(), "reel started");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn a_missing_bucket_or_an_unreachable_server_is_a_clear_start_up_error() {
    let s3 = S3Server::start();
    let missing = refused_start(&s3.flags("no-such-bucket", "p"));
    assert!(
        missing.contains("the bucket does not exist"),
        "a missing bucket: {missing}"
    );
    let mut flags = s3.flags(BUCKET, "p");
    drop(s3);
    // Nothing listens there any more; the time-out bounds the wait.
    if let Some(at) = flags.iter().position(|f| f == "--s3-timeout-secs") {
        flags[at + 1] = "2".into();
    }
    let started = std::time::Instant::now();
    let unreachable = refused_start(&flags);
    assert!(
        unreachable.contains("no answer from the bucket"),
        "an unreachable server: {unreachable}"
    );
    assert!(started.elapsed() < Duration::from_secs(30), "bounded");
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn a_form_upload_into_a_bucket_is_followed_to_ready_over_sse() {
    let (s3, app) = bucket_app("forms", &[]).await;
    let bytes = std::fs::read(fixtures::standard()).expect("fixture");
    let form = reqwest::multipart::Form::new()
        .text("title", "from a form")
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes.clone())
                .file_name("clip.mp4")
                .mime_str("video/mp4")
                .expect("mime"),
        );
    let response = app
        .client
        .post(app.url("/api/v1/videos"))
        .multipart(form)
        .send()
        .await
        .expect("form upload");
    assert_eq!(response.status(), 202);
    let video: serde_json::Value = response.json().await.expect("resource");
    let id = video["id"].as_str().expect("id").to_owned();
    let events = app.events(&id, None, |e| e.event == "ready").await;
    let last = events.last().expect("events");
    assert_eq!(last.event, "ready", "{events:?}");
    assert_eq!(last.data["title"], "from a form");
    assert_eq!(
        s3.object(BUCKET, &format!("forms/sources/{id}")).await,
        bytes,
        "the source as uploaded"
    );
    assert_no_local_media(&app);
    assert_no_multipart_uploads(&s3).await;
    assert_eq!(app.delete(&id).await, 204);
    assert_eq!(s3.keys(BUCKET, "").await, Vec::<String>::new());
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn storage_redirect_sends_segments_and_downloads_to_presigned_bucket_urls() {
    let (s3, app) = bucket_app("redirect", &["--storage-redirect"]).await;
    let clip = fixtures::standard();
    let original = std::fs::read(&clip).expect("fixture");
    let id = app.upload_id(&clip).await;
    app.wait_for(&id, "ready").await;
    let no_redirects = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let plain = reqwest::Client::new();
    let follow = async |path: &str| {
        let response = no_redirects
            .get(app.url(path))
            .send()
            .await
            .expect("GET through reel");
        assert_eq!(response.status(), 302, "{path}");
        let location = response.headers()["location"]
            .to_str()
            .expect("location")
            .to_owned();
        assert!(
            location.starts_with(&s3.endpoint) && location.contains("X-Amz-Signature="),
            "{path}: a presigned bucket URL, got {location}"
        );
        let fetched = plain.get(&location).send().await.expect("GET presigned");
        assert_eq!(fetched.status(), 200, "{location}");
        fetched.bytes().await.expect("body").to_vec()
    };
    assert_eq!(
        follow(&format!("/api/v1/videos/{id}/source")).await,
        original
    );
    let poster = follow(&format!("/hls/{id}/poster.jpg")).await;
    assert_eq!(
        poster,
        s3.object(BUCKET, &format!("redirect/hls/{id}/poster.jpg"))
            .await
    );
    // Playlists still come from reel itself.
    let (status, _) = fetch(&app, &format!("/hls/{id}/master.m3u8"), None).await;
    assert_eq!(status, 200);
    assert_eq!(app.delete(&id).await, 204);
    assert_eq!(s3.keys(BUCKET, "").await, Vec::<String>::new());
}
