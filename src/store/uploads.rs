//! Resumable (tus) uploads: one row per upload until it expires, locked by the request that
//! writes it.
//!
//! The lock is a lease on the row (`lock_token`, `lock_node`, `lock_until` on the database's
//! clock), so it works across API nodes sharing PostgreSQL and dies with a crashed process. The
//! writing request renews it while bytes flow; a request that has received nothing for a whole
//! lease gives it up to the next request (a client that reconnected after its connection died
//! silently). On SQLite only one process uses the database, so a lock held by another process
//! is left over from before a restart and is taken at once.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sqlx::FromRow;
use sqlx::any::AnyRow;
use uuid::Uuid;

use super::rows::to_i64;
use super::{Dialect, Result, Store, StoreError, first};
use crate::domain::{Millis, VideoId, Visibility};

/// An upload's id: UUIDv7, made by reel, never user input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct UploadId(Uuid);

impl UploadId {
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for UploadId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for UploadId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl FromStr for UploadId {
    type Err = uuid::Error;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Uuid::try_parse(text).map(Self)
    }
}

/// An upload as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Upload {
    pub id: UploadId,
    /// The creator (`sub` of their token); `None` when auth is off.
    pub owner: Option<String>,
    /// `Upload-Length`, in bytes.
    pub length: u64,
    /// Durable bytes received (`Upload-Offset`).
    pub offset: u64,
    /// `Upload-Metadata` exactly as the client sent it.
    pub tus_metadata: Option<String>,
    pub title: Option<String>,
    pub filename: Option<String>,
    pub visibility: Visibility,
    pub metadata: Option<serde_json::Value>,
    pub user_agent: Option<String>,
    /// The media type of the container sniffed from the first bytes.
    pub container: Option<String>,
    /// The video it became, once complete and filed.
    pub video: Option<VideoId>,
    pub created_at: Millis,
    pub expires_at: Millis,
}

/// What creating an upload records.
#[derive(Debug, Clone, Default)]
pub struct NewUpload {
    pub id: UploadId,
    pub owner: Option<String>,
    pub length: u64,
    pub tus_metadata: Option<String>,
    pub title: Option<String>,
    pub filename: Option<String>,
    pub visibility: Visibility,
    pub metadata: Option<serde_json::Value>,
    pub user_agent: Option<String>,
}

/// The request holding an upload's lock: a token per request, the process it runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadLock {
    pub token: String,
    pub node: String,
}

/// The outcome of [`Store::lock_upload`].
#[derive(Debug)]
pub enum LockOutcome {
    /// The lock is this request's; the row as it is now.
    Acquired(Box<Upload>),
    /// Another request holds it and is alive.
    Busy,
    /// No such upload (or expired).
    Missing,
}

#[derive(FromRow)]
struct UploadRow {
    id: String,
    owner: String,
    total_bytes: i64,
    received_bytes: i64,
    tus_metadata: Option<String>,
    title: Option<String>,
    filename: Option<String>,
    visibility: String,
    metadata_json: Option<String>,
    user_agent: Option<String>,
    container: Option<String>,
    video_id: Option<String>,
    created_at: i64,
    expires_at: i64,
}

fn upload(row: &AnyRow) -> Result<Upload> {
    let raw = UploadRow::from_row(row)?;
    let corrupt = |reason: String| StoreError::Corrupt {
        id: raw.id.clone(),
        reason,
    };
    Ok(Upload {
        id: raw
            .id
            .parse()
            .map_err(|_| corrupt("bad upload id".into()))?,
        owner: (!raw.owner.is_empty()).then(|| raw.owner.clone()),
        length: u64::try_from(raw.total_bytes).map_err(|_| corrupt("negative length".into()))?,
        offset: u64::try_from(raw.received_bytes).map_err(|_| corrupt("negative offset".into()))?,
        tus_metadata: raw.tus_metadata.clone(),
        title: raw.title.clone(),
        filename: raw.filename.clone(),
        visibility: Visibility::parse(&raw.visibility),
        metadata: match &raw.metadata_json {
            Some(json) => Some(serde_json::from_str(json).map_err(|e| corrupt(e.to_string()))?),
            None => None,
        },
        user_agent: raw.user_agent.clone(),
        container: raw.container.clone(),
        video: match &raw.video_id {
            Some(id) => Some(id.parse().map_err(|_| corrupt("bad video id".into()))?),
            None => None,
        },
        created_at: Millis(raw.created_at),
        expires_at: Millis(raw.expires_at),
    })
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Records a new upload at offset 0, expiring `expiry` from now.
    pub async fn insert_upload(&self, new: &NewUpload, expiry: Duration) -> Result<Upload> {
        let rows = sqlx::query(self.sql(
            "INSERT INTO uploads (id, owner, total_bytes, received_bytes, tus_metadata, title, \
                 filename, visibility, metadata_json, user_agent, created_at, updated_at, expires_at) \
             VALUES ($1, $2, $3, 0, $4, $5, $6, $7, $8, $9, {now}, {now}, {now} + $10) \
             RETURNING id, owner, total_bytes, received_bytes, tus_metadata, title, filename, \
                 visibility, metadata_json, user_agent, container, video_id, created_at, expires_at",
        ))
        .bind(new.id.to_string())
        .bind(new.owner.clone().unwrap_or_default())
        .bind(to_i64(new.length))
        .bind(new.tus_metadata.clone())
        .bind(new.title.clone())
        .bind(new.filename.clone())
        .bind(new.visibility.as_str())
        .bind(new.metadata.as_ref().map(|m| m.to_string()))
        .bind(new.user_agent.clone())
        .bind(millis(expiry))
        .fetch_all(&self.pool)
        .await?;
        first(rows)
            .map(|row| upload(&row))
            .transpose()?
            .ok_or_else(|| StoreError::Corrupt {
                id: new.id.to_string(),
                reason: "inserted upload not found".into(),
            })
    }

    /// An upload that has not expired.
    pub async fn upload(&self, id: UploadId) -> Result<Option<Upload>> {
        let rows = sqlx::query(self.sql(
            "SELECT id, owner, total_bytes, received_bytes, tus_metadata, title, filename, \
                 visibility, metadata_json, user_agent, container, video_id, created_at, expires_at \
             FROM uploads WHERE id = $1 AND expires_at > {now}",
        ))
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        first(rows).map(|row| upload(&row)).transpose()
    }

    /// Takes an upload's lock for `lease` unless a live request holds it.
    pub async fn lock_upload(
        &self,
        id: UploadId,
        lock: &UploadLock,
        lease: Duration,
    ) -> Result<LockOutcome> {
        let single_process = i64::from(self.dialect == Dialect::Sqlite);
        let rows = sqlx::query(self.sql(
            "UPDATE uploads SET lock_token = $2, lock_node = $3, lock_until = {now} + $4 \
             WHERE id = $1 AND expires_at > {now} \
               AND (lock_token IS NULL OR lock_until < {now} OR ($5 = 1 AND lock_node <> $3)) \
             RETURNING id, owner, total_bytes, received_bytes, tus_metadata, title, filename, \
                 visibility, metadata_json, user_agent, container, video_id, created_at, expires_at",
        ))
        .bind(id.to_string())
        .bind(lock.token.clone())
        .bind(lock.node.clone())
        .bind(millis(lease))
        .bind(single_process)
        .fetch_all(&self.pool)
        .await?;
        match first(rows) {
            Some(row) => Ok(LockOutcome::Acquired(Box::new(upload(&row)?))),
            None if self.upload(id).await?.is_some() => Ok(LockOutcome::Busy),
            None => Ok(LockOutcome::Missing),
        }
    }

    /// Records `offset` durable bytes (and the sniffed container), renews the lock for `lease`
    /// (`None`: leaves it to run out, for a request whose client went silent) and moves expiry
    /// to `expiry` from now. `false` when the lock is no longer this request's (taken over
    /// after it went silent, or the upload was terminated): stop writing at once.
    pub async fn checkpoint_upload(
        &self,
        id: UploadId,
        lock: &UploadLock,
        offset: u64,
        container: Option<&str>,
        lease: Option<Duration>,
        expiry: Duration,
    ) -> Result<bool> {
        let done = sqlx::query(self.sql(
            "UPDATE uploads SET received_bytes = $3, container = COALESCE($4, container), \
                 lock_until = CASE WHEN $5 < 0 THEN lock_until ELSE {now} + $5 END, \
                 expires_at = {now} + $6, updated_at = {now} \
             WHERE id = $1 AND lock_token = $2",
        ))
        .bind(id.to_string())
        .bind(lock.token.clone())
        .bind(to_i64(offset))
        .bind(container.map(str::to_owned))
        .bind(lease.map_or(-1, millis))
        .bind(millis(expiry))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Whether a request is writing the upload now: its lock is held and not run out. On
    /// SQLite (one process) a lock of another `node` is a dead process's and does not count,
    /// as in [`Store::lock_upload`].
    pub async fn upload_is_locked(&self, id: UploadId, node: &str) -> Result<bool> {
        let single_process = i64::from(self.dialect == Dialect::Sqlite);
        let rows = sqlx::query(self.sql(
            "SELECT id FROM uploads WHERE id = $1 AND lock_token IS NOT NULL \
               AND lock_until >= {now} AND NOT ($3 = 1 AND lock_node <> $2)",
        ))
        .bind(id.to_string())
        .bind(node.to_owned())
        .bind(single_process)
        .fetch_all(&self.pool)
        .await?;
        Ok(!rows.is_empty())
    }

    /// Releases the lock if it is still this request's.
    pub async fn unlock_upload(&self, id: UploadId, lock: &UploadLock) -> Result<()> {
        sqlx::query(
            "UPDATE uploads SET lock_token = NULL, lock_node = NULL, lock_until = NULL \
             WHERE id = $1 AND lock_token = $2",
        )
        .bind(id.to_string())
        .bind(lock.token.clone())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records the video a complete upload became and releases the lock; the row stays until
    /// `expiry` from now, so a client that lost the answer finds the video with `HEAD`.
    pub async fn mark_upload_filed(
        &self,
        id: UploadId,
        lock: &UploadLock,
        video: VideoId,
        expiry: Duration,
    ) -> Result<bool> {
        let done = sqlx::query(self.sql(
            "UPDATE uploads SET video_id = $3, lock_token = NULL, lock_node = NULL, \
                 lock_until = NULL, expires_at = {now} + $4, updated_at = {now} \
             WHERE id = $1 AND lock_token = $2",
        ))
        .bind(id.to_string())
        .bind(lock.token.clone())
        .bind(video.to_string())
        .bind(millis(expiry))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes an upload's row (termination, or a refused upload); `false` when there was none.
    pub async fn delete_upload(&self, id: UploadId) -> Result<bool> {
        let done = sqlx::query("DELETE FROM uploads WHERE id = $1")
            .bind(id.to_string())
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Removes up to `limit` expired uploads that no live request is writing; returns their
    /// ids (their files go next).
    pub async fn delete_expired_uploads(&self, limit: u32) -> Result<Vec<UploadId>> {
        let rows = sqlx::query(self.sql(
            "DELETE FROM uploads WHERE id IN ( \
                 SELECT id FROM uploads WHERE expires_at <= {now} \
                   AND (lock_until IS NULL OR lock_until < {now}) \
                 ORDER BY expires_at LIMIT $1) \
             RETURNING id",
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                sqlx::Row::try_get::<String, _>(row, "id")
                    .ok()?
                    .parse()
                    .ok()
            })
            .collect())
    }

    /// Whether a row (expired or not) exists for upload `id`; for removing files left without
    /// one.
    pub async fn upload_exists(&self, id: UploadId) -> Result<bool> {
        let rows = sqlx::query("SELECT id FROM uploads WHERE id = $1")
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await?;
        Ok(!rows.is_empty())
    }
}

#[cfg(test)]
mod tests;
