//! The growing ladder of one attempt: what ffmpeg completed in every rendition, as the next
//! [`Step`] for the media store to publish (see the parent module for the rules).

use std::path::PathBuf;

use m3u8_rs::{MediaPlaylist, MediaPlaylistType, Playlist};

use super::super::ffmpeg::EncodePlan;
use super::super::ladder::PlannedRung;
use super::super::master;
use super::super::plan::AUDIO_RENDITION;
use super::super::playlist::{self, PlaylistError, WrittenAudio, WrittenRung};
use crate::media::Growth;

/// The name of every rendition's media playlist, in ffmpeg's folder and in the ladder.
const INDEX: &str = "index.m3u8";

/// One rendition's media playlist as ffmpeg wrote it so far, with its folder name.
struct Written {
    name: String,
    playlist: MediaPlaylist,
}

/// What one look at the work folder found to publish.
#[derive(Debug)]
pub(super) enum Step {
    /// Some rendition has no complete segment yet, or none was added in every rendition.
    Waiting,
    /// The first publication: the first segments of every rendition with their init
    /// segments and playlists, and the multivariant playlists (`(file name, bytes)`).
    Appear {
        growth: Growth,
        masters: Vec<(String, Vec<u8>)>,
        done: Done,
    },
    /// The segments every rendition completed since, and the playlists that list them.
    Extend { growth: Growth, done: Done },
    /// A segment (`longest` s, rounded) outlasts the published playlists' `target` duration,
    /// which must not change (RFC 8216 §6.2.1): the growing ladder stays as it is until the
    /// finished one replaces it.
    Held { target: u64, longest: u64 },
}

/// What a step publishes, to be recorded once the store has it ([`Growing::published`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct Done {
    /// Segments then published in every rendition.
    complete: usize,
    /// The playlists' target duration (seconds).
    target: u64,
}

/// The growing ladder of one attempt.
pub(super) struct Growing {
    /// ffmpeg's folder (the plan's `out_dir`).
    work: PathBuf,
    rungs: Vec<PlannedRung>,
    /// `(channels, kbps)` of the audio rendition.
    audio: Option<(u32, u32)>,
    frame_rate: f64,
    segment_seconds: u32,
    /// Segments published in every rendition (0: nothing published yet).
    pub(super) published: usize,
    target: u64,
}

impl Growing {
    pub(super) fn new(plan: &EncodePlan) -> Self {
        Self {
            work: plan.out_dir.clone(),
            rungs: plan.rungs.clone(),
            audio: plan.audio.map(|audio| (audio.channels, plan.audio_kbps)),
            frame_rate: plan.frame_rate.as_f64(),
            segment_seconds: plan.segment_seconds,
            published: 0,
            target: playlist::planned_target(plan.segment_seconds, plan.frame_rate.as_f64()),
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
                let text = std::fs::read(self.work.join(name).join(INDEX)).ok()?;
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

    /// One look at the work folder (blocking file reads): what every rendition completed
    /// since the last published step. Changes nothing until [`Growing::published`].
    pub(super) fn look(&self) -> Result<Step, PlaylistError> {
        let Some(written) = self.read_work() else {
            return Ok(Step::Waiting);
        };
        let complete = written
            .iter()
            .map(|w| w.playlist.segments.len())
            .min()
            .unwrap_or(0);
        if complete <= self.published {
            return Ok(Step::Waiting);
        }
        let longest = written
            .iter()
            .flat_map(|w| &w.playlist.segments[..complete])
            .map(|s| f64::from(s.duration).round() as u64)
            .max()
            .unwrap_or(1);
        // RFC 8216 §6.2.1: EXT-X-TARGETDURATION must not change while the playlist grows, and
        // §4.3.3.1: every rounded EXTINF must fit in it. The first publication may still take
        // the longest first segment; after that, a segment longer than the target holds the
        // growing ladder where it is (players play what they have) until the VOD one replaces
        // it, whose target then covers that segment.
        let target = if self.published == 0 {
            self.target.max(longest)
        } else if longest > self.target {
            return Ok(Step::Held {
                target: self.target,
                longest,
            });
        } else {
            self.target
        };
        let mut growth = Growth::default();
        for w in &written {
            let segments = &w.playlist.segments;
            if self.published == 0
                && let Some(map) = segments.first().and_then(|s| s.map.as_ref())
            {
                growth.files.push(self.file(&w.name, &map.uri));
            }
            for segment in &segments[self.published..complete] {
                growth.files.push(self.file(&w.name, &segment.uri));
            }
            let rel = format!("{}/{INDEX}", w.name);
            let bytes = to_bytes(&event_playlist(w, complete, target), &self.work.join(&rel))?;
            growth.playlists.push((rel, bytes));
        }
        let done = Done { complete, target };
        if self.published > 0 {
            return Ok(Step::Extend { growth, done });
        }
        Ok(Step::Appear {
            growth,
            masters: self.masters(&written)?,
            done,
        })
    }

    /// Records a step the store published.
    pub(super) fn published(&mut self, done: Done) {
        self.published = done.complete;
        self.target = done.target;
    }

    fn file(&self, rendition: &str, uri: &str) -> (String, PathBuf) {
        (
            format!("{rendition}/{uri}"),
            self.work.join(rendition).join(uri),
        )
    }

    /// `master.m3u8` and the single-rung playlists, with upper bounds for BANDWIDTH and
    /// AVERAGE-BANDWIDTH (RFC 8216 §4.3.4.2 asks BANDWIDTH to bound the peak, and nothing is
    /// measured yet) and CODECS read from the init segments.
    fn masters(&self, written: &[Written]) -> Result<Vec<(String, Vec<u8>)>, PlaylistError> {
        let init = |name: &str| -> Result<Vec<u8>, PlaylistError> {
            let map = written
                .iter()
                .find(|w| w.name == name)
                .and_then(|w| w.playlist.segments.first())
                .and_then(|s| s.map.as_ref())
                .map(|map| self.work.join(name).join(&map.uri))
                .ok_or_else(|| PlaylistError::Invalid {
                    path: self.work.join(name).join(INDEX),
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
        master::all(&rungs, audio.as_ref(), self.frame_rate)
            .into_iter()
            .map(|(name, playlist)| {
                let mut bytes = Vec::new();
                playlist
                    .write_to(&mut bytes)
                    .map_err(|source| PlaylistError::Write {
                        path: self.work.join(&name),
                        source,
                    })?;
                Ok((name, bytes))
            })
            .collect()
    }
}

/// ffmpeg's playlist cut to the first `complete` segments, as a growing EVENT playlist
/// (RFC 8216 §4.3.3.5: segments are only ever appended) with the target duration `target`.
fn event_playlist(written: &Written, complete: usize, target: u64) -> MediaPlaylist {
    let mut playlist = written.playlist.clone();
    playlist.segments.truncate(complete);
    playlist.playlist_type = Some(MediaPlaylistType::Event);
    playlist.end_list = false;
    playlist.target_duration = target;
    playlist
}

fn to_bytes(playlist: &MediaPlaylist, path: &std::path::Path) -> Result<Vec<u8>, PlaylistError> {
    let mut bytes = Vec::new();
    playlist
        .write_to(&mut bytes)
        .map_err(|source| PlaylistError::Write {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(bytes)
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
