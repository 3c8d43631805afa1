//! What the one ffmpeg of a job must do, decided from the probe: pure, no I/O.
//!
//! - rungs on the displayed size (pixel aspect, then rotation);
//! - pictures made progressive (`bwdif`, before any scaling) and BT.709 ([`colour`]);
//! - one timeline for every rung: from the earliest start to the latest end of the video and the
//!   audio, the shorter one padded (held frames, silence), holes filled ([`filters`]);
//! - audio as AAC-LC, 48 kHz (44.1 kHz kept), mono or stereo (5.1 and wider downmixed), encoded
//!   once for every rung (one `EXT-X-MEDIA` audio rendition, RFC 8216 §4.3.4.1);
//! - a storyboard of thumbnails from the same decode ([`storyboard`]).

pub mod colour;
pub mod filters;
pub mod storyboard;

use std::path::PathBuf;

use super::Settings;
use super::ladder::{self, PlannedRung};
use super::probe::{FieldOrder, Probe, Rational};

/// `GROUP-ID` of the audio rendition every rung names (RFC 8216 §4.3.4.1), and the folder and
/// name of that rendition inside the ladder.
pub const AUDIO_GROUP: &str = "audio";
pub const AUDIO_RENDITION: &str = "audio";

/// Everything needed to write the ladder of one source.
#[derive(Debug, Clone, PartialEq)]
pub struct EncodePlan {
    pub source: PathBuf,
    pub out_dir: PathBuf,
    pub rungs: Vec<PlannedRung>,
    pub frame_rate: Rational,
    /// `0:v:N`.
    pub video_index: usize,
    pub field_order: FieldOrder,
    /// Colour filters to BT.709 (`zscale=…,format=yuv420p`), empty when none are needed.
    pub colour: String,
    pub audio: Option<AudioPlan>,
    pub audio_kbps: u32,
    /// Seconds from ffmpeg's zero (the container's start) to the output's first instant.
    pub offset: f64,
    /// Seconds the output lasts: every rung, video and audio.
    pub duration: f64,
    /// Where the source's own pictures are: (seconds from ffmpeg's zero, seconds long).
    pub pictures: (f64, f64),
    pub segment_seconds: u32,
    pub preset: String,
    /// Thumbnail sheets, from a branch of the lowest rung.
    pub storyboard: storyboard::Storyboard,
}

/// The audio of every rung.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioPlan {
    /// `0:a:N`.
    pub index: usize,
    /// Hz: 48 000, or 44 100 for a 44.1 kHz source.
    pub sample_rate: u32,
    /// 1 (mono source) or 2.
    pub channels: u32,
}

/// Output frame rate: the source's own, capped at 60, 30 when unknown.
pub fn output_frame_rate(probe: &Probe) -> Rational {
    match probe.video.frame_rate {
        Some(rate) if rate.as_f64() <= 60.5 && rate.as_f64() >= 1.0 => rate,
        Some(rate) if rate.as_f64() > 60.5 => Rational { num: 60, den: 1 },
        _ => Rational { num: 30, den: 1 },
    }
}

/// The audio format of the rungs for a source with `sample_rate` Hz and `channels`.
pub fn audio_format(sample_rate: Option<u32>, channels: Option<u32>) -> (u32, u32) {
    let rate = if sample_rate == Some(44_100) {
        44_100
    } else {
        48_000
    };
    (rate, if channels == Some(1) { 1 } else { 2 })
}

/// Plans the encode of a probed (and measured) source.
pub fn build(probe: &Probe, settings: &Settings, source: PathBuf, out_dir: PathBuf) -> EncodePlan {
    let (width, height) = probe.video.display_size();
    let span = probe.timeline.span();
    let audio = probe.audio.as_ref().map(|stream| {
        let (sample_rate, channels) = audio_format(stream.sample_rate, stream.channels);
        AudioPlan {
            index: stream.index,
            sample_rate,
            channels,
        }
    });
    let rungs = ladder::plan(width, height, &settings.ladder);
    let frame_rate = output_frame_rate(probe);
    let (low_w, low_h) = rungs
        .first()
        .map_or((width, height), |r| (r.width, r.height));
    EncodePlan {
        source,
        out_dir,
        storyboard: storyboard::plan(probe.duration, frame_rate, low_w, low_h),
        rungs,
        frame_rate,
        video_index: probe.video.index,
        field_order: probe.video.field_order,
        colour: colour::to_bt709(&probe.video),
        audio,
        audio_kbps: settings.audio_kbps,
        offset: (span.start - probe.start).max(0.0),
        duration: probe.duration,
        pictures: (
            (probe.timeline.video.start - probe.start).max(0.0),
            probe.timeline.video.end - probe.timeline.video.start,
        ),
        segment_seconds: settings.segment_seconds,
        preset: settings.preset.clone(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::transcode::probe::{measure, parse};

    fn settings() -> Settings {
        Settings {
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            ladder: ladder::parse_ladder("1080:5000,720:2800,480:1400,360:800,240:400").unwrap(),
            audio_kbps: 128,
            preset: "veryfast".into(),
            segment_seconds: 4,
            stall_timeout: std::time::Duration::from_secs(60),
            nice: 10,
            limits: crate::transcode::probe::InputLimits {
                max_duration: 1e9,
                max_width: 8192,
                max_height: 8192,
                max_pixels: u64::MAX,
                max_frame_rate: 240.0,
                max_streams: 32,
            },
            min_free_bytes: 0,
            lease: std::time::Duration::from_secs(60),
            properties: Default::default(),
        }
    }

    #[test]
    fn a_16_by_9_dvd_is_planned_on_its_displayed_size() {
        let json = r#"{"streams":[
            {"index":0,"codec_type":"video","codec_name":"mpeg2video","width":720,"height":576,"sample_aspect_ratio":"64:45",
             "avg_frame_rate":"25/1","field_order":"tt","start_time":"0.54"},
            {"index":1,"codec_type":"audio","codec_name":"ac3","channels":6,"sample_rate":"96000","start_time":"0.5347"}],
          "format":{"duration":"5.005","start_time":"0.5347"}}"#;
        let mut probe = parse(json.as_bytes()).unwrap();
        measure(&mut probe, &HashMap::from([(0, 5.54), (1, 5.46)])).unwrap();
        let plan = build(&probe, &settings(), "s".into(), "o".into());
        let sizes: Vec<_> = plan.rungs.iter().map(|r| (r.width, r.height)).collect();
        assert_eq!(sizes, [(426, 240), (640, 360), (854, 480)]);
        assert_eq!(plan.field_order, FieldOrder::TopFirst);
        assert!(plan.colour.contains("min=bt470bg"), "{}", plan.colour);
        assert_eq!(
            plan.audio,
            Some(AudioPlan {
                index: 0,
                sample_rate: 48_000,
                channels: 2
            })
        );
        assert!(plan.offset.abs() < 1e-9 && (plan.duration - 5.0053).abs() < 1e-9);
    }

    #[test]
    fn audio_keeps_44_1_khz_and_mono() {
        assert_eq!(audio_format(Some(44_100), Some(1)), (44_100, 1));
        assert_eq!(audio_format(Some(8_000), Some(1)), (48_000, 1));
        assert_eq!(audio_format(Some(96_000), Some(6)), (48_000, 2));
        assert_eq!(audio_format(None, None), (48_000, 2));
    }
}
