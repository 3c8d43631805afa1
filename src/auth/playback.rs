//! Signed, expiring playback URLs for private videos: `/hls/<id>/…?exp=<unix seconds>&sig=<sig>`.
//!
//! The signature is the one nginx's built-in `secure_link` module checks
//! (`secure_link_md5 "$secure_link_expires/hls/<id>/ <secret>"`), so nginx serves private
//! ladders without calling reel: `sig` = base64url, unpadded, of MD5(`"{exp}/hls/{id}/ {secret}"`).
//! It covers every file of one video (playlists are served with the same query appended to
//! every URI inside them) until `exp`. MD5 is what that module offers; the secret is at least 32
//! bytes and stays last, and every link expires.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use md5::{Digest, Md5};

use crate::domain::VideoId;

/// Why a playback request was refused (403).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PlaybackError {
    #[error("this video is private: its ladder needs a signed link")]
    Unsigned,
    #[error("the signed link has expired")]
    Expired,
    #[error("the link's signature is not valid")]
    BadSignature,
}

/// Makes and checks signed playback URLs.
#[derive(Clone)]
pub struct PlaybackSigner {
    secret: Arc<str>,
    ttl: Duration,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
}

impl PlaybackSigner {
    pub fn new(secret: &str, ttl: Duration) -> Self {
        Self {
            secret: secret.into(),
            ttl,
        }
    }

    /// The signature of `id`'s ladder until `exp`.
    pub fn sign(&self, id: VideoId, exp: u64) -> String {
        let mut md5 = Md5::new();
        md5.update(format!("{exp}/hls/{id}/ {}", self.secret).as_bytes());
        URL_SAFE_NO_PAD.encode(md5.finalize())
    }

    /// `exp=…&sig=…` for a link valid for the configured time from now.
    pub fn query(&self, id: VideoId) -> String {
        let exp = now() + self.ttl.as_secs();
        format!("exp={exp}&sig={}", self.sign(id, exp))
    }

    /// Checks a request's `exp` and `sig` for `id`.
    pub fn check(
        &self,
        id: VideoId,
        exp: Option<&str>,
        sig: Option<&str>,
    ) -> Result<(), PlaybackError> {
        let (Some(exp), Some(sig)) = (exp, sig) else {
            return Err(PlaybackError::Unsigned);
        };
        let exp: u64 = exp.parse().map_err(|_| PlaybackError::BadSignature)?;
        if !constant_time_eq(self.sign(id, exp).as_bytes(), sig.as_bytes()) {
            return Err(PlaybackError::BadSignature);
        }
        if exp <= now() {
            return Err(PlaybackError::Expired);
        }
        Ok(())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Appends `query` to every URI of an HLS playlist (RFC 8216 §4.1: URI lines, and `URI="…"`
/// attributes such as `EXT-X-MAP`), so a player that resolves them keeps the signature.
pub fn sign_playlist(playlist: &str, query: &str) -> String {
    let mut out = String::with_capacity(playlist.len() + 64);
    for line in playlist.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            out.push_str(line);
        } else if !trimmed.starts_with('#') {
            out.push_str(trimmed);
            out.push(if trimmed.contains('?') { '&' } else { '?' });
            out.push_str(query);
        } else if let Some(start) = line.find("URI=\"") {
            let value_start = start + 5;
            match line[value_start..].find('"') {
                Some(length) => {
                    let end = value_start + length;
                    out.push_str(&line[..end]);
                    out.push(if line[value_start..end].contains('?') {
                        '&'
                    } else {
                        '?'
                    });
                    out.push_str(query);
                    out.push_str(&line[end..]);
                }
                None => out.push_str(line),
            }
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

/// Appends `query` to the URL of every cue of a storyboard track (W3C WebVTT: a cue's text,
/// the lines after its `-->` timing line up to a blank line, is one URL such as
/// `storyboard/sprite_0.jpg#xywh=0,0,160,90`), before its fragment, so the sheets a player
/// fetches keep the signature.
pub fn sign_storyboard(track: &str, query: &str) -> String {
    let mut out = String::with_capacity(track.len() + track.len() / 2);
    let mut in_cue = false;
    for line in track.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() {
            in_cue = false;
            out.push_str(line);
        } else if trimmed.contains("-->") {
            in_cue = true;
            out.push_str(line);
        } else if in_cue {
            let (url, fragment) = trimmed
                .split_once('#')
                .map_or((trimmed, None), |(u, f)| (u, Some(f)));
            out.push_str(url);
            out.push(if url.contains('?') { '&' } else { '?' });
            out.push_str(query);
            if let Some(fragment) = fragment {
                out.push('#');
                out.push_str(fragment);
            }
        } else {
            out.push_str(line);
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_nginx_secure_link_and_expire() {
        let signer = PlaybackSigner::new(
            "s3cret-s3cret-s3cret-s3cret-s3cret",
            Duration::from_secs(60),
        );
        let id: VideoId = "01a22d47-b58a-70f7-b7c6-c05a8e65a8e8".parse().expect("id");
        // echo -n '2147483647/hls/01a22d47-b58a-70f7-b7c6-c05a8e65a8e8/ s3cret-…' | openssl md5 -binary | base64 | tr +/ -_ | tr -d =
        let sig = signer.sign(id, 2_147_483_647);
        assert_eq!(sig.len(), 22);
        assert_eq!(signer.check(id, Some("2147483647"), Some(&sig)), Ok(()));
        assert_eq!(
            signer.check(id, Some("2147483646"), Some(&sig)),
            Err(PlaybackError::BadSignature)
        );
        assert_eq!(signer.check(id, None, None), Err(PlaybackError::Unsigned));
        let old = signer.sign(id, 1000);
        assert_eq!(
            signer.check(id, Some("1000"), Some(&old)),
            Err(PlaybackError::Expired)
        );
        let other: VideoId = "01a22d47-b58a-70f7-b7c6-c05a8e65a8e9".parse().expect("id");
        assert_eq!(
            signer.check(other, Some("2147483647"), Some(&sig)),
            Err(PlaybackError::BadSignature)
        );
    }

    #[test]
    fn every_uri_of_a_playlist_carries_the_query() {
        let media =
            "#EXTM3U\n#EXT-X-MAP:URI=\"init.mp4\"\n#EXTINF:4.0,\nseg_00000.m4s\n#EXT-X-ENDLIST\n";
        let signed = sign_playlist(media, "exp=1&sig=x");
        assert!(
            signed.contains("#EXT-X-MAP:URI=\"init.mp4?exp=1&sig=x\""),
            "{signed}"
        );
        assert!(signed.contains("\nseg_00000.m4s?exp=1&sig=x\n"), "{signed}");
        assert!(signed.contains("#EXTINF:4.0,\n"));
        let master = "#EXTM3U\n#EXT-X-STREAM-INF:BANDWIDTH=1\n360p/index.m3u8\n";
        assert!(sign_playlist(master, "q=1").contains("360p/index.m3u8?q=1"));
    }

    #[test]
    fn storyboard_cues_keep_the_signature_before_their_fragment() {
        let track = "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nstoryboard/sprite_0.jpg#xywh=0,0,160,90\n\n\
                     00:00:01.000 --> 00:00:02.500\nstoryboard/sprite_0.jpg#xywh=160,0,160,90\n";
        assert_eq!(
            sign_storyboard(track, "exp=1&sig=s"),
            "WEBVTT\n\n00:00:00.000 --> 00:00:01.000\nstoryboard/sprite_0.jpg?exp=1&sig=s#xywh=0,0,160,90\n\n\
             00:00:01.000 --> 00:00:02.500\nstoryboard/sprite_0.jpg?exp=1&sig=s#xywh=160,0,160,90\n"
        );
    }
}
