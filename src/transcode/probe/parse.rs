//! ffprobe's `-show_format -show_streams` JSON, read leniently: phone files carry data streams,
//! side data and odd fields, and numbers sometimes arrive as strings.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

use super::{
    AudioStream, ColourTags, FieldOrder, Probe, ProbeError, Rational, Timeline, VideoStream,
};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawProbe {
    streams: Vec<RawStream>,
    format: RawFormat,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawFormat {
    format_name: Option<String>,
    duration: Option<Value>,
    start_time: Option<Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawStream {
    index: Option<Value>,
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<Value>,
    height: Option<Value>,
    sample_aspect_ratio: Option<String>,
    pix_fmt: Option<String>,
    field_order: Option<String>,
    color_space: Option<String>,
    color_transfer: Option<String>,
    color_primaries: Option<String>,
    color_range: Option<String>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    sample_rate: Option<Value>,
    channels: Option<Value>,
    start_time: Option<Value>,
    duration: Option<Value>,
    tags: HashMap<String, Value>,
    side_data_list: Vec<HashMap<String, Value>>,
    disposition: HashMap<String, Value>,
}

/// A number that ffprobe may write as a JSON number or a string (`"N/A"` is none).
pub(super) fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|n: &f64| n.is_finite())
}

fn seconds(value: &Option<Value>) -> Option<f64> {
    value.as_ref().and_then(number)
}

/// A tag as ffprobe spells it, `None` when absent or `unknown`/`unspecified`.
fn tag(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|t| !t.is_empty() && !matches!(*t, "unknown" | "unspecified" | "reserved"))
        .map(str::to_owned)
}

impl RawStream {
    fn is_cover_art(&self) -> bool {
        self.disposition
            .get("attached_pic")
            .and_then(number)
            .unwrap_or(0.0)
            > 0.0
    }

    fn rotation(&self) -> u32 {
        let from_side_data = self
            .side_data_list
            .iter()
            .find_map(|side| side.get("rotation").and_then(number));
        let from_tag = self.tags.get("rotate").and_then(number);
        let degrees = from_side_data.or(from_tag).unwrap_or(0.0).round() as i64;
        // Display matrices count counter-clockwise, the rotate tag clockwise; for size, only 90 vs 180 matters.
        u32::try_from(degrees.rem_euclid(360) / 90 * 90).unwrap_or(0)
    }

    /// Pixel aspect: `None` for square or unknown (`0:1`, `N/A`) pixels, and for values no real
    /// camera or disc uses (outside 1:4 to 4:1), which are more likely damage than intent.
    fn sample_aspect(&self) -> Option<Rational> {
        let sar = Rational::parse(&self.sample_aspect_ratio.as_deref()?.replace(':', "/"))?;
        let value = sar.as_f64();
        (sar.num != sar.den && (0.25..=4.0).contains(&value)).then_some(sar)
    }

    fn absolute_index(&self, position: usize) -> usize {
        self.index
            .as_ref()
            .and_then(number)
            .and_then(|n| usize::try_from(n as i64).ok())
            .unwrap_or(position)
    }
}

/// Parses ffprobe's `-show_format -show_streams` JSON.
///
/// The result's `duration` is what the container declares (0 when it declares nothing); the
/// measured timeline comes later, from the packets.
pub fn parse(json: &[u8]) -> Result<Probe, ProbeError> {
    let raw: RawProbe =
        serde_json::from_slice(json).map_err(|e| ProbeError::Unreadable(e.to_string()))?;
    let kind = |s: &RawStream, k: &str| s.codec_type.as_deref() == Some(k);
    let videos: Vec<(usize, &RawStream)> = raw
        .streams
        .iter()
        .enumerate()
        .filter(|(_, s)| kind(s, "video") && !s.is_cover_art())
        .collect();
    // Index among all video streams (cover art included), as ffmpeg's `0:v:N` counts them.
    let video_index = raw
        .streams
        .iter()
        .filter(|s| kind(s, "video"))
        .position(|s| !s.is_cover_art())
        .ok_or(ProbeError::NoVideo)?;
    let (position, stream) = *videos.first().ok_or(ProbeError::NoVideo)?;
    let size = |v: &Option<Value>| {
        v.as_ref()
            .and_then(number)
            .map(|n| n as i64)
            .filter(|&n| n > 0 && n <= 65_536)
    };
    let (Some(width), Some(height)) = (size(&stream.width), size(&stream.height)) else {
        return Err(ProbeError::NoSize);
    };
    let frame_rate = stream
        .avg_frame_rate
        .as_deref()
        .and_then(Rational::parse)
        .or_else(|| stream.r_frame_rate.as_deref().and_then(Rational::parse));
    let video = VideoStream {
        index: video_index,
        stream_index: stream.absolute_index(position),
        codec: stream
            .codec_name
            .clone()
            .unwrap_or_else(|| "unknown".into()),
        coded_width: u32::try_from(width).unwrap_or(0),
        coded_height: u32::try_from(height).unwrap_or(0),
        sample_aspect: stream.sample_aspect(),
        rotation: stream.rotation(),
        pix_fmt: stream.pix_fmt.clone(),
        frame_rate,
        field_order: FieldOrder::from_ffprobe(stream.field_order.as_deref()),
        colour: ColourTags {
            matrix: tag(&stream.color_space),
            primaries: tag(&stream.color_primaries),
            transfer: tag(&stream.color_transfer),
            range: tag(&stream.color_range),
        },
        start: seconds(&stream.start_time),
        declared_duration: seconds(&stream.duration).filter(|d| *d > 0.0),
    };
    let audio = raw
        .streams
        .iter()
        .enumerate()
        .filter(|(_, s)| kind(s, "audio"))
        .enumerate()
        .find(|(_, (_, s))| {
            s.codec_name.is_some() && s.channels.as_ref().and_then(number) != Some(0.0)
        })
        .map(|(index, (position, s))| AudioStream {
            index,
            stream_index: s.absolute_index(position),
            codec: s.codec_name.clone().unwrap_or_default(),
            sample_rate: s
                .sample_rate
                .as_ref()
                .and_then(number)
                .map(|r| r as u32)
                .filter(|r| *r > 0),
            channels: s
                .channels
                .as_ref()
                .and_then(number)
                .map(|c| c as u32)
                .filter(|c| *c > 0),
            start: seconds(&s.start_time),
            declared_duration: seconds(&s.duration).filter(|d| *d > 0.0),
        });
    let declared = seconds(&raw.format.duration).filter(|d| *d > 0.0);
    Ok(Probe {
        duration: declared.unwrap_or(0.0),
        declared_duration: declared,
        start: seconds(&raw.format.start_time).unwrap_or(0.0),
        format: raw.format.format_name.unwrap_or_default(),
        video,
        audio,
        video_stream_count: videos.len(),
        stream_count: raw.streams.len(),
        timeline: Timeline::default(),
        document: None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::Dynamic;
    use super::*;

    pub(crate) const PHONE: &str = r#"{
      "streams": [
        {"index":0,"codec_name":"hevc","codec_type":"video","width":3840,"height":2160,"pix_fmt":"yuv420p10le",
         "color_transfer":"arib-std-b67","color_primaries":"bt2020","avg_frame_rate":"30000/1001","r_frame_rate":"30/1",
         "side_data_list":[{"side_data_type":"Display Matrix","displaymatrix":"\n0 65536 0\n","rotation":-90}],
         "disposition":{"default":1,"attached_pic":0},"tags":{"creation_time":"2024-01-01T00:00:00Z"}},
        {"index":1,"codec_name":"aac","codec_type":"audio","sample_rate":"48000","channels":2},
        {"index":2,"codec_type":"data","codec_tag_string":"mebx","tags":{"handler_name":"Core Media Metadata"}},
        {"index":3,"codec_name":"mjpeg","codec_type":"video","width":512,"height":512,"disposition":{"attached_pic":1}}
      ],
      "format": {"format_name":"mov,mp4,m4a,3gp,3g2,mj2","duration":"12.345000","size":"1000","tags":{"com.apple.quicktime.make":"Apple"}}
    }"#;

    #[test]
    fn reads_a_rotated_hdr_phone_clip() {
        let probe = parse(PHONE.as_bytes()).unwrap();
        assert_eq!(probe.video.display_size(), (2160, 3840));
        assert_eq!(probe.video.rotation, 270);
        assert_eq!(probe.video.dynamic(), Dynamic::Hlg);
        assert_eq!(
            probe.video.frame_rate,
            Some(Rational {
                num: 30000,
                den: 1001
            })
        );
        let audio = probe.audio.as_ref().unwrap();
        assert_eq!((audio.codec.as_str(), audio.stream_index), ("aac", 1));
        assert_eq!((audio.sample_rate, audio.channels), (Some(48000), Some(2)));
        assert!((probe.duration - 12.345).abs() < 1e-9);
        assert_eq!(
            probe.video_stream_count, 1,
            "cover art is not a video stream"
        );
        assert_eq!(probe.stream_count, 4);
    }

    #[test]
    fn cover_art_first_does_not_hide_the_real_video() {
        let json = r#"{"streams":[
            {"codec_type":"video","codec_name":"png","width":300,"height":300,"disposition":{"attached_pic":1}},
            {"codec_type":"video","codec_name":"h264","width":"640","height":"360","avg_frame_rate":"0/0","r_frame_rate":"25/1","tags":{"rotate":"90"}}],
          "format":{"duration":3}}"#;
        let probe = parse(json.as_bytes()).unwrap();
        assert_eq!((probe.video.index, probe.video.stream_index), (1, 1));
        assert_eq!(probe.video.display_size(), (360, 640));
        assert_eq!(probe.video.frame_rate, Some(Rational { num: 25, den: 1 }));
        assert!(probe.audio.is_none());
    }

    #[test]
    fn anamorphic_pixels_interlace_and_colour_tags_are_read() {
        let json = r#"{"streams":[
            {"index":0,"codec_type":"video","codec_name":"mpeg2video","width":720,"height":576,
             "sample_aspect_ratio":"64:45","field_order":"tb","color_space":"unknown","color_range":"tv"},
            {"index":1,"codec_type":"audio","codec_name":"ac3","channels":0},
            {"index":2,"codec_type":"audio","codec_name":"ac3","channels":6,"sample_rate":"48000","start_time":"0.5"}],
          "format":{"duration":"5.0","start_time":"0.48"}}"#;
        let probe = parse(json.as_bytes()).unwrap();
        assert_eq!(probe.video.display_size(), (1024, 576));
        assert_eq!(probe.video.field_order, FieldOrder::BottomFirst);
        assert_eq!(probe.video.colour.matrix, None, "unknown is no tag");
        assert_eq!(probe.video.colour.range.as_deref(), Some("tv"));
        let audio = probe.audio.unwrap();
        assert_eq!(
            (audio.index, audio.stream_index),
            (1, 2),
            "no channels, no audio"
        );
        assert_eq!(audio.start, Some(0.5));
        assert_eq!(probe.start, 0.48);
        let square = r#"{"streams":[{"codec_type":"video","width":64,"height":64,"sample_aspect_ratio":"1:1"}],"format":{}}"#;
        assert_eq!(parse(square.as_bytes()).unwrap().video.sample_aspect, None);
        let absurd = r#"{"streams":[{"codec_type":"video","width":64,"height":64,"sample_aspect_ratio":"1000:1"}],"format":{}}"#;
        assert_eq!(parse(absurd.as_bytes()).unwrap().video.sample_aspect, None);
    }

    #[test]
    fn audio_only_and_broken_output_are_clear_errors() {
        let audio_only = r#"{"streams":[{"codec_type":"audio","codec_name":"mp3"}],"format":{"duration":"3.0"}}"#;
        assert!(matches!(
            parse(audio_only.as_bytes()),
            Err(ProbeError::NoVideo)
        ));
        assert!(matches!(parse(b"{}"), Err(ProbeError::NoVideo)));
        assert!(matches!(parse(b"not json"), Err(ProbeError::Unreadable(_))));
        let no_size = r#"{"streams":[{"codec_type":"video","width":0}],"format":{"duration":"1"}}"#;
        assert!(matches!(parse(no_size.as_bytes()), Err(ProbeError::NoSize)));
    }

    #[test]
    fn an_unknown_duration_is_not_an_error_here() {
        let live = r#"{"streams":[{"codec_type":"video","width":2,"height":2}],"format":{"duration":"N/A"}}"#;
        let probe = parse(live.as_bytes()).unwrap();
        assert_eq!((probe.duration, probe.declared_duration), (0.0, None));
    }

    #[test]
    fn odd_field_types_are_tolerated() {
        let json = r#"{"streams":[{"codec_type":"video","width":640.0,"height":360,"side_data_list":[{"rotation":"x"}],
            "disposition":"weird","tags":[]}],"format":{"duration":2.5,"extra":{"a":[1,2]}}}"#;
        // Wrong container types for optional maps are an unreadable probe, not a panic.
        let _ = parse(json.as_bytes());
        let json = r#"{"streams":[{"codec_type":"video","width":640.0,"height":360,"side_data_list":[{"rotation":"x"}]}],
            "format":{"duration":2.5,"extra":{"a":[1,2]}}}"#;
        let probe = parse(json.as_bytes()).unwrap();
        assert_eq!(probe.video.rotation, 0);
        assert_eq!(probe.video.frame_rate, None);
    }
}
