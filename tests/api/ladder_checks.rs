//! What a viewer gets from a ready ladder, read the way a player reads it (ffprobe and ffmpeg
//! through the HLS demuxer), compared with the source read independently. Used on every ready
//! ladder of the input and corpus specs.
//!
//! - every rung's displayed aspect (width × SAR / height, rotation applied) within 1.5 % of the
//!   source's displayed aspect;
//! - every rung H.264 4:2:0 8-bit tagged BT.709; audio AAC-LC at 44.1 or 48 kHz, ≤ 2 channels;
//! - in every rung, audio starts within 0.15 s of the video and ends within 0.25 s of it, and
//!   neither has a hole (0.1 s without a packet);
//! - total EXTINF matches the decoded video and the source's span (earliest start to latest end
//!   of video and real audio);
//! - TARGETDURATION ≥ 1 and ≥ every rounded EXTINF; AVERAGE-BANDWIDTH ≤ BANDWIDTH;
//! - for an interlaced source, `idet` over the top rung finds (almost: at most 10 % of decided
//!   frames, the first ones of a short clip) only progressive frames.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use m3u8_rs::Playlist;
use serde_json::Value;

use crate::helpers::{TestApp, ffprobe};

pub const ASPECT_TOLERANCE: f64 = 0.015;
pub const AUDIO_START_TOLERANCE: f64 = 0.15;
pub const AUDIO_END_TOLERANCE: f64 = 0.25;
/// The longest stretch of a rung's audio or video that no packet may leave uncovered, seconds.
pub const HOLE_TOLERANCE: f64 = 0.1;

/// What the checks need to know beyond the files.
#[derive(Debug, Clone, Copy, Default)]
pub struct Expect {
    /// The source is interlaced (flagged or not): run `idet` on the top rung.
    pub interlaced: bool,
}

/// One rung as a player sees it.
#[derive(Debug, Clone)]
pub struct Rung {
    pub name: String,
    pub playlist: PathBuf,
    pub width: u64,
    pub height: u64,
    pub extinf_total: f64,
    pub audio: Option<Value>,
}

fn text(value: &Value) -> Option<f64> {
    match value {
        Value::String(s) => s.parse().ok(),
        Value::Number(n) => n.as_f64(),
        _ => None,
    }
}

fn ratio(text: Option<&str>) -> f64 {
    text.and_then(|t| t.split_once(':'))
        .and_then(|(n, d)| Some((n.parse::<f64>().ok()?, d.parse::<f64>().ok()?)))
        .filter(|(n, d)| *n > 0.0 && *d > 0.0)
        .map_or(1.0, |(n, d)| n / d)
}

fn rotation(stream: &Value) -> i64 {
    let side = stream["side_data_list"]
        .as_array()
        .and_then(|list| list.iter().find_map(|s| text(&s["rotation"])));
    let tag = text(&stream["tags"]["rotate"]);
    side.or(tag).unwrap_or(0.0).round() as i64
}

/// Displayed aspect of a stream from ffprobe's `-show_streams`: width × SAR / height, rotated.
pub fn displayed_aspect(stream: &Value) -> f64 {
    let width = stream["width"].as_f64().expect("width");
    let height = stream["height"].as_f64().expect("height");
    let aspect = width * ratio(stream["sample_aspect_ratio"].as_str()) / height;
    if rotation(stream).rem_euclid(180) == 90 {
        1.0 / aspect
    } else {
        aspect
    }
}

/// Per stream index: (first timestamp, last timestamp + duration), from every packet.
pub fn packet_extents(path: &Path) -> HashMap<u64, (f64, f64)> {
    packet_times(path)
        .into_iter()
        .map(|(index, times)| {
            let start = times.iter().map(|t| t.0).fold(f64::INFINITY, f64::min);
            let end = times.iter().map(|t| t.1).fold(f64::NEG_INFINITY, f64::max);
            (index, (start, end))
        })
        .collect()
}

/// Per stream index: every packet's (start, end), in presentation order.
pub fn packet_times(path: &Path) -> HashMap<u64, Vec<(f64, f64)>> {
    let packets = ffprobe(
        path,
        &[
            "-show_entries",
            "packet=stream_index,pts_time,dts_time,duration_time",
        ],
    );
    let mut times: HashMap<u64, Vec<(f64, f64)>> = HashMap::new();
    for packet in packets["packets"].as_array().into_iter().flatten() {
        let index = packet["stream_index"].as_u64().expect("stream_index");
        let Some(at) = text(&packet["pts_time"]).or_else(|| text(&packet["dts_time"])) else {
            continue;
        };
        let end = at + text(&packet["duration_time"]).unwrap_or(0.0);
        times.entry(index).or_default().push((at, end));
    }
    for list in times.values_mut() {
        list.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    times
}

/// The longest stretch, seconds, that no packet of a stream covers between its first and last.
pub fn largest_hole(times: &[(f64, f64)]) -> f64 {
    let mut covered = f64::NEG_INFINITY;
    let mut hole = 0.0f64;
    for (start, end) in times {
        if covered > f64::NEG_INFINITY {
            hole = hole.max(start - covered);
        }
        covered = covered.max(*end);
    }
    hole
}

/// The source's displayed aspect and span (seconds), read with ffprobe alone.
pub fn source_facts(source: &Path) -> (f64, f64) {
    let probe = ffprobe(source, &["-show_streams"]);
    let streams = probe["streams"].as_array().expect("streams").clone();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video" && s["disposition"]["attached_pic"] != 1)
        .expect("a video stream");
    let audio = streams
        .iter()
        .find(|s| s["codec_type"] == "audio" && s["channels"].as_u64().unwrap_or(0) > 0);
    let extents = packet_extents(source);
    let index = |s: &Value| s["index"].as_u64().expect("index");
    let video_extent = extents[&index(video)];
    let audio_extent = audio
        .and_then(|a| extents.get(&index(a)).copied())
        .filter(|(start, end)| end - start >= 0.1);
    let (start, end) = audio_extent.map_or(video_extent, |a| {
        (video_extent.0.min(a.0), video_extent.1.max(a.1))
    });
    (displayed_aspect(video), end - start)
}

fn media_playlist(path: &Path) -> m3u8_rs::MediaPlaylist {
    match m3u8_rs::parse_playlist_res(&std::fs::read(path).expect("read playlist")) {
        Ok(Playlist::MediaPlaylist(playlist)) => playlist,
        other => panic!("{} is not a media playlist: {other:?}", path.display()),
    }
}

/// `idet`'s multi-frame counts (TFF + BFF, progressive) over a playlist's video.
pub fn idet(playlist: &Path) -> (u64, u64) {
    let output = Command::new("ffmpeg")
        .args(["-hide_banner", "-nostdin", "-i"])
        .arg(playlist)
        .args(["-map", "0:v:0", "-vf", "idet", "-an", "-f", "null", "-"])
        .output()
        .expect("ffmpeg");
    let log = String::from_utf8_lossy(&output.stderr);
    let line = log
        .lines()
        .rev()
        .find(|l| l.contains("Multi frame detection:"))
        .unwrap_or_else(|| panic!("no idet summary for {}: {log}", playlist.display()));
    let count = |key: &str| -> u64 {
        line.split(key)
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .expect("idet count")
    };
    (count("TFF:") + count("BFF:"), count("Progressive:"))
}

/// Runs every check on the ready ladder of `id` made from `source`; returns its rungs, lowest
/// first. Panics with what a viewer would get wrong.
///
/// The checks run ffprobe and ffmpeg for seconds: they run on a blocking thread, so the test's
/// runtime keeps serving its HTTP connections (an idle pooled connection that the server closed
/// meanwhile would otherwise fail the next request).
pub async fn assert_ladder(app: &TestApp, id: &str, source: &Path, expect: Expect) -> Vec<Rung> {
    let hls = app.media.join("hls").join(id);
    let source = source.to_path_buf();
    match tokio::task::spawn_blocking(move || check(&hls, &source, expect)).await {
        Ok(rungs) => rungs,
        Err(panic) => std::panic::resume_unwind(panic.into_panic()),
    }
}

fn check(hls: &Path, source: &Path, expect: Expect) -> Vec<Rung> {
    let (source_aspect, source_span) = source_facts(source);
    let master = match m3u8_rs::parse_playlist_res(
        &std::fs::read(hls.join("master.m3u8")).expect("master playlist"),
    ) {
        Ok(Playlist::MasterPlaylist(master)) => master,
        other => panic!("not a master playlist: {other:?}"),
    };
    let mut rungs = Vec::new();
    // Checked last, so that a wrong shape or timeline is what a failure reports first.
    let mut tags = Vec::new();
    for variant in &master.variants {
        let label = format!("{} ({})", variant.uri, source.display());
        let average = variant.average_bandwidth.expect("AVERAGE-BANDWIDTH");
        assert!(
            average <= variant.bandwidth,
            "{label}: AVERAGE-BANDWIDTH {average} > BANDWIDTH {}",
            variant.bandwidth
        );
        let path = hls.join(&variant.uri);
        let playlist = media_playlist(&path);
        assert!(playlist.target_duration >= 1, "{label}: TARGETDURATION 0");
        let durations: Vec<f64> = playlist
            .segments
            .iter()
            .map(|s| f64::from(s.duration))
            .collect();
        for duration in &durations {
            assert!(
                duration.round() as u64 <= playlist.target_duration,
                "{label}: EXTINF {duration} above TARGETDURATION {}",
                playlist.target_duration
            );
        }
        let extinf_total: f64 = durations.iter().sum();

        let streams = ffprobe(&path, &["-show_streams"])["streams"]
            .as_array()
            .expect("streams")
            .clone();
        let video = streams
            .iter()
            .find(|s| s["codec_type"] == "video")
            .unwrap_or_else(|| panic!("{label}: no video"))
            .clone();
        let audio = streams.iter().find(|s| s["codec_type"] == "audio").cloned();
        let aspect = displayed_aspect(&video);
        assert!(
            (aspect / source_aspect - 1.0).abs() <= ASPECT_TOLERANCE,
            "{label}: displayed aspect {aspect:.4}, source {source_aspect:.4}"
        );
        if let Some(audio) = &audio {
            assert_eq!(audio["codec_name"], "aac", "{label}");
            assert_eq!(audio["profile"], "LC", "{label}");
            let rate = audio["sample_rate"].as_str().unwrap_or("");
            assert!(["44100", "48000"].contains(&rate), "{label}: {rate} Hz");
            let channels = audio["channels"].as_u64().unwrap_or(0);
            assert!((1..=2).contains(&channels), "{label}: {channels} channels");
        }

        let times = packet_times(&path);
        let extents = packet_extents(&path);
        let index = |s: &Value| s["index"].as_u64().expect("index");
        let (video_start, video_end) = extents[&index(&video)];
        for stream in std::iter::once(&video).chain(audio.as_ref()) {
            let hole = largest_hole(&times[&index(stream)]);
            assert!(
                hole <= HOLE_TOLERANCE,
                "{label}: a {hole:.3} s hole in the {}",
                stream["codec_type"]
            );
        }
        if let Some(audio) = &audio {
            let (audio_start, audio_end) = extents[&index(audio)];
            assert!(
                (audio_start - video_start).abs() <= AUDIO_START_TOLERANCE,
                "{label}: audio starts at {audio_start:.3}, video at {video_start:.3}"
            );
            assert!(
                (audio_end - video_end).abs() <= AUDIO_END_TOLERANCE,
                "{label}: audio ends at {audio_end:.3}, video at {video_end:.3}"
            );
        }
        let frame = 1.0 / 24.0;
        let decoded = decoded_duration(&path);
        assert!(
            (decoded - extinf_total).abs() <= 0.1 + frame,
            "{label}: EXTINF add up to {extinf_total:.3} s, the video decodes to {decoded:.3} s"
        );
        assert!(
            (extinf_total - source_span).abs() <= 0.25 + frame,
            "{label}: EXTINF add up to {extinf_total:.3} s, the source spans {source_span:.3} s"
        );
        tags.push((label, video.clone()));
        rungs.push(Rung {
            name: variant.uri.trim_end_matches("/index.m3u8").to_owned(),
            playlist: path,
            width: video["width"].as_u64().expect("width"),
            height: video["height"].as_u64().expect("height"),
            extinf_total,
            audio,
        });
    }
    rungs.sort_by_key(|r| r.width * r.height);
    if expect.interlaced {
        let top = rungs.last().expect("a rung");
        let (interlaced, progressive) = idet(&top.playlist);
        assert!(
            interlaced * 10 <= interlaced + progressive && progressive > 0,
            "{}: idet still finds {interlaced} interlaced frames against {progressive}",
            top.name
        );
    }
    for (label, video) in tags {
        assert_eq!(video["codec_name"], "h264", "{label}");
        assert_eq!(video["pix_fmt"], "yuv420p", "{label}");
        for key in ["color_primaries", "color_transfer", "color_space"] {
            assert_eq!(video[key], "bt709", "{label}: {key} in {video}");
        }
    }
    rungs
}

/// Seconds from the first decoded video frame's start to the last one's end.
pub fn decoded_duration(playlist: &Path) -> f64 {
    let frames = ffprobe(
        playlist,
        &[
            "-select_streams",
            "v:0",
            "-show_entries",
            "frame=pts_time,duration_time",
        ],
    );
    let frames = frames["frames"].as_array().expect("frames").clone();
    let times: Vec<(f64, f64)> = frames
        .iter()
        .filter_map(|f| {
            Some((
                text(&f["pts_time"])?,
                text(&f["duration_time"]).unwrap_or(0.0),
            ))
        })
        .collect();
    let first = times.iter().map(|t| t.0).fold(f64::INFINITY, f64::min);
    let last = times.iter().map(|t| t.0 + t.1).fold(0.0, f64::max);
    last - first
}

/// Waits for `id` to be ready and runs [`assert_ladder`]; returns the resource and the rungs.
pub async fn ready_ladder(
    app: &TestApp,
    id: &str,
    source: &Path,
    expect: Expect,
) -> (Value, Vec<Rung>) {
    let video = app.wait_for(id, "ready").await;
    let rungs = assert_ladder(app, id, source, expect).await;
    (video, rungs)
}
