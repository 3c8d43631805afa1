//! Which upload URL belongs to which local file, across runs of `reel upload`: an interrupted
//! upload resumes when the same command runs again.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::http::Api;

/// Remembered uploads older than this are forgotten (the server's default expiry is 24 h).
const REMEMBER_FOR: Duration = Duration::from_secs(7 * 24 * 3600);

/// Identifies a file's upload to one server across runs: server, path, size, modification time.
pub fn resume_key(api: &Api, path: &Path, meta: &std::fs::Metadata) -> String {
    let full = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let modified = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let server = api
        .url("/")
        .map(|u| u.origin().ascii_serialization())
        .unwrap_or_default();
    format!("{server}|{}|{}|{modified}", full.display(), meta.len())
}

/// Upload URLs remembered per file, in `$XDG_STATE_HOME/reel/uploads.json` (or
/// `~/.local/state/reel/`), so an interrupted `reel upload` resumes when run again. Best
/// effort: without a writable home, nothing is remembered.
pub struct Memory {
    file: Option<PathBuf>,
}

impl Memory {
    pub fn open() -> Self {
        let dir = std::env::var_os("XDG_STATE_HOME")
            .filter(|d| !d.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")));
        Self {
            file: dir.map(|d| d.join("reel").join("uploads.json")),
        }
    }

    fn load(&self) -> Map<String, Value> {
        let Some(file) = &self.file else {
            return Map::new();
        };
        let now = now_secs();
        let mut entries = std::fs::read(file)
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Map<String, Value>>(&bytes).ok())
            .unwrap_or_default();
        entries.retain(|_, entry| {
            entry
                .get("saved")
                .and_then(Value::as_u64)
                .is_some_and(|saved| now.saturating_sub(saved) < REMEMBER_FOR.as_secs())
        });
        entries
    }

    fn save(&self, entries: &Map<String, Value>) {
        let Some(file) = &self.file else {
            return;
        };
        let Some(dir) = file.parent() else {
            return;
        };
        let temporary = file.with_extension(format!("json.{}", std::process::id()));
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| std::fs::write(&temporary, Value::Object(entries.clone()).to_string()))
            .and_then(|()| std::fs::rename(&temporary, file));
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
    }

    pub fn get(&self, key: &str) -> Option<String> {
        self.load()
            .get(key)?
            .get("url")?
            .as_str()
            .map(str::to_owned)
    }

    pub fn put(&self, key: &str, url: &str) {
        let mut entries = self.load();
        entries.insert(key.to_owned(), json!({"url": url, "saved": now_secs()}));
        self.save(&entries);
    }

    pub fn forget(&self, key: &str) {
        let mut entries = self.load();
        if entries.remove(key).is_some() {
            self.save(&entries);
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
