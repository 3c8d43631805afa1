//! Short-lived answers about ladders (published, private), reused across the `/hls/` requests
//! of one playback so that each segment does not cost the bucket two extra HEADs.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::domain::VideoId;

/// How long an answer is reused.
const TTL: Duration = Duration::from_secs(2);
/// Answers kept at most (the maps are emptied past it).
const CAPACITY: usize = 10_000;

#[derive(Debug, Default)]
pub struct Seen {
    private: Mutex<HashMap<VideoId, (bool, Instant)>>,
    /// Ladders seen published (their master was there), by when.
    published: Mutex<HashMap<VideoId, Instant>>,
    /// Published ladders seen growing (their marker was there) or done growing.
    growing: Mutex<HashMap<VideoId, (bool, Instant)>>,
}

fn insert<V>(map: &Mutex<HashMap<VideoId, V>>, id: VideoId, value: V) {
    if let Ok(mut map) = map.lock() {
        if map.len() >= CAPACITY {
            map.clear();
        }
        map.insert(id, value);
    }
}

impl Seen {
    /// Whether the ladder is private, if known lately.
    pub fn private(&self, id: VideoId) -> Option<bool> {
        let map = self.private.lock().ok()?;
        map.get(&id)
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(private, _)| *private)
    }

    pub fn remember_private(&self, id: VideoId, private: bool) {
        insert(&self.private, id, (private, Instant::now()));
    }

    /// True when the ladder was seen published lately.
    pub fn published(&self, id: VideoId) -> bool {
        self.published
            .lock()
            .ok()
            .and_then(|map| map.get(&id).copied())
            .is_some_and(|at| at.elapsed() < TTL)
    }

    pub fn remember_published(&self, id: VideoId) {
        insert(&self.published, id, Instant::now());
    }

    /// Whether a published ladder still grows, if known lately.
    pub fn growing(&self, id: VideoId) -> Option<bool> {
        let map = self.growing.lock().ok()?;
        map.get(&id)
            .filter(|(_, at)| at.elapsed() < TTL)
            .map(|(growing, _)| *growing)
    }

    pub fn remember_growing(&self, id: VideoId, growing: bool) {
        insert(&self.growing, id, (growing, Instant::now()));
    }

    /// Drops what is known of a ladder that is being taken back or removed.
    pub fn forget(&self, id: VideoId) {
        if let Ok(mut map) = self.growing.lock() {
            map.remove(&id);
        }
        if let Ok(mut map) = self.published.lock() {
            map.remove(&id);
        }
        if let Ok(mut map) = self.private.lock() {
            map.remove(&id);
        }
    }
}
