//! What a source is at most, checked on the probe before anything is decoded.

use super::Probe;

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

#[cfg(test)]
mod tests {
    use super::super::parse;
    use super::*;

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
        let phone = r#"{"streams":[{"codec_type":"video","width":3840,"height":2160,"avg_frame_rate":"30/1"}],"format":{"duration":"12"}}"#;
        assert_eq!(limits.check(&parse(phone.as_bytes()).unwrap()), Ok(()));
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
}
