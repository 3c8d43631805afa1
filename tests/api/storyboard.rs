//! Storyboards: the WebVTT track of a ready video covers its whole duration with contiguous
//! cues, each pointing (`#xywh=`) inside a sprite sheet's real pixel size. Checked on every
//! ready ladder by [`crate::ladder_checks`]; the specs here add a video long enough for two
//! sheets, and a private video's signed links.

use std::path::Path;

use crate::fixtures;
use crate::helpers::{TestApp, ffprobe};
use crate::ladder_checks::{Expect, ready_ladder};

/// One cue: seconds, the sheet's URL as written (relative to the track), and its rectangle.
#[derive(Debug, Clone, PartialEq)]
pub struct Cue {
    pub start: f64,
    pub end: f64,
    pub url: String,
    pub rect: (u64, u64, u64, u64),
}

/// `hh:mm:ss.ttt` or `mm:ss.ttt` (W3C WebVTT §4.5) as seconds.
fn seconds(stamp: &str) -> f64 {
    stamp
        .trim()
        .split(':')
        .map(|part| {
            part.parse::<f64>()
                .unwrap_or_else(|_| panic!("timestamp {stamp}"))
        })
        .fold(0.0, |total, part| total * 60.0 + part)
}

/// The cues of a storyboard track; panics unless it is WebVTT with one URL per cue.
pub fn parse(track: &str) -> Vec<Cue> {
    let mut lines = track.lines();
    assert_eq!(lines.next().map(str::trim_end), Some("WEBVTT"), "{track}");
    let mut cues = Vec::new();
    while let Some(line) = lines.next() {
        let Some((start, end)) = line.split_once("-->") else {
            continue;
        };
        let text = lines
            .next()
            .unwrap_or_else(|| panic!("a cue without text: {track}"));
        let (url, fragment) = text
            .trim()
            .split_once("#xywh=")
            .unwrap_or_else(|| panic!("{text}: no #xywh= fragment"));
        let numbers: Vec<u64> = fragment
            .split(',')
            .map(|n| n.parse().unwrap_or_else(|_| panic!("{text}: bad xywh")))
            .collect();
        assert_eq!(numbers.len(), 4, "{text}");
        cues.push(Cue {
            start: seconds(start),
            end: seconds(end),
            url: url.to_owned(),
            rect: (numbers[0], numbers[1], numbers[2], numbers[3]),
        });
    }
    cues
}

/// Checks the cues against a video of `duration` seconds and sheets whose pixel sizes
/// `sheet_size(url)` reads (from disk or over HTTP).
pub fn assert_cues(cues: &[Cue], duration: f64, mut sheet_size: impl FnMut(&str) -> (u64, u64)) {
    assert!(!cues.is_empty(), "a storyboard has cues");
    assert!(cues[0].start.abs() < 1e-9, "starts at 0: {:?}", cues[0]);
    for pair in cues.windows(2) {
        assert!(
            (pair[0].end - pair[1].start).abs() < 1e-9,
            "contiguous: {:?} then {:?}",
            pair[0],
            pair[1]
        );
    }
    for cue in cues {
        assert!(cue.end > cue.start, "{cue:?}");
    }
    let end = cues.last().map_or(0.0, |c| c.end);
    assert!(
        (end - duration).abs() <= 0.1 + 1.0 / 24.0,
        "the cues end at {end}, the video lasts {duration}"
    );
    let mut sizes = std::collections::HashMap::new();
    for cue in cues {
        let (width, height) = *sizes
            .entry(cue.url.clone())
            .or_insert_with(|| sheet_size(&cue.url));
        let (x, y, w, h) = cue.rect;
        assert!(w > 0 && h > 0, "{cue:?}");
        assert!(
            x + w <= width && y + h <= height,
            "{cue:?} outside its {width}x{height} sheet"
        );
    }
}

/// A picture's pixel size, as ffprobe reads it.
pub fn picture_size(path: &Path) -> (u64, u64) {
    let probe = ffprobe(path, &["-show_streams"]);
    let stream = &probe["streams"][0];
    (
        stream["width"].as_u64().expect("width"),
        stream["height"].as_u64().expect("height"),
    )
}

/// The storyboard of the ladder in `hls`, read from disk, against a video of `duration` s.
pub fn assert_storyboard(hls: &Path, duration: f64) -> Vec<Cue> {
    let track = std::fs::read_to_string(hls.join("storyboard.vtt")).expect("storyboard.vtt");
    let cues = parse(&track);
    assert_cues(&cues, duration, |url| picture_size(&hls.join(url)));
    cues
}

#[tokio::test]
async fn a_long_video_gets_thumbnails_on_more_than_one_sheet() {
    // 110 s: one thumbnail a second, 110 thumbnails, two sheets of at most 10 × 10.
    let app = TestApp::spawn(&[]);
    let clip = fixtures::storyboard_long();
    let id = app.upload_id(&clip).await;
    let (video, _) = ready_ladder(&app, &id, &clip, Expect::default()).await;
    let hls = app.media.join("hls").join(&id);
    let cues = assert_storyboard(&hls, 110.0);
    assert_eq!(cues.len(), 110);
    let sheets: std::collections::BTreeSet<&str> = cues.iter().map(|c| c.url.as_str()).collect();
    assert_eq!(
        sheets.into_iter().collect::<Vec<_>>(),
        ["storyboard/sprite_0.jpg", "storyboard/sprite_1.jpg"]
    );
    assert_eq!(
        video["links"]["storyboard"],
        format!("/hls/{id}/storyboard.vtt")
    );
    // reel serves the track itself when no nginx is in front.
    let response = app
        .client
        .get(app.url(&format!("/hls/{id}/storyboard.vtt")))
        .send()
        .await
        .expect("track");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"],
        "text/vtt; charset=utf-8"
    );
}

#[tokio::test]
async fn a_private_videos_storyboard_is_signed_and_so_are_its_sheets() {
    let app = TestApp::spawn(&[
        "--playback-secret",
        "storyboard-spec-secret-0123456789abcdef",
    ]);
    let bytes = tokio::fs::read(fixtures::standard())
        .await
        .expect("fixture");
    let accepted: serde_json::Value = app
        .client
        .post(app.url("/api/v1/videos"))
        .header("Content-Type", "video/mp4")
        .header("X-Visibility", "private")
        .body(bytes)
        .send()
        .await
        .expect("upload")
        .json()
        .await
        .expect("json");
    let id = accepted["id"].as_str().expect("id").to_owned();
    let video = app.wait_for(&id, "ready").await;
    let link = video["links"]["storyboard"]
        .as_str()
        .expect("storyboard link");
    let (path, query) = link.split_once('?').expect("a signed link");
    assert_eq!(path, format!("/hls/{id}/storyboard.vtt"));
    assert!(
        query.starts_with("exp=") && query.contains("&sig="),
        "{link}"
    );
    let get = |url: String| {
        let client = app.client.clone();
        async move { client.get(url).send().await.expect("GET") }
    };
    assert_eq!(get(app.url(path)).await.status(), 403, "unsigned track");
    let track = get(app.url(link)).await.text().await.expect("track");
    let cues = parse(&track);
    let base = format!("/hls/{id}/");
    let mut sheets = std::collections::HashMap::new();
    for cue in &cues {
        assert!(
            cue.url.ends_with(&format!("?{query}")),
            "signed: {}",
            cue.url
        );
        if !sheets.contains_key(&cue.url) {
            let response = get(app.url(&format!("{base}{}", cue.url))).await;
            assert_eq!(response.status(), 200, "{}", cue.url);
            let file = tempfile::NamedTempFile::new().expect("temp");
            std::fs::write(file.path(), response.bytes().await.expect("sheet")).expect("write");
            sheets.insert(cue.url.clone(), picture_size(file.path()));
            let unsigned = cue.url.split('?').next().unwrap_or_default();
            assert_eq!(
                get(app.url(&format!("{base}{unsigned}"))).await.status(),
                403,
                "unsigned sheet"
            );
        }
    }
    let duration = video["source"]["duration"].as_f64().expect("duration");
    assert_cues(&cues, duration, |url| sheets[url]);
}
