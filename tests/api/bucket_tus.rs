//! Resumable uploads on a bucket: the bytes of an upload in progress are chunk objects below
//! `<prefix>/uploads/<upload>/` (`upload::resumable::chunks`), so any API node continues an
//! upload another began, a node keeps nothing of it, and what a killed node stored but never
//! recorded is stepped around. Once filed, only the source is left.
//! Ignored in the plain pass like [`crate::bucket`]; `scripts/test` runs them once.

use std::ops::Range;
use std::time::Duration;

use crate::bucket::{BUCKET, assert_no_local_media, assert_no_multipart_uploads, bucket_app};
use crate::bucket_scale::wait_holds_no_media;
use crate::fixtures;
use crate::helpers::{DEADLINE, TestApp, postgres_database, postgres_url, wait_until};
use crate::s3::S3Server;
use crate::tus::{created, error_code, header, offset_of, patch, terminate};
use crate::tus_faults::{send_in_mib, streaming_patch, wait_for_offset};

const MIB: usize = 1024 * 1024;

/// The standard clip padded with zeros to `size` bytes (ffmpeg ignores what follows the
/// last box), so an upload spans several chunk objects.
fn padded_clip(size: usize) -> Vec<u8> {
    let mut data = std::fs::read(fixtures::standard()).expect("fixture");
    assert!(data.len() < size);
    data.resize(size, 0);
    data
}

/// The byte ranges of the chunk objects stored for the upload at `url`.
async fn chunks(s3: &S3Server, prefix: &str, url: &str) -> Vec<Range<u64>> {
    let upload = url.rsplit('/').next().expect("upload id");
    let below = format!("{prefix}/uploads/{upload}/");
    let mut ranges: Vec<Range<u64>> = s3
        .keys(BUCKET, &below)
        .await
        .iter()
        .map(|key| {
            let name = key.strip_prefix(&below).expect("below the upload");
            let (start, end) = name.split_once('-').expect("start-end");
            start.parse().expect("start")..end.parse().expect("end")
        })
        .collect();
    ranges.sort_by_key(|r| (r.start, r.end));
    ranges
}

fn video_of(response: &reqwest::Response) -> String {
    let video = header(response, "x-reel-video").expect("the video");
    video.rsplit('/').next().expect("id").to_owned()
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn a_resumable_upload_is_filed_into_the_bucket_once_complete() {
    let (s3, app) = bucket_app("tus", &[]).await;
    let data = padded_clip(10 * MIB);
    let url = created(&app, data.len() as u64).await;
    let half = data.len() / 2;
    let first = patch(&app, &url, 0, data[..half].to_vec(), &[]).await;
    assert_eq!(first.expect("PATCH").status(), 204);
    // The first half is in the bucket as chunk objects, end to end; nothing on the node.
    let stored = chunks(&s3, "tus", &url).await;
    assert_eq!(stored.first().map(|r| r.start), Some(0), "{stored:?}");
    assert!(
        stored.windows(2).all(|w| w[0].end == w[1].start),
        "{stored:?}"
    );
    assert_eq!(
        stored.last().map(|r| r.end),
        Some(half as u64),
        "{stored:?}"
    );
    let upload = url.rsplit('/').next().expect("upload id");
    assert!(
        s3.keys(BUCKET, "")
            .await
            .iter()
            .all(|k| k.starts_with(&format!("tus/uploads/{upload}/"))),
        "only the upload's chunks"
    );
    assert!(app.files_in("uploads").is_empty(), "no partial file");

    let last = patch(&app, &url, half as u64, data[half..].to_vec(), &[])
        .await
        .expect("PATCH");
    assert_eq!(last.status(), 204);
    let id = video_of(&last);
    app.wait_for(&id, "ready").await;
    assert_eq!(s3.object(BUCKET, &format!("tus/sources/{id}")).await, data);
    assert_eq!(
        s3.keys(BUCKET, "tus/uploads/").await,
        Vec::<String>::new(),
        "the chunks go once the video is filed"
    );
    assert_no_local_media(&app);
    assert_no_multipart_uploads(&s3).await;
    assert_eq!(app.delete(&id).await, 204);
    assert_eq!(s3.keys(BUCKET, "").await, Vec::<String>::new());

    // A terminated upload takes its chunks with it.
    let url = created(&app, data.len() as u64).await;
    let first = patch(&app, &url, 0, data[..half].to_vec(), &[]).await;
    assert_eq!(first.expect("PATCH").status(), 204);
    assert!(!chunks(&s3, "tus", &url).await.is_empty());
    assert_eq!(terminate(&app, &url).await.status(), 204);
    assert_eq!(s3.keys(BUCKET, "").await, Vec::<String>::new());
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn a_resumable_upload_that_meets_the_bucket_away_keeps_what_was_stored_for_a_retry() {
    let (s3, app) = bucket_app("tus-away", &[]).await;
    let data = std::fs::read(fixtures::standard()).expect("fixture");
    let url = created(&app, data.len() as u64).await;
    let kept = data.len() as u64 - 1000;
    let first = patch(&app, &url, 0, data[..1000].to_vec(), &[]).await;
    assert_eq!(first.expect("PATCH").status(), 204);
    let second = patch(&app, &url, 1000, data[1000..kept as usize].to_vec(), &[]).await;
    assert_eq!(second.expect("PATCH").status(), 204);
    // The last bytes arrive while the bucket does not answer: they cannot be stored.
    s3.pause();
    let refused = tokio::time::timeout(
        Duration::from_secs(60),
        patch(&app, &url, kept, data[kept as usize..].to_vec(), &[]),
    )
    .await
    .expect("an answer within the time-outs")
    .expect("PATCH");
    assert_eq!(refused.status(), 503);
    assert_eq!(header(&refused, "retry-after"), Some("5"));
    assert_eq!(error_code(refused).await, "storage_unavailable");
    // What was stored before stays; the offset never counts bytes that were not stored.
    assert_eq!(offset_of(&app, &url).await, kept);
    s3.resume();
    let filed = patch(&app, &url, kept, data[kept as usize..].to_vec(), &[])
        .await
        .expect("PATCH");
    assert_eq!(filed.status(), 204);
    let id = video_of(&filed);
    app.wait_for(&id, "ready").await;
    assert_eq!(
        s3.object(BUCKET, &format!("tus-away/sources/{id}")).await,
        data
    );
    let (_, list) = app.get_json("/api/v1/videos").await;
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(1),
        "one video: {list}"
    );
    assert!(app.files_in("uploads").is_empty());
    assert_eq!(app.delete(&id).await, 204);
    assert_eq!(s3.keys(BUCKET, "").await, Vec::<String>::new());
    assert_no_multipart_uploads(&s3).await;
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn a_slow_request_records_its_offset_as_full_chunks_are_stored() {
    let (s3, app) = bucket_app("tus-slow", &[]).await;
    let data = padded_clip(12 * MIB);
    let url = created(&app, data.len() as u64).await;
    // 9 MiB at once (one full chunk is stored), then 64 KiB a second: the checkpoint that
    // falls 5 s into the request, while bytes still flow, records what is stored by then.
    let (tx, request) = streaming_patch(&app, &url, 0);
    send_in_mib(&tx, &data[..9 * MIB]).await;
    let mut sent = 9 * MIB;
    for _ in 0..7 {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let piece = data[sent..sent + 64 * 1024].to_vec();
        tx.send(Ok(piece)).await.expect("the server reads the body");
        sent += 64 * 1024;
    }
    // Mid-request, the offset is where the stored chunks end: one full chunk, not the bytes
    // gathered for the next.
    let full = 8 * MIB as u64;
    assert_eq!(offset_of(&app, &url).await, full);
    drop(tx);
    let answered = request.await.expect("join").expect("PATCH");
    assert_eq!(answered.status(), 204);
    let end = sent as u64;
    assert_eq!(offset_of(&app, &url).await, end);
    let stored = chunks(&s3, "tus-slow", &url).await;
    assert_eq!(stored, [0..full, full..end], "no sliver per checkpoint");

    let last = patch(&app, &url, end, data[sent..].to_vec(), &[])
        .await
        .expect("PATCH");
    assert_eq!(last.status(), 204);
    let id = video_of(&last);
    assert_eq!(
        s3.object(BUCKET, &format!("tus-slow/sources/{id}")).await,
        data
    );
    app.wait_for(&id, "ready").await;
    assert_eq!(app.delete(&id).await, 204);
    assert_eq!(s3.keys(BUCKET, "").await, Vec::<String>::new());
}

/// Two API nodes (`reel serve`, each its own media dir) sharing only the PostgreSQL database
/// and the bucket; the second also encodes.
struct TwoNodes {
    s3: S3Server,
    a: TestApp,
    b: TestApp,
}

impl TwoNodes {
    async fn start(prefix: &str) -> Self {
        let admin = postgres_url().expect(
            "this spec needs REEL_TEST_POSTGRES_URL (and REEL_TEST_ENGINE=postgres): run it through scripts/test",
        );
        let s3 = S3Server::start();
        s3.create_bucket(BUCKET).await;
        let a_media = tempfile::tempdir().expect("node A's media dir");
        let b_media = tempfile::tempdir().expect("node B's media dir");
        let database = postgres_database(&admin, &a_media.path().to_string_lossy());
        let mut shared = s3.flags(BUCKET, prefix);
        shared.extend(["--database-url".to_owned(), database]);
        let shared: Vec<&str> = shared.iter().map(String::as_str).collect();
        let mut a_flags = shared.clone();
        a_flags.extend(["--encoders", "0"]);
        let a_dir = a_media.path().to_path_buf();
        let a = TestApp::start("serve", &a_dir, &a_flags, vec![a_media]);
        let b_dir = b_media.path().to_path_buf();
        let b = TestApp::start("serve", &b_dir, &shared, vec![b_media]);
        Self { s3, a, b }
    }

    /// The same upload's URL on node `to`.
    fn on(&self, to: &TestApp, url: &str) -> String {
        let path = url
            .strip_prefix(&self.a.url(""))
            .or_else(|| url.strip_prefix(&self.b.url("")))
            .expect("a node's URL");
        to.url(path)
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL and an S3 server (moto): scripts/test runs it"]
async fn an_upload_begun_on_one_api_node_continues_on_another_through_a_cut_connection() {
    let nodes = TwoNodes::start("tus-nodes").await;
    let (a, b) = (&nodes.a, &nodes.b);
    let data = padded_clip(20 * MIB);
    let url_a = created(a, data.len() as u64).await;
    let url_b = nodes.on(b, &url_a);

    // 100 bytes on A: too few to know the container, so B reads them back from the bucket.
    let first = patch(a, &url_a, 0, data[..100].to_vec(), &[]).await;
    assert_eq!(first.expect("PATCH").status(), 204);
    assert_eq!(offset_of(b, &url_b).await, 100);

    // B receives 10 MiB more, then the connection is cut: what B received is kept.
    let (tx, request) = streaming_patch(b, &url_b, 100);
    send_in_mib(&tx, &data[100..100 + 10 * MIB]).await;
    tx.send(Err(std::io::Error::other("cut")))
        .await
        .expect("the server reads the body");
    drop(tx);
    let _ = request.await;
    let offset = wait_for_offset(a, &url_a, 101, DEADLINE).await;
    assert!(offset <= (100 + 10 * MIB) as u64, "{offset}");

    // A finishes it; the video is the bytes sent, whichever node received them.
    let last = patch(a, &url_a, offset, data[offset as usize..].to_vec(), &[])
        .await
        .expect("PATCH");
    assert_eq!(last.status(), 204);
    let id = video_of(&last);
    a.wait_for(&id, "ready").await;
    let s3 = &nodes.s3;
    assert_eq!(
        s3.object(BUCKET, &format!("tus-nodes/sources/{id}")).await,
        data
    );
    assert_eq!(
        s3.keys(BUCKET, "tus-nodes/uploads/").await,
        Vec::<String>::new()
    );
    assert_no_multipart_uploads(s3).await;
    wait_holds_no_media("node A", &a.media).await;
    wait_holds_no_media("node B", &b.media).await;
    assert_eq!(b.delete(&id).await, 204);
    assert_eq!(s3.keys(BUCKET, "").await, Vec::<String>::new());
}

#[tokio::test]
#[ignore = "needs PostgreSQL and an S3 server (moto): scripts/test runs it"]
async fn chunks_stored_but_never_recorded_are_stepped_around() {
    let nodes = TwoNodes::start("tus-stray").await;
    let (a, b, s3) = (&nodes.a, &nodes.b, &nodes.s3);
    let data = padded_clip(20 * MIB);
    let url_a = created(a, data.len() as u64).await;
    let url_b = nodes.on(b, &url_a);
    let first = patch(a, &url_a, 0, data[..4096].to_vec(), &[]).await;
    assert_eq!(first.expect("PATCH").status(), 204);

    // A request on B whose bytes are not the upload's and fail their checksum: a full chunk
    // of them was stored while the body came in, and is never recorded.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let request = tokio::spawn(
        b.client
            .patch(&url_b)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Offset", "4096")
            .header("Upload-Checksum", "sha1 AAAAAAAAAAAAAAAAAAAAAAAAAAA=")
            .header("Content-Type", "application/offset+octet-stream")
            .body(reqwest::Body::wrap_stream(
                tokio_stream::wrappers::ReceiverStream::new(rx),
            ))
            .send(),
    );
    send_in_mib(&tx, &vec![0xEE; 9 * MIB]).await;
    let stray = 4096..(4096 + 8 * MIB) as u64;
    wait_until("B's first chunk in the bucket", DEADLINE, async || {
        chunks(s3, "tus-stray", &url_a).await.contains(&stray)
    })
    .await;
    drop(tx);
    let refused = request.await.expect("join").expect("an answer");
    assert_eq!(refused.status(), 460, "checksum mismatch");
    assert_eq!(offset_of(a, &url_a).await, 4096, "nothing of it counts");

    // A continues in two requests, so its chunks start elsewhere than the stray one: the
    // stray chunk leads nowhere the upload goes and is not used.
    let split = 2 * MIB;
    let middle = patch(a, &url_a, 4096, data[4096..split].to_vec(), &[]).await;
    assert_eq!(middle.expect("PATCH").status(), 204);
    let stored = chunks(s3, "tus-stray", &url_a).await;
    assert!(stored.contains(&stray), "{stored:?}");
    let last = patch(a, &url_a, split as u64, data[split..].to_vec(), &[])
        .await
        .expect("PATCH");
    assert_eq!(last.status(), 204);
    let id = video_of(&last);
    assert_eq!(
        s3.object(BUCKET, &format!("tus-stray/sources/{id}")).await,
        data,
        "the source holds the upload's bytes, not the stray chunk's"
    );
    assert_eq!(
        s3.keys(BUCKET, "tus-stray/uploads/").await,
        Vec::<String>::new(),
        "the stray chunk went with the others"
    );
    b.wait_for(&id, "ready").await;
    wait_holds_no_media("node A", &a.media).await;
    wait_holds_no_media("node B", &b.media).await;
}
