//! The multivariant playlists of a ladder (RFC 8216 §4.3.4), written with m3u8-rs:
//!
//! - `master.m3u8`: every rung, ascending by BANDWIDTH;
//! - `<rung>.m3u8`: that rung alone, so a player without a level API (the browser's own HLS)
//!   can be handed one quality and still get the sound.
//!
//! With audio, both declare the one AAC rendition as an `EXT-X-MEDIA` group
//! (`TYPE=AUDIO,GROUP-ID="audio",DEFAULT=YES,AUTOSELECT=YES,CHANNELS`, §4.3.4.1) that every
//! variant names (`AUDIO="audio"`); each variant's CODECS lists its video and the group's audio
//! codec (§4.3.4.2), and its BANDWIDTH and AVERAGE-BANDWIDTH add the audio's peak and average to
//! the video's (the largest sum over playable combinations of renditions, §4.3.4.2).

use std::path::Path;

use m3u8_rs::{AlternativeMedia, AlternativeMediaType, MasterPlaylist, Resolution, VariantStream};

use super::plan::{AUDIO_GROUP, AUDIO_RENDITION};
use super::playlist::{PlaylistError, WrittenAudio, WrittenRung};

/// What one variant (a rung with the shared audio) advertises: bits/s and RFC 6381 codecs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantRates {
    pub peak_bps: u64,
    pub average_bps: u64,
    pub codecs: String,
}

/// A rung's variant: its video plus the audio rendition, if any.
pub fn variant_rates(rung: &WrittenRung, audio: Option<&WrittenAudio>) -> VariantRates {
    match audio {
        Some(audio) => VariantRates {
            peak_bps: rung.peak_bps + audio.peak_bps,
            average_bps: rung.average_bps + audio.average_bps,
            codecs: format!("{},{}", rung.codecs, audio.codecs),
        },
        None => VariantRates {
            peak_bps: rung.peak_bps,
            average_bps: rung.average_bps,
            codecs: rung.codecs.clone(),
        },
    }
}

/// The file name, at the ladder's root, of the playlist that plays `rung` alone.
pub fn single_rung_name(rung: &WrittenRung) -> String {
    format!("{}.m3u8", rung.rung.name)
}

/// The multivariant playlist of `rungs` (any order; written ascending by BANDWIDTH) sharing
/// `audio`. URIs are relative to the ladder's root. `frame_rate` is frames per second,
/// written rounded to 3 decimals.
pub fn multivariant(
    rungs: &[&WrittenRung],
    audio: Option<&WrittenAudio>,
    frame_rate: f64,
) -> MasterPlaylist {
    let mut variants: Vec<(VariantRates, &WrittenRung)> = rungs
        .iter()
        .map(|rung| (variant_rates(rung, audio), *rung))
        .collect();
    variants.sort_by_key(|(rates, _)| rates.peak_bps);
    MasterPlaylist {
        version: Some(7),
        independent_segments: true,
        alternatives: audio
            .map(|audio| AlternativeMedia {
                media_type: AlternativeMediaType::Audio,
                uri: Some(format!("{AUDIO_RENDITION}/index.m3u8")),
                group_id: AUDIO_GROUP.into(),
                name: "Audio".into(),
                default: true,
                autoselect: true,
                channels: Some(audio.channels.to_string()),
                ..Default::default()
            })
            .into_iter()
            .collect(),
        variants: variants
            .into_iter()
            .map(|(rates, r)| VariantStream {
                uri: format!("{}/index.m3u8", r.rung.name),
                bandwidth: rates.peak_bps,
                average_bandwidth: Some(rates.average_bps),
                codecs: Some(rates.codecs),
                resolution: Some(Resolution {
                    width: u64::from(r.rung.width),
                    height: u64::from(r.rung.height),
                }),
                frame_rate: Some((frame_rate * 1000.0).round() / 1000.0),
                audio: audio.map(|_| AUDIO_GROUP.to_owned()),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    }
}

/// `master.m3u8` and one `<rung>.m3u8` per rung, as `(file name, playlist)`.
pub fn all(
    rungs: &[WrittenRung],
    audio: Option<&WrittenAudio>,
    frame_rate: f64,
) -> Vec<(String, MasterPlaylist)> {
    let every: Vec<&WrittenRung> = rungs.iter().collect();
    std::iter::once((
        "master.m3u8".to_owned(),
        multivariant(&every, audio, frame_rate),
    ))
    .chain(rungs.iter().map(|rung| {
        (
            single_rung_name(rung),
            multivariant(&[rung], audio, frame_rate),
        )
    }))
    .collect()
}

/// Writes `master.m3u8` and one `<rung>.m3u8` per rung into `dir`.
pub fn write_all(
    dir: &Path,
    rungs: &[WrittenRung],
    audio: Option<&WrittenAudio>,
    frame_rate: f64,
) -> Result<(), PlaylistError> {
    for (name, playlist) in all(rungs, audio, frame_rate) {
        write(&dir.join(name), &playlist)?;
    }
    Ok(())
}

fn write(path: &Path, playlist: &MasterPlaylist) -> Result<(), PlaylistError> {
    let write_error = |source| PlaylistError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut bytes = Vec::new();
    playlist.write_to(&mut bytes).map_err(write_error)?;
    std::fs::write(path, bytes).map_err(write_error)
}

#[cfg(test)]
mod tests {
    use m3u8_rs::Playlist;

    use super::*;
    use crate::transcode::ladder::PlannedRung;

    fn rung(name: &str, width: u32, height: u32, peak: u64) -> WrittenRung {
        WrittenRung {
            rung: PlannedRung {
                name: name.into(),
                width,
                height,
                video_kbps: 1,
            },
            peak_bps: peak,
            average_bps: peak / 2,
            codecs: "avc1.64001f".into(),
            segments: 1,
            duration: 1.0,
        }
    }

    fn audio() -> WrittenAudio {
        WrittenAudio {
            peak_bps: 140_000,
            average_bps: 130_000,
            codecs: "mp4a.40.2".into(),
            channels: 2,
        }
    }

    #[test]
    fn every_variant_names_the_one_audio_group_and_counts_its_rate() {
        let (high, low) = (
            rung("720p", 1280, 720, 3_000_000),
            rung("360p", 640, 360, 900_000),
        );
        let audio = audio();
        let mut bytes = Vec::new();
        multivariant(&[&high, &low], Some(&audio), 30000.0 / 1001.0)
            .write_to(&mut bytes)
            .unwrap();
        let text = String::from_utf8(bytes).unwrap();
        assert!(
            text.contains(
                "#EXT-X-MEDIA:TYPE=AUDIO,URI=\"audio/index.m3u8\",GROUP-ID=\"audio\",\
                 NAME=\"Audio\",DEFAULT=YES,AUTOSELECT=YES,CHANNELS=\"2\""
            ),
            "{text}"
        );
        assert!(
            text.find("360p/index.m3u8") < text.find("720p/index.m3u8"),
            "{text}"
        );
        assert!(
            text.contains("BANDWIDTH=1040000,AVERAGE-BANDWIDTH=580000"),
            "{text}"
        );
        assert!(text.contains("CODECS=\"avc1.64001f,mp4a.40.2\""), "{text}");
        assert!(text.contains("FRAME-RATE=29.97,AUDIO=\"audio\""), "{text}");
        assert!(text.contains("#EXT-X-INDEPENDENT-SEGMENTS"));
        match m3u8_rs::parse_playlist_res(text.as_bytes()) {
            Ok(Playlist::MasterPlaylist(master)) => {
                assert_eq!(master.alternatives.len(), 1);
                assert!(
                    master
                        .variants
                        .iter()
                        .all(|v| v.audio.as_deref() == Some("audio"))
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_silent_ladder_has_no_audio_group_and_each_rung_has_its_own_playlist() {
        let rungs = [
            rung("240p", 426, 240, 500_000),
            rung("360p", 640, 360, 900_000),
        ];
        let dir = tempfile::tempdir().unwrap();
        write_all(dir.path(), &rungs, None, 30.0).unwrap();
        let master = std::fs::read_to_string(dir.path().join("master.m3u8")).unwrap();
        assert!(!master.contains("EXT-X-MEDIA") && !master.contains("AUDIO="));
        assert!(master.contains("CODECS=\"avc1.64001f\""), "{master}");
        let single = std::fs::read_to_string(dir.path().join("360p.m3u8")).unwrap();
        assert_eq!(single.matches("#EXT-X-STREAM-INF").count(), 1, "{single}");
        assert!(single.contains("\n360p/index.m3u8"), "{single}");
        write_all(dir.path(), &rungs, Some(&audio()), 30.0).unwrap();
        let single = std::fs::read_to_string(dir.path().join("240p.m3u8")).unwrap();
        assert!(single.contains("GROUP-ID=\"audio\"") && single.contains("BANDWIDTH=640000"));
    }

    #[test]
    fn rates_add_the_audio_to_the_video() {
        let rates = variant_rates(&rung("240p", 426, 240, 500_000), Some(&audio()));
        assert_eq!(
            rates,
            VariantRates {
                peak_bps: 640_000,
                average_bps: 380_000,
                codecs: "avc1.64001f,mp4a.40.2".into()
            }
        );
    }
}
