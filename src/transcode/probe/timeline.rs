//! The measured timeline of a source: where video and audio really are, the output's span, and
//! whether the file holds what it declares.

use std::collections::HashMap;

use super::{Probe, ProbeError};

/// Where a stream's samples are, seconds in the file's own time.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Extent {
    pub start: f64,
    pub end: f64,
}

/// The measured timeline: what ffmpeg will decode, not what the container declares.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timeline {
    pub video: Extent,
    /// `None` when there is no audio, or an audio stream with no real samples.
    pub audio: Option<Extent>,
}

impl Timeline {
    /// The output's span: from the earliest start to the latest end of video and audio.
    pub fn span(&self) -> Extent {
        let audio = self.audio.unwrap_or(self.video);
        Extent {
            start: self.video.start.min(audio.start),
            end: self.video.end.max(audio.end),
        }
    }
}

/// Audio whose packets cover less than this (seconds) has no real samples: it counts as none.
pub const MIN_AUDIO_SECONDS: f64 = 0.1;

/// A file whose packets end this much short of what it declares (seconds, and share of the
/// declared length, both) is incomplete.
pub const TRUNCATION_SECONDS: f64 = 1.0;
pub const TRUNCATION_SHARE: f64 = 0.1;

/// Fills `probe.timeline` and `probe.duration` from where the packets end (`ends`: stream index
/// to end time, seconds in file time); drops audio with no real samples; refuses a file whose
/// packets stop far short of what it declares.
pub fn measure(probe: &mut Probe, ends: &HashMap<usize, f64>) -> Result<(), ProbeError> {
    let file_start = probe.start;
    let video_end = *ends
        .get(&probe.video.stream_index)
        .ok_or(ProbeError::NoPictures)?;
    let video_start = probe
        .video
        .start
        .filter(|s| *s <= video_end)
        .unwrap_or(file_start);
    let video = Extent {
        start: video_start,
        end: video_end.max(video_start),
    };
    let audio = probe.audio.as_ref().and_then(|stream| {
        let end = *ends.get(&stream.stream_index)?;
        let start = stream.start.filter(|s| *s <= end).unwrap_or(file_start);
        (end - start >= MIN_AUDIO_SECONDS).then_some(Extent { start, end })
    });
    if audio.is_none() && probe.audio.is_some() {
        tracing::info!("the audio stream has no real samples: treated as no audio");
        probe.audio = None;
    }
    let timeline = Timeline { video, audio };
    let span = timeline.span();
    if let Some(declared) = probe.declared_duration {
        let declared_end = [
            probe.video.declared_duration.map(|d| video.start + d),
            probe
                .audio
                .as_ref()
                .zip(audio)
                .and_then(|(stream, extent)| stream.declared_duration.map(|d| extent.start + d)),
        ]
        .into_iter()
        .flatten()
        .reduce(f64::max)
        .unwrap_or(file_start + declared);
        let declared_length = declared_end - span.start;
        let shortfall = declared_end - span.end;
        if shortfall > TRUNCATION_SECONDS && shortfall > TRUNCATION_SHARE * declared_length {
            return Err(ProbeError::Truncated {
                declared: declared_length,
                found: span.end - span.start,
            });
        }
    }
    probe.timeline = timeline;
    probe.duration = (span.end - span.start).max(0.001);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::super::parse;
    use super::*;

    fn clip(format_duration: &str, video: &str, audio: &str) -> Probe {
        let json = format!(
            r#"{{"streams":[{{"index":0,"codec_type":"video","width":64,"height":64{video}}},
                {{"index":1,"codec_type":"audio","codec_name":"aac","channels":2{audio}}}],
              "format":{{"duration":"{format_duration}","start_time":"0"}}}}"#
        );
        parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn late_audio_spans_from_the_video_start_to_the_latest_end() {
        let mut probe = clip(
            "6",
            r#","start_time":"0","duration":"6""#,
            r#","start_time":"1.976","duration":"4.02""#,
        );
        measure(&mut probe, &HashMap::from([(0, 6.0), (1, 5.996)])).unwrap();
        assert_eq!(
            probe.timeline.span(),
            Extent {
                start: 0.0,
                end: 6.0
            }
        );
        assert_eq!(probe.timeline.audio.unwrap().start, 1.976);
        assert!((probe.duration - 6.0).abs() < 1e-9);
    }

    #[test]
    fn audio_longer_than_the_video_sets_the_length() {
        let mut probe = clip("20", r#","start_time":"0""#, r#","start_time":"0""#);
        measure(&mut probe, &HashMap::from([(0, 2.0), (1, 20.0)])).unwrap();
        assert!((probe.duration - 20.0).abs() < 1e-9);
    }

    #[test]
    fn audio_without_real_samples_counts_as_none() {
        let mut probe = clip("5", r#","start_time":"0""#, r#","start_time":"0""#);
        measure(&mut probe, &HashMap::from([(0, 5.0), (1, 0.046)])).unwrap();
        assert!(probe.audio.is_none() && probe.timeline.audio.is_none());
        let mut silent = clip("5", r#","start_time":"0""#, r#","start_time":"0""#);
        measure(&mut silent, &HashMap::from([(0, 5.0)])).unwrap();
        assert!(silent.audio.is_none(), "no audio packets at all");
    }

    #[test]
    fn an_unknown_length_comes_from_the_packets() {
        let mut probe = clip(
            "N/A",
            r#","start_time":"0.007""#,
            r#","start_time":"-0.007""#,
        );
        measure(&mut probe, &HashMap::from([(0, 5.007), (1, 5.014)])).unwrap();
        assert!((probe.duration - 5.021).abs() < 1e-9);
    }

    #[test]
    fn a_file_far_shorter_than_it_declares_is_truncated() {
        let mut probe = clip(
            "25",
            r#","start_time":"0","duration":"25""#,
            r#","start_time":"0","duration":"25""#,
        );
        let error = measure(&mut probe, &HashMap::from([(0, 1.5), (1, 1.49)])).unwrap_err();
        assert!(
            matches!(error, ProbeError::Truncated { declared, found } if declared == 25.0 && found == 1.5)
        );
        // A small shortfall (a missing last frame, rounding in the header) is published as measured.
        let mut nearly = clip("25", r#","start_time":"0","duration":"25""#, "");
        measure(&mut nearly, &HashMap::from([(0, 24.2), (1, 24.0)])).unwrap();
        assert!((nearly.duration - 24.2).abs() < 1e-9);
    }

    #[test]
    fn no_video_packets_is_no_pictures() {
        let mut probe = clip("5", "", "");
        assert!(matches!(
            measure(&mut probe, &HashMap::from([(1, 5.0)])),
            Err(ProbeError::NoPictures)
        ));
    }
}
