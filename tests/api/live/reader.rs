//! ffmpeg as a viewer of a growing ladder: started while the video encodes, it plays from the
//! first picture, follows the playlists as they grow, reads on across the switch to VOD and
//! exits at the end having decoded every picture once. Meanwhile every media playlist keeps
//! one `EXT-X-TARGETDURATION` for its whole life (RFC 8216 §6.2.1), EVENT and then VOD.

use std::process::Stdio;
use std::time::{Duration, Instant};

use m3u8_rs::{MediaPlaylistType, Playlist};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::sync::oneshot;

use super::{SLOW, master, media_uris, until_playable};
use crate::fixtures;
use crate::helpers::{Sse, TestApp};
use crate::ladder_checks::{Expect, assert_ladder};

/// The clip's length and frame rate ([`fixtures::long_small`]), and the specs' segment length.
const SECONDS: f64 = 40.0;
const FPS: f64 = 30.0;
const SEGMENT: f64 = 1.0;
/// Segments the rung lists before the reader starts: more than the 3 from the live end where
/// ffmpeg's HLS demuxer starts by default, so a reader that did not start at the beginning
/// would show it.
const LEAD: usize = 6;

/// One decoded picture: when the reader printed it, and its presentation time in seconds.
#[derive(Debug, Clone, Copy)]
struct Frame {
    at: Instant,
    pts: f64,
}

/// What the reader did.
struct Read {
    frames: Vec<Frame>,
    success: bool,
    exited: Instant,
    stderr: String,
}

/// Reads `url` with ffmpeg's HLS demuxer from the first segment (`-live_start_index 0`),
/// decoding the first video stream and printing one `framecrc` line per picture as it comes
/// (`-flush_packets 1`), with the stream's own timestamps (`-copyts`).
async fn read_with_ffmpeg(url: String) -> Read {
    let mut child = tokio::process::Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-live_start_index",
            "0",
            "-copyts",
        ])
        .args(["-i", &url])
        .args(["-map", "0:v:0", "-fps_mode", "passthrough"])
        .args(["-flush_packets", "1", "-f", "framecrc", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("ffmpeg (scripts/install-deps installs it)");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let (mut frames, mut time_base) = (Vec::new(), None::<f64>);
    while let Ok(Some(line)) = lines.next_line().await {
        let at = Instant::now();
        if let Some(tb) = line.strip_prefix("#tb 0: ") {
            time_base = tb.split_once('/').and_then(|(n, d)| {
                Some(n.trim().parse::<f64>().ok()? / d.trim().parse::<f64>().ok()?)
            });
            continue;
        }
        // stream, dts, pts, duration, size, checksum
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if line.starts_with('#') || fields.len() != 6 {
            continue;
        }
        let tb = time_base.expect("framecrc names the time base before the first frame");
        let pts: f64 = fields[2].parse().expect("pts");
        frames.push(Frame { at, pts: pts * tb });
    }
    let output = child.wait_with_output().await.expect("ffmpeg exit");
    Read {
        frames,
        success: output.status.success(),
        exited: Instant::now(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// One look at a media playlist.
#[derive(Debug, Clone)]
struct Look {
    uri: String,
    target: u64,
    vod: bool,
    segments: usize,
}

/// Polls the media playlists `uris` of `id` every 150 ms until `stop` fires, then looks once
/// more; returns every look.
async fn watch_playlists(
    client: reqwest::Client,
    base: String,
    id: String,
    uris: Vec<String>,
    mut stop: oneshot::Receiver<()>,
) -> Vec<Look> {
    let mut looks = Vec::new();
    let mut last = false;
    loop {
        for uri in &uris {
            let url = format!("{base}/hls/{id}/{uri}");
            let Ok(response) = client.get(&url).send().await else {
                continue;
            };
            let text = response.bytes().await.unwrap_or_default();
            match m3u8_rs::parse_playlist_res(&text) {
                Ok(Playlist::MediaPlaylist(p)) => looks.push(Look {
                    uri: uri.clone(),
                    target: p.target_duration,
                    vod: p.playlist_type == Some(MediaPlaylistType::Vod) && p.end_list,
                    segments: p.segments.len(),
                }),
                other => panic!("{uri} is not a media playlist: {other:?}"),
            }
        }
        if last {
            return looks;
        }
        tokio::select! {
            _ = &mut stop => last = true,
            () = tokio::time::sleep(Duration::from_millis(150)) => {}
        }
    }
}

/// Segments the media playlist `uri` of `id` lists now.
async fn listed(app: &TestApp, id: &str, uri: &str) -> usize {
    let text = app
        .client
        .get(app.url(&format!("/hls/{id}/{uri}")))
        .send()
        .await
        .expect("GET playlist")
        .bytes()
        .await
        .unwrap_or_default();
    match m3u8_rs::parse_playlist_res(&text) {
        Ok(Playlist::MediaPlaylist(p)) => p.segments.len(),
        _ => 0,
    }
}

#[tokio::test]
async fn ffmpeg_reads_a_growing_ladder_from_its_start_across_the_switch_to_vod_to_its_end() {
    let app = TestApp::spawn(&SLOW);
    let source = fixtures::long_small();
    let id = app.upload_id(&source).await;
    let mut events = until_playable(&app, &id).await;
    assert_eq!(
        events.last().map(|e| e.event.as_str()),
        Some("playable"),
        "{events:?}"
    );
    let (_, growing) = master(&app, &id).await;
    let uris = media_uris(&growing);
    let (stop, stopped) = oneshot::channel();
    let watcher = tokio::spawn(watch_playlists(
        app.client.clone(),
        app.base.clone(),
        id.clone(),
        uris.clone(),
        stopped,
    ));

    // Far enough into the encode that the live end is not the start, and still encoding.
    let rung = &growing.variants[0].uri;
    let started = Instant::now();
    while listed(&app, &id, rung).await < LEAD {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{rung} never grew"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        app.video(&id).await["status"],
        "processing",
        "the encode ended before the reader could start: the spec needs a slower encode"
    );
    let reader = tokio::spawn(read_with_ffmpeg(app.url(&format!("/hls/{id}/master.m3u8"))));

    let last = events.last().map(|e| e.id);
    let rest = app
        .events(&id, last, |e| {
            matches!(e.event.as_str(), "ready" | "failed" | "canceled")
        })
        .await;
    let ready_at = Instant::now();
    events.extend(rest);
    let end = events.last().expect("the end");
    assert_eq!(end.event, "ready", "{end:?}");
    let read = tokio::time::timeout(Duration::from_secs(60), reader)
        .await
        .expect("ffmpeg ends once the ladder is VOD")
        .expect("reader task");
    let _ = stop.send(());
    let looks = watcher.await.expect("watcher");

    // The reader: from the first picture, before and after `ready`, to the end, exit 0.
    assert!(read.success, "ffmpeg failed: {}", read.stderr);
    let frames = &read.frames;
    let (first, last) = (frames.first().expect("frames"), frames[frames.len() - 1]);
    assert!(
        first.pts < 3.0 / FPS,
        "started at the first picture, not near the live end: {first:?}"
    );
    assert!(
        first.at < ready_at,
        "pictures were decoded while the video was still processing"
    );
    assert!(
        last.at > ready_at && read.exited > ready_at,
        "the reader went on across the switch to VOD and ended after ready"
    );
    let expected = (SECONDS * FPS) as usize;
    assert!(
        frames.len().abs_diff(expected) <= (SEGMENT * FPS) as usize,
        "{} pictures, {expected} expected",
        frames.len()
    );
    assert!(
        last.pts > SECONDS - SEGMENT - 1.0 / FPS,
        "read to the end: {last:?}"
    );
    let frame = 1.0 / FPS;
    for pair in frames.windows(2) {
        let step = pair[1].pts - pair[0].pts;
        assert!(
            step > 0.0 && step <= 2.0 * frame + 1e-6,
            "a gap or a step back in the pictures: {pair:?}"
        );
    }

    // Progress moved while it encoded (ffmpeg reports from the start, see `Storyboard::branch`).
    let moving = events
        .iter()
        .filter(|e| e.event == "progress")
        .filter_map(|e: &Sse| e.data["percent"].as_f64())
        .filter(|p| *p > 5.0 && *p < 90.0)
        .count();
    assert!(moving >= 2, "progress while it encoded: {events:?}");

    // One target duration per playlist for its whole life, EVENT then VOD; segments only
    // ever appended.
    for uri in &uris {
        let mine: Vec<&Look> = looks.iter().filter(|l| &l.uri == uri).collect();
        let targets: Vec<u64> = mine.iter().map(|l| l.target).collect();
        assert!(
            targets.windows(2).all(|w| w[0] == w[1]),
            "{uri}: EXT-X-TARGETDURATION changed: {targets:?}"
        );
        assert!(
            mine.iter().any(|l| !l.vod) && mine.last().is_some_and(|l| l.vod),
            "{uri}: looked at while growing and once VOD: {mine:?}"
        );
        let counts: Vec<usize> = mine.iter().map(|l| l.segments).collect();
        assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{uri}: {counts:?}");
    }

    assert_ladder(&app, &id, &source, Expect::default()).await;
}
