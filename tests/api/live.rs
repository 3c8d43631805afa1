//! Playable in seconds: the ladder grows in `hls/<id>` while it encodes (EVENT playlists,
//! aligned across rungs, `no-cache`), becomes VOD when ready, and disappears when the job does
//! not finish.

use std::time::Duration;

use m3u8_rs::{MediaPlaylist, MediaPlaylistType};

use crate::fixtures;
use crate::growing::{
    self, SLOW, assert_aligned, assert_ffmpeg_reads, fetch, folder, master, media, media_uris,
    until_playable,
};
use crate::helpers::{TestApp, postgres_database, postgres_url, wait_until};
use crate::ladder_checks::{Expect, assert_ladder};

mod reader;

#[tokio::test]
async fn a_ladder_is_watchable_while_it_encodes_and_becomes_vod_when_ready() {
    let app = TestApp::spawn(&SLOW);
    let source = fixtures::long();
    let id = app.upload_id(&source).await;
    let events = until_playable(&app, &id).await;
    let last = events.last().expect("events");
    assert_eq!(last.event, "playable", "playable before ready: {events:?}");
    assert_eq!(last.data["status"], "processing", "{}", last.data);
    assert!(last.data["playable_at"].is_string(), "{}", last.data);
    let link = format!("/hls/{id}/master.m3u8");
    assert_eq!(last.data["links"]["playlist"], link.as_str());

    // While it encodes: EVENT playlists, aligned, never cached.
    let (cache, growing) = master(&app, &id).await;
    assert_eq!(cache, "no-cache");
    assert_eq!(growing.variants.len(), 2, "{growing:?}");
    assert!(!growing.alternatives.is_empty(), "the audio group");
    let mut rungs: Vec<(String, MediaPlaylist)> = Vec::new();
    for uri in media_uris(&growing) {
        let (cache, playlist) = media(&app, &id, &uri).await;
        assert_eq!(cache, "no-cache", "{uri}");
        assert_eq!(
            playlist.playlist_type,
            Some(MediaPlaylistType::Event),
            "{uri}"
        );
        assert!(!playlist.end_list, "{uri} still grows");
        assert!(!playlist.segments.is_empty(), "{uri}");
        rungs.push((uri, playlist));
    }
    let video = app.video(&id).await;
    assert_eq!(
        video["status"], "processing",
        "the spec looked while it encoded"
    );
    // Rungs are fetched one after the other while they grow: at most one segment apart, the
    // same durations on what they share, and every listed segment exists in every rung.
    assert_aligned(&rungs, growing.variants.len());
    for (uri, playlist) in &rungs {
        let folder = folder(uri);
        let newest = &playlist.segments[playlist.segments.len() - 1].uri;
        for (other, _) in &rungs {
            let other = growing::folder(other);
            if other == folder || (folder == "audio") != (other == "audio") {
                continue;
            }
            let (status, cache, _) = fetch(&app, &format!("/hls/{id}/{other}/{newest}")).await;
            assert_eq!(status, 200, "{other}/{newest} exists as {folder} lists it");
            assert!(
                cache.contains("immutable"),
                "segments stay immutable: {cache}"
            );
        }
    }

    // ffmpeg plays the growing master.
    assert_ffmpeg_reads(app.url(&link)).await;

    // Ready: VOD with ENDLIST, measured rates within the growing bounds, every ladder check.
    let ready = app.wait_for(&id, "ready").await;
    let (cache, fin) = master(&app, &id).await;
    assert!(cache.contains("immutable"), "{cache}");
    for (grown, done) in growing.variants.iter().zip(&fin.variants) {
        assert_eq!(grown.uri, done.uri);
        assert!(
            done.bandwidth <= grown.bandwidth,
            "{}: measured {} within the bound {}",
            done.uri,
            done.bandwidth,
            grown.bandwidth
        );
    }
    for uri in media_uris(&fin) {
        let (_, playlist) = media(&app, &id, &uri).await;
        assert_eq!(
            playlist.playlist_type,
            Some(MediaPlaylistType::Vod),
            "{uri}"
        );
        assert!(playlist.end_list, "{uri}");
    }
    assert!(
        !app.media.join("hls").join(&id).join(".growing").exists(),
        "the finished ladder replaced the growing one"
    );
    assert_eq!(ready["playable_at"], last.data["playable_at"], "{ready}");
    assert_eq!(
        app.metric("reel_time_to_playable_seconds_count").await,
        1.0,
        "the wait to playable is measured"
    );
    assert_ladder(&app, &id, &source, Expect::default()).await;
    let (_, history) = app.get_json(&format!("/api/v1/videos/{id}/history")).await;
    let text = history.to_string();
    let (playable, done) = (text.find("\"playable\""), text.find("\"ready\""));
    assert!(
        playable.is_some() && playable < done,
        "history: playable, then ready: {history}"
    );
}

#[tokio::test]
async fn a_silent_source_grows_video_only_renditions() {
    let app = TestApp::spawn(&SLOW);
    let source = fixtures::long_silent();
    let id = app.upload_id(&source).await;
    let events = until_playable(&app, &id).await;
    assert_eq!(events.last().map(|e| e.event.as_str()), Some("playable"));
    let (_, growing) = master(&app, &id).await;
    assert!(
        growing.alternatives.is_empty(),
        "no audio group: {growing:?}"
    );
    assert!(growing.variants.iter().all(|v| v.audio.is_none()));
    for uri in media_uris(&growing) {
        let (_, playlist) = media(&app, &id, &uri).await;
        assert_eq!(
            playlist.playlist_type,
            Some(MediaPlaylistType::Event),
            "{uri}"
        );
    }
    app.wait_for(&id, "ready").await;
    assert_ladder(&app, &id, &source, Expect::default()).await;
    assert_one_ladder(&app, &id).await;
}

#[tokio::test]
async fn canceling_a_playable_video_takes_its_ladder_down() {
    let app = TestApp::spawn(&SLOW);
    let id = app.upload_id(&fixtures::long()).await;
    let events = until_playable(&app, &id).await;
    assert_eq!(events.last().map(|e| e.event.as_str()), Some("playable"));
    assert_eq!(fetch(&app, &format!("/hls/{id}/master.m3u8")).await.0, 200);

    assert_eq!(app.delete(&id).await, 204);
    assert_eq!(fetch(&app, &format!("/hls/{id}/master.m3u8")).await.0, 404);
    // Whatever the encoder was doing, it publishes nothing afterwards.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        !app.media.join("hls").join(&id).exists(),
        "the partial ladder is gone: {:?}",
        app.files_in("hls")
    );
}

#[tokio::test]
async fn a_job_that_fails_after_playable_takes_its_ladder_down_before_it_says_so() {
    let app = TestApp::spawn(&[SLOW[0], SLOW[1], "--stall-timeout-secs", "5"]);
    let id = app.upload_id(&fixtures::long()).await;
    let events = until_playable(&app, &id).await;
    assert_eq!(events.last().map(|e| e.event.as_str()), Some("playable"));
    // A frozen encoder: reel stops it after the stall timeout and fails the job.
    for pid in app.ffmpeg_processes() {
        let _ = std::process::Command::new("kill")
            .args(["-STOP", &pid.to_string()])
            .status();
    }
    let last = events.last().map(|e| e.id);
    let rest = app
        .events(&id, last, |e| {
            matches!(e.event.as_str(), "ready" | "failed" | "canceled")
        })
        .await;
    let end = rest.last().expect("the end");
    assert_eq!(end.event, "failed", "{rest:?}");
    assert_eq!(end.data["error"]["code"], "encode_stalled", "{}", end.data);
    assert_eq!(fetch(&app, &format!("/hls/{id}/master.m3u8")).await.0, 404);
    assert!(!app.media.join("hls").join(&id).exists());
    // The resource keeps when it was playable, but links no playlist any more.
    assert!(end.data["playable_at"].is_string(), "{}", end.data);
    assert!(end.data["links"]["playlist"].is_null(), "{}", end.data);
}

#[tokio::test]
async fn a_crash_while_playable_is_redone_into_one_consistent_ladder() {
    // One node on its own SQLite file: its restart knows every job died with it.
    let dir = tempfile::tempdir().expect("media");
    let url = format!("sqlite://{}/reel.db", dir.path().display());
    let flags = ["--database-url", url.as_str(), SLOW[0], SLOW[1]];
    let mut app = TestApp::start("serve", dir.path(), &flags, Vec::new());
    let source = fixtures::long();
    let id = app.upload_id(&source).await;
    let events = until_playable(&app, &id).await;
    assert_eq!(events.last().map(|e| e.event.as_str()), Some("playable"));
    app.crash();
    assert!(app.media.join("hls").join(&id).join(".growing").is_file());

    let app = TestApp::spawn_in(dir.path(), &flags, Vec::new());
    let ready = app.wait_for(&id, "ready").await;
    assert!(ready["playable_at"].is_string(), "{ready}");
    let hls = app.media.join("hls").join(&id);
    assert!(!hls.join(".growing").exists());
    assert_ladder(&app, &id, &source, Expect::default()).await;
    assert_one_ladder(&app, &id).await;
}

/// One ladder: every segment in its folders is named by its playlists (none of another try).
async fn assert_one_ladder(app: &TestApp, id: &str) {
    let hls = app.media.join("hls").join(id);
    assert!(!hls.join(".growing").exists(), "finished");
    let (_, fin) = master(app, id).await;
    for uri in media_uris(&fin) {
        let (_, playlist) = media(app, id, &uri).await;
        assert!(playlist.end_list, "{uri}");
        let folder = folder(&uri);
        let listed = playlist.segments.len();
        let on_disk = std::fs::read_dir(hls.join(folder))
            .expect("rung folder")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".m4s"))
            .count();
        assert_eq!(
            on_disk, listed,
            "{folder}: segments on disk are the listed ones"
        );
    }
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test runs it"]
async fn on_a_shared_queue_the_playable_event_and_the_growing_ladder_reach_an_api_node() {
    let admin = postgres_url()
        .expect("this spec needs REEL_TEST_POSTGRES_URL: run it through scripts/test");
    let media = tempfile::tempdir().expect("media");
    let database = postgres_database(&admin, &media.path().to_string_lossy());
    let shared = ["--database-url", database.as_str(), "--lease-secs", "4"];
    let api = TestApp::start(
        "serve",
        media.path(),
        &[&shared[..], &["--encoders", "0"]].concat(),
        Vec::new(),
    );
    let _worker = TestApp::start(
        "work",
        media.path(),
        &[&shared[..], &SLOW[..]].concat(),
        Vec::new(),
    );

    let id = api.upload_id(&fixtures::long()).await;
    let events = until_playable(&api, &id).await;
    let last = events.last().expect("events");
    assert_eq!(last.event, "playable", "{events:?}");
    assert_eq!(last.data["status"], "processing");
    let (cache, growing) = master(&api, &id).await;
    assert_eq!(cache, "no-cache");
    assert!(!growing.variants.is_empty());
    api.wait_for(&id, "ready").await;
    let (cache, _) = master(&api, &id).await;
    assert!(cache.contains("immutable"), "{cache}");
}

#[tokio::test]
#[ignore = "needs PostgreSQL: scripts/test runs it"]
async fn a_worker_that_lost_its_lease_after_playable_leaves_the_next_attempts_ladder_alone() {
    let admin = postgres_url()
        .expect("this spec needs REEL_TEST_POSTGRES_URL: run it through scripts/test");
    let media = tempfile::tempdir().expect("media");
    let database = postgres_database(&admin, &media.path().to_string_lossy());
    let shared = ["--database-url", database.as_str(), "--lease-secs", "3"];
    let api = TestApp::start(
        "serve",
        media.path(),
        &[&shared[..], &["--encoders", "0"]].concat(),
        Vec::new(),
    );
    let slow = [&shared[..], &SLOW[..]].concat();
    let paused = TestApp::start("work", media.path(), &slow, Vec::new());
    let id = api.upload_id(&fixtures::long()).await;
    let events = until_playable(&api, &id).await;
    assert_eq!(events.last().map(|e| e.event.as_str()), Some("playable"));
    let marker = media.path().join("hls").join(&id).join(".growing");
    let first = std::fs::read_to_string(&marker).expect("the first attempt's marker");
    paused.signal("STOP");
    let _second = TestApp::start("work", media.path(), &slow, Vec::new());
    wait_until(
        "the second attempt's growing ladder",
        Duration::from_secs(60),
        async || std::fs::read_to_string(&marker).is_ok_and(|owner| owner != first),
    )
    .await;
    // The first worker wakes up with its ffmpeg still writing: it must touch nothing.
    paused.signal("CONT");
    // It notices by its heartbeat, at its commit, or when its ffmpeg (whose work folder the
    // second attempt took over) failed and the settle found the job held elsewhere.
    wait_until(
        "the paused worker to notice",
        Duration::from_secs(20),
        async || {
            let logs = paused.logs();
            [
                "lease lost",
                "another worker holds",
                "the job ended elsewhere",
            ]
            .iter()
            .any(|said| logs.contains(said))
        },
    )
    .await;
    let (status, _, _) = fetch(&api, &format!("/hls/{id}/master.m3u8")).await;
    assert_eq!(status, 200, "the second attempt's ladder is still there");
    api.wait_for(&id, "ready").await;
    assert_ladder(&api, &id, &fixtures::long(), Expect::default()).await;
    assert_one_ladder(&api, &id).await;
}
