//! What a viewer gets from a ready ladder, read the way a player reads it (ffprobe and ffmpeg
//! through the HLS demuxer), compared with the source read independently. Used on every ready
//! ladder of the input and corpus specs.
//!
//! - every rung's displayed aspect (width × SAR / height, rotation applied) within 1.5 % of the
//!   source's displayed aspect;
//! - every rung H.264 4:2:0 8-bit tagged BT.709, video only; the audio, when the source has
//!   some, is one rendition of an `EXT-X-MEDIA` audio group that every variant names (CODECS
//!   listing both codecs), AAC-LC at 44.1 or 48 kHz, ≤ 2 channels, and ffmpeg reading the master
//!   finds it in every variant's program;
//! - for every rung, the audio starts within 0.15 s of the video and ends within 0.25 s of it,
//!   and neither has a hole (0.1 s without a packet);
//! - total EXTINF matches the decoded video and the source's span (earliest start to latest end
//!   of video and real audio);
//! - TARGETDURATION ≥ 1 and ≥ every rounded EXTINF; AVERAGE-BANDWIDTH ≤ BANDWIDTH;
//! - the storyboard's cues cover the video, contiguous, inside their sheets
//!   ([`crate::storyboard`]);
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
    /// The audio stream (ffprobe's `-show_streams`) of the rendition the rung plays with.
    pub audio: Option<Value>,
    /// That rendition's media playlist.
    pub audio_playlist: Option<PathBuf>,
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
    assert_ladder_in(app.media.join("hls").join(id), source, expect).await
}

/// [`assert_ladder`] on a ladder laid out in `hls` as in `hls/<id>` (one fetched from a
/// bucket, say).
pub async fn assert_ladder_in(hls: PathBuf, source: &Path, expect: Expect) -> Vec<Rung> {
    let source = source.to_path_buf();
    match tokio::task::spawn_blocking(move || check(&hls, &source, expect)).await {
        Ok(rungs) => rungs,
        Err(panic) => std::panic::resume_unwind(panic.into_panic()),
    }
}

/// The audio rendition of a master: its playlist path and its ffprobe stream; checks that it is
/// one `EXT-X-MEDIA` group every variant names, and AAC-LC as browsers need it.
fn audio_rendition(hls: &Path, master: &m3u8_rs::MasterPlaylist) -> Option<(PathBuf, Value)> {
    let groups: Vec<&m3u8_rs::AlternativeMedia> = master
        .alternatives
        .iter()
        .filter(|a| a.media_type == m3u8_rs::AlternativeMediaType::Audio)
        .collect();
    if groups.is_empty() {
        for variant in &master.variants {
            assert_eq!(variant.audio, None, "{}: names no audio group", variant.uri);
        }
        return None;
    }
    assert_eq!(groups.len(), 1, "one audio rendition: {groups:?}");
    let group = groups[0];
    assert!(group.default && group.autoselect, "{group:?}");
    let uri = group.uri.as_deref().expect("the audio rendition's URI");
    for variant in &master.variants {
        assert_eq!(
            variant.audio.as_deref(),
            Some(group.group_id.as_str()),
            "{}: names the audio group",
            variant.uri
        );
        let codecs = variant.codecs.as_deref().unwrap_or("");
        assert!(
            codecs.contains("avc1.") && codecs.contains("mp4a.40.2"),
            "{}: CODECS {codecs} lists the video and the audio",
            variant.uri
        );
    }
    let path = hls.join(uri);
    let streams = ffprobe(&path, &["-show_streams"])["streams"]
        .as_array()
        .expect("streams")
        .clone();
    assert_eq!(streams.len(), 1, "{uri}: audio only: {streams:?}");
    let audio = streams[0].clone();
    assert_eq!(audio["codec_type"], "audio", "{uri}");
    assert_eq!(audio["codec_name"], "aac", "{uri}");
    assert_eq!(audio["profile"], "LC", "{uri}");
    let rate = audio["sample_rate"].as_str().unwrap_or("");
    assert!(["44100", "48000"].contains(&rate), "{uri}: {rate} Hz");
    let channels = audio["channels"].as_u64().unwrap_or(0);
    assert!((1..=2).contains(&channels), "{uri}: {channels} channels");
    assert_eq!(
        group.channels.as_deref(),
        Some(channels.to_string().as_str()),
        "{uri}: CHANNELS"
    );
    // ffmpeg's HLS demuxer, reading the master as a player does: every variant's program
    // holds its video and the audio rendition.
    let probe = ffprobe(&hls.join("master.m3u8"), &["-show_programs"]);
    let programs = probe["programs"].as_array().expect("programs");
    assert_eq!(
        programs.len(),
        master.variants.len(),
        "one program per variant"
    );
    for program in programs {
        let kinds: Vec<&str> = program["streams"]
            .as_array()
            .expect("program streams")
            .iter()
            .filter_map(|s| s["codec_type"].as_str())
            .collect();
        assert!(
            kinds.contains(&"video") && kinds.contains(&"audio"),
            "a variant plays video and audio: {program}"
        );
    }
    Some((path, audio))
}

fn check(hls: &Path, source: &Path, expect: Expect) -> Vec<Rung> {
    let (source_aspect, source_span) = source_facts(source);
    let master = match m3u8_rs::parse_playlist_res(
        &std::fs::read(hls.join("master.m3u8")).expect("master playlist"),
    ) {
        Ok(Playlist::MasterPlaylist(master)) => master,
        other => panic!("not a master playlist: {other:?}"),
    };
    let rendition = audio_rendition(hls, &master);
    let audio_times = rendition.as_ref().map(|(path, _)| {
        let times = packet_times(path);
        assert_eq!(times.len(), 1, "{}: one stream", path.display());
        let times = times.into_values().next().unwrap_or_default();
        let hole = largest_hole(&times);
        assert!(
            hole <= HOLE_TOLERANCE,
            "{}: a {hole:.3} s hole in the audio",
            path.display()
        );
        let start = times.iter().map(|t| t.0).fold(f64::INFINITY, f64::min);
        let end = times.iter().map(|t| t.1).fold(f64::NEG_INFINITY, f64::max);
        (start, end)
    });
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
        assert_eq!(streams.len(), 1, "{label}: the rung is video only");
        let aspect = displayed_aspect(&video);
        assert!(
            (aspect / source_aspect - 1.0).abs() <= ASPECT_TOLERANCE,
            "{label}: displayed aspect {aspect:.4}, source {source_aspect:.4}"
        );

        let times = packet_times(&path);
        let index = video["index"].as_u64().expect("index");
        let (video_start, video_end) = packet_extents(&path)[&index];
        let hole = largest_hole(&times[&index]);
        assert!(
            hole <= HOLE_TOLERANCE,
            "{label}: a {hole:.3} s hole in the video"
        );
        if let Some((audio_start, audio_end)) = audio_times {
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
            audio: rendition.as_ref().map(|(_, audio)| audio.clone()),
            audio_playlist: rendition.as_ref().map(|(path, _)| path.clone()),
        });
    }
    rungs.sort_by_key(|r| r.width * r.height);
    if let Some(top) = rungs.last() {
        crate::storyboard::assert_storyboard(hls, top.extinf_total);
    }
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
