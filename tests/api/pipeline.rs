//! The happy path: upload, live progress, a valid aligned ladder served over HTTP.

use std::path::Path;

use m3u8_rs::Playlist;

use crate::fixtures;
use crate::helpers::{TestApp, ffprobe};

fn media_playlist(path: &Path) -> m3u8_rs::MediaPlaylist {
    match m3u8_rs::parse_playlist_res(&std::fs::read(path).expect("read playlist")) {
        Ok(Playlist::MediaPlaylist(playlist)) => playlist,
        other => panic!("{} is not a media playlist: {other:?}", path.display()),
    }
}

/// A rung as one playable file: its init segment followed by every media segment.
fn joined_rung(rung_dir: &Path, playlist: &m3u8_rs::MediaPlaylist) -> tempfile::NamedTempFile {
    let map = playlist.segments.iter().find_map(|s| s.map.as_ref());
    let init = map.expect("EXT-X-MAP").uri.clone();
    let mut joined = std::fs::read(rung_dir.join(init)).expect("init segment");
    for segment in &playlist.segments {
        joined.extend(std::fs::read(rung_dir.join(&segment.uri)).expect("segment"));
    }
    let file = tempfile::NamedTempFile::new().expect("temp");
    std::fs::write(file.path(), joined).expect("write joined");
    file
}

/// Keyframe times of a rung's video.
fn keyframe_times(joined: &Path) -> Vec<f64> {
    let entries = [
        "-select_streams",
        "v:0",
        "-show_entries",
        "packet=pts_time,flags",
    ];
    let packets = ffprobe(joined, &entries);
    packets["packets"]
        .as_array()
        .expect("packets")
        .iter()
        .filter(|p| p["flags"].as_str().unwrap_or("").contains('K'))
        .map(|p| {
            p["pts_time"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .expect("pts_time")
        })
        .collect()
}

/// What the whole pipeline promises for one upload, checked on disk and over HTTP.
async fn assert_valid_ladder(
    app: &TestApp,
    id: &str,
    source_width: u64,
    source_height: u64,
    source_seconds: f64,
) -> Vec<serde_json::Value> {
    let video = app.video(id).await;
    let hls = app.media.join("hls").join(id);
    let master =
        match m3u8_rs::parse_playlist_res(&std::fs::read(hls.join("master.m3u8")).expect("master"))
        {
            Ok(Playlist::MasterPlaylist(master)) => master,
            other => panic!("not a master playlist: {other:?}"),
        };
    assert!(!master.variants.is_empty());
    assert!(master.independent_segments);
    let bandwidths: Vec<u64> = master.variants.iter().map(|v| v.bandwidth).collect();
    assert!(
        bandwidths.windows(2).all(|w| w[0] <= w[1]),
        "rungs ascend: {bandwidths:?}"
    );

    let mut all_keyframes = Vec::new();
    for variant in &master.variants {
        let resolution = variant.resolution.expect("RESOLUTION");
        assert!(
            resolution.width <= source_width && resolution.height <= source_height,
            "no upscaling: {resolution:?}"
        );
        assert!(
            resolution.width % 2 == 0 && resolution.height % 2 == 0,
            "even sizes: {resolution:?}"
        );
        assert!(variant.average_bandwidth.expect("AVERAGE-BANDWIDTH") <= variant.bandwidth);
        assert!(variant.frame_rate.expect("FRAME-RATE") > 0.0);
        let codecs = variant.codecs.clone().expect("CODECS");
        assert!(codecs.starts_with("avc1."), "{codecs}");

        let rung_dir = hls.join(variant.uri.trim_end_matches("/index.m3u8"));
        let playlist = media_playlist(&hls.join(&variant.uri));
        assert!(playlist.end_list, "VOD playlists end with EXT-X-ENDLIST");
        let total: f64 = playlist
            .segments
            .iter()
            .map(|s| f64::from(s.duration))
            .sum();
        assert!(
            (total - source_seconds).abs() < 0.2,
            "durations match the source: {total} vs {source_seconds}"
        );

        // Times relative to the first frame: the muxer may shift the start (audio priming).
        let joined = joined_rung(&rung_dir, &playlist);
        let keyframes = keyframe_times(joined.path());
        let origin = keyframes.first().copied().unwrap_or(0.0);
        let keyframes: Vec<f64> = keyframes
            .iter()
            .map(|k| ((k - origin) * 1000.0).round() / 1000.0)
            .collect();
        let mut boundary = 0.0;
        for segment in &playlist.segments {
            assert!(
                keyframes.iter().any(|k| (k - boundary).abs() < 0.02),
                "segment starting at {boundary} s starts on a keyframe ({keyframes:?})"
            );
            boundary += f64::from(segment.duration);
        }
        let probe = ffprobe(joined.path(), &["-show_streams"]);
        let video_stream = probe["streams"]
            .as_array()
            .expect("streams")
            .iter()
            .find(|s| s["codec_type"] == "video")
            .expect("video");
        assert_eq!(
            video_stream["pix_fmt"], "yuv420p",
            "browsers need 8-bit 4:2:0"
        );
        // CODECS names the profile that was really encoded (ultrafast yields Constrained Baseline).
        let profile_idc = match video_stream["profile"].as_str().unwrap_or("") {
            "Constrained Baseline" | "Baseline" => "42",
            "Main" => "4d",
            "High" => "64",
            other => panic!("unexpected H.264 profile {other}"),
        };
        assert!(
            codecs.starts_with(&format!("avc1.{profile_idc}")),
            "{codecs} vs {}",
            video_stream["profile"]
        );
        let level = video_stream["level"].as_u64().expect("level");
        assert!(
            codecs
                .split(',')
                .next()
                .unwrap_or("")
                .ends_with(&format!("{level:02x}")),
            "{codecs} level {level}"
        );
        all_keyframes.push(keyframes);
    }
    assert!(
        all_keyframes.windows(2).all(|w| w[0] == w[1]),
        "keyframes at the same times in every rung: {all_keyframes:?}"
    );
    assert!(
        std::fs::read(hls.join("poster.jpg"))
            .expect("poster")
            .starts_with(&[0xFF, 0xD8]),
        "poster is a JPEG"
    );
    video["renditions"].as_array().expect("renditions").clone()
}

#[tokio::test]
async fn a_raw_upload_streams_progress_until_ready_and_publishes_an_aligned_ladder() {
    let app = TestApp::spawn(&[]);
    let accepted = app.upload(&fixtures::standard()).await;
    // The 202 is the video as it is when answered: an idle encoder may already have it.
    assert!(
        ["queued", "processing"].contains(&accepted["status"].as_str().unwrap_or("")),
        "{accepted}"
    );
    let id = accepted["id"].as_str().expect("id").to_owned();
    assert_eq!(accepted["links"]["self"], format!("/api/v1/videos/{id}"));

    let events = app.events(&id, None, |_| false).await;
    assert_eq!(events.last().map(|e| e.event.as_str()), Some("ready"));

    let renditions = assert_valid_ladder(&app, &id, 640, 360, 3.0).await;
    let names: Vec<&str> = renditions
        .iter()
        .map(|r| r["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["240p", "360p"]);
    let video = app.video(&id).await;
    assert_eq!(video["progress"], 1.0);
    assert_eq!(video["source"]["width"], 640);
    assert_eq!(video["source"]["audio_codec"], "aac");
    assert!(
        renditions
            .iter()
            .all(|r| r["codecs"].as_str().unwrap_or("").contains("mp4a.40.2"))
    );

    // reel serves the ladder itself when no nginx is in front.
    let master = app
        .client
        .get(app.url(&format!("/hls/{id}/master.m3u8")))
        .send()
        .await
        .expect("master");
    assert_eq!(master.status(), 200);
    assert_eq!(
        master.headers()["content-type"],
        "application/vnd.apple.mpegurl"
    );
    let segment = app
        .client
        .get(app.url(&format!("/hls/{id}/360p/seg_00000.m4s")))
        .header("Range", "bytes=0-99")
        .send()
        .await
        .expect("segment");
    assert_eq!(segment.status(), 206);
    assert_eq!(segment.headers()["content-type"], "video/iso.segment");
    assert_eq!(segment.bytes().await.expect("body").len(), 100);
    // The job's work folder goes just after the `ready` commit.
    crate::helpers::wait_until(
        "nothing left in tmp/",
        crate::helpers::DEADLINE,
        async || app.files_in("tmp").is_empty(),
    )
    .await;
}

#[tokio::test]
async fn a_multipart_upload_keeps_its_title_and_file_name() {
    let app = TestApp::spawn(&[]);
    let bytes = std::fs::read(fixtures::silent()).expect("fixture");
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(bytes)
                .file_name("My Holiday.mp4")
                .mime_str("video/mp4")
                .expect("mime"),
        )
        .text("title", "Holiday ☀");
    let response = app
        .client
        .post(app.url("/api/v1/videos"))
        .multipart(form)
        .send()
        .await
        .expect("upload");
    assert_eq!(response.status(), 202);
    let location = response.headers()["location"]
        .to_str()
        .expect("location")
        .to_owned();
    let accepted: serde_json::Value = response.json().await.expect("json");
    assert_eq!(
        location,
        format!("/api/v1/videos/{}", accepted["id"].as_str().expect("id"))
    );
    assert_eq!(accepted["title"], "Holiday ☀");
    assert_eq!(accepted["filename"], "My Holiday.mp4");
    let id = accepted["id"].as_str().expect("id");
    let ready = app.wait_for(id, "ready").await;
    assert_eq!(ready["title"], "Holiday ☀");
    assert!(
        app.media.join("sources").join(id).exists(),
        "the source is kept under its id, not its name"
    );
}

#[tokio::test]
async fn the_original_can_be_downloaded_whole_or_by_range() {
    let app = TestApp::spawn(&[]);
    let original = std::fs::read(fixtures::silent()).expect("fixture");
    let id = app.upload_id(&fixtures::silent()).await;
    let url = app.url(&format!("/api/v1/videos/{id}/source"));
    let whole = app.client.get(&url).send().await.expect("download");
    assert_eq!(whole.status(), 200);
    assert!(
        whole.headers()["content-disposition"]
            .to_str()
            .expect("header")
            .contains("attachment")
    );
    assert_eq!(
        whole.bytes().await.expect("body").as_ref(),
        original.as_slice()
    );
    let part = app
        .client
        .get(&url)
        .header("Range", "bytes=10-19")
        .send()
        .await
        .expect("range");
    assert_eq!(part.status(), 206);
    assert_eq!(
        part.bytes().await.expect("body").as_ref(),
        &original[10..20]
    );
}
