//! The video/job store: video rows (the row is the job), the queue with its leases, and the
//! history that every state change appends in the same transaction.
//!
//! One SQL implementation serves both engines through sqlx's `Any` driver: SQLite (the
//! embedded default, a file in the media dir) and PostgreSQL (scale-out). The statements are
//! shared; the few places where the dialects differ are tokens in the SQL (see [`Dialect`]).
//!
//! Rules every write follows:
//! - A write that changes state runs in one short transaction that also appends its history
//!   event ([`Store::transition`] and friends); on SQLite it starts with `BEGIN IMMEDIATE`, so the
//!   busy handler applies (STACK §7), and no transaction is ever held open while ffmpeg runs.
//! - On PostgreSQL every transaction that appends history takes one transaction-scoped advisory
//!   lock first, so history `seq` order is commit order: a change-feed reader that remembers the
//!   last `seq` never skips an event committed later with a smaller `seq` (the outbox gap).
//! - Job writes are fenced by the lease token of the claim ([`Lease`]): a worker that lost its
//!   lease can no longer change the row.
//! - Every statement's outcome is read to its end, so a failed commit (a full disk) is an error,
//!   never a silent success.

mod history;
mod jobs;
mod properties;
mod rows;
mod uploads;
mod videos;
mod webhooks;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, SqlStr};

pub use history::{ChangeScope, HistoryPage};
pub use jobs::{Claim, Finishing, Lease, Outcome, QueueSnapshot, Repair};
pub use uploads::{LockOutcome, NewUpload, Upload, UploadId, UploadLock};
pub use videos::{VideoPatch, VideoQuery};
pub use webhooks::{DeadLetter, Delivery, Failed, NewWebhook, Target, Webhook, WebhookLease};

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the queue already holds {capacity} waiting jobs")]
    QueueFull { capacity: u32 },
    /// The database cannot be reached (down, restarting, pool exhausted): retry later.
    #[error("the database is unavailable")]
    Unavailable(#[source] sqlx::Error),
    /// The database's disk is full: nothing was written.
    #[error("the database is out of space")]
    Full(#[source] sqlx::Error),
    #[error("database error")]
    Database(#[source] sqlx::Error),
    #[error("cannot run database migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://…")]
    Url(String),
    /// The SQLite file was deleted or replaced while running: writes would go nowhere.
    #[error("the database file {0} was removed or replaced while reel was running")]
    FileGone(String),
    #[error("stored row {id} is corrupt: {reason}")]
    Corrupt { id: String, reason: String },
}

impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> Self {
        classify(error)
    }
}

/// Sorts a driver error into what callers act on: unavailable (503), full (507) or a bug (500).
fn classify(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed
        | sqlx::Error::Tls(_) => StoreError::Unavailable(error),
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            if let Ok(extended) = code.parse::<i32>() {
                // SQLite reports extended result codes; the primary code is the low byte.
                return match extended & 0xff {
                    13 => StoreError::Full(error), // SQLITE_FULL
                    // BUSY and LOCKED past the busy timeout, IOERR, CORRUPT, CANTOPEN, READONLY, NOTADB.
                    5 | 6 | 8 | 10 | 11 | 14 | 26 => StoreError::Unavailable(error),
                    _ => StoreError::Database(error),
                };
            }
            match code.as_str() {
                // PostgreSQL: disk_full.
                "53100" => StoreError::Full(error),
                // Connection exceptions (08…), shutdown and crash recovery (57P…), too many connections.
                c if c.starts_with("08") || c.starts_with("57P") || c == "53300" => {
                    StoreError::Unavailable(error)
                }
                _ => StoreError::Database(error),
            }
        }
        _ => StoreError::Database(error),
    }
}

impl StoreError {
    /// True for faults that pass (the database restarting, a full disk being freed).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unavailable(_) | Self::Full(_) | Self::FileGone(_)
        )
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Cheap to clone: a handle on the connection pool.
#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    dialect: Dialect,
    /// SQL texts with the dialect's tokens replaced, made once per statement.
    statements: Arc<DashMap<&'static str, SqlStr>>,
    url: Arc<str>,
    /// The SQLite file and its identity at start: a file deleted or replaced under a running
    /// server is noticed instead of writing into a ghost.
    sqlite_file: Option<Arc<SqliteFile>>,
    /// Bumped after every commit that appended history (and, on PostgreSQL, by the bus when
    /// another process did), so feed readers (long polls, streams, webhook delivery) wake at
    /// once instead of at their next poll.
    appended: Arc<tokio::sync::watch::Sender<u64>>,
}

#[derive(Debug)]
struct SqliteFile {
    path: std::path::PathBuf,
    identity: (u64, u64),
}

impl SqliteFile {
    fn identity(path: &std::path::Path) -> Option<(u64, u64)> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()))
    }

    fn check(&self) -> Result<()> {
        if Self::identity(&self.path) == Some(self.identity) {
            Ok(())
        } else {
            Err(StoreError::FileGone(self.path.display().to_string()))
        }
    }
}

/// SQLite pragmas set on every new connection (the `Any` driver connects from a URL only).
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;";

/// A PostgreSQL URL with `application_name=<name>` added unless it already names one, so
/// `pg_stat_activity` tells reel's processes apart (`reel-serve`, `reel-work`).
pub fn with_application_name(url: &str, name: &str) -> String {
    let query = url.split_once('?').map_or("", |(_, query)| query);
    if query
        .split('&')
        .any(|pair| pair.split('=').next() == Some("application_name"))
    {
        return url.to_owned();
    }
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}application_name={name}")
}

impl Store {
    /// Opens (creating if needed) the database and runs the embedded migrations. Concurrent
    /// starts are safe: migrations run under the migrator's lock.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let dialect = if url.starts_with("sqlite:") {
            Dialect::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Dialect::Postgres
        } else {
            return Err(StoreError::Url(redact(url)));
        };
        // SQLite: the file is created here, once; the pool then opens it read-write without
        // creating, so a file deleted under a running server fails loudly instead of being
        // silently recreated empty.
        let (connect_url, sqlite_file) = match dialect {
            Dialect::Sqlite => {
                let path = sqlite_path(url).ok_or_else(|| StoreError::Url(redact(url)))?;
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(|e| StoreError::Unavailable(sqlx::Error::Io(e)))?;
                let identity = SqliteFile::identity(&path)
                    .ok_or_else(|| StoreError::FileGone(path.display().to_string()))?;
                let base = url.split('?').next().unwrap_or(url);
                (
                    format!("{base}?mode=rw"),
                    Some(Arc::new(SqliteFile { path, identity })),
                )
            }
            Dialect::Postgres => (url.to_owned(), None),
        };
        let options = sqlx::any::AnyConnectOptions::from_str(&connect_url)
            .map_err(|_| StoreError::Url(redact(url)))?;
        let guard = sqlite_file.clone();
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(3))
            // A connection to a SQLite file that was deleted or replaced still reads and writes
            // the old inode: refuse to hand it out, so every request sees the same 503.
            .before_acquire(move |_, _| {
                let guard = guard.clone();
                Box::pin(async move {
                    match guard.as_ref().map(|file| file.check()) {
                        Some(Err(_)) => Err(sqlx::Error::Io(std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "the database file was removed or replaced",
                        ))),
                        _ => Ok(true),
                    }
                })
            })
            // A connection released while it still counts itself inside a transaction (on
            // SQLite: a COMMIT that failed on a full disk, which SQLite may have rolled back on
            // its own) is closed, not reused: sqlx would turn the next BEGIN on it into a
            // savepoint and refuse it (`InvalidSavePointStatement`).
            .after_release(move |conn, _| {
                Box::pin(async move {
                    Ok(dialect != Dialect::Sqlite || !sqlx::Connection::is_in_transaction(conn))
                })
            })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if dialect == Dialect::Sqlite {
                        conn.execute(SQLITE_PRAGMAS).await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        let migrator = match dialect {
            Dialect::Sqlite => sqlx::migrate!("./migrations/sqlite"),
            Dialect::Postgres => sqlx::migrate!("./migrations/postgres"),
        };
        migrator.run(&pool).await?;
        Ok(Self {
            pool,
            dialect,
            statements: Arc::new(DashMap::new()),
            url: redact(url).into(),
            sqlite_file,
            appended: Arc::new(tokio::sync::watch::Sender::new(0)),
        })
    }

    /// The default database: a SQLite file inside the media dir.
    pub fn sqlite_url_in(dir: &std::path::Path) -> String {
        format!("sqlite://{}", dir.join("reel.db").display())
    }

    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The URL without its password, for logs and the PostgreSQL bus.
    pub fn redacted_url(&self) -> &str {
        &self.url
    }

    /// Runs a trivial query: `/readyz`.
    /// Checks that the database answers and holds reel's schema: `/readyz`.
    pub async fn ping(&self) -> Result<()> {
        self.check_file()?;
        sqlx::query("SELECT COUNT(*) FROM videos WHERE id = ''")
            .fetch_all(&self.pool)
            .await?;
        Ok(())
    }

    fn check_file(&self) -> Result<()> {
        self.sqlite_file
            .as_ref()
            .map_or(Ok(()), |file| file.check())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The statement `text` in this store's dialect. Tokens: `{now}` (milliseconds since the
    /// epoch on the database's clock, so every node agrees on lease expiry), `{max}` (two-argument
    /// maximum), `{skip_locked}` (row locks when claiming), `{like}` (case-insensitive match),
    /// `{properties_match}` (every pair of the JSON object `$5` equals a stored property, compared
    /// as text).
    fn sql(&self, text: &'static str) -> SqlStr {
        if let Some(done) = self.statements.get(text) {
            return done.clone();
        }
        let tokens: &[(&str, &str)] = match self.dialect {
            Dialect::Sqlite => &[
                (
                    "{now}",
                    "CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)",
                ),
                ("{max}", "MAX"),
                ("{skip_locked}", ""),
                // ASCII case folding: SQLite's LIKE ignores case by default.
                ("{like}", "LIKE"),
                (
                    "{properties_match}",
                    "NOT EXISTS (SELECT 1 FROM json_each($5) f WHERE NOT EXISTS ( \
                       SELECT 1 FROM json_each(COALESCE(videos.properties_json, '{}')) p \
                       WHERE p.key = f.key AND f.value = CASE p.type WHEN 'true' THEN 'true' \
                         WHEN 'false' THEN 'false' ELSE CAST(p.value AS TEXT) END))",
                ),
            ],
            Dialect::Postgres => &[
                (
                    "{now}",
                    "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)",
                ),
                ("{max}", "GREATEST"),
                ("{skip_locked}", "FOR UPDATE OF v SKIP LOCKED"),
                ("{like}", "ILIKE"),
                (
                    "{properties_match}",
                    "NOT EXISTS (SELECT 1 FROM jsonb_each_text(CAST($5 AS JSONB)) f WHERE NOT EXISTS ( \
                       SELECT 1 FROM jsonb_each_text(CAST(COALESCE(videos.properties_json, '{}') AS JSONB)) p \
                       WHERE p.key = f.key AND p.value = f.value))",
                ),
            ],
        };
        let mut replaced = text.to_owned();
        for (token, replacement) in tokens {
            replaced = replaced.replace(token, replacement);
        }
        let made: SqlStr = sqlx::AssertSqlSafe(replaced).into_sql_str();
        self.statements.insert(text, made.clone());
        made
    }

    /// Starts a writing transaction: `BEGIN IMMEDIATE` on SQLite (the write lock up front), and
    /// on PostgreSQL the history advisory lock, so appends commit in `seq` order.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        self.check_file()?;
        match self.dialect {
            Dialect::Sqlite => Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?),
            Dialect::Postgres => {
                let mut tx = self.pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7354012)")
                    .fetch_all(&mut *tx)
                    .await?;
                Ok(tx)
            }
        }
    }
}

impl Store {
    /// Changes after every commit that appended history: this process's at once, another
    /// process's when the PostgreSQL bus hears of it (readers still poll as a safety net).
    pub fn appends(&self) -> tokio::sync::watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Wakes the feed readers of this process: another process appended history.
    pub fn appended_elsewhere(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Commits a transaction that appended history, then wakes this process's feed readers.
    async fn commit(&self, tx: sqlx::Transaction<'static, sqlx::Any>) -> Result<()> {
        tx.commit().await?;
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
        Ok(())
    }
}

use sqlx::SqlSafeStr;

/// PostgreSQL `NOTIFY`, used by the cross-machine bus (see `bus::notify`).
impl Store {
    /// `NOTIFY channel, payload`.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<()> {
        sqlx::query("SELECT 1 AS sent FROM pg_notify($1, $2)")
            .bind(channel.to_owned())
            .bind(payload.to_owned())
            .fetch_all(&self.pool)
            .await?;
        Ok(())
    }

    /// `NOTIFY channel, {"id": <next event id>, "video": video, "event": event_json}`: the id is
    /// taken from the `event_ids` sequence in the same statement.
    pub async fn notify_event(&self, channel: &str, video: &str, event_json: &str) -> Result<()> {
        sqlx::query(
            "SELECT 1 AS sent FROM pg_notify($1, json_build_object( \
                 'id', nextval('event_ids'), 'video', $2, 'event', CAST($3 AS json))::text)",
        )
        .bind(channel.to_owned())
        .bind(video.to_owned())
        .bind(event_json.to_owned())
        .fetch_all(&self.pool)
        .await?;
        Ok(())
    }
}

/// The file of a `sqlite://PATH[?…]` URL.
fn sqlite_path(url: &str) -> Option<std::path::PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then(|| std::path::PathBuf::from(path))
}

/// Removes a password from a database URL.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// The first row of a statement that was read to its end (so its commit error surfaces).
fn first(rows: Vec<AnyRow>) -> Option<AnyRow> {
    rows.into_iter().next()
}

#[cfg(test)]
mod tests;
