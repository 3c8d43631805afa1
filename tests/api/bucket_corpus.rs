//! The input corpus ([`crate::corpus`]) with media in a bucket (`--storage s3://…` on moto, see
//! [`crate::s3`]): every member gets the outcome it gets with the folder (the same refusal, the
//! same failure, or a ready ladder passing the same [`crate::ladder_checks`], run on the ladder
//! as the bucket holds it), and the bucket then holds exactly what the videos own: nothing of a
//! refused upload, only the source of a failed job, the source and the published ladder of a
//! ready one; no unfinished multipart upload. Deleting every video empties it.
//!
//! Ignored in the plain pass; `scripts/test` runs it once, in its PostgreSQL pass (whose skip of
//! the folder corpus names that spec, not `corpus::`, which would match this module too).

use std::collections::BTreeSet;

use tempfile::TempDir;

use crate::bucket::{
    BUCKET, assert_no_local_media, assert_no_multipart_uploads, bucket_app, published_keys,
};
use crate::corpus::{self, Expected};
use crate::ladder_checks::{Expect, assert_ladder_at};
use crate::s3::S3Server;

const PREFIX: &str = "corpus";

/// Every object below `hls/<id>/` straight from the bucket, laid out as in the folder's
/// `hls/<id>`: the ladder a viewer gets, for the checks that read files.
async fn fetch_ladder(s3: &S3Server, id: &str) -> TempDir {
    let dir = tempfile::tempdir().expect("ladder dir");
    let below = format!("{PREFIX}/hls/{id}/");
    let keys = s3.keys(BUCKET, &below).await;
    assert!(
        keys.iter().any(|k| k.ends_with("/master.m3u8")),
        "{id}: no master in {keys:?}"
    );
    for key in keys {
        let rel = key.strip_prefix(&below).expect("below the ladder's prefix");
        let path = dir.path().join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("rung dir");
        }
        std::fs::write(&path, s3.object(BUCKET, &key).await).expect("write ladder file");
    }
    dir
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn every_corpus_input_in_a_bucket_gets_the_folder_outcome_and_leaves_exactly_its_objects() {
    let corpus = corpus::members();
    let (s3, app) = bucket_app(PREFIX, &corpus::FLAGS).await;
    let accepted = corpus::upload_every_member(&app, &corpus).await;
    corpus::wait_for_outcomes(&app, &accepted).await;

    let mut expected = BTreeSet::new();
    for member in &accepted {
        let source = format!("{PREFIX}/sources/{}", member.id);
        assert_eq!(
            s3.object(BUCKET, &source).await,
            std::fs::read(member.path).expect("corpus file"),
            "{}: the source as uploaded",
            member.label
        );
        match member.expected {
            Expected::Ready => {
                // Through reel, byte for byte as stored; then the viewer's checks on the
                // bucket's copy of the ladder.
                expected.extend(published_keys(&app, &s3, PREFIX, &member.id).await);
                let ladder = fetch_ladder(&s3, &member.id).await;
                assert_ladder_at(ladder.path().to_path_buf(), member.path, Expect::default()).await;
            }
            Expected::Failed(_) => {
                expected.insert(source);
            }
            Expected::Refused(..) => unreachable!("refused members are not accepted"),
        }
    }
    let stored: BTreeSet<String> = s3.keys(BUCKET, "").await.into_iter().collect();
    assert_eq!(
        stored.difference(&expected).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "objects nobody owns"
    );
    assert_eq!(
        expected.difference(&stored).collect::<Vec<_>>(),
        Vec::<&String>::new(),
        "objects missing"
    );
    assert_no_multipart_uploads(&s3).await;
    assert_no_local_media(&app);
    corpus::assert_clean_end(&app, &accepted, "bucket").await;

    for member in &accepted {
        assert_eq!(app.delete(&member.id).await, 204, "{}", member.label);
    }
    assert_eq!(
        s3.keys(BUCKET, "").await,
        Vec::<String>::new(),
        "deletes leave nothing"
    );
}
