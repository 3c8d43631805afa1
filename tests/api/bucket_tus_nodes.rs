//! Resumable uploads on a bucket across two API nodes that share only PostgreSQL and the
//! bucket: a request may land on either, a cut connection or a killed node loses nothing the
//! client was told is kept, and bytes that failed their checksum never count.
//! Ignored in the plain pass; `scripts/test` runs them in its PostgreSQL pass.

use std::time::{Duration, Instant};

use base64::Engine as _;
use sha1::Digest as _;

use crate::bucket::{BUCKET, assert_no_multipart_uploads};
use crate::bucket_scale::wait_holds_no_media;
use crate::bucket_tus::{MIB, chunks, padded_clip, video_of};
use crate::helpers::{DEADLINE, TestApp, postgres_database, postgres_url, wait_until};
use crate::s3::S3Server;
use crate::tus::{created, offset_of, patch};
use crate::tus_faults::{send_in_mib, streaming_patch, wait_for_offset};

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
async fn a_request_that_fails_its_checksum_leaves_nothing_that_counts() {
    let nodes = TwoNodes::start("tus-sum").await;
    let (a, b, s3) = (&nodes.a, &nodes.b, &nodes.s3);
    let data = padded_clip(20 * MIB);
    let url_a = created(a, data.len() as u64).await;
    let url_b = nodes.on(b, &url_a);

    // 17 MiB whose byte 3 MiB was damaged on the way, with the checksum of the right bytes;
    // the body ends once two full chunks of it are in the bucket.
    let sent = 17 * MIB;
    let digest = sha1::Sha1::digest(&data[..sent]);
    let checksum = format!(
        "sha1 {}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    );
    let mut damaged = data[..sent].to_vec();
    damaged[3 * MIB] ^= 0xff;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let request = tokio::spawn(
        a.client
            .patch(&url_a)
            .header("Tus-Resumable", "1.0.0")
            .header("Upload-Offset", "0")
            .header("Upload-Checksum", checksum)
            .header("Content-Type", "application/offset+octet-stream")
            .body(reqwest::Body::wrap_stream(
                tokio_stream::wrappers::ReceiverStream::new(rx),
            ))
            .send(),
    );
    send_in_mib(&tx, &damaged).await;
    let upload = url_a.rsplit('/').next().expect("upload id");
    let below = format!("tus-sum/uploads/{upload}/");
    wait_until(
        "two chunks of the damaged bytes stored",
        DEADLINE,
        async || {
            let keys = s3.keys(BUCKET, &below).await;
            [
                "00000000000000000000-00000000000008388608",
                "00000000000008388608-00000000000016777216",
            ]
            .iter()
            .all(|range| keys.iter().any(|k| k.contains(range)))
        },
    )
    .await;
    drop(tx);
    let refused = request.await.expect("join").expect("an answer");
    assert_eq!(refused.status(), 460, "checksum mismatch");
    assert_eq!(offset_of(b, &url_b).await, 0, "nothing of it counts");
    assert_eq!(
        s3.keys(BUCKET, &below).await,
        Vec::<String>::new(),
        "nothing of it is left in the bucket"
    );

    // The client sends the file again on B in 4 MiB requests, whose ends fall where the
    // damaged request's chunks ended: the source is the file, byte for byte.
    let mut offset = 0;
    for piece in data.chunks(4 * MIB) {
        let response = patch(b, &url_b, offset, piece.to_vec(), &[])
            .await
            .expect("PATCH");
        assert_eq!(response.status(), 204);
        offset += piece.len() as u64;
        if offset == data.len() as u64 {
            let id = video_of(&response);
            assert_eq!(
                s3.object(BUCKET, &format!("tus-sum/sources/{id}")).await,
                data,
                "the source holds the bytes sent, not the damaged ones"
            );
            b.wait_for(&id, "ready").await;
        }
    }
    assert_eq!(
        s3.keys(BUCKET, "tus-sum/uploads/").await,
        Vec::<String>::new()
    );
    wait_holds_no_media("node A", &a.media).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL and an S3 server (moto): scripts/test runs it"]
async fn a_chunk_a_killed_node_stored_but_never_recorded_is_stepped_around() {
    let mut nodes = TwoNodes::start("tus-killed").await;
    let data = padded_clip(20 * MIB);
    let url_a = created(&nodes.a, data.len() as u64).await;
    let url_b = nodes.on(&nodes.b, &url_a);
    let first = patch(&nodes.a, &url_a, 0, data[..4096].to_vec(), &[]).await;
    assert_eq!(first.expect("PATCH").status(), 204);

    // B stores a full chunk and is killed, almost surely before its first checkpoint (5 s
    // into the request) records it.
    let (tx, _request) = streaming_patch(&nodes.b, &url_b, 4096);
    send_in_mib(&tx, &data[4096..4096 + 9 * MIB]).await;
    let stray = 4096..(4096 + 8 * MIB) as u64;
    let s3 = &nodes.s3;
    wait_until("B's first chunk in the bucket", DEADLINE, async || {
        chunks(s3, "tus-killed", &url_a).await.contains(&stray)
    })
    .await;
    nodes.b.crash();
    drop(tx);

    // A continues from the recorded offset once B's lock has lapsed, in two requests, so its
    // chunks start elsewhere than B's: the walk from byte 0 tries B's chunk, finds no chunk
    // where it ends, and takes A's.
    let offset = offset_of(&nodes.a, &url_a).await;
    assert!(offset == 4096 || offset == stray.end, "{offset}");
    let split = offset as usize + 2 * MIB;
    let started = Instant::now();
    let middle = loop {
        let response = patch(
            &nodes.a,
            &url_a,
            offset,
            data[offset as usize..split].to_vec(),
            &[],
        )
        .await
        .expect("PATCH");
        if response.status() != 423 || started.elapsed() > Duration::from_secs(40) {
            break response;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert_eq!(middle.status(), 204, "after the killed node's lock lapsed");
    let last = patch(&nodes.a, &url_a, split as u64, data[split..].to_vec(), &[])
        .await
        .expect("PATCH");
    assert_eq!(last.status(), 204, "filed, not lost");
    let id = video_of(&last);
    assert_eq!(
        s3.object(BUCKET, &format!("tus-killed/sources/{id}")).await,
        data
    );
    assert_eq!(
        s3.keys(BUCKET, "tus-killed/uploads/").await,
        Vec::<String>::new(),
        "the stray chunk went with the others"
    );
    assert_no_multipart_uploads(s3).await;
}
