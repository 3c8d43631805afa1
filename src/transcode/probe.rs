//! Runs ffprobe and reads its JSON leniently: phone files carry data streams, side data and
//! odd fields, and numbers sometimes arrive as strings.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

/// A frame rate as ffprobe reports it (`30000/1001`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rational {
    pub num: u32,
    pub den: u32,
}

impl Rational {
    fn parse(text: &str) -> Option<Self> {
        let (num, den) = text.split_once('/')?;
        let rational = Self {
            num: num.trim().parse().ok()?,
            den: den.trim().parse().ok()?,
        };
        (rational.num > 0 && rational.den > 0).then_some(rational)
    }

    pub fn as_f64(self) -> f64 {
        f64::from(self.num) / f64::from(self.den)
    }
}

impl std::fmt::Display for Rational {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.num, self.den)
    }
}

/// High dynamic range transfer of a source, which must be tone-mapped to BT.709.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dynamic {
    Sdr,
    /// BT.2020 primaries with an SDR transfer: converted, not tone-mapped.
    WideGamut,
    /// SMPTE ST 2084 (PQ).
    Pq,
    /// ARIB STD-B67 (HLG).
    Hlg,
}

#[derive(Debug, Clone, PartialEq)]
pub struct VideoStream {
    /// Index among the file's video streams (`0:v:N`).
    pub index: usize,
    pub codec: String,
    /// Coded size, before rotation.
    pub coded_width: u32,
    pub coded_height: u32,
    /// Clockwise degrees, normalised to 0, 90, 180 or 270.
    pub rotation: u32,
    pub pix_fmt: Option<String>,
    pub frame_rate: Option<Rational>,
    pub dynamic: Dynamic,
}

impl VideoStream {
    /// Size as displayed, after rotation.
    pub fn display_size(&self) -> (u32, u32) {
        if self.rotation % 180 == 90 {
            (self.coded_height, self.coded_width)
        } else {
            (self.coded_width, self.coded_height)
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AudioStream {
    pub index: usize,
    pub codec: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub duration: f64,
    pub format: String,
    pub video: VideoStream,
    pub audio: Option<AudioStream>,
    pub video_stream_count: usize,
    pub stream_count: usize,
}

/// What a source may be at most, checked on the probe before anything is decoded (a file that
/// claims a huge picture is refused here, not when ffmpeg tries to allocate it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InputLimits {
    pub max_duration: f64,
    pub max_width: u32,
    pub max_height: u32,
    pub max_pixels: u64,
    pub max_frame_rate: f64,
    pub max_streams: usize,
}

impl InputLimits {
    /// The first limit `probe` exceeds, in words a person can act on.
    pub fn check(&self, probe: &Probe) -> Result<(), String> {
        let (width, height) = probe.video.display_size();
        if probe.duration > self.max_duration {
            return Err(format!(
                "The video lasts {:.0} s; this server accepts at most {:.0} s.",
                probe.duration, self.max_duration
            ));
        }
        let pixels = u64::from(width) * u64::from(height);
        if width > self.max_width || height > self.max_height || pixels > self.max_pixels {
            return Err(format!(
                "The picture is {width}×{height}; this server accepts at most {}×{} and {:.1} megapixels.",
                self.max_width,
                self.max_height,
                self.max_pixels as f64 / 1e6
            ));
        }
        if let Some(rate) = probe.video.frame_rate
            && rate.as_f64() > self.max_frame_rate
        {
            return Err(format!(
                "The video runs at {:.0} frames per second; this server accepts at most {:.0}.",
                rate.as_f64(),
                self.max_frame_rate
            ));
        }
        if probe.stream_count > self.max_streams {
            return Err(format!(
                "The file has {} streams; this server accepts at most {}.",
                probe.stream_count, self.max_streams
            ));
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("ffprobe could not be started ({binary}): {source}")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ffprobe took longer than {0:?}")]
    Timeout(Duration),
    #[error("the file could not be read as a video: {0}")]
    Unreadable(String),
    #[error("the file has no video stream")]
    NoVideo,
    #[error("the video stream has no usable picture size")]
    NoSize,
    #[error("the file's duration is unknown or zero")]
    NoDuration,
}

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
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawStream {
    codec_type: Option<String>,
    codec_name: Option<String>,
    width: Option<Value>,
    height: Option<Value>,
    pix_fmt: Option<String>,
    color_transfer: Option<String>,
    color_primaries: Option<String>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    duration: Option<Value>,
    tags: HashMap<String, Value>,
    side_data_list: Vec<HashMap<String, Value>>,
    disposition: HashMap<String, Value>,
}

/// A number that ffprobe may write as a JSON number or a string.
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|n: &f64| n.is_finite())
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

    fn dynamic(&self) -> Dynamic {
        match (
            self.color_transfer.as_deref(),
            self.color_primaries.as_deref(),
        ) {
            (Some("smpte2084"), _) => Dynamic::Pq,
            (Some("arib-std-b67"), _) => Dynamic::Hlg,
            (_, Some("bt2020")) => Dynamic::WideGamut,
            _ => Dynamic::Sdr,
        }
    }
}

/// Parses ffprobe's `-show_format -show_streams` JSON.
pub fn parse(json: &[u8]) -> Result<Probe, ProbeError> {
    let raw: RawProbe =
        serde_json::from_slice(json).map_err(|e| ProbeError::Unreadable(e.to_string()))?;
    let kind = |s: &RawStream, k: &str| s.codec_type.as_deref() == Some(k);
    let videos: Vec<&RawStream> = raw
        .streams
        .iter()
        .filter(|s| kind(s, "video") && !s.is_cover_art())
        .collect();
    // Index among all video streams (cover art included), as ffmpeg's `0:v:N` counts them.
    let video_index = raw
        .streams
        .iter()
        .filter(|s| kind(s, "video"))
        .position(|s| !s.is_cover_art())
        .ok_or(ProbeError::NoVideo)?;
    let stream = videos.first().ok_or(ProbeError::NoVideo)?;
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
        codec: stream
            .codec_name
            .clone()
            .unwrap_or_else(|| "unknown".into()),
        coded_width: u32::try_from(width).unwrap_or(0),
        coded_height: u32::try_from(height).unwrap_or(0),
        rotation: stream.rotation(),
        pix_fmt: stream.pix_fmt.clone(),
        frame_rate,
        dynamic: stream.dynamic(),
    };
    let audio = raw
        .streams
        .iter()
        .filter(|s| kind(s, "audio"))
        .enumerate()
        .find(|(_, s)| s.codec_name.is_some())
        .map(|(index, s)| AudioStream {
            index,
            codec: s.codec_name.clone().unwrap_or_default(),
        });
    let duration = raw
        .format
        .duration
        .as_ref()
        .and_then(number)
        .or_else(|| stream.duration.as_ref().and_then(number))
        .filter(|d| *d > 0.0)
        .ok_or(ProbeError::NoDuration)?;
    Ok(Probe {
        duration,
        format: raw.format.format_name.unwrap_or_default(),
        video,
        audio,
        video_stream_count: videos.len(),
        stream_count: raw.streams.len(),
    })
}

/// Runs ffprobe on `path` with a timeout; the process is killed if the future is dropped.
pub async fn probe(ffprobe: &Path, path: &Path, timeout: Duration) -> Result<Probe, ProbeError> {
    let output = tokio::process::Command::new(ffprobe)
        .args([
            "-v",
            "error",
            "-print_format",
            "json",
            "-show_format",
            "-show_streams",
        ])
        .arg(path)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(timeout, output)
        .await
        .map_err(|_| ProbeError::Timeout(timeout))?
        .map_err(|source| ProbeError::Spawn {
            binary: ffprobe.display().to_string(),
            source,
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let reason = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("ffprobe failed");
        return Err(ProbeError::Unreadable(
            reason.trim().chars().take(300).collect(),
        ));
    }
    parse(&output.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHONE: &str = r#"{
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
        assert_eq!(probe.video.dynamic, Dynamic::Hlg);
        assert_eq!(
            probe.video.frame_rate,
            Some(Rational {
                num: 30000,
                den: 1001
            })
        );
        assert_eq!(probe.audio.as_ref().map(|a| a.codec.as_str()), Some("aac"));
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
        assert_eq!(probe.video.index, 1);
        assert_eq!(probe.video.display_size(), (360, 640));
        assert_eq!(probe.video.frame_rate, Some(Rational { num: 25, den: 1 }));
        assert!(probe.audio.is_none());
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
        let no_duration = r#"{"streams":[{"codec_type":"video","width":2,"height":2}],"format":{"duration":"N/A"}}"#;
        assert!(matches!(
            parse(no_duration.as_bytes()),
            Err(ProbeError::NoDuration)
        ));
        let no_size = r#"{"streams":[{"codec_type":"video","width":0}],"format":{"duration":"1"}}"#;
        assert!(matches!(parse(no_size.as_bytes()), Err(ProbeError::NoSize)));
    }

    #[test]
    fn limits_refuse_bombs_and_marathons_before_decoding() {
        let limits = InputLimits {
            max_duration: 60.0,
            max_width: 8192,
            max_height: 8192,
            max_pixels: 33_177_600,
            max_frame_rate: 120.0,
            max_streams: 8,
        };
        let probe = parse(PHONE.as_bytes()).unwrap();
        assert_eq!(limits.check(&probe), Ok(()));
        let bomb = r#"{"streams":[{"codec_type":"video","width":65000,"height":65000}],"format":{"duration":"1"}}"#;
        let error = limits.check(&parse(bomb.as_bytes()).unwrap()).unwrap_err();
        assert!(error.contains("65000×65000"), "{error}");
        let long = r#"{"streams":[{"codec_type":"video","width":64,"height":64}],"format":{"duration":"3600"}}"#;
        assert!(
            limits
                .check(&parse(long.as_bytes()).unwrap())
                .unwrap_err()
                .contains("3600 s")
        );
        let fast = r#"{"streams":[{"codec_type":"video","width":64,"height":64,"avg_frame_rate":"1000/1"}],"format":{"duration":"1"}}"#;
        assert!(limits.check(&parse(fast.as_bytes()).unwrap()).is_err());
        let many = format!(
            r#"{{"streams":[{}{{"codec_type":"video","width":64,"height":64}}],"format":{{"duration":"1"}}}}"#,
            r#"{"codec_type":"data"},"#.repeat(10)
        );
        assert!(
            limits
                .check(&parse(many.as_bytes()).unwrap())
                .unwrap_err()
                .contains("11 streams")
        );
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
