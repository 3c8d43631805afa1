//! The history table: appended inside every state-changing transaction, read per video and as
//! the change feed (every event of every video, by `seq`).

use super::rows::{self, history_columns};
use super::{Result, Store, first};
use crate::domain::{HistoryEvent, NewEvent, VideoId};

/// Whose events a change-feed reader may see.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeScope {
    /// Every video's (admins, and everyone when auth is off).
    All,
    /// Only the videos this user owns.
    Owner(String),
}

/// A page of events and the cursor after it.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryPage {
    pub events: Vec<HistoryEvent>,
    /// The `seq` of the last event returned, or the cursor given when there was none.
    pub next: i64,
}

/// Appends one event inside the caller's transaction: the caller's state change and its event
/// commit together or not at all. `seq` order is commit order (see the module docs of `store`).
pub(super) async fn append(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    store: &Store,
    video: VideoId,
    owner: Option<&str>,
    event: &NewEvent,
) -> Result<()> {
    sqlx::query(store.sql(
        "INSERT INTO history (video_id, owner, kind, at, data) VALUES ($1, $2, $3, {now}, $4)",
    ))
    .bind(video.to_string())
    .bind(owner.unwrap_or_default().to_owned())
    .bind(event.kind.as_str())
    .bind(event.data.to_string())
    .execute(&mut **tx)
    .await?;
    if store.dialect() == super::Dialect::Postgres {
        // Delivered at commit: other processes' feed readers wake then.
        sqlx::query("SELECT 1 AS sent FROM pg_notify('reel_history', '')")
            .fetch_all(&mut **tx)
            .await?;
    }
    Ok(())
}

impl Store {
    /// Appends an event that changes no state (a download), in its own transaction.
    pub async fn record_event(
        &self,
        video: VideoId,
        owner: Option<&str>,
        event: &NewEvent,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        append(&mut tx, self, video, owner, event).await?;
        self.commit(tx).await?;
        Ok(())
    }

    /// A video's events after `after` (a `seq`), oldest first, at most `limit`. History outlives
    /// the video: this works after a delete.
    pub async fn history(&self, video: VideoId, after: i64, limit: u32) -> Result<HistoryPage> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            history_columns!(),
            " FROM history WHERE video_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
        ))
        .bind(video.to_string())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        page(rows, after)
    }

    /// The public reason of the video's latest `retried` event (`data.reason`), if any.
    pub async fn last_retry_reason(&self, video: VideoId) -> Result<Option<String>> {
        let rows = sqlx::query(
            "SELECT data FROM history WHERE video_id = $1 AND kind = 'retried' \
             ORDER BY seq DESC LIMIT 1",
        )
        .bind(video.to_string())
        .fetch_all(&self.pool)
        .await?;
        let Some(row) = first(rows) else {
            return Ok(None);
        };
        let data: String = sqlx::Row::try_get(&row, "data")?;
        Ok(serde_json::from_str::<serde_json::Value>(&data)
            .ok()
            .and_then(|d| d["reason"].as_str().map(str::to_owned)))
    }

    /// The owner recorded in a video's history (it outlives the row); `None` when the video
    /// never existed. `Some(None)` is a video uploaded without auth.
    pub async fn history_owner(&self, video: VideoId) -> Result<Option<Option<String>>> {
        let rows =
            sqlx::query("SELECT owner FROM history WHERE video_id = $1 ORDER BY seq LIMIT 1")
                .bind(video.to_string())
                .fetch_all(&self.pool)
                .await?;
        Ok(match first(rows) {
            Some(row) => {
                let owner: String = sqlx::Row::try_get(&row, "owner")?;
                Some((!owner.is_empty()).then_some(owner))
            }
            None => None,
        })
    }

    /// The change feed: every event with `seq > after` the scope may see, in `seq` order.
    pub async fn changes(
        &self,
        after: i64,
        limit: u32,
        scope: &ChangeScope,
    ) -> Result<HistoryPage> {
        let owner = match scope {
            ChangeScope::All => None,
            ChangeScope::Owner(owner) => Some(owner.clone()),
        };
        let rows = sqlx::query(concat!(
            "SELECT ",
            history_columns!(),
            " FROM history WHERE seq > $1 AND ($2 IS NULL OR owner = $2) ORDER BY seq LIMIT $3"
        ))
        .bind(after)
        .bind(owner)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        page(rows, after)
    }

    /// The newest `seq` (0 on an empty history).
    pub async fn last_seq(&self) -> Result<i64> {
        let rows = sqlx::query("SELECT COALESCE(MAX(seq), 0) AS seq FROM history")
            .fetch_all(&self.pool)
            .await?;
        Ok(match first(rows) {
            Some(row) => sqlx::Row::try_get(&row, "seq")?,
            None => 0,
        })
    }

    /// Removes events older than `days`; returns how many went.
    pub async fn purge_history(&self, days: u32) -> Result<u64> {
        let done = sqlx::query(self.sql("DELETE FROM history WHERE at < {now} - $1"))
            .bind(i64::from(days) * 86_400_000)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

fn page(rows: Vec<sqlx::any::AnyRow>, after: i64) -> Result<HistoryPage> {
    let events = rows.iter().map(rows::history).collect::<Result<Vec<_>>>()?;
    let next = events.last().map_or(after, |event| event.seq);
    Ok(HistoryPage { events, next })
}
