//! Webhook endpoints, their delivery state (a durable cursor over the history, the failed
//! attempts of the event at the cursor, the circuit breaker) and their dead letters.
//!
//! Delivery writes are fenced like job writes: an endpoint is delivered by whoever holds its
//! lease ([`WebhookLease`]), and every write names the lease's token, so a process that lost the
//! lease (paused, cut off) changes nothing; the new holder sends the event again (at least once).

use std::time::Duration;

use sqlx::FromRow;
use uuid::Uuid;

use super::{Dialect, Result, Store, StoreError, first};
use crate::domain::Millis;
use crate::feed::EventType;
use crate::feed::breaker::{Breaker, Circuit};

/// Most dead letters kept per endpoint; past it the oldest go.
const DEAD_LETTER_CAP: i64 = 10_000;

/// An endpoint about to be stored.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    pub id: Uuid,
    /// Who created it; `None` with auth off.
    pub owner: Option<String>,
    /// Whose videos' events it receives; `None` for every video's.
    pub scope: Option<String>,
    pub url: String,
    pub events: Vec<EventType>,
    pub description: String,
    /// `whsec_…`.
    pub secret: String,
}

/// A stored endpoint with its delivery state.
#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: Uuid,
    pub owner: Option<String>,
    pub scope: Option<String>,
    pub url: String,
    pub events: Vec<EventType>,
    pub description: String,
    pub secret: String,
    pub created_at: Millis,
    pub delivery: Delivery,
}

/// Where an endpoint's delivery stands.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The history `seq` handled up to: every event up to it was delivered, skipped or
    /// dead-lettered.
    pub cursor: i64,
    /// Failed calls of the event being delivered (`attempt_seq`).
    pub attempts: u32,
    pub attempt_seq: i64,
    /// No call before this (back-off or cool-down); `None` when a call may go now.
    pub next_attempt_at: Option<Millis>,
    pub breaker: Breaker,
    pub last_attempt_at: Option<Millis>,
    pub last_success_at: Option<Millis>,
    /// HTTP status of the last call, when it got an answer.
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub dead_letters: u64,
}

/// An event an endpoint gave up on, with the body that was sent.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter {
    pub seq: i64,
    pub event_type: String,
    pub payload: String,
    pub attempts: u32,
    pub last_error: String,
    pub failed_at: Millis,
    /// Queued for redelivery.
    pub redeliver: bool,
}

/// The right to deliver one endpoint's events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookLease {
    pub id: Uuid,
    pub token: i64,
}

/// What a call was about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The event after the cursor (its `seq`).
    Feed(i64),
    /// A dead letter being redelivered (its `seq`).
    DeadLetter(i64),
}

/// A failed call, as the worker decided it (see `feed::breaker`).
#[derive(Debug, Clone)]
pub struct Failed<'a> {
    pub target: Target,
    /// Calls the event has had, this one included.
    pub attempts: u32,
    pub breaker: Breaker,
    pub wait: Duration,
    pub status: Option<u16>,
    pub error: &'a str,
    /// Out of attempts: `(event type, body)` of the event for the dead letters.
    pub dead_letter: Option<(&'a str, &'a str)>,
}

macro_rules! webhook_columns {
    () => {
        "w.id, w.owner, w.scope, w.url, w.events, w.description, w.secret, w.created_at, \
         w.cursor_seq, w.attempt_seq, w.attempts, w.next_attempt_at, w.failures, w.circuit, \
         w.last_attempt_at, w.last_success_at, w.last_status, w.last_error, \
         (SELECT COUNT(*) FROM webhook_dead_letters d WHERE d.webhook_id = w.id) AS dead_letters, \
         CASE WHEN w.next_attempt_at > {now} THEN 1 ELSE 0 END AS waiting"
    };
}

#[derive(FromRow)]
struct WebhookRow {
    id: String,
    owner: String,
    scope: Option<String>,
    url: String,
    events: String,
    description: String,
    secret: String,
    created_at: i64,
    cursor_seq: i64,
    attempt_seq: i64,
    attempts: i64,
    next_attempt_at: i64,
    failures: i64,
    circuit: String,
    last_attempt_at: Option<i64>,
    last_success_at: Option<i64>,
    last_status: Option<i64>,
    last_error: Option<String>,
    dead_letters: i64,
    waiting: i64,
}

impl WebhookRow {
    fn into_webhook(self) -> Result<Webhook> {
        let corrupt = |reason: &str| StoreError::Corrupt {
            id: self.id.clone(),
            reason: reason.into(),
        };
        let id = self.id.parse().map_err(|_| corrupt("bad webhook id"))?;
        let names: Vec<String> =
            serde_json::from_str(&self.events).map_err(|_| corrupt("bad events"))?;
        let events = names.iter().filter_map(|n| EventType::parse(n)).collect();
        let count = |n: i64| u32::try_from(n.max(0)).unwrap_or(u32::MAX);
        Ok(Webhook {
            id,
            owner: (!self.owner.is_empty()).then_some(self.owner),
            scope: self.scope,
            url: self.url,
            events,
            description: self.description,
            secret: self.secret,
            created_at: Millis(self.created_at),
            delivery: Delivery {
                cursor: self.cursor_seq,
                attempts: count(self.attempts),
                attempt_seq: self.attempt_seq,
                next_attempt_at: (self.waiting != 0).then_some(Millis(self.next_attempt_at)),
                breaker: Breaker {
                    circuit: Circuit::parse(&self.circuit),
                    failures: count(self.failures),
                },
                last_attempt_at: self.last_attempt_at.map(Millis),
                last_success_at: self.last_success_at.map(Millis),
                last_status: self.last_status.and_then(|s| u16::try_from(s).ok()),
                last_error: self.last_error,
                dead_letters: u64::try_from(self.dead_letters).unwrap_or(0),
            },
        })
    }
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX / 4)
}

impl Store {
    /// Stores a new endpoint whose cursor is the newest history event: it receives what
    /// happens from now on. Runs under the history write lock, so no event committed
    /// concurrently is on both sides of the cursor.
    pub async fn insert_webhook(&self, new: &NewWebhook) -> Result<Webhook> {
        let events: Vec<&str> = new.events.iter().map(|e| e.as_str()).collect();
        let mut tx = self.begin_write().await?;
        sqlx::query(self.sql(
            "INSERT INTO webhooks (id, owner, scope, url, events, description, secret, \
                 created_at, cursor_seq) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, {now}, \
                 (SELECT COALESCE(MAX(seq), 0) FROM history))",
        ))
        .bind(new.id.to_string())
        .bind(new.owner.clone().unwrap_or_default())
        .bind(new.scope.clone())
        .bind(new.url.clone())
        .bind(serde_json::json!(events).to_string())
        .bind(new.description.clone())
        .bind(new.secret.clone())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        self.webhook(new.id).await?.ok_or(StoreError::Corrupt {
            id: new.id.to_string(),
            reason: "inserted webhook not found".into(),
        })
    }

    pub async fn webhook(&self, id: Uuid) -> Result<Option<Webhook>> {
        let rows = sqlx::query(self.sql(concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks w WHERE w.id = $1"
        )))
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        first(rows)
            .map(|row| WebhookRow::from_row(&row)?.into_webhook())
            .transpose()
    }

    /// Endpoints created by `owner` (`None`: everyone's), oldest first, at most `limit`.
    pub async fn webhooks(&self, owner: Option<&str>, limit: u32) -> Result<Vec<Webhook>> {
        let rows = sqlx::query(self.sql(concat!(
            "SELECT ",
            webhook_columns!(),
            " FROM webhooks w WHERE ($1 IS NULL OR w.owner = $1) ORDER BY w.id LIMIT $2"
        )))
        .bind(owner.map(str::to_owned))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| WebhookRow::from_row(row)?.into_webhook())
            .collect()
    }

    /// Deletes an endpoint and its dead letters; `false` when there was none.
    pub async fn delete_webhook(&self, id: Uuid) -> Result<bool> {
        let mut tx = self.begin_plain().await?;
        sqlx::query("DELETE FROM webhook_dead_letters WHERE webhook_id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query("DELETE FROM webhooks WHERE id = $1")
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    /// An endpoint's dead letters after `after` (a `seq`), oldest first, at most `limit`.
    pub async fn dead_letters(&self, id: Uuid, after: i64, limit: u32) -> Result<Vec<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT seq, event_type, payload, attempts, last_error, failed_at, redeliver \
             FROM webhook_dead_letters WHERE webhook_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
        )
        .bind(id.to_string())
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(dead_letter).collect()
    }

    /// Queues every dead letter of an endpoint for redelivery, each with fresh attempts;
    /// returns how many.
    pub async fn redeliver_dead_letters(&self, id: Uuid) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE webhook_dead_letters SET redeliver = 1, attempts = 0 \
             WHERE webhook_id = $1 AND redeliver = 0",
        )
        .bind(id.to_string())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// The oldest dead letter of an endpoint queued for redelivery.
    pub async fn next_redelivery(&self, id: Uuid) -> Result<Option<DeadLetter>> {
        let rows = sqlx::query(
            "SELECT seq, event_type, payload, attempts, last_error, failed_at, redeliver \
             FROM webhook_dead_letters WHERE webhook_id = $1 AND redeliver = 1 \
             ORDER BY seq LIMIT 1",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        first(rows).as_ref().map(dead_letter).transpose()
    }

    /// Starts a plain writing transaction (no history lock on PostgreSQL: nothing here appends
    /// history; `BEGIN IMMEDIATE` on SQLite, see `begin_write`).
    async fn begin_plain(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        match self.dialect {
            Dialect::Sqlite => self.begin_write().await,
            Dialect::Postgres => Ok(self.pool.begin().await?),
        }
    }
}

fn dead_letter(row: &sqlx::any::AnyRow) -> Result<DeadLetter> {
    use sqlx::Row;
    let attempts: i64 = row.try_get("attempts")?;
    let redeliver: i64 = row.try_get("redeliver")?;
    Ok(DeadLetter {
        seq: row.try_get("seq")?,
        event_type: row.try_get("event_type")?,
        payload: row.try_get("payload")?,
        attempts: u32::try_from(attempts.max(0)).unwrap_or(u32::MAX),
        last_error: row.try_get("last_error")?,
        failed_at: Millis(row.try_get("failed_at")?),
        redeliver: redeliver != 0,
    })
}

mod delivery;
