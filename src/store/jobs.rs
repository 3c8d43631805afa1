//! The queue: claims with leases and fencing tokens, lease renewal, progress, and how a job ends.
//!
//! A claim gives the worker a [`Lease`]: the video id and a fencing token that grows with every
//! claim of that video. Every later write of the job names the token, so a worker that lost its
//! lease (paused past it, cut off from the database) changes nothing once another worker has
//! claimed the job again: its writes match no row and it learns it must stop.

use std::time::Duration;

use serde_json::json;

use super::history::append;
use super::rows::queue_positions;
use super::{Result, Store, first};
use crate::domain::{HistoryKind, JobError, NewEvent, Rendition, SourceInfo, Step, Video, VideoId};

/// The right to work on one job: fenced writes name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Lease {
    pub video: VideoId,
    /// Fencing token: grows with every claim of the video.
    pub token: i64,
}

/// A claimed job.
#[derive(Debug, Clone)]
pub struct Claim {
    pub video: Video,
    pub lease: Lease,
    /// The previous holder's lease expired (it died or was cut off) rather than the job being queued.
    pub recovered: bool,
}

/// How a claimed job ends (or pauses).
#[derive(Debug, Clone)]
pub enum Outcome<'a> {
    /// The ladder is published.
    Ready {
        renditions: &'a [Rendition],
        encode_seconds: f64,
    },
    /// The input or the encode is broken: no retry. Also undoes a `ready` of the same lease
    /// whose ladder could not be published.
    Failed(&'a JobError),
    /// A passing fault of the job: back to the queue after `delay`, one attempt counted.
    Retry { delay: Duration, reason: &'a str },
    /// Not the job's fault (shutdown): back to the queue now, no attempt counted.
    Release { reason: &'a str },
}

/// The queue as workers see it: depth and every queued video's position.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueSnapshot {
    /// Queued ids in claim order (index + 1 is the position).
    pub order: Vec<VideoId>,
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Store {
    /// Claims the next job for `worker` for `lease`: first a job whose lease expired, then the
    /// queue in fair order (see `queue_positions!`) among jobs whose back-off has passed.
    /// Appends `processing` (`attempt`, `worker`, `recovered`). `None` when nothing may run.
    pub async fn claim(&self, worker: &str, lease: Duration) -> Result<Option<Claim>> {
        const NEXT: &str = concat!(
            "WITH ",
            queue_positions!(),
            " SELECT v.id FROM videos v LEFT JOIN q ON q.id = v.id \
             WHERE (v.status = 'queued' AND v.run_after <= {now}) \
                OR (v.status = 'processing' AND v.lease_until < {now}) \
             ORDER BY CASE WHEN v.status = 'processing' THEN 0 ELSE 1 END, q.position, v.id \
             LIMIT 1 {skip_locked}"
        );
        // Most polls find nothing: look before taking the write lock.
        if first(sqlx::query(self.sql(NEXT)).fetch_all(&self.pool).await?).is_none() {
            return Ok(None);
        }
        let mut tx = self.begin_write().await?;
        let Some(row) = first(sqlx::query(self.sql(NEXT)).fetch_all(&mut *tx).await?) else {
            return Ok(None);
        };
        let id: String = sqlx::Row::try_get(&row, "id")?;
        let claimed = sqlx::query(self.sql(
            "UPDATE videos SET \
                 interruptions = interruptions + CASE WHEN status = 'processing' THEN 1 ELSE 0 END, \
                 status = 'processing', step = 'probing', progress = 0, \
                 lease_token = lease_token + 1, lease_until = {now} + $1, worker = $2, \
                 started_at = {now}, updated_at = {now} \
             WHERE id = $3 RETURNING lease_token, owner, attempts, interruptions",
        ))
        .bind(millis(lease))
        .bind(worker.to_owned())
        .bind(id.clone())
        .fetch_all(&mut *tx)
        .await?;
        let Some(claimed) = first(claimed) else {
            return Ok(None);
        };
        let token: i64 = sqlx::Row::try_get(&claimed, "lease_token")?;
        let owner: String = sqlx::Row::try_get(&claimed, "owner")?;
        let attempts: i64 = sqlx::Row::try_get(&claimed, "attempts")?;
        let interruptions: i64 = sqlx::Row::try_get(&claimed, "interruptions")?;
        let video_id: VideoId = id.parse().map_err(|_| super::StoreError::Corrupt {
            id: id.clone(),
            reason: "bad id".into(),
        })?;
        let event = NewEvent::new(
            HistoryKind::Processing,
            json!({ "attempt": attempts + interruptions + 1, "worker": worker, "lease": token }),
        );
        append(&mut tx, self, video_id, Some(owner.as_str()), &event).await?;
        let video = self.video_in(&mut tx, video_id).await?;
        self.commit(tx).await?;
        Ok(video.map(|video| Claim {
            recovered: video.interruptions > 0 && token > 1,
            lease: Lease {
                video: video.id,
                token,
            },
            video,
        }))
    }

    /// Extends a lease; `false` when it is no longer held (deleted, or claimed by another).
    pub async fn renew(&self, lease: &Lease, duration: Duration) -> Result<bool> {
        let done = sqlx::query(self.sql(
            "UPDATE videos SET lease_until = {now} + $1 \
             WHERE id = $2 AND lease_token = $3 AND status = 'processing'",
        ))
        .bind(millis(duration))
        .bind(lease.video.to_string())
        .bind(lease.token)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a running job's step and progress (never lowering it); `false` when the lease is lost.
    pub async fn record_progress(&self, lease: &Lease, step: Step, progress: f64) -> Result<bool> {
        let done = sqlx::query(self.sql(
            "UPDATE videos SET step = $1, progress = {max}(progress, $2), updated_at = {now} \
             WHERE id = $3 AND lease_token = $4 AND status = 'processing'",
        ))
        .bind(step.as_str())
        .bind(progress)
        .bind(lease.video.to_string())
        .bind(lease.token)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records what the probe found; `false` when the lease is lost.
    pub async fn record_source(&self, lease: &Lease, source: &SourceInfo) -> Result<bool> {
        let done = sqlx::query(self.sql(
            "UPDATE videos SET source_json = $1, updated_at = {now} \
             WHERE id = $2 AND lease_token = $3 AND status = 'processing'",
        ))
        .bind(serde_json::to_string(source).unwrap_or_default())
        .bind(lease.video.to_string())
        .bind(lease.token)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks the job watchable while it still encodes (first segment of every rung published),
    /// appending `playable`; `None` when the lease is lost.
    pub async fn mark_playable(&self, lease: &Lease) -> Result<Option<Video>> {
        let mut tx = self.begin_write().await?;
        let done = sqlx::query(self.sql(
            "UPDATE videos SET playable_at = {now}, updated_at = {now} \
             WHERE id = $1 AND lease_token = $2 AND status = 'processing' AND playable_at IS NULL \
             RETURNING owner",
        ))
        .bind(lease.video.to_string())
        .bind(lease.token)
        .fetch_all(&mut *tx)
        .await?;
        let Some(row) = first(done) else {
            return Ok(None);
        };
        let owner: String = sqlx::Row::try_get(&row, "owner")?;
        let event = NewEvent::bare(HistoryKind::Playable);
        append(&mut tx, self, lease.video, Some(owner.as_str()), &event).await?;
        let video = self.video_in(&mut tx, lease.video).await?;
        self.commit(tx).await?;
        Ok(video)
    }

    /// Ends (or releases) a claimed job and appends its event, in one transaction. `None` when
    /// the lease is no longer held: the job was deleted or another worker claimed it, and this
    /// worker must publish nothing.
    pub async fn finish(&self, lease: &Lease, outcome: Outcome<'_>) -> Result<Option<Video>> {
        let mut tx = self.begin_write().await?;
        let (statement, event) = match &outcome {
            Outcome::Ready {
                renditions,
                encode_seconds,
            } => (
                sqlx::query(self.sql(
                    "UPDATE videos SET status = 'ready', step = 'done', progress = 1, \
                         renditions_json = $1, error_code = NULL, error_message = NULL, \
                         lease_until = NULL, worker = NULL, updated_at = {now} \
                     WHERE id = $2 AND lease_token = $3 AND status = 'processing' RETURNING owner",
                ))
                .bind(serde_json::to_string(renditions).unwrap_or_else(|_| "[]".into())),
                NewEvent::new(
                    HistoryKind::Ready,
                    json!({
                        "renditions": renditions.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
                        "encode_seconds": (encode_seconds * 1000.0).round() / 1000.0,
                    }),
                ),
            ),
            Outcome::Failed(error) => (
                sqlx::query(self.sql(
                    "UPDATE videos SET status = 'failed', step = 'done', error_code = $1, \
                         error_message = $2, lease_until = NULL, worker = NULL, updated_at = {now} \
                     WHERE id = $3 AND lease_token = $4 AND status IN ('processing', 'ready') \
                     RETURNING owner",
                ))
                .bind(error.code.clone())
                .bind(error.message.clone()),
                NewEvent::new(HistoryKind::Failed, json!({ "code": error.code })),
            ),
            Outcome::Retry { delay, reason } => (
                sqlx::query(self.sql(
                    "UPDATE videos SET status = 'queued', step = 'queued', progress = 0, \
                         attempts = attempts + 1, run_after = {now} + $1, lease_until = NULL, \
                         worker = NULL, playable_at = NULL, updated_at = {now} \
                     WHERE id = $2 AND lease_token = $3 AND status = 'processing' RETURNING owner",
                ))
                .bind(millis(*delay)),
                NewEvent::new(
                    HistoryKind::Retried,
                    json!({ "reason": reason, "delay_seconds": delay.as_secs_f64() }),
                ),
            ),
            Outcome::Release { reason } => (
                sqlx::query(self.sql(
                    "UPDATE videos SET status = 'queued', step = 'queued', progress = 0, \
                         lease_until = NULL, worker = NULL, playable_at = NULL, updated_at = {now} \
                     WHERE id = $1 AND lease_token = $2 AND status = 'processing' RETURNING owner",
                )),
                NewEvent::new(
                    HistoryKind::Retried,
                    json!({ "reason": reason, "delay_seconds": 0 }),
                ),
            ),
        };
        let rows = statement
            .bind(lease.video.to_string())
            .bind(lease.token)
            .fetch_all(&mut *tx)
            .await?;
        let Some(row) = first(rows) else {
            return Ok(None);
        };
        let owner: String = sqlx::Row::try_get(&row, "owner")?;
        append(&mut tx, self, lease.video, Some(owner.as_str()), &event).await?;
        if !matches!(outcome, Outcome::Ready { .. } | Outcome::Failed(_)) {
            append(
                &mut tx,
                self,
                lease.video,
                Some(owner.as_str()),
                &NewEvent::bare(HistoryKind::Queued),
            )
            .await?;
        }
        let video = self.video_in(&mut tx, lease.video).await?;
        self.commit(tx).await?;
        Ok(video)
    }

    /// Single node only: returns every `processing` job to the queue (whatever ran them died
    /// with the previous process), counting an interruption and appending `retried`.
    pub async fn recover_interrupted(&self) -> Result<Vec<VideoId>> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(self.sql(
            "UPDATE videos SET status = 'queued', step = 'queued', progress = 0, \
                 interruptions = interruptions + 1, lease_until = NULL, worker = NULL, \
                 playable_at = NULL, updated_at = {now} \
             WHERE status = 'processing' RETURNING id, owner",
        ))
        .fetch_all(&mut *tx)
        .await?;
        let mut ids = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: String = sqlx::Row::try_get(row, "id")?;
            let owner: String = sqlx::Row::try_get(row, "owner")?;
            let Ok(id) = id.parse::<VideoId>() else {
                continue;
            };
            let event = NewEvent::new(HistoryKind::Retried, json!({ "reason": "interrupted" }));
            append(&mut tx, self, id, Some(owner.as_str()), &event).await?;
            append(
                &mut tx,
                self,
                id,
                Some(owner.as_str()),
                &NewEvent::bare(HistoryKind::Queued),
            )
            .await?;
            ids.push(id);
        }
        self.commit(tx).await?;
        Ok(ids)
    }

    /// Queued videos in claim order, at most `limit`: queue positions for SSE subscribers.
    pub async fn queue_snapshot(&self, limit: u32) -> Result<QueueSnapshot> {
        let rows = sqlx::query(concat!(
            "WITH ",
            queue_positions!(),
            " SELECT q.id FROM q ORDER BY q.position LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let order = rows
            .iter()
            .filter_map(|row| {
                let id: String = sqlx::Row::try_get(row, "id").ok()?;
                id.parse().ok()
            })
            .collect();
        Ok(QueueSnapshot { order })
    }

    /// Jobs running right now (by any worker).
    pub async fn processing_count(&self) -> Result<u32> {
        let rows = sqlx::query("SELECT COUNT(*) AS n FROM videos WHERE status = 'processing'")
            .fetch_all(&self.pool)
            .await?;
        let n: i64 = match first(rows) {
            Some(row) => sqlx::Row::try_get(&row, "n")?,
            None => 0,
        };
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }
}

/// A fix made on start to a row whose files disagree with it (no lease involved).
#[derive(Debug, Clone)]
pub enum Repair<'a> {
    /// A `ready` row without its ladder: encode it again.
    Requeue { reason: &'a str },
    /// A waiting row without its source: nothing can be encoded.
    Fail(&'a JobError),
}

impl Store {
    /// Applies a [`Repair`] and appends its event; `false` when the row changed meanwhile.
    pub async fn repair(&self, id: VideoId, repair: Repair<'_>) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let (rows, event) = match repair {
            Repair::Requeue { reason } => (
                sqlx::query(self.sql(
                    "UPDATE videos SET status = 'queued', step = 'queued', progress = 0, \
                         renditions_json = NULL, lease_until = NULL, worker = NULL, \
                         playable_at = NULL, updated_at = {now} \
                     WHERE id = $1 AND status = 'ready' RETURNING owner",
                ))
                .bind(id.to_string())
                .fetch_all(&mut *tx)
                .await?,
                NewEvent::new(HistoryKind::Retried, json!({ "reason": reason })),
            ),
            Repair::Fail(error) => (
                sqlx::query(self.sql(
                    "UPDATE videos SET status = 'failed', step = 'done', error_code = $1, \
                         error_message = $2, lease_until = NULL, worker = NULL, updated_at = {now} \
                     WHERE id = $3 AND status IN ('queued', 'processing') RETURNING owner",
                ))
                .bind(error.code.clone())
                .bind(error.message.clone())
                .bind(id.to_string())
                .fetch_all(&mut *tx)
                .await?,
                NewEvent::new(HistoryKind::Failed, json!({ "code": error.code })),
            ),
        };
        let Some(row) = first(rows) else {
            return Ok(false);
        };
        let owner: String = sqlx::Row::try_get(&row, "owner")?;
        append(&mut tx, self, id, Some(owner.as_str()), &event).await?;
        self.commit(tx).await?;
        Ok(true)
    }
}
