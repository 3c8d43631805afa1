//! The store's half of a ladder that grows while it encodes (`transcode::live` decides what to
//! publish and when; each store decides how): [`MediaStore::grow_ladder`] hands out a
//! [`GrowingLadder`] for one attempt, which takes finished segments (immutable, each written
//! once) and replaces the growing playlists; [`MediaStore::withdraw_growing`] takes it down.
//!
//! The rules every store keeps:
//! - a reader never sees a ladder before its master, and a playlist never names a segment not
//!   yet stored (segments first, then the playlists that name them);
//! - while it grows, `hls/<id>/` holds the [`GROWING_MARKER`] with the owning lease's token,
//!   written before any other file of the ladder, so that whatever an attempt left (a crash,
//!   `kill -9`) is recognised as growing, and served `no-cache`, until it is wiped;
//! - the finished ladder's commit ([`MediaStore::commit_ladder`]) removes the marker.
//!
//! [`MediaStore::grow_ladder`]: super::MediaStore::grow_ladder
//! [`MediaStore::withdraw_growing`]: super::MediaStore::withdraw_growing
//! [`MediaStore::commit_ladder`]: super::MediaStore::commit_ladder

use std::path::PathBuf;

use async_trait::async_trait;

use super::{Fence, MediaError};

/// The file in a growing ladder (a dot file: never served) that says it still grows; it holds
/// the lease token (decimal text) of the attempt that owns it. reel and nginx serve the
/// playlists of such a ladder `no-cache`.
pub const GROWING_MARKER: &str = ".growing";

/// What one step of a growing ladder adds. Paths are relative to `hls/<id>/` (`rung/name`).
#[derive(Debug, Default)]
pub struct Growth {
    /// Finished files (init and media segments) as `(rel, local file)`: immutable, so each is
    /// stored once, and before any playlist names it.
    pub files: Vec<(String, PathBuf)>,
    /// The media playlists as `(rel, bytes)`, each replacing the previous version.
    pub playlists: Vec<(String, Vec<u8>)>,
}

/// The growing ladder of one attempt (one lease token) in one store.
#[async_trait]
pub trait GrowingLadder: Send {
    /// The first publication: the marker, `growth`, then the multivariant playlists `masters`
    /// (`(rel, bytes)`, `master.m3u8` among them and written last). Readers see all of it or
    /// nothing. Writes to shared storage first ask `fence`; an error may leave files below
    /// `hls/<id>/` (never the master), which the marker lets a withdraw or a restart find.
    async fn appear(
        &mut self,
        growth: Growth,
        masters: Vec<(String, Vec<u8>)>,
        fence: &dyn Fence,
    ) -> Result<(), MediaError>;

    /// Stores `growth`'s files, then its playlists. `Ok(false)` when the ladder is no longer
    /// this attempt's (withdrawn, or replaced by a newer attempt): nothing was written.
    async fn extend(&mut self, growth: Growth, fence: &dyn Fence) -> Result<bool, MediaError>;
}
