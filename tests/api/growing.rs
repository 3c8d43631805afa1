//! Reading a ladder that grows while it encodes, the way a player does: the wait for the
//! `playable` event, playlists fetched through reel with their `Cache-Control`, and the media
//! playlists a master names. Shared by the specs of every store (`live`, `bucket_live`).

use m3u8_rs::{MasterPlaylist, MediaPlaylist, Playlist};

use crate::helpers::{Sse, TestApp};

/// A slower preset than the specs' default, so a 20 s clip is still encoding when the spec
/// looks at it.
pub const SLOW: [&str; 2] = ["--x264-preset", "medium"];

/// Reads the event stream until `playable` (or a terminal event); returns every event seen.
pub async fn until_playable(app: &TestApp, id: &str) -> Vec<Sse> {
    app.events(id, None, |e| {
        matches!(
            e.event.as_str(),
            "playable" | "ready" | "failed" | "canceled"
        )
    })
    .await
}

/// GETs `path` from reel: its status, `Cache-Control` and text.
pub async fn fetch(app: &TestApp, path: &str) -> (u16, String, String) {
    let response = app.client.get(app.url(path)).send().await.expect("GET");
    let status = response.status().as_u16();
    let cache = response
        .headers()
        .get("cache-control")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, cache, response.text().await.unwrap_or_default())
}

/// The master playlist of `id` through reel, with its `Cache-Control`.
pub async fn master(app: &TestApp, id: &str) -> (String, MasterPlaylist) {
    let (status, cache, text) = fetch(app, &format!("/hls/{id}/master.m3u8")).await;
    assert_eq!(status, 200, "master of {id}");
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(Playlist::MasterPlaylist(master)) => (cache, master),
        other => panic!("not a master playlist: {other:?}\n{text}"),
    }
}

/// The media playlist `uri` (relative to the ladder) through reel, with its `Cache-Control`.
pub async fn media(app: &TestApp, id: &str, uri: &str) -> (String, MediaPlaylist) {
    let (status, cache, text) = fetch(app, &format!("/hls/{id}/{uri}")).await;
    assert_eq!(status, 200, "{uri}");
    match m3u8_rs::parse_playlist_res(text.as_bytes()) {
        Ok(Playlist::MediaPlaylist(playlist)) => (cache, playlist),
        other => panic!("not a media playlist: {other:?}\n{text}"),
    }
}

/// Every media playlist of a master: each rung's, then the audio rendition's.
pub fn media_uris(master: &MasterPlaylist) -> Vec<String> {
    master
        .variants
        .iter()
        .map(|v| v.uri.clone())
        .chain(master.alternatives.iter().filter_map(|a| a.uri.clone()))
        .collect()
}

/// The folder of a ladder-relative URI (`360p/index.m3u8` → `360p`).
pub fn folder(uri: &str) -> &str {
    uri.rsplit_once('/').map_or("", |(folder, _)| folder)
}

/// Checks that growing rungs fetched one after the other are aligned: at most one segment
/// apart, with the same durations on the segments the video rungs share.
pub fn assert_aligned(rungs: &[(String, MediaPlaylist)], video_rungs: usize) {
    let counts: Vec<usize> = rungs.iter().map(|(_, p)| p.segments.len()).collect();
    let (least, most) = (counts.iter().min(), counts.iter().max());
    assert!(
        most.zip(least).is_some_and(|(m, l)| m - l <= 1),
        "{counts:?}"
    );
    let video = &rungs[..video_rungs];
    let shared = video.iter().map(|(_, p)| p.segments.len()).min();
    for n in 0..shared.unwrap_or(0) {
        let durations: Vec<f32> = video.iter().map(|(_, p)| p.segments[n].duration).collect();
        assert!(
            durations.iter().all(|d| (d - durations[0]).abs() < 0.002),
            "segment {n}: {durations:?}"
        );
    }
}

/// ffmpeg reads `url` (a growing master: from its first segment) for 2 s without an error.
pub async fn assert_ffmpeg_reads(url: String) {
    let played = tokio::task::spawn_blocking(move || {
        std::process::Command::new("ffmpeg")
            .args(["-v", "error", "-live_start_index", "0", "-i", &url])
            .args(["-t", "2", "-f", "null", "-"])
            .output()
    })
    .await
    .expect("join")
    .expect("run ffmpeg");
    assert!(
        played.status.success(),
        "ffmpeg reads the growing ladder: {}",
        String::from_utf8_lossy(&played.stderr)
    );
}
