//! The delivery side of webhook endpoints: which have work, leases, and the fenced writes that
//! record each call's outcome.

use std::time::Duration;

use uuid::Uuid;

use super::{DEAD_LETTER_CAP, Failed, Target, WebhookLease, millis};
use crate::feed::breaker::Circuit;
use crate::store::{Result, Store, first};

/// Longest `last_error` kept, in bytes.
const ERROR_LEN: usize = 500;

fn short(error: &str) -> String {
    let mut end = error.len().min(ERROR_LEN);
    while !error.is_char_boundary(end) {
        end -= 1;
    }
    error[..end].to_owned()
}

impl Store {
    /// Endpoints that have work (history past their cursor, or dead letters queued for
    /// redelivery) and no live lease, soonest first: `(id, milliseconds until a call may go)`.
    pub async fn due_webhooks(&self, limit: u32) -> Result<Vec<(Uuid, i64)>> {
        let rows = sqlx::query(self.sql(
            "SELECT w.id, CASE WHEN w.next_attempt_at > {now} \
                 THEN w.next_attempt_at - {now} ELSE 0 END AS wait_ms \
             FROM webhooks w \
             WHERE w.lease_until < {now} \
               AND (w.cursor_seq < (SELECT COALESCE(MAX(seq), 0) FROM history) \
                    OR EXISTS (SELECT 1 FROM webhook_dead_letters d \
                               WHERE d.webhook_id = w.id AND d.redeliver = 1)) \
             ORDER BY w.next_attempt_at, w.id LIMIT $1",
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = sqlx::Row::try_get(&row, "id")?;
            let wait: i64 = sqlx::Row::try_get(&row, "wait_ms")?;
            if let Ok(id) = id.parse() {
                due.push((id, wait));
            }
        }
        Ok(due)
    }

    /// Takes an endpoint's delivery lease for `lease`, when nobody holds it and a call may go
    /// now. Every claim grows the fencing token.
    pub async fn claim_webhook(
        &self,
        id: Uuid,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<WebhookLease>> {
        let rows = sqlx::query(self.sql(
            "UPDATE webhooks SET lease_holder = $2, lease_until = {now} + $3, \
                 lease_token = lease_token + 1 \
             WHERE id = $1 AND lease_until < {now} AND next_attempt_at <= {now} \
             RETURNING lease_token",
        ))
        .bind(id.to_string())
        .bind(holder.to_owned())
        .bind(millis(lease))
        .fetch_all(&self.pool)
        .await?;
        Ok(match first(rows) {
            Some(row) => Some(WebhookLease {
                id,
                token: sqlx::Row::try_get(&row, "lease_token")?,
            }),
            None => None,
        })
    }

    /// Extends a held lease to `lease` from now; `false` when it was lost.
    pub async fn renew_webhook(&self, held: &WebhookLease, lease: Duration) -> Result<bool> {
        let done = sqlx::query(self.sql(
            "UPDATE webhooks SET lease_until = {now} + $3 WHERE id = $1 AND lease_token = $2",
        ))
        .bind(held.id.to_string())
        .bind(held.token)
        .bind(millis(lease))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Gives a lease back, so any process may take the endpoint at once.
    pub async fn release_webhook(&self, held: &WebhookLease) -> Result<()> {
        sqlx::query(
            "UPDATE webhooks SET lease_until = 0, lease_holder = NULL \
             WHERE id = $1 AND lease_token = $2",
        )
        .bind(held.id.to_string())
        .bind(held.token)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Single node start: every lease was held by a process that is gone.
    pub async fn release_webhook_leases(&self) -> Result<u64> {
        let done = sqlx::query(
            "UPDATE webhooks SET lease_until = 0, lease_holder = NULL WHERE lease_until > 0",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Moves the cursor forward to `to` past events the endpoint does not receive.
    pub async fn webhook_skip(&self, held: &WebhookLease, to: i64) -> Result<bool> {
        let done = sqlx::query(self.sql(
            "UPDATE webhooks SET cursor_seq = {max}(cursor_seq, $3) \
             WHERE id = $1 AND lease_token = $2",
        ))
        .bind(held.id.to_string())
        .bind(held.token)
        .bind(to)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Records a 2xx: the cursor passes the event (or its dead letter goes) and the breaker
    /// closes. `false` when the lease was lost (nothing changed; the new holder sends again).
    pub async fn webhook_delivered(
        &self,
        held: &WebhookLease,
        target: Target,
        status: u16,
    ) -> Result<bool> {
        let (cursor, seq) = match target {
            Target::Feed(seq) => (seq, seq),
            Target::DeadLetter(seq) => (0, seq),
        };
        let mut tx = self.begin_plain().await?;
        let done = sqlx::query(self.sql(
            "UPDATE webhooks SET cursor_seq = {max}(cursor_seq, $3), \
                 attempts = CASE WHEN $3 > 0 THEN 0 ELSE attempts END, \
                 attempt_seq = CASE WHEN $3 > 0 THEN 0 ELSE attempt_seq END, \
                 failures = 0, circuit = 'closed', next_attempt_at = 0, \
                 last_attempt_at = {now}, last_success_at = {now}, last_status = $4, \
                 last_error = NULL \
             WHERE id = $1 AND lease_token = $2",
        ))
        .bind(held.id.to_string())
        .bind(held.token)
        .bind(cursor)
        .bind(i64::from(status))
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        if let Target::DeadLetter(_) = target {
            sqlx::query("DELETE FROM webhook_dead_letters WHERE webhook_id = $1 AND seq = $2")
                .bind(held.id.to_string())
                .bind(seq)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Records a failed call: attempts, breaker and the wait before the next call; an event
    /// out of attempts goes to the dead letters (a feed event's cursor passes it). `false` when
    /// the lease was lost.
    pub async fn webhook_failed(&self, held: &WebhookLease, failed: &Failed<'_>) -> Result<bool> {
        let id = held.id.to_string();
        let error = short(failed.error);
        let status = failed.status.map(i64::from);
        let attempts = i64::from(failed.attempts);
        let mut tx = self.begin_plain().await?;
        let (cursor, attempt_seq, stored_attempts) = match (failed.target, failed.dead_letter) {
            (Target::Feed(seq), Some(_)) => (seq, 0, 0),
            (Target::Feed(seq), None) => (0, seq, attempts),
            (Target::DeadLetter(_), _) => (0, -1, -1),
        };
        let done = sqlx::query(self.sql(
            "UPDATE webhooks SET cursor_seq = {max}(cursor_seq, $3), \
                 attempt_seq = CASE WHEN $4 < 0 THEN attempt_seq ELSE $4 END, \
                 attempts = CASE WHEN $5 < 0 THEN attempts ELSE $5 END, \
                 failures = $6, circuit = $7, next_attempt_at = {now} + $8, \
                 last_attempt_at = {now}, last_status = $9, last_error = $10 \
             WHERE id = $1 AND lease_token = $2",
        ))
        .bind(id.clone())
        .bind(held.token)
        .bind(cursor)
        .bind(attempt_seq)
        .bind(stored_attempts)
        .bind(i64::from(failed.breaker.failures))
        .bind(failed.breaker.circuit.as_str())
        .bind(millis(failed.wait))
        .bind(status)
        .bind(error.clone())
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        match (failed.target, failed.dead_letter) {
            (Target::Feed(seq), Some((event_type, payload))) => {
                sqlx::query(self.sql(
                    "INSERT INTO webhook_dead_letters \
                         (webhook_id, seq, event_type, payload, attempts, last_error, failed_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, {now}) \
                     ON CONFLICT (webhook_id, seq) DO UPDATE SET attempts = excluded.attempts, \
                         last_error = excluded.last_error, failed_at = excluded.failed_at, \
                         redeliver = 0",
                ))
                .bind(id.clone())
                .bind(seq)
                .bind(event_type.to_owned())
                .bind(payload.to_owned())
                .bind(attempts)
                .bind(error)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "DELETE FROM webhook_dead_letters WHERE webhook_id = $1 AND seq <= ( \
                         SELECT seq FROM webhook_dead_letters WHERE webhook_id = $1 \
                         ORDER BY seq DESC LIMIT 1 OFFSET $2)",
                )
                .bind(id)
                .bind(DEAD_LETTER_CAP)
                .execute(&mut *tx)
                .await?;
            }
            (Target::Feed(_), None) => {}
            (Target::DeadLetter(seq), dead) => {
                sqlx::query(self.sql(
                    "UPDATE webhook_dead_letters SET attempts = $3, last_error = $4, \
                         failed_at = {now}, redeliver = $5 \
                     WHERE webhook_id = $1 AND seq = $2",
                ))
                .bind(id)
                .bind(seq)
                .bind(attempts)
                .bind(error)
                .bind(if dead.is_some() { 0i64 } else { 1 })
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Marks an endpoint's breaker half-open before its probe call (fenced).
    pub async fn webhook_probe(&self, held: &WebhookLease) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE webhooks SET circuit = 'half_open' WHERE id = $1 AND lease_token = $2",
        )
        .bind(held.id.to_string())
        .bind(held.token)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Every endpoint's breaker state, for `/metrics`.
    pub async fn webhook_circuits(&self, limit: u32) -> Result<Vec<(Uuid, Circuit)>> {
        let rows = sqlx::query("SELECT id, circuit FROM webhooks ORDER BY id LIMIT $1")
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
        let mut circuits = Vec::with_capacity(rows.len());
        for row in rows {
            let id: String = sqlx::Row::try_get(&row, "id")?;
            let circuit: String = sqlx::Row::try_get(&row, "circuit")?;
            if let Ok(id) = id.parse() {
                circuits.push((id, Circuit::parse(&circuit)));
            }
        }
        Ok(circuits)
    }
}
