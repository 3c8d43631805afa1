//! What a source really is: ffprobe's description of its streams, then the timeline measured
//! from its packets (containers may declare no length, or more than the file holds), then, when
//! the stream does not say it is interlaced, a look at its pictures.
//!
//! - [`parse`]: ffprobe's JSON, read leniently.
//! - [`packets`]: where each stream really ends, from the last packets' timestamps.
//! - [`fields`]: interlace detection (ffmpeg's `idet`) for streams without a field-order flag.
//! - [`limits`]: what this server accepts, checked before anything is decoded.
//! - [`timeline`]: the span from those ends; files far shorter than they declare.

mod fields;
mod limits;
mod packets;
mod parse;
mod timeline;

use std::path::Path;
use std::time::Duration;

pub use limits::InputLimits;
pub use parse::parse;
pub use timeline::{
    Extent, MIN_AUDIO_SECONDS, TRUNCATION_SECONDS, TRUNCATION_SHARE, Timeline, measure,
};

/// A rational number as ffprobe reports it (`30000/1001`, `64/45`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rational {
    pub num: u32,
    pub den: u32,
}

impl Rational {
    pub(crate) fn parse(text: &str) -> Option<Self> {
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

/// The dynamic range and gamut family of a source, from its (filled-in) colour tags.
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

/// Colour tags as ffprobe spells them (`bt709`, `bt2020nc`, `arib-std-b67`, `tv`); `None` when
/// the file leaves one unspecified.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColourTags {
    pub matrix: Option<String>,
    pub primaries: Option<String>,
    pub transfer: Option<String>,
    pub range: Option<String>,
}

/// How the pictures are scanned, from the stream's flag or, failing that, from `idet`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldOrder {
    Progressive,
    /// Interlaced, top field first (ffprobe `tt`, `bt`).
    TopFirst,
    /// Interlaced, bottom field first (ffprobe `bb`, `tb`).
    BottomFirst,
    /// The stream does not say.
    Unknown,
}

impl FieldOrder {
    /// Reads ffprobe's `field_order` (`progressive`, `tt`, `bb`, `tb`, `bt`, `unknown`).
    ///
    /// `tb` and `bt` name the coded order first and the displayed order second (libavcodec's
    /// `AVFieldOrder`); what matters for deinterlacing is the displayed one.
    pub fn from_ffprobe(text: Option<&str>) -> Self {
        match text.map(str::trim) {
            Some("progressive") => Self::Progressive,
            Some("tt" | "bt") => Self::TopFirst,
            Some("bb" | "tb") => Self::BottomFirst,
            _ => Self::Unknown,
        }
    }

    pub fn is_interlaced(self) -> bool {
        matches!(self, Self::TopFirst | Self::BottomFirst)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct VideoStream {
    /// Index among the file's video streams (`0:v:N`).
    pub index: usize,
    /// Index among all of the file's streams (ffprobe's `stream_index`).
    pub stream_index: usize,
    pub codec: String,
    /// Coded size, before pixel aspect and rotation.
    pub coded_width: u32,
    pub coded_height: u32,
    /// Pixel (sample) aspect ratio when the pixels are not square (DVD, DV, HDV).
    pub sample_aspect: Option<Rational>,
    /// Clockwise degrees, normalised to 0, 90, 180 or 270.
    pub rotation: u32,
    pub pix_fmt: Option<String>,
    pub frame_rate: Option<Rational>,
    pub field_order: FieldOrder,
    pub colour: ColourTags,
    /// First timestamp, seconds in the file's own time.
    pub start: Option<f64>,
    /// What the container says the stream lasts, seconds.
    pub declared_duration: Option<f64>,
}

impl VideoStream {
    /// Size as displayed: the coded width times the pixel aspect, then rotation applied.
    pub fn display_size(&self) -> (u32, u32) {
        let width = match self.sample_aspect {
            Some(sar) => {
                let exact = f64::from(self.coded_width) * sar.as_f64();
                (exact.round() as u32).clamp(1, 65_536 * 4)
            }
            None => self.coded_width,
        };
        if self.rotation % 180 == 90 {
            (self.coded_height, width)
        } else {
            (width, self.coded_height)
        }
    }

    /// The dynamic range family, from the transfer and primaries tags.
    pub fn dynamic(&self) -> Dynamic {
        match (
            self.colour.transfer.as_deref(),
            self.colour.primaries.as_deref(),
        ) {
            (Some("smpte2084"), _) => Dynamic::Pq,
            (Some("arib-std-b67"), _) => Dynamic::Hlg,
            (_, Some("bt2020")) => Dynamic::WideGamut,
            (None, None) if self.colour.matrix.as_deref() == Some("bt2020nc") => Dynamic::WideGamut,
            _ => Dynamic::Sdr,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct AudioStream {
    /// Index among the file's audio streams (`0:a:N`).
    pub index: usize,
    /// Index among all of the file's streams.
    pub stream_index: usize,
    pub codec: String,
    pub sample_rate: Option<u32>,
    pub channels: Option<u32>,
    pub start: Option<f64>,
    pub declared_duration: Option<f64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// Seconds the output will last: the measured span once [`probe`] has run; what the
    /// container declares (0 when nothing) straight after [`parse`].
    pub duration: f64,
    /// What the container declares, if anything.
    pub declared_duration: Option<f64>,
    /// The container's start time, seconds: ffmpeg's zero.
    pub start: f64,
    pub format: String,
    pub video: VideoStream,
    pub audio: Option<AudioStream>,
    pub video_stream_count: usize,
    pub stream_count: usize,
    pub timeline: Timeline,
    /// ffprobe's own JSON (`-show_format -show_streams`), for properties (`probe` in their
    /// document); set by [`probe`], `None` straight after [`parse`].
    pub document: Option<serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{tool} could not be started ({binary}): {source}")]
    Spawn {
        tool: &'static str,
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the file took longer than {0:?}")]
    Timeout(Duration),
    #[error("the file could not be read as a video: {0}")]
    Unreadable(String),
    #[error("the file has no video stream")]
    NoVideo,
    #[error("the video stream has no usable picture size")]
    NoSize,
    #[error("the video stream holds no pictures")]
    NoPictures,
    #[error("the file declares {declared:.3} s but its packets end at {found:.3} s")]
    Truncated { declared: f64, found: f64 },
    #[error("{0}")]
    Limit(String),
}

/// The programs a probe runs, how nice the decoding one is, and how long it may go without
/// finishing (its job is a sample: a wedged decoder must not hold the job for the probe's
/// whole timeout).
#[derive(Debug, Clone, Copy)]
pub struct Tools<'a> {
    pub ffprobe: &'a Path,
    pub ffmpeg: &'a Path,
    pub nice: i32,
    pub stall: Duration,
}

/// Probes `path`: streams, measured timeline, interlace. Each tool run has `timeout`, and
/// nothing is decoded before the picture size, frame rate and stream count pass `limits`.
pub async fn probe(
    tools: Tools<'_>,
    limits: &InputLimits,
    path: &Path,
    timeout: Duration,
) -> Result<Probe, ProbeError> {
    let json = packets::describe(tools.ffprobe, path, timeout).await?;
    let mut probe = parse(&json)?;
    limits.check(&probe).map_err(ProbeError::Limit)?;
    probe.document = serde_json::from_slice(&json).ok();
    let mut streams = vec![probe.video.stream_index];
    streams.extend(probe.audio.as_ref().map(|a| a.stream_index));
    let ends = packets::ends(tools.ffprobe, path, &probe, &streams, timeout).await?;
    measure(&mut probe, &ends)?;
    if !probe.video.field_order.is_interlaced() {
        let sample_timeout = timeout.min(tools.stall);
        let detected = fields::detect(tools, path, probe.video.index, sample_timeout).await;
        if detected.is_interlaced() {
            tracing::info!(?detected, "interlaced pictures without an interlace flag");
        }
        probe.video.field_order = match detected {
            FieldOrder::Unknown => probe.video.field_order,
            found => found,
        };
    }
    Ok(probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_order_flags_name_the_displayed_field() {
        assert_eq!(FieldOrder::from_ffprobe(Some("tt")), FieldOrder::TopFirst);
        assert_eq!(FieldOrder::from_ffprobe(Some("bt")), FieldOrder::TopFirst);
        assert_eq!(
            FieldOrder::from_ffprobe(Some("tb")),
            FieldOrder::BottomFirst
        );
        assert_eq!(FieldOrder::from_ffprobe(None), FieldOrder::Unknown);
        assert!(!FieldOrder::Progressive.is_interlaced());
    }
}
