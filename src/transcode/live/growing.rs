//! The growing ladder of one attempt: what ffmpeg completed in every rendition, published
//! into `hls/<id>` (see the parent module for the rules).

use std::path::{Path, PathBuf};

use m3u8_rs::{MediaPlaylist, MediaPlaylistType, Playlist};
use tracing::warn;

use super::super::ffmpeg::EncodePlan;
use super::super::ladder::PlannedRung;
use super::super::master;
use super::super::plan::AUDIO_RENDITION;
use super::super::playlist::{self, PlaylistError, WrittenAudio, WrittenRung};
use super::LiveRoot;
use super::{GROWING_MARKER, LiveError, io};
use crate::domain::{Video, VideoId, Visibility};
use crate::media::folder::mark_private;
use crate::media::{MediaError, sync_dir};
use crate::store::Lease;

/// One rendition's media playlist as ffmpeg wrote it so far, with its folder name.
struct Written {
    name: String,
    playlist: MediaPlaylist,
}

/// What one look at the work folder did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Growth {
    /// Some rendition has no complete segment yet, or none was added in every rendition.
    Waiting,
    /// The master playlist and the first segments were published.
    Appeared,
    /// The playlists grew to this many segments.
    Grew(usize),
    /// The published folder is gone or belongs to another attempt: stop following.
    Gone,
}

/// The growing ladder of one attempt.
pub(super) struct Growing {
    media: LiveRoot,
    id: VideoId,
    token: i64,
    /// ffmpeg's folder (the plan's `out_dir`).
    work: PathBuf,
    rungs: Vec<PlannedRung>,
    /// `(channels, kbps)` of the audio rendition.
    audio: Option<(u32, u32)>,
    frame_rate: f64,
    segment_seconds: u32,
    private: bool,
    /// Segments published in every rendition (0: nothing published yet).
    pub(super) published: usize,
    target: u64,
}

impl Growing {
    pub(super) fn new(media: &LiveRoot, video: &Video, lease: Lease, plan: &EncodePlan) -> Self {
        Self {
            media: media.clone(),
            id: video.id,
            token: lease.token,
            work: plan.out_dir.clone(),
            rungs: plan.rungs.clone(),
            audio: plan.audio.map(|audio| (audio.channels, plan.audio_kbps)),
            frame_rate: plan.frame_rate.as_f64(),
            segment_seconds: plan.segment_seconds,
            private: video.visibility == Visibility::Private,
            published: 0,
            target: u64::from(plan.segment_seconds.max(1)),
        }
    }

    fn names(&self) -> impl Iterator<Item = &str> {
        self.rungs
            .iter()
            .map(|rung| rung.name.as_str())
            .chain(self.audio.map(|_| AUDIO_RENDITION))
    }

    /// Reads what ffmpeg has written so far; `None` while some rendition has no playlist yet.
    fn read_work(&self) -> Option<Vec<Written>> {
        self.names()
            .map(|name| {
                let text = std::fs::read(self.work.join(name).join("index.m3u8")).ok()?;
                match m3u8_rs::parse_playlist_res(&text) {
                    Ok(Playlist::MediaPlaylist(playlist)) => Some(Written {
                        name: name.to_owned(),
                        playlist,
                    }),
                    _ => None,
                }
            })
            .collect()
    }

    /// One look at the work folder; publishes what every rendition has completed since the
    /// last look (blocking file I/O).
    pub(super) fn step(&mut self) -> Result<Growth, LiveError> {
        let Some(written) = self.read_work() else {
            return Ok(Growth::Waiting);
        };
        let complete = written
            .iter()
            .map(|w| w.playlist.segments.len())
            .min()
            .unwrap_or(0);
        if complete <= self.published {
            return Ok(Growth::Waiting);
        }
        if self.published == 0 {
            return self.appear(&written, complete);
        }
        let dir = self.media.hls_dir(self.id);
        let owner = std::fs::read_to_string(dir.join(GROWING_MARKER)).ok();
        if owner.as_deref().map(str::trim) != Some(self.token.to_string().as_str()) {
            return Ok(Growth::Gone);
        }
        self.extend(&dir, &written, complete)?;
        Ok(Growth::Grew(complete))
    }

    /// Links segments `published..complete` of every rendition into `dir`, then writes the
    /// playlists that list them (a playlist never names a segment not yet linked everywhere).
    fn extend(
        &mut self,
        dir: &Path,
        written: &[Written],
        complete: usize,
    ) -> Result<(), LiveError> {
        for w in written {
            let (work, out) = (self.work.join(&w.name), dir.join(&w.name));
            for segment in &w.playlist.segments[self.published..complete] {
                link(&work.join(&segment.uri), &out.join(&segment.uri))?;
            }
        }
        let longest = written
            .iter()
            .flat_map(|w| &w.playlist.segments[..complete])
            .map(|s| f64::from(s.duration).round() as u64)
            .max()
            .unwrap_or(1);
        if longest > self.target {
            // Players may reload less often than they should; the segments still play.
            warn!(
                target = self.target,
                longest, "a segment outlasts the growing playlists' target duration"
            );
            self.target = longest;
        }
        for w in written {
            let out = dir.join(&w.name);
            write_atomically(&out.join("index.m3u8"), &self.event_playlist(w, complete))?;
        }
        self.published = complete;
        Ok(())
    }

    /// The first publication, assembled beside ffmpeg's folder and renamed into `hls/<id>`.
    fn appear(&mut self, written: &[Written], complete: usize) -> Result<Growth, LiveError> {
        let staging = self.work.with_file_name("growing");
        let _ = std::fs::remove_dir_all(&staging);
        for w in written {
            let (work, out) = (self.work.join(&w.name), staging.join(&w.name));
            std::fs::create_dir_all(&out).map_err(io(&out))?;
            if let Some(map) = w.playlist.segments.first().and_then(|s| s.map.as_ref()) {
                link(&work.join(&map.uri), &out.join(&map.uri))?;
            }
        }
        self.write_masters(&staging, written)?;
        self.extend(&staging, written, complete)?;
        let marker = staging.join(GROWING_MARKER);
        std::fs::write(&marker, self.token.to_string()).map_err(io(&marker))?;
        mark_private(&staging, self.private)?;
        let target = self.media.hls_dir(self.id);
        std::fs::rename(&staging, &target).map_err(io(&target))?;
        sync_dir(&self.media.hls_root());
        Ok(Growth::Appeared)
    }

    /// `master.m3u8` and the single-rung playlists, with upper bounds for BANDWIDTH and
    /// AVERAGE-BANDWIDTH (RFC 8216 §4.3.4.2 asks BANDWIDTH to bound the peak, and nothing is
    /// measured yet) and CODECS read from the init segments.
    fn write_masters(&self, dir: &Path, written: &[Written]) -> Result<(), LiveError> {
        let init = |name: &str| -> Result<Vec<u8>, PlaylistError> {
            let map = written
                .iter()
                .find(|w| w.name == name)
                .and_then(|w| w.playlist.segments.first())
                .and_then(|s| s.map.as_ref())
                .map(|map| self.work.join(name).join(&map.uri))
                .ok_or_else(|| PlaylistError::Invalid {
                    path: self.work.join(name).join("index.m3u8"),
                })?;
            std::fs::read(&map).map_err(|source| PlaylistError::Read { path: map, source })
        };
        let rungs = self
            .rungs
            .iter()
            .map(|rung| {
                let codecs = playlist::avc_codec(&init(&rung.name)?).ok_or_else(|| {
                    PlaylistError::NoVideoConfig {
                        path: self.work.join(&rung.name),
                    }
                })?;
                let (peak_bps, average_bps) = video_bounds(rung.video_kbps, self.segment_seconds);
                Ok(WrittenRung {
                    rung: rung.clone(),
                    peak_bps,
                    average_bps,
                    codecs,
                    segments: 0,
                    duration: 0.0,
                })
            })
            .collect::<Result<Vec<_>, PlaylistError>>()?;
        let audio = match self.audio {
            Some((channels, kbps)) => Some(WrittenAudio {
                peak_bps: u64::from(kbps) * 1500,
                average_bps: u64::from(kbps) * 1250,
                codecs: playlist::aac_codec(&init(AUDIO_RENDITION)?).ok_or_else(|| {
                    PlaylistError::NoAudioConfig {
                        path: self.work.join(AUDIO_RENDITION),
                    }
                })?,
                channels,
            }),
            None => None,
        };
        master::write_all(dir, &rungs, audio.as_ref(), self.frame_rate)?;
        Ok(())
    }

    /// ffmpeg's playlist cut to the first `complete` segments, as a growing EVENT playlist.
    fn event_playlist(&self, written: &Written, complete: usize) -> MediaPlaylist {
        let mut playlist = written.playlist.clone();
        playlist.segments.truncate(complete);
        playlist.playlist_type = Some(MediaPlaylistType::Event);
        playlist.end_list = false;
        playlist.target_duration = self.target;
        playlist
    }
}

/// Upper bounds (bits/s) of a rung's peak and average rates, from its encoder settings
/// (`maxrate` 1.1× and `bufsize` 1.5× the rung's rate, see `ffmpeg::ladder_args`): a run of
/// segments lasting at least half a target duration holds at most `maxrate × t + bufsize`
/// bits; 5 % more covers the fMP4 boxes.
fn video_bounds(kbps: u32, segment_seconds: u32) -> (u64, u64) {
    let kbps = f64::from(kbps);
    let maxrate = kbps * 1.1;
    let shortest_run = f64::from(segment_seconds.max(1)) / 2.0;
    let peak = (maxrate + kbps * 1.5 / shortest_run) * 1.05;
    (
        (peak * 1000.0).ceil() as u64,
        (maxrate * 1.05 * 1000.0).ceil() as u64,
    )
}

/// A hard link of `from` at `to` (same filesystem); an existing link is fine.
fn link(from: &Path, to: &Path) -> Result<(), MediaError> {
    match std::fs::hard_link(from, to) {
        Err(error) if error.kind() != std::io::ErrorKind::AlreadyExists => Err(io(to)(error)),
        _ => Ok(()),
    }
}

/// Writes `playlist` to a dot-named temp file beside `path` (never served), then renames it.
fn write_atomically(path: &Path, playlist: &MediaPlaylist) -> Result<(), MediaError> {
    let mut bytes = Vec::new();
    playlist.write_to(&mut bytes).map_err(io(path))?;
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_string_lossy());
    let temp = path.with_file_name(format!(".{name}.tmp"));
    std::fs::write(&temp, bytes).map_err(io(&temp))?;
    std::fs::rename(&temp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_cover_the_encoders_worst_case() {
        let (peak, average) = video_bounds(1000, 4);
        // maxrate 1100 kb/s plus a 1500 kb buffer drained in 2 s, plus 5 %.
        assert_eq!(peak, 1_942_500);
        assert_eq!(average, 1_155_000);
        assert!(peak > average);
    }
}
