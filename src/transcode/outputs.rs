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

/// Sheets `0..n` that exist with the planned pixel size.
fn sheets_written(dir: &Path, board: &storyboard::Storyboard) -> u32 {
    (0..board.sheets())
        .take_while(|&n| {
            std::fs::read(dir.join(storyboard::Storyboard::sheet_name(n)))
                .ok()
                .and_then(|data| storyboard::jpeg_size(&data))
                == Some(board.sheet_size())
        })
        .count() as u32
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
