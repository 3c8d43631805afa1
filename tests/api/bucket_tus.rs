//! Resumable uploads on a bucket: the bytes of an upload in progress are chunk objects below
//! `<prefix>/uploads/<upload>/` (`upload::resumable::chunks`), a node keeps nothing of it,
//! and once filed, only the source is left. Across two API nodes: `bucket_tus_nodes`.
//! Ignored in the plain pass like [`crate::bucket`]; `scripts/test` runs them once.

use std::ops::Range;
use std::time::Duration;

use crate::bucket::{BUCKET, assert_no_local_media, assert_no_multipart_uploads, bucket_app};
use crate::fixtures;
use crate::helpers::{DEADLINE, TestApp, wait_until};
use crate::s3::S3Server;
use crate::tus::{created, error_code, header, offset_of, patch, terminate};
use crate::tus_faults::{send_in_mib, streaming_patch};

pub const MIB: usize = 1024 * 1024;

/// The standard clip padded with zeros to `size` bytes (ffmpeg ignores what follows the
/// last box), so an upload spans several chunk objects.
pub fn padded_clip(size: usize) -> Vec<u8> {
    let mut data = std::fs::read(fixtures::standard()).expect("fixture");
    assert!(data.len() < size);
    data.resize(size, 0);
    data
}

/// The byte ranges of the chunk objects stored for the upload at `url`.
pub async fn chunks(s3: &S3Server, prefix: &str, url: &str) -> Vec<Range<u64>> {
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

pub fn video_of(response: &reqwest::Response) -> String {
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

/// A reel on a fresh bucket whose requests may wait 25 s for an answer (longer than an upload
/// lock's 15 s lease), and a resumable upload there with every byte stored but not filed (the
/// queue was full when the last byte came); returns the upload's URL and its bytes.
async fn an_upload_waiting_to_be_filed(prefix: &str) -> (S3Server, TestApp, String, Vec<u8>) {
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET).await;
    let mut flags = s3.flags(BUCKET, prefix);
    for (flag, value) in [("--s3-timeout-secs", "25"), ("--lease-secs", "60")] {
        let at = flags.iter().position(|f| f == flag).expect(flag);
        flags[at + 1] = value.to_owned();
    }
    flags.extend(["--encoders", "0", "--queue-capacity", "1"].map(str::to_owned));
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let app = TestApp::spawn(&flags);
    let data = std::fs::read(fixtures::standard()).expect("fixture");
    let url = created(&app, data.len() as u64).await;
    let queued = app.upload_id(&fixtures::tiny()).await;
    let refused = patch(&app, &url, 0, data.clone(), &[])
        .await
        .expect("PATCH");
    assert_eq!(refused.status(), 503);
    assert_eq!(error_code(refused).await, "queue_full");
    assert_eq!(app.delete(&queued).await, 204);
    (s3, app, url, data)
}

/// The final `PATCH` (no body) that files the upload at `url`, sent in the background.
fn file_in_background(
    app: &TestApp,
    url: &str,
    length: usize,
) -> tokio::task::JoinHandle<reqwest::Result<reqwest::Response>> {
    let request = app
        .client
        .patch(url)
        .header("Tus-Resumable", "1.0.0")
        .header("Upload-Offset", length.to_string())
        .header("Content-Type", "application/offset+octet-stream")
        .send();
    tokio::spawn(request)
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn a_filing_that_outlasts_the_locks_lease_files_the_upload_once() {
    let (s3, app, url, data) = an_upload_waiting_to_be_filed("tus-long").await;
    // The filing meets a bucket that does not answer for longer than the lock's lease.
    s3.pause();
    let first = file_in_background(&app, &url, data.len());
    tokio::time::sleep(Duration::from_secs(17)).await;
    // Another try meanwhile (a client whose final request timed out) finds the upload still
    // being filed: the lock was renewed, so it does not file it a second time.
    let second = patch(&app, &url, data.len() as u64, Vec::new(), &[])
        .await
        .expect("PATCH");
    assert_eq!(
        second.status(),
        423,
        "the first filing still holds the upload"
    );
    s3.resume();
    let first = first.await.expect("join").expect("PATCH");
    assert_eq!(first.status(), 204);
    let id = video_of(&first);
    let (_, list) = app.get_json("/api/v1/videos").await;
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(1),
        "one video: {list}"
    );
    assert_eq!(
        s3.object(BUCKET, &format!("tus-long/sources/{id}")).await,
        data
    );
    assert_eq!(
        s3.keys(BUCKET, "tus-long/uploads/").await,
        Vec::<String>::new()
    );
    let again = head_video(&app, &url).await;
    assert_eq!(
        again.as_deref(),
        Some(format!("/api/v1/videos/{id}").as_str())
    );
    assert_eq!(app.delete(&id).await, 204);
    assert_eq!(s3.keys(BUCKET, "").await, Vec::<String>::new());
    assert_no_multipart_uploads(&s3).await;
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn an_upload_terminated_while_it_is_being_filed_does_not_become_a_video() {
    let (s3, app, url, data) = an_upload_waiting_to_be_filed("tus-gone").await;
    s3.pause();
    let filing = file_in_background(&app, &url, data.len());
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(terminate(&app, &url).await.status(), 204);
    s3.resume();
    let filing = filing.await.expect("join").expect("PATCH");
    assert_eq!(filing.status(), 404, "the upload was terminated");
    let (_, list) = app.get_json("/api/v1/videos").await;
    assert_eq!(
        list["items"].as_array().map(Vec::len),
        Some(0),
        "no video: {list}"
    );
    wait_until("the bucket emptied", DEADLINE, async || {
        s3.keys(BUCKET, "").await.is_empty() && s3.multipart_uploads(BUCKET).await.is_empty()
    })
    .await;
}

/// The video an upload's `HEAD` names (`X-Reel-Video`), once filed.
async fn head_video(app: &TestApp, url: &str) -> Option<String> {
    let response = crate::tus::head(app, url).await;
    header(&response, "x-reel-video").map(str::to_owned)
}
