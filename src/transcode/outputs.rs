//! After the ladder ffmpeg: measures what it wrote and adds what reel writes itself, all inside
//! the ladder's folder (so it is published with it):
//!
//! ```text
//! master.m3u8, <rung>.m3u8      multivariant playlists (see `master`)
//! <rung>/index.m3u8, init, seg  video only
//! audio/index.m3u8, init, seg   the audio, once (absent for a silent source)
//! storyboard.vtt                WebVTT cues → storyboard/sprite_<n>.jpg#xywh=…
//! poster.jpg
//! ```

use std::path::Path;

use tracing::{debug, warn};

use super::ffmpeg::EncodePlan;
use super::master::{self, VariantRates};
use super::plan::{AUDIO_RENDITION, storyboard};
use super::playlist::{self, PlaylistError, WrittenAudio, WrittenRung};
use crate::domain::{Rendition, VideoId};

/// What a finished ladder holds.
#[derive(Debug)]
pub struct Written {
    pub rungs: Vec<WrittenRung>,
    pub audio: Option<WrittenAudio>,
}

impl Written {
    /// The renditions of the resource: each rung as a variant (with the audio's rate and
    /// codec), played alone by its own multivariant playlist.
    pub fn renditions(&self, id: VideoId) -> Vec<Rendition> {
        self.rungs
            .iter()
            .map(|w| {
                let VariantRates {
                    peak_bps,
                    average_bps,
                    codecs,
                } = master::variant_rates(w, self.audio.as_ref());
                Rendition {
                    name: w.rung.name.clone(),
                    width: w.rung.width,
                    height: w.rung.height,
                    bandwidth: peak_bps,
                    average_bandwidth: average_bps,
                    codecs,
                    playlist: format!("/hls/{id}/{}", master::single_rung_name(w)),
                }
            })
            .collect()
    }
}

/// Measures every rung and the audio, writes the multivariant playlists and the storyboard
/// track (blocking file I/O).
pub fn write_ladder(plan: &EncodePlan) -> Result<Written, PlaylistError> {
    let target = playlist::planned_target(plan.segment_seconds, plan.frame_rate.as_f64());
    let rungs = plan
        .rungs
        .iter()
        .map(|rung| playlist::inspect_rung(&plan.out_dir.join(&rung.name), rung, target))
        .collect::<Result<Vec<_>, _>>()?;
    let audio = plan
        .audio
        .map(|audio| {
            let dir = plan.out_dir.join(AUDIO_RENDITION);
            playlist::inspect_audio(&dir, audio.channels, target)
        })
        .transpose()?;
    master::write_all(
        &plan.out_dir,
        &rungs,
        audio.as_ref(),
        plan.frame_rate.as_f64(),
    )?;
    let sheets = write_storyboard(&plan.out_dir, &plan.storyboard)?;
    debug!(sheets, every = plan.storyboard.every, "storyboard written");
    // One syncfs instead of an fsync per segment: the ladder is durable before it is published.
    if let Ok(dir) = std::fs::File::open(&plan.out_dir) {
        let _ = rustix::fs::syncfs(&dir);
    }
    Ok(Written { rungs, audio })
}

/// Sheets `0..n` that exist as JPEGs of the planned pixel size.
fn sheets_written(dir: &Path, board: &storyboard::Storyboard) -> u32 {
    (0..board.sheets())
        .take_while(|&n| {
            jpeg_size(&dir.join(storyboard::Storyboard::sheet_name(n))) == Some(board.sheet_size())
        })
        .count() as u32
}

/// Width and height of the JPEG at `path` from its frame header (read by the `imagesize`
/// crate), or `None` when it is missing, not a JPEG, or does not end with the end-of-image
/// marker (`FF D9`, ITU-T T.81 B.2.1: a sheet cut short).
fn jpeg_size(path: &Path) -> Option<(u32, u32)> {
    let data = std::fs::read(path).ok()?;
    if !matches!(imagesize::image_type(&data), Ok(imagesize::ImageType::Jpeg))
        || !data.ends_with(&[0xFF, 0xD9])
    {
        return None;
    }
    let size = imagesize::blob_size(&data).ok()?;
    Some((
        u32::try_from(size.width).ok()?,
        u32::try_from(size.height).ok()?,
    ))
}

/// Writes `storyboard.vtt` for the sheets ffmpeg wrote; returns how many. A missing storyboard
/// costs the seek-bar previews, not the video: it is logged, not failed.
fn write_storyboard(out_dir: &Path, board: &storyboard::Storyboard) -> Result<u32, PlaylistError> {
    let dir = out_dir.join(storyboard::DIR);
    if let Err(error) = storyboard::adopt_sheets(&dir, board) {
        warn!(%error, "cannot rename the storyboard sheets");
    }
    let sheets = sheets_written(&dir, board);
    if sheets < board.sheets() {
        warn!(
            expected = board.sheets(),
            found = sheets,
            "storyboard sheets missing or of the wrong size"
        );
    }
    if sheets == 0 {
        return Ok(0);
    }
    let path = out_dir.join(storyboard::TRACK);
    let text = storyboard::vtt(board, &storyboard::cues(board, sheets));
    std::fs::write(&path, text).map_err(|source| PlaylistError::Write { path, source })?;
    Ok(sheets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sheet_counts_only_as_a_whole_jpeg_of_its_size() {
        let dir = tempfile::tempdir().expect("dir");
        // SOI, an APP0 segment, then SOF0 with height 90 and width 1600.
        let mut jpeg = vec![0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00];
        jpeg.extend([0xFF, 0xC0, 0x00, 0x11, 0x08, 0x00, 0x5A, 0x06, 0x40, 0x03]);
        jpeg.extend([0; 15]);
        jpeg.extend([0xFF, 0xD9]);
        let path = dir.path().join("sheet.jpg");
        std::fs::write(&path, &jpeg).expect("write");
        assert_eq!(jpeg_size(&path), Some((1600, 90)));
        std::fs::write(&path, &jpeg[..12]).expect("write");
        assert_eq!(jpeg_size(&path), None, "cut in the header");
        std::fs::write(&path, &jpeg[..jpeg.len() - 2]).expect("write");
        assert_eq!(jpeg_size(&path), None, "cut after the header");
        std::fs::write(&path, b"\x89PNG\r\n\x1a\n not a jpeg").expect("write");
        assert_eq!(jpeg_size(&path), None);
        assert_eq!(jpeg_size(&dir.path().join("missing.jpg")), None);
    }
}
