//! Scale-out on a bucket: an API node (`reel serve --encoders 0`) and a worker (`reel work`) on
//! different machines in effect — each its own `--media-dir` — that share only the PostgreSQL
//! database and the bucket. Everything a video is travels through those two.
//! Ignored in the plain pass; `scripts/test` runs it in its PostgreSQL pass (it needs both the
//! throwaway cluster and moto).

use std::collections::BTreeSet;
use std::path::Path;

use crate::bucket::{BUCKET, assert_no_multipart_uploads, published_keys};
use crate::fixtures;
use crate::helpers::{TestApp, postgres_database, postgres_url};
use crate::s3::S3Server;

/// Files below `dir` (recursively; folders are not listed).
fn files_below(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                pending.push(path);
            } else {
                out.push(path.display().to_string());
            }
        }
    }
    out
}

/// Waits (the job's work folder goes just after its `ready` commit) until a node's own media
/// dir holds no source, ladder or job work, then asserts it.
pub async fn wait_holds_no_media(node: &str, media: &Path) {
    crate::helpers::wait_until(
        "the node's media dir emptied",
        crate::helpers::DEADLINE,
        async || {
            ["sources", "hls", "tmp", "uploads"]
                .iter()
                .all(|sub| files_below(&media.join(sub)).is_empty())
        },
    )
    .await;
    assert_holds_no_media(node, media);
}

/// No source, ladder or job work is left in a node's own media dir.
pub fn assert_holds_no_media(node: &str, media: &Path) {
    for sub in ["sources", "hls", "tmp", "uploads"] {
        let files = files_below(&media.join(sub));
        assert!(files.is_empty(), "the {node}'s {sub}/ holds {files:?}");
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL and an S3 server (moto): scripts/test runs it"]
async fn an_api_node_and_a_worker_that_share_only_the_database_and_the_bucket_run_a_video_end_to_end()
 {
    let admin = postgres_url()
        .expect("this spec needs REEL_TEST_POSTGRES_URL (and REEL_TEST_ENGINE=postgres): run it through scripts/test");
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET).await;
    let api_media = tempfile::tempdir().expect("API node's media dir");
    let worker_media = tempfile::tempdir().expect("worker's media dir");
    let database = postgres_database(&admin, &api_media.path().to_string_lossy());
    let mut shared = s3.flags(BUCKET, "scale");
    shared.extend(["--database-url".to_owned(), database]);
    let shared: Vec<&str> = shared.iter().map(String::as_str).collect();

    let mut api_flags = shared.clone();
    api_flags.extend(["--encoders", "0"]);
    let api_dir = api_media.path().to_path_buf();
    let api = TestApp::start("serve", &api_dir, &api_flags, vec![api_media]);
    let worker_dir = worker_media.path().to_path_buf();
    let worker = TestApp::start("work", &worker_dir, &shared, vec![worker_media]);
    let (status, ready) = worker.get_json("/readyz").await;
    assert_eq!((status, &ready["storage"]), (200, &serde_json::json!(true)));

    // Upload on the API node; the worker encodes; the API node's subscriber sees `ready`.
    let clip = fixtures::standard();
    let original = std::fs::read(&clip).expect("fixture");
    let id = api.upload_id(&clip).await;
    let events = api.events(&id, None, |e| e.event == "ready").await;
    let last = events.last().expect("events");
    assert_eq!(last.event, "ready", "{events:?}");
    assert!(
        events.iter().any(|e| e.event == "progress"),
        "the worker's progress crossed to the API node: {events:?}"
    );
    assert!(
        worker.logs().contains("job claimed") && !api.logs().contains("job claimed"),
        "the worker ran the job, not the API node"
    );

    // The playlists and every segment through the API node, from the bucket (byte for byte);
    // the bucket holds exactly the source and that ladder, and neither node keeps a file.
    let expected = published_keys(&api, &s3, "scale", &id).await;
    assert!(
        expected.iter().any(|k| k.ends_with(".m4s")),
        "segments among {expected:?}"
    );
    let stored: BTreeSet<String> = s3.keys(BUCKET, "").await.into_iter().collect();
    assert_eq!(
        stored, expected,
        "the bucket holds exactly the video's objects"
    );
    assert_eq!(
        s3.object(BUCKET, &format!("scale/sources/{id}")).await,
        original,
        "the source as uploaded"
    );
    assert_no_multipart_uploads(&s3).await;
    wait_holds_no_media("API node", &api_dir).await;
    wait_holds_no_media("worker", &worker_dir).await;

    // Delete on the API node: nothing of the video is left anywhere.
    assert_eq!(api.delete(&id).await, 204);
    assert_eq!(
        s3.keys(BUCKET, "").await,
        Vec::<String>::new(),
        "the delete emptied the bucket"
    );
    assert_no_multipart_uploads(&s3).await;
    let (status, _) = api.get_json(&format!("/api/v1/videos/{id}")).await;
    assert_eq!(status, 404);
    let master = api
        .client
        .get(api.url(&format!("/hls/{id}/master.m3u8")))
        .send()
        .await
        .expect("master");
    assert_eq!(master.status(), 404);
    assert_holds_no_media("API node", &api_dir);
    assert_holds_no_media("worker", &worker_dir);
}
