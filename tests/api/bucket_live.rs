//! Playable in seconds with media in a bucket (`--storage s3://…`, against moto, see
//! [`crate::s3`]): while a 20 s clip encodes, its master and EVENT playlists appear in the
//! bucket and through reel, served `no-cache` and aligned across rungs; at ready the ladder is
//! VOD, its segments were not uploaded twice, and the bucket holds exactly the video's objects
//! (no marker left). A delete or a failure after playable takes every object of the ladder
//! away (404), and a `kill -9` after playable is redone into one consistent ladder; on a
//! shared queue, a worker that lost its lease after playable stores nothing more.
//!
//! Ignored in the plain pass like [`crate::bucket`]; `scripts/test` runs them once.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use m3u8_rs::{MediaPlaylist, MediaPlaylistType};

use crate::bucket::{BUCKET, assert_no_local_media, assert_no_multipart_uploads, published_keys};
use crate::fixtures;
use crate::growing::{
    SLOW, assert_aligned, assert_ffmpeg_reads, fetch, folder, master, media, media_uris,
    until_playable,
};
use crate::helpers::{DEADLINE, TestApp, postgres_database, postgres_url, wait_until};
use crate::ladder_checks::{Expect, assert_ladder_at};
use crate::s3::S3Server;

/// A reel on a fresh server's bucket below `prefix`, encoding slowly enough to be watched.
async fn live_app(prefix: &str, extra: &[&str]) -> (S3Server, TestApp) {
    let flags: Vec<&str> = SLOW.iter().chain(extra).copied().collect();
    crate::bucket::bucket_app(prefix, &flags).await
}

/// The keys of `id`'s ladder below `prefix` now.
async fn ladder_keys(s3: &S3Server, prefix: &str, id: &str) -> BTreeSet<String> {
    let below = format!("{prefix}/hls/{id}/");
    s3.keys(BUCKET, &below).await.into_iter().collect()
}

/// Copies `id`'s ladder out of the bucket into a local folder, for the ladder checks.
async fn download_ladder(s3: &S3Server, prefix: &str, id: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("ladder copy");
    let below = format!("{prefix}/hls/{id}/");
    for key in s3.keys(BUCKET, &below).await {
        let path = dir.path().join(key.trim_start_matches(&below));
        std::fs::create_dir_all(path.parent().expect("parent")).expect("folder");
        std::fs::write(&path, s3.object(BUCKET, &key).await).expect("copy");
    }
    dir
}

/// The growing media playlists through reel: each EVENT, `no-cache`, not ended, not empty.
async fn growing_rungs(app: &TestApp, id: &str, uris: &[String]) -> Vec<(String, MediaPlaylist)> {
    let mut rungs = Vec::new();
    for uri in uris {
        let (cache, playlist) = media(app, id, uri).await;
        assert_eq!(cache, "no-cache", "{uri}");
        let kind = playlist.playlist_type.clone();
        assert_eq!(kind, Some(MediaPlaylistType::Event), "{uri}");
        assert!(!playlist.end_list, "{uri} still grows");
        assert!(!playlist.segments.is_empty(), "{uri}");
        rungs.push((uri.clone(), playlist));
    }
    rungs
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn a_bucket_ladder_is_watchable_while_it_encodes_and_becomes_vod_when_ready() {
    let (s3, app) = live_app("live", &[]).await;
    let source = fixtures::long();
    let started = Instant::now();
    let id = app.upload_id(&source).await;
    let accepted = started.elapsed();
    let events = until_playable(&app, &id).await;
    let last = events.last().expect("events");
    assert_eq!(last.event, "playable", "playable before ready: {events:?}");
    eprintln!(
        "bucket: 202 after {:.2} s, playable {:.2} s after the 202",
        accepted.as_secs_f64(),
        (started.elapsed() - accepted).as_secs_f64()
    );
    assert_eq!(last.data["status"], "processing", "{}", last.data);
    assert!(last.data["playable_at"].is_string(), "{}", last.data);

    // In the bucket: the marker and the master, with no-cache EVENT playlists through reel.
    let hls = format!("live/hls/{id}");
    let keys = ladder_keys(&s3, "live", &id).await;
    assert!(keys.contains(&format!("{hls}/.growing")), "{keys:?}");
    assert!(keys.contains(&format!("{hls}/master.m3u8")), "{keys:?}");
    let (cache, growing) = master(&app, &id).await;
    assert_eq!(cache, "no-cache");
    assert_eq!(growing.variants.len(), 2, "{growing:?}");
    assert!(!growing.alternatives.is_empty(), "the audio group");
    let rungs = growing_rungs(&app, &id, &media_uris(&growing)).await;
    assert_eq!(
        app.video(&id).await["status"],
        "processing",
        "looked while it encoded"
    );
    assert_aligned(&rungs, growing.variants.len());
    // Every segment a growing playlist names is stored, and served immutable.
    for (uri, playlist) in &rungs {
        let rung = folder(uri);
        for segment in &playlist.segments {
            let key = format!("{hls}/{rung}/{}", segment.uri);
            assert!(ladder_keys(&s3, "live", &id).await.contains(&key), "{key}");
        }
        let newest = &playlist.segments[playlist.segments.len() - 1].uri;
        let (status, cache, _) = fetch(&app, &format!("/hls/{id}/{rung}/{newest}")).await;
        assert_eq!(status, 200, "{rung}/{newest}");
        assert!(
            cache.contains("immutable"),
            "segments stay immutable: {cache}"
        );
    }
    let first_video = format!("{hls}/{}/seg_00000.m4s", folder(&media_uris(&growing)[0]));
    let first_written = s3.last_modified(BUCKET, &first_video).await;
    assert_ffmpeg_reads(app.url(&format!("/hls/{id}/master.m3u8"))).await;

    // Ready: VOD, measured rates within the growing bounds, the same segment objects.
    let ready = app.wait_for(&id, "ready").await;
    assert_eq!(ready["playable_at"], last.data["playable_at"], "{ready}");
    let (cache, done) = master(&app, &id).await;
    assert!(cache.contains("immutable"), "{cache}");
    for (grown, measured) in growing.variants.iter().zip(&done.variants) {
        assert_eq!(grown.uri, measured.uri);
        assert!(measured.bandwidth <= grown.bandwidth, "{}", measured.uri);
    }
    for uri in media_uris(&done) {
        let (cache, playlist) = media(&app, &id, &uri).await;
        assert!(cache.contains("immutable"), "{uri}: {cache}");
        let kind = playlist.playlist_type.clone();
        assert_eq!(kind, Some(MediaPlaylistType::Vod), "{uri}");
        assert!(playlist.end_list, "{uri}");
    }
    assert_eq!(
        s3.last_modified(BUCKET, &first_video).await,
        first_written,
        "a segment published while growing is not uploaded again at ready"
    );
    let stored: BTreeSet<String> = s3.keys(BUCKET, "").await.into_iter().collect();
    assert_eq!(
        stored,
        published_keys(&app, &s3, "live", &id).await,
        "exactly the video's objects"
    );
    let copy = download_ladder(&s3, "live", &id).await;
    assert_ladder_at(copy.path().to_path_buf(), &source, Expect::default()).await;
    assert_no_local_media(&app);
    assert_no_multipart_uploads(&s3).await;
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn deleting_a_playable_bucket_video_leaves_nothing_of_it_in_the_bucket() {
    let (s3, app) = live_app("delete", &[]).await;
    let id = app.upload_id(&fixtures::long()).await;
    let events = until_playable(&app, &id).await;
    assert_eq!(events.last().map(|e| e.event.as_str()), Some("playable"));
    let (_, growing) = master(&app, &id).await;
    let rung = media_uris(&growing).remove(0);
    assert_eq!(fetch(&app, &format!("/hls/{id}/{rung}")).await.0, 200);

    assert_eq!(app.delete(&id).await, 204);
    assert_eq!(fetch(&app, &format!("/hls/{id}/master.m3u8")).await.0, 404);
    assert_eq!(fetch(&app, &format!("/hls/{id}/{rung}")).await.0, 404);
    // Whatever the encoder was doing, it stores nothing afterwards.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(s3.keys(BUCKET, "").await, Vec::<String>::new());
    assert_no_multipart_uploads(&s3).await;
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn a_bucket_job_that_fails_after_playable_withdraws_its_ladder_before_it_says_so() {
    let (s3, app) = live_app("failed", &["--stall-timeout-secs", "5"]).await;
    let id = app.upload_id(&fixtures::long()).await;
    let events = until_playable(&app, &id).await;
    assert_eq!(events.last().map(|e| e.event.as_str()), Some("playable"));
    // A frozen encoder: reel stops it after the stall time-out and fails the job.
    for pid in app.ffmpeg_processes() {
        let _ = std::process::Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status();
    }
    let rest = app
        .events(&id, events.last().map(|e| e.id), |e| {
            matches!(e.event.as_str(), "ready" | "failed" | "canceled")
        })
        .await;
    let end = rest.last().expect("the end");
    assert_eq!(end.event, "failed", "{rest:?}");
    assert_eq!(end.data["error"]["code"], "encode_stalled", "{}", end.data);
    // Withdrawn before the failure was told: nothing of the ladder, the source stays.
    assert_eq!(ladder_keys(&s3, "failed", &id).await, BTreeSet::new());
    assert_eq!(fetch(&app, &format!("/hls/{id}/master.m3u8")).await.0, 404);
    assert_eq!(s3.keys(BUCKET, "").await, [format!("failed/sources/{id}")]);
    assert!(end.data["links"]["playlist"].is_null(), "{}", end.data);
}

#[tokio::test]
#[ignore = "needs an S3 server (moto): scripts/test runs it"]
async fn a_crash_while_playable_on_a_bucket_is_redone_into_one_consistent_ladder() {
    // One node on its own SQLite file: its restart knows every job died with it.
    let db = tempfile::tempdir().expect("db");
    let url = format!("sqlite://{}/reel.db", db.path().display());
    let single = ["--database-url", url.as_str()];
    let (s3, mut app) = live_app("crash", &single).await;
    let source = fixtures::long();
    let id = app.upload_id(&source).await;
    let events = until_playable(&app, &id).await;
    assert_eq!(events.last().map(|e| e.event.as_str()), Some("playable"));
    app.crash();
    let left = ladder_keys(&s3, "crash", &id).await;
    assert!(
        left.contains(&format!("crash/hls/{id}/.growing")),
        "{left:?}"
    );

    let flags = s3.flags(BUCKET, "crash");
    let mut flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    flags.extend(single);
    flags.extend(SLOW);
    let media_dir = app.media.clone();
    let app = TestApp::spawn_in(&media_dir, &flags, Vec::new());
    let ready = app.wait_for(&id, "ready").await;
    assert!(ready["playable_at"].is_string(), "{ready}");
    // One ladder: exactly what its playlists name (no segment of the dead attempt), no marker.
    let stored: BTreeSet<String> = s3.keys(BUCKET, "").await.into_iter().collect();
    assert_eq!(stored, published_keys(&app, &s3, "crash", &id).await);
    let copy = download_ladder(&s3, "crash", &id).await;
    assert_ladder_at(copy.path().to_path_buf(), &source, Expect::default()).await;
    assert_eq!(app.delete(&id).await, 204);
    wait_until("the bucket is empty", DEADLINE, async || {
        s3.keys(BUCKET, "").await.is_empty()
    })
    .await;
    assert_no_multipart_uploads(&s3).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL and an S3 server (moto): scripts/test runs it"]
async fn on_a_bucket_a_worker_that_lost_its_lease_after_playable_leaves_the_next_attempts_ladder_alone()
 {
    let admin = postgres_url()
        .expect("this spec needs REEL_TEST_POSTGRES_URL: run it through scripts/test");
    let s3 = S3Server::start();
    s3.create_bucket(BUCKET).await;
    let media_dir = tempfile::tempdir().expect("media");
    let database = postgres_database(&admin, &media_dir.path().to_string_lossy());
    // A short lease, so the next attempt claims soon; a write must still fit inside it.
    let mut flags = s3.flags(BUCKET, "lease");
    for (flag, value) in [("--s3-timeout-secs", "4"), ("--lease-secs", "10")] {
        let at = flags.iter().position(|f| f == flag).expect(flag);
        flags[at + 1] = value.into();
    }
    flags.extend(["--database-url".to_owned(), database]);
    let shared: Vec<&str> = flags.iter().map(String::as_str).collect();
    // Each process on its own machine, as it were: the bucket and the database are all they
    // share (each has its own local work area).
    let api = TestApp::start(
        "serve",
        media_dir.path(),
        &[&shared[..], &["--encoders", "0"]].concat(),
        Vec::new(),
    );
    let slow = [&shared[..], &SLOW[..]].concat();
    let worker = || {
        let dir = tempfile::tempdir().expect("work area");
        let path = dir.path().to_path_buf();
        TestApp::start("work", &path, &slow, vec![dir])
    };
    let paused = worker();
    let source = fixtures::long();
    let id = api.upload_id(&source).await;
    let events = until_playable(&api, &id).await;
    assert_eq!(events.last().map(|e| e.event.as_str()), Some("playable"));
    let marker = format!("lease/hls/{id}/.growing");
    let first = s3.object(BUCKET, &marker).await;
    let (_, growing) = master(&api, &id).await;
    let rung = format!("lease/hls/{id}/{}", media_uris(&growing)[0]);
    paused.signal("STOP");
    let _second = worker();
    wait_until(
        "the second attempt's growing ladder",
        Duration::from_secs(90),
        async || {
            s3.object_if_any(BUCKET, &marker)
                .await
                .is_some_and(|owner| owner != first)
        },
    )
    .await;
    // The first worker wakes up with its ffmpeg ahead of the second's: it must store nothing
    // more. Had it written its playlists, the second's next ones would list fewer segments:
    // EVENT playlists only ever grow (RFC 8216 §6.2.1).
    paused.signal("CONT");
    let (mut most, watched) = (0, Instant::now());
    while watched.elapsed() < Duration::from_secs(8) {
        if let Some(text) = s3.object_if_any(BUCKET, &rung).await {
            let text = String::from_utf8_lossy(&text).into_owned();
            let count = text.lines().filter(|l| l.ends_with(".m4s")).count();
            assert!(
                count >= most,
                "{rung} shrank from {most} to {count}:\n{text}"
            );
            most = count;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_until(
        "the paused worker to notice",
        Duration::from_secs(30),
        async || {
            let logs = paused.logs();
            logs.contains("lease lost") || logs.contains("another worker holds")
        },
    )
    .await;
    assert_eq!(fetch(&api, &format!("/hls/{id}/master.m3u8")).await.0, 200);
    api.wait_for(&id, "ready").await;
    let stored: BTreeSet<String> = s3.keys(BUCKET, "").await.into_iter().collect();
    assert_eq!(stored, published_keys(&api, &s3, "lease", &id).await);
    let copy = download_ladder(&s3, "lease", &id).await;
    assert_ladder_at(copy.path().to_path_buf(), &source, Expect::default()).await;
}
