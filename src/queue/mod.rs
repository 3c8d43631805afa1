//! The durable job queue and video store (SQLite, WAL).
//!
//! The video row is the job: `queued` and `processing` rows are the queue. Every write is one
//! statement, so SQLite takes the write lock up front and the busy handler applies (STACK §7);
//! no transaction is ever held open while ffmpeg runs.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{FromRow, SqlitePool};

use crate::domain::{JobError, Millis, Rendition, SourceInfo, Step, VideoId, VideoStatus};

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the queue already holds {capacity} waiting jobs")]
    Full { capacity: u32 },
    #[error("database error")]
    Database(#[from] sqlx::Error),
    #[error("cannot run database migrations")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored row {id} is corrupt: {reason}")]
    Corrupt { id: String, reason: String },
}

/// A video as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Video {
    pub id: VideoId,
    pub title: Option<String>,
    pub filename: Option<String>,
    pub status: VideoStatus,
    pub step: Step,
    pub progress: f64,
    pub source_size: u64,
    pub source: Option<SourceInfo>,
    pub renditions: Vec<Rendition>,
    pub error: Option<JobError>,
    pub attempts: u32,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// What an upload hands to the queue.
#[derive(Debug, Clone)]
pub struct NewVideo {
    pub id: VideoId,
    pub title: Option<String>,
    pub filename: Option<String>,
    pub source_size: u64,
}

#[derive(FromRow)]
struct VideoRow {
    id: String,
    title: Option<String>,
    filename: Option<String>,
    status: String,
    step: String,
    progress: f64,
    source_size: i64,
    source_json: Option<String>,
    renditions_json: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    attempts: i64,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<VideoRow> for Video {
    type Error = QueueError;

    fn try_from(row: VideoRow) -> Result<Self, QueueError> {
        let corrupt = |reason: String| QueueError::Corrupt {
            id: row.id.clone(),
            reason,
        };
        let id = VideoId::from_str(&row.id).map_err(|e| corrupt(e.to_string()))?;
        let status = VideoStatus::from_str(&row.status).map_err(|e| corrupt(e.to_string()))?;
        let source = match &row.source_json {
            Some(json) => Some(serde_json::from_str(json).map_err(|e| corrupt(e.to_string()))?),
            None => None,
        };
        let renditions = match &row.renditions_json {
            Some(json) => serde_json::from_str(json).map_err(|e| corrupt(e.to_string()))?,
            None => Vec::new(),
        };
        let error = row.error_code.clone().map(|code| JobError {
            code,
            message: row.error_message.clone().unwrap_or_default(),
        });
        Ok(Video {
            id,
            title: row.title,
            filename: row.filename,
            status,
            step: Step::parse(&row.step),
            progress: row.progress,
            source_size: u64::try_from(row.source_size).unwrap_or(0),
            source,
            renditions,
            error,
            attempts: u32::try_from(row.attempts).unwrap_or(0),
            created_at: Millis(row.created_at),
            updated_at: Millis(row.updated_at),
        })
    }
}

const COLUMNS: &str = "id, title, filename, status, step, progress, source_size, source_json, \
     renditions_json, error_code, error_message, attempts, created_at, updated_at";

/// The 1-based queue position of row `v` while it is queued, else NULL; read in the same
/// statement as the row, so the two always agree.
const POSITION: &str = "CASE WHEN v.status = 'queued' THEN (SELECT COUNT(*) FROM videos q \
     WHERE q.status = 'queued' AND q.id <= v.id) END AS position";

#[derive(FromRow)]
struct Positioned {
    #[sqlx(flatten)]
    video: VideoRow,
    position: Option<i64>,
}

impl Positioned {
    fn split(self) -> Result<(Video, Option<u32>), QueueError> {
        let position = self.position.map(|p| u32::try_from(p).unwrap_or(u32::MAX));
        Video::try_from(self.video).map(|video| (video, position))
    }
}

/// Cheap to clone: a handle on the connection pool.
#[derive(Clone)]
pub struct Store {
    pool: SqlitePool,
}

impl Store {
    /// Opens (creating if needed) the database and runs the embedded migrations.
    pub async fn connect(database_url: &str) -> Result<Self, QueueError> {
        let options = SqliteConnectOptions::from_str(database_url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }

    pub fn sqlite_url_in(dir: &Path) -> String {
        format!("sqlite://{}", dir.join("reel.db").display())
    }

    pub async fn ping(&self) -> Result<(), QueueError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Inserts a queued video unless the queue is at capacity, in one statement.
    pub async fn enqueue(&self, new: &NewVideo, capacity: u32) -> Result<Video, QueueError> {
        let now = Millis::now().0;
        let row: Option<VideoRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO videos (id, title, filename, status, step, progress, source_size, created_at, updated_at) \
             SELECT ?1, ?2, ?3, 'queued', 'queued', 0, ?4, ?5, ?5 \
             WHERE (SELECT COUNT(*) FROM videos WHERE status = 'queued') < ?6 \
             RETURNING {COLUMNS}"
        )))
        .bind(new.id.to_string())
        .bind(&new.title)
        .bind(&new.filename)
        .bind(i64::try_from(new.source_size).unwrap_or(i64::MAX))
        .bind(now)
        .bind(i64::from(capacity))
        // fetch_all steps the statement to its end, so the insert has committed when this
        // returns: with fetch_optional the statement stays open and another connection may
        // not see the row yet (a 202 read back its own video as missing).
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .next();
        row.ok_or(QueueError::Full { capacity })?.try_into()
    }

    pub async fn queued_count(&self) -> Result<u32, QueueError> {
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM videos WHERE status = 'queued'")
            .fetch_one(&self.pool)
            .await?;
        Ok(u32::try_from(count).unwrap_or(u32::MAX))
    }

    pub async fn get(&self, id: VideoId) -> Result<Option<Video>, QueueError> {
        let row: Option<VideoRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM videos WHERE id = ?1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(Video::try_from).transpose()
    }

    /// A video and, while it is queued, its 1-based queue position, from one statement: the
    /// two always agree (never `queued` without a position, never a position when not queued).
    pub async fn get_with_position(
        &self,
        id: VideoId,
    ) -> Result<Option<(Video, Option<u32>)>, QueueError> {
        let row: Option<Positioned> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, {POSITION} FROM videos v WHERE v.id = ?1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(Positioned::split).transpose()
    }

    /// Newest first, each with its queue position as in [`Store::get_with_position`]; `before`
    /// is the id of the last item of the previous page.
    pub async fn list(
        &self,
        limit: u32,
        before: Option<VideoId>,
        status: Option<VideoStatus>,
    ) -> Result<Vec<(Video, Option<u32>)>, QueueError> {
        let rows: Vec<Positioned> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS}, {POSITION} FROM videos v \
             WHERE (?1 IS NULL OR status = ?1) AND (?2 IS NULL OR id < ?2) \
             ORDER BY id DESC LIMIT ?3"
        )))
        .bind(status.map(VideoStatus::as_str))
        .bind(before.map(|id| id.to_string()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(Positioned::split).collect()
    }

    /// Queued ids, oldest first (their index + 1 is their queue position).
    pub async fn queued_ids(&self, limit: u32) -> Result<Vec<VideoId>, QueueError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM videos WHERE status = 'queued' ORDER BY id LIMIT ?1",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(ids.iter().filter_map(|id| id.parse().ok()).collect())
    }

    /// Claims the oldest queued job that may run now (or one whose lease ran out) for `lease`.
    pub async fn claim(&self, lease: Duration) -> Result<Option<Video>, QueueError> {
        let now = Millis::now().0;
        let lease_until = now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        let row: Option<VideoRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE videos SET status = 'processing', step = 'probing', progress = 0, \
                 attempts = attempts + 1, lease_until = ?1, updated_at = ?2 \
             WHERE id = (SELECT id FROM videos \
                         WHERE (status = 'queued' AND run_after <= ?2) \
                            OR (status = 'processing' AND lease_until < ?2) \
                         ORDER BY id LIMIT 1) \
             RETURNING {COLUMNS}"
        )))
        .bind(lease_until)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        row.map(Video::try_from).transpose()
    }

    /// Extends a running job's lease; `false` when the job is gone (deleted).
    pub async fn heartbeat(&self, id: VideoId, lease: Duration) -> Result<bool, QueueError> {
        let now = Millis::now().0;
        let lease_until = now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX / 2);
        let done = sqlx::query(
            "UPDATE videos SET lease_until = ?1 WHERE id = ?2 AND status = 'processing'",
        )
        .bind(lease_until)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records progress of a running job; `false` when the job is gone.
    pub async fn record_progress(
        &self,
        id: VideoId,
        step: Step,
        progress: f64,
    ) -> Result<bool, QueueError> {
        let done = sqlx::query(
            "UPDATE videos SET step = ?1, progress = MAX(progress, ?2), updated_at = ?3 \
             WHERE id = ?4 AND status = 'processing'",
        )
        .bind(step.as_str())
        .bind(progress)
        .bind(Millis::now().0)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn record_source(
        &self,
        id: VideoId,
        source: &SourceInfo,
    ) -> Result<bool, QueueError> {
        let json = serde_json::to_string(source).unwrap_or_default();
        let done = sqlx::query("UPDATE videos SET source_json = ?1, updated_at = ?2 WHERE id = ?3")
            .bind(json)
            .bind(Millis::now().0)
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks a running job ready; `None` when it was deleted meanwhile.
    pub async fn complete(
        &self,
        id: VideoId,
        renditions: &[Rendition],
    ) -> Result<Option<Video>, QueueError> {
        let json = serde_json::to_string(renditions).unwrap_or_else(|_| "[]".into());
        let row: Option<VideoRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE videos SET status = 'ready', step = 'done', progress = 1, renditions_json = ?1, \
                 lease_until = NULL, updated_at = ?2 \
             WHERE id = ?3 AND status = 'processing' RETURNING {COLUMNS}"
        )))
        .bind(json)
        .bind(Millis::now().0)
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(Video::try_from).transpose()
    }

    /// Marks a job failed with a reason; `None` when it was deleted meanwhile.
    pub async fn fail(&self, id: VideoId, error: &JobError) -> Result<Option<Video>, QueueError> {
        let row: Option<VideoRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "UPDATE videos SET status = 'failed', step = 'done', error_code = ?1, error_message = ?2, \
                 lease_until = NULL, updated_at = ?3 \
             WHERE id = ?4 AND status IN ('queued', 'processing') RETURNING {COLUMNS}"
        )))
        .bind(&error.code)
        .bind(&error.message)
        .bind(Millis::now().0)
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?;
        row.map(Video::try_from).transpose()
    }

    /// Puts a running job back in the queue, to run again after `delay`. An interrupted job
    /// (shutdown) gets its attempt back: only real failures count towards the limit.
    pub async fn requeue(
        &self,
        id: VideoId,
        delay: Duration,
        count_attempt: bool,
    ) -> Result<bool, QueueError> {
        let now = Millis::now().0;
        let run_after = now + i64::try_from(delay.as_millis()).unwrap_or(0);
        let done = sqlx::query(
            "UPDATE videos SET status = 'queued', step = 'queued', progress = 0, lease_until = NULL, \
                 run_after = ?1, attempts = attempts - ?2, updated_at = ?3 \
             WHERE id = ?4 AND status = 'processing'",
        )
        .bind(run_after)
        .bind(if count_attempt { 0_i64 } else { 1_i64 })
        .bind(now)
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Returns every `processing` job to the queue: on a single node, nothing else can own them.
    pub async fn requeue_all_processing(&self) -> Result<u64, QueueError> {
        let done = sqlx::query(
            "UPDATE videos SET status = 'queued', step = 'queued', progress = 0, lease_until = NULL, \
                 updated_at = ?1 WHERE status = 'processing'",
        )
        .bind(Millis::now().0)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Deletes the video row; returns the status it had, `None` when there was no such video.
    pub async fn delete(&self, id: VideoId) -> Result<Option<VideoStatus>, QueueError> {
        let status: Option<String> =
            sqlx::query_scalar("DELETE FROM videos WHERE id = ?1 RETURNING status")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?;
        Ok(status.and_then(|s| s.parse().ok()))
    }

    /// Ids of every job that may own files in `tmp/` right now.
    pub async fn active_ids(&self) -> Result<Vec<VideoId>, QueueError> {
        let ids: Vec<String> =
            sqlx::query_scalar("SELECT id FROM videos WHERE status IN ('queued', 'processing')")
                .fetch_all(&self.pool)
                .await?;
        Ok(ids.iter().filter_map(|id| id.parse().ok()).collect())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
