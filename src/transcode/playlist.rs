//! Reads what ffmpeg really wrote: segment sizes and so rates (RFC 8216 §4.3.4.2), codec
//! configuration (RFC 6381 strings from the init segments); fixes TARGETDURATION. The master
//! playlists are written by [`super::master`].

use std::path::{Path, PathBuf};

use m3u8_rs::Playlist;

use super::ladder::PlannedRung;

#[derive(Debug, thiserror::Error)]
pub enum PlaylistError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid media playlist")]
    Invalid { path: PathBuf },
    #[error("{path} has no H.264 configuration (avcC)")]
    NoVideoConfig { path: PathBuf },
    #[error("{path} has no AAC configuration (esds)")]
    NoAudioConfig { path: PathBuf },
}

/// A video rung as written: its measured rates (bits/s) and its codec, video alone.
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenRung {
    pub rung: PlannedRung,
    pub peak_bps: u64,
    pub average_bps: u64,
    /// `avc1.PPCCLL`.
    pub codecs: String,
    pub segments: usize,
    pub duration: f64,
}

/// The audio rendition as written: its measured rates (bits/s) and its codec (`mp4a.40.2`).
#[derive(Debug, Clone, PartialEq)]
pub struct WrittenAudio {
    pub peak_bps: u64,
    pub average_bps: u64,
    pub codecs: String,
    /// 1 or 2, for the rendition's `CHANNELS`.
    pub channels: u32,
}

/// What one media playlist's segments measure.
struct Measured {
    peak_bps: u64,
    average_bps: u64,
    segments: usize,
    duration: f64,
    /// The init segment (`EXT-X-MAP`).
    init: Vec<u8>,
    init_path: PathBuf,
}

fn read(path: &Path) -> Result<Vec<u8>, PlaylistError> {
    std::fs::read(path).map_err(|source| PlaylistError::Read {
        path: path.to_path_buf(),
        source,
    })
}

/// Measures one rung folder (`index.m3u8`, its init segment, its segments); `planned_target`
/// (seconds, [`planned_target`]) is the least TARGETDURATION its VOD playlist gets.
pub fn inspect_rung(
    dir: &Path,
    rung: &PlannedRung,
    planned_target: u64,
) -> Result<WrittenRung, PlaylistError> {
    let measured = measure(dir, planned_target)?;
    let codecs = avc_codec(&measured.init).ok_or_else(|| PlaylistError::NoVideoConfig {
        path: measured.init_path.clone(),
    })?;
    Ok(WrittenRung {
        rung: rung.clone(),
        peak_bps: measured.peak_bps,
        average_bps: measured.average_bps,
        codecs,
        segments: measured.segments,
        duration: measured.duration,
    })
}

/// Measures the audio rendition's folder; `channels` is what the plan asked for,
/// `planned_target` as for [`inspect_rung`].
pub fn inspect_audio(
    dir: &Path,
    channels: u32,
    planned_target: u64,
) -> Result<WrittenAudio, PlaylistError> {
    let measured = measure(dir, planned_target)?;
    let codecs = aac_codec(&measured.init).ok_or_else(|| PlaylistError::NoAudioConfig {
        path: measured.init_path.clone(),
    })?;
    Ok(WrittenAudio {
        peak_bps: measured.peak_bps,
        average_bps: measured.average_bps,
        codecs,
        channels,
    })
}

/// Reads a finished media playlist and its files; rewrites its TARGETDURATION to the larger of
/// `planned_target` and its longest rounded EXTINF (so a ladder that grew keeps the value its
/// growing playlists carried: RFC 8216 §6.2.1).
fn measure(dir: &Path, planned_target: u64) -> Result<Measured, PlaylistError> {
    let playlist_path = dir.join("index.m3u8");
    let invalid = || PlaylistError::Invalid {
        path: playlist_path.clone(),
    };
    let text = read(&playlist_path)?;
    let playlist = match m3u8_rs::parse_playlist_res(&text) {
        Ok(Playlist::MediaPlaylist(playlist)) => playlist,
        _ => return Err(invalid()),
    };
    if playlist.segments.is_empty() || !playlist.end_list {
        return Err(invalid());
    }
    let durations: Vec<f64> = playlist
        .segments
        .iter()
        .map(|s| f64::from(s.duration))
        .collect();
    let target = target_duration(&durations).max(planned_target);
    // ffmpeg writes an EVENT playlist (so it grows while it encodes, see `super::live`); the
    // finished one is VOD (RFC 8216 §4.3.3.5).
    let vod = playlist.playlist_type == Some(m3u8_rs::MediaPlaylistType::Vod);
    if playlist.target_duration != target || !vod {
        let fixed = as_vod(&String::from_utf8_lossy(&text), target);
        std::fs::write(&playlist_path, fixed).map_err(|source| PlaylistError::Write {
            path: playlist_path.clone(),
            source,
        })?;
    }
    let mut init_uri = None;
    let mut sizes = Vec::with_capacity(playlist.segments.len());
    for segment in &playlist.segments {
        if let Some(map) = &segment.map {
            init_uri = Some(map.uri.clone());
        }
        let path = dir.join(&segment.uri);
        let bytes = std::fs::metadata(&path)
            .map_err(|source| PlaylistError::Read { path, source })?
            .len();
        sizes.push(bytes);
    }
    let total_bits = sizes.iter().sum::<u64>() as f64 * 8.0;
    let total_duration: f64 = durations.iter().sum();
    let average = (total_bits / total_duration.max(0.001)).ceil() as u64;
    let peak = peak_bit_rate(&sizes, &durations, target).max(average);
    let init_path = dir.join(init_uri.ok_or_else(invalid)?);
    Ok(Measured {
        peak_bps: peak,
        average_bps: average,
        segments: playlist.segments.len(),
        duration: total_duration,
        init: read(&init_path)?,
        init_path,
    })
}

/// `EXT-X-TARGETDURATION`: every EXTINF rounded to the nearest integer must not exceed it
/// (RFC 8216 section 4.3.3.1); at least 1, since a 0 is refused by players.
/// The TARGETDURATION (seconds, ≥ 1) a ladder's playlists are planned with: a segment ends at
/// the first keyframe at or after its `segment_seconds` boundary, so it lasts at most one frame
/// interval (`1 / frame_rate`) more, rounded as RFC 8216 §4.3.3.1 rounds EXTINF.
pub fn planned_target(segment_seconds: u32, frame_rate: f64) -> u64 {
    let frame = if frame_rate > 0.0 {
        1.0 / frame_rate
    } else {
        0.0
    };
    target_duration(&[f64::from(segment_seconds) + frame])
}

pub fn target_duration(durations: &[f64]) -> u64 {
    durations
        .iter()
        .map(|d| d.round().max(0.0) as u64)
        .max()
        .unwrap_or(1)
        .max(1)
}

/// The playlist text with its `#EXT-X-TARGETDURATION` set to `target` and its type VOD.
fn as_vod(text: &str, target: u64) -> String {
    text.lines()
        .map(|line| {
            if line.starts_with("#EXT-X-TARGETDURATION:") {
                format!("#EXT-X-TARGETDURATION:{target}")
            } else if line.starts_with("#EXT-X-PLAYLIST-TYPE:") {
                "#EXT-X-PLAYLIST-TYPE:VOD".to_owned()
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// Peak segment bit rate, bits/s: the largest rate of any run of contiguous segments lasting
/// between 0.5 and 1.5 times the target duration (RFC 8216 section 4.3.4.2); the rate of the
/// whole playlist when no run fits (a source shorter than half a target duration).
/// `sizes` are bytes, `durations` seconds, one per segment.
pub fn peak_bit_rate(sizes: &[u64], durations: &[f64], target: u64) -> u64 {
    let target = target as f64;
    let mut peak = 0.0f64;
    for start in 0..sizes.len() {
        let (mut bits, mut seconds) = (0.0, 0.0);
        for (size, duration) in sizes[start..].iter().zip(&durations[start..]) {
            bits += *size as f64 * 8.0;
            seconds += duration;
            if seconds > 1.5 * target {
                break;
            }
            if seconds >= 0.5 * target && seconds > 0.0 {
                peak = peak.max(bits / seconds);
            }
        }
    }
    if peak == 0.0 {
        let bits = sizes.iter().sum::<u64>() as f64 * 8.0;
        peak = bits / durations.iter().sum::<f64>().max(0.001);
    }
    peak.ceil() as u64
}

/// Finds a box by its four-character type and returns its payload (after the 8-byte header).
fn find_box<'a>(data: &'a [u8], kind: &[u8; 4]) -> Option<&'a [u8]> {
    let at = data.windows(4).position(|w| w == kind)?;
    let size_start = at.checked_sub(4)?;
    let size = u32::from_be_bytes(data.get(size_start..at)?.try_into().ok()?) as usize;
    let end = size_start.checked_add(size)?.min(data.len());
    data.get(at + 4..end)
}

/// `avc1.PPCCLL` from the avcC box: profile, constraint flags and level exactly as encoded.
pub fn avc_codec(init: &[u8]) -> Option<String> {
    let avcc = find_box(init, b"avcC")?;
    let (profile, constraints, level) = (*avcc.get(1)?, *avcc.get(2)?, *avcc.get(3)?);
    Some(format!("avc1.{profile:02x}{constraints:02x}{level:02x}"))
}

/// `mp4a.OO.A` from the esds box: object type indication and AAC audio object type.
pub fn aac_codec(init: &[u8]) -> Option<String> {
    let esds = find_box(init, b"esds")?;
    let mut pos = 4; // version and flags
    let mut object_type = None;
    while pos < esds.len() {
        let tag = *esds.get(pos)?;
        pos += 1;
        // Descriptor sizes are 1-4 bytes, 7 bits each.
        let mut size = 0usize;
        for _ in 0..4 {
            let byte = *esds.get(pos)?;
            pos += 1;
            size = (size << 7) | usize::from(byte & 0x7f);
            if byte & 0x80 == 0 {
                break;
            }
        }
        match tag {
            0x03 => {
                let flags = *esds.get(pos + 2)?;
                pos += 3;
                if flags & 0x80 != 0 {
                    pos += 2;
                }
                if flags & 0x40 != 0 {
                    pos += 1 + usize::from(*esds.get(pos)?);
                }
                if flags & 0x20 != 0 {
                    pos += 2;
                }
            }
            0x04 => {
                object_type = Some(*esds.get(pos)?);
                pos += 13;
            }
            0x05 => {
                let audio_object_type = esds.get(pos)? >> 3;
                return Some(format!("mp4a.{:x}.{audio_object_type}", object_type?));
            }
            _ => pos += size,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boxed(kind: &[u8; 4], payload: &[u8]) -> Vec<u8> {
        let mut data = ((payload.len() + 8) as u32).to_be_bytes().to_vec();
        data.extend_from_slice(kind);
        data.extend_from_slice(payload);
        data
    }

    #[test]
    fn codecs_come_from_the_encoded_configuration() {
        let mut init = boxed(b"ftyp", b"isom");
        init.extend(boxed(b"avcC", &[1, 0x64, 0x00, 0x1f, 0xff]));
        // esds: ES descriptor (id 1, no flags) > decoder config (AAC 0x40) > specific info (AAC-LC = 2).
        let esds = [
            0, 0, 0, 0, 0x03, 0x19, 0, 1, 0, 0x04, 0x11, 0x40, 0x15, 0, 0, 0, 0, 0x01, 0xf4, 0, 0,
            0x01, 0xf4, 0, 0x05, 0x02, 0x11, 0x90,
        ];
        init.extend(boxed(b"esds", &esds));
        assert_eq!(avc_codec(&init).as_deref(), Some("avc1.64001f"));
        assert_eq!(aac_codec(&init).as_deref(), Some("mp4a.40.2"));
        assert_eq!(avc_codec(b"nothing here"), None);
        assert_eq!(aac_codec(&boxed(b"esds", &[0, 0, 0, 0, 0x03])), None);
    }

    #[test]
    fn the_planned_target_covers_a_segment_one_frame_long_past_its_boundary() {
        assert_eq!(planned_target(4, 30.0), 4);
        assert_eq!(planned_target(4, 29.97), 4);
        assert_eq!(planned_target(4, 1.0), 5);
        assert_eq!(planned_target(4, 0.5), 6);
        assert_eq!(planned_target(0, 0.0), 1);
    }

    #[test]
    fn target_duration_is_at_least_one_and_covers_every_rounded_extinf() {
        assert_eq!(target_duration(&[0.167]), 1);
        assert_eq!(target_duration(&[4.0, 4.0, 1.5]), 4);
        assert_eq!(target_duration(&[4.0, 4.6]), 5);
        assert_eq!(target_duration(&[]), 1);
        let text = "#EXTM3U\n#EXT-X-TARGETDURATION:0\n#EXTINF:0.167,\nseg.m4s\n#EXT-X-ENDLIST\n";
        assert!(as_vod(text, 1).contains("\n#EXT-X-TARGETDURATION:1\n#EXTINF:0.167,"));
        let event = "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXT-X-PLAYLIST-TYPE:EVENT\n";
        assert!(as_vod(event, 1).contains("\n#EXT-X-PLAYLIST-TYPE:VOD\n"));
    }

    #[test]
    fn peak_is_over_runs_near_the_target_duration_and_never_below_the_average() {
        // A short last segment alone does not set the peak: runs last half a target at least.
        let sizes = [100_000, 100_000, 50_000];
        assert_eq!(peak_bit_rate(&sizes, &[1.0, 1.0, 0.1], 1), 1_090_910);
        // One 0.167 s segment: shorter than any run, so the whole playlist's rate.
        assert_eq!(peak_bit_rate(&[10_000], &[0.167], 1), 479_042);
        assert_eq!(
            peak_bit_rate(&[500_000, 100_000], &[4.0, 4.0], 4),
            1_000_000
        );
    }
}
