//! Webhook delivery: every endpoint reads the change feed from its durable cursor and gets each
//! event it subscribed to, signed per the Standard Webhooks specification
//! (<https://www.standardwebhooks.com>, spec document `spec/standard-webhooks.md`).
//!
//! Guarantees:
//! - At least once, in `seq` order per endpoint: the cursor moves past an event only after a
//!   2xx (or once the event is dead-lettered), in a write fenced by the endpoint's lease. A crash
//!   or a lost lease before that write means the event is sent again (same `webhook-id`).
//! - One sender per endpoint across processes: a process delivers an endpoint only while it
//!   holds its lease ([`LEASE`], renewed before every call, longer than a call can last), so
//!   several `reel serve` processes on one PostgreSQL database never send an endpoint's events
//!   concurrently.
//! - Isolation: each endpoint is its own task, and a waiting endpoint (back-off, open breaker)
//!   holds neither a task nor a connection; at most `--webhook-concurrency` calls are in flight
//!   per process. Uploads and encodes never wait on any of this.
//!
//! Wake-ups: at once after a commit of this process that appended history
//! ([`Store::appends`]), and by polling every [`POLL`] for other processes' events and for
//! endpoints whose back-off has passed.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use uuid::Uuid;

use super::breaker::{Circuit, Policy};
use super::client::{CallResult, Client};
use super::{EventType, payload};
use crate::config::Config;
use crate::store::{ChangeScope, Failed, Store, StoreError, Target, Webhook, WebhookLease};
use crate::telemetry;

/// An endpoint's delivery lease: longer than a call, renewed before each one.
pub const LEASE: Duration = Duration::from_secs(20);
/// How often the database is asked which endpoints have work.
pub const POLL: Duration = Duration::from_secs(1);
/// History events read per page.
const PAGE: u32 = 100;
/// Endpoints started per poll at most.
const DUE_BATCH: u32 = 256;
/// How often every endpoint's breaker state is copied into `/metrics`.
const GAUGES_EVERY: Duration = Duration::from_secs(5);

/// The `--webhook-*` settings.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub policy: Policy,
    pub allow_private: bool,
    /// Calls in flight at once in this process.
    pub concurrency: usize,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        Self {
            policy: Policy {
                max_attempts: config.webhook_max_attempts,
                backoff_base: Duration::from_millis(config.webhook_backoff_base_ms),
                backoff_max: Duration::from_secs(config.webhook_backoff_max_secs),
                threshold: config.webhook_breaker_failures,
                cooldown: Duration::from_secs(config.webhook_breaker_cooldown_secs),
            },
            allow_private: config.webhook_allow_private,
            concurrency: config.webhook_concurrency,
        }
    }
}

struct Deliverer {
    store: Store,
    settings: Settings,
    client: Client,
    /// This process, as a lease holder.
    holder: String,
    permits: Arc<Semaphore>,
    /// Endpoints with a task in this process.
    running: Mutex<HashSet<Uuid>>,
    /// An endpoint task ended: look again for what is due.
    finished: Notify,
    shutdown: CancellationToken,
}

/// One event on its way: what it is and the exact bytes that are signed and sent.
struct Item {
    target: Target,
    seq: i64,
    event_type: String,
    body: String,
    /// Calls it had before this one.
    attempts: u32,
}

/// Starts the delivery task of this process. On a single node (`shared` false) every delivery
/// lease left by a previous process is released first: that process is gone.
///
/// Errors: the HTTP client cannot be built (no TLS backend).
pub fn spawn(
    store: Store,
    settings: Settings,
    shared: bool,
    shutdown: CancellationToken,
) -> Result<JoinHandle<()>, reqwest::Error> {
    let client = Client::new(settings.allow_private)?;
    let deliverer = Arc::new(Deliverer {
        store,
        settings,
        client,
        holder: format!("{}/{}", std::process::id(), Uuid::now_v7()),
        permits: Arc::new(Semaphore::new(settings.concurrency.max(1))),
        running: Mutex::new(HashSet::new()),
        finished: Notify::new(),
        shutdown,
    });
    Ok(tokio::spawn(async move {
        if !shared && let Err(error) = deliverer.store.release_webhook_leases().await {
            warn!(%error, "could not release the webhook leases of the previous process");
        }
        deliverer.supervise().await;
    }))
}

impl Deliverer {
    /// Starts a task for every endpoint that is due, then sleeps until the next one is, a
    /// commit appends history, a task ends, or [`POLL`] passes.
    async fn supervise(self: Arc<Self>) {
        let mut appends = self.store.appends();
        let mut gauges_at = Instant::now();
        loop {
            let mut sleep = POLL;
            match self.store.due_webhooks(DUE_BATCH).await {
                Ok(due) => {
                    for (id, wait_ms) in due {
                        if wait_ms <= 0 {
                            self.clone().start(id);
                        } else {
                            let wait = Duration::from_millis(wait_ms.unsigned_abs());
                            sleep = sleep.min(wait);
                        }
                    }
                }
                Err(error) => debug!(%error, "webhooks: cannot read the due endpoints"),
            }
            if gauges_at.elapsed() >= GAUGES_EVERY {
                gauges_at = Instant::now();
                self.refresh_gauges().await;
            }
            tokio::select! {
                () = self.shutdown.cancelled() => return,
                changed = appends.changed() => if changed.is_err() {
                    tokio::time::sleep(sleep).await;
                },
                () = self.finished.notified() => {}
                () = tokio::time::sleep(sleep) => {}
            }
        }
    }

    fn start(self: Arc<Self>, id: Uuid) {
        let fresh = self
            .running
            .lock()
            .map(|mut running| running.insert(id))
            .unwrap_or(false);
        if !fresh {
            return;
        }
        tokio::spawn(async move {
            if let Ok(_permit) = self.permits.clone().acquire_owned().await {
                self.run(id).await;
            }
            if let Ok(mut running) = self.running.lock() {
                running.remove(&id);
            }
            self.finished.notify_one();
        });
    }

    /// Delivers one endpoint under its lease until it has nothing due.
    #[tracing::instrument(skip_all, fields(webhook.id = %id))]
    async fn run(&self, id: Uuid) {
        let lease = match self.store.claim_webhook(id, &self.holder, LEASE).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return,
            Err(error) => {
                debug!(%error, "webhooks: cannot claim the endpoint");
                return;
            }
        };
        match self.deliver(&lease).await {
            Ok(true) => {
                if let Err(error) = self.store.release_webhook(&lease).await {
                    debug!(%error, "webhooks: lease not released; it will expire");
                }
            }
            Ok(false) => info!("webhooks: the endpoint's lease was taken over; stopping"),
            Err(error) => warn!(%error, "webhooks: delivery paused by a database error"),
        }
    }

    /// The delivery loop. `Ok(true)`: stopped with the lease held (nothing due, waiting, or
    /// shutting down); `Ok(false)`: the lease was lost.
    async fn deliver(&self, lease: &WebhookLease) -> Result<bool, StoreError> {
        loop {
            if self.shutdown.is_cancelled() {
                return Ok(true);
            }
            let Some(endpoint) = self.store.webhook(lease.id).await? else {
                return Ok(true);
            };
            if endpoint.delivery.next_attempt_at.is_some() {
                return Ok(true);
            }
            let item = match self.store.next_redelivery(lease.id).await? {
                Some(dead) => Item {
                    target: Target::DeadLetter(dead.seq),
                    seq: dead.seq,
                    event_type: dead.event_type,
                    body: dead.payload,
                    attempts: dead.attempts,
                },
                None => match self.next_event(lease, &endpoint).await? {
                    Next::Item(item) => item,
                    Next::Done => return Ok(true),
                    Next::Lost => return Ok(false),
                },
            };
            if !self.call_and_record(lease, &endpoint, item).await? {
                return Ok(false);
            }
        }
    }

    /// The first event after the cursor the endpoint receives; moves the cursor past the
    /// events it does not (other owners' videos, types it did not subscribe to).
    async fn next_event(
        &self,
        lease: &WebhookLease,
        endpoint: &Webhook,
    ) -> Result<Next, StoreError> {
        let scope = endpoint
            .scope
            .clone()
            .map_or(ChangeScope::All, ChangeScope::Owner);
        let mut cursor = endpoint.delivery.cursor;
        loop {
            // Read before the page: every event up to `head` is committed (seq order is commit
            // order), so an event of the scope at or below it is in the page.
            let head = self.store.last_seq().await?;
            let page = self.store.changes(cursor, PAGE, &scope).await?;
            for event in &page.events {
                let Some(event_type) = EventType::of(event.kind) else {
                    continue;
                };
                if !endpoint.events.contains(&event_type) {
                    continue;
                }
                let attempts = if endpoint.delivery.attempt_seq == event.seq {
                    endpoint.delivery.attempts
                } else {
                    0
                };
                return Ok(Next::Item(Item {
                    target: Target::Feed(event.seq),
                    seq: event.seq,
                    event_type: event_type.as_str().to_owned(),
                    body: payload(event, event_type).to_string(),
                    attempts,
                }));
            }
            let full = page.events.len() >= PAGE as usize;
            let to = if full { page.next } else { page.next.max(head) };
            if to > cursor && !self.store.webhook_skip(lease, to).await? {
                return Ok(Next::Lost);
            }
            cursor = to;
            if !full {
                return Ok(Next::Done);
            }
        }
    }

    /// Makes one call and records its outcome. `Ok(false)` when the lease was lost.
    async fn call_and_record(
        &self,
        lease: &WebhookLease,
        endpoint: &Webhook,
        item: Item,
    ) -> Result<bool, StoreError> {
        let mut breaker = endpoint.delivery.breaker;
        if breaker.circuit == Circuit::Open {
            breaker.admit();
            if !self.store.webhook_probe(lease).await? {
                return Ok(false);
            }
            set_circuit_gauge(lease.id, breaker.circuit);
        }
        // The call must end inside the lease: renew it right before.
        if !self.store.renew_webhook(lease, LEASE).await? {
            return Ok(false);
        }
        let started = Instant::now();
        let result = self
            .client
            .call(&endpoint.url, &endpoint.secret, item.seq, &item.body)
            .await;
        let outcome = result.label();
        metrics::counter!(telemetry::WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
        metrics::histogram!(telemetry::WEBHOOK_DURATION, "outcome" => outcome)
            .record(started.elapsed().as_secs_f64());
        let kept = match result {
            CallResult::Delivered(status) => {
                breaker.on_success();
                debug!(seq = item.seq, status, "webhook delivered");
                self.store
                    .webhook_delivered(lease, item.target, status)
                    .await?
            }
            failed => {
                let attempts = item.attempts.saturating_add(1);
                let after = breaker.on_failure(&self.settings.policy, attempts, jitter());
                let error = failed.error();
                let status = match failed {
                    CallResult::Rejected(status) => Some(status),
                    _ => None,
                };
                info!(seq = item.seq, attempts, outcome, error = %error,
                      circuit = breaker.circuit.as_str(), dead_letter = after.dead_letter,
                      "webhook call failed");
                if after.dead_letter {
                    metrics::counter!(telemetry::WEBHOOK_DEAD_LETTERS).increment(1);
                }
                let record = Failed {
                    target: item.target,
                    attempts,
                    breaker,
                    wait: after.wait,
                    status,
                    error: &error,
                    dead_letter: after
                        .dead_letter
                        .then_some((item.event_type.as_str(), item.body.as_str())),
                };
                self.store.webhook_failed(lease, &record).await?
            }
        };
        set_circuit_gauge(lease.id, breaker.circuit);
        Ok(kept)
    }

    async fn refresh_gauges(&self) {
        if let Ok(circuits) = self.store.webhook_circuits(10_000).await {
            for (id, circuit) in circuits {
                set_circuit_gauge(id, circuit);
            }
        }
    }
}

enum Next {
    Item(Item),
    /// Nothing more to deliver now.
    Done,
    Lost,
}

fn set_circuit_gauge(id: Uuid, circuit: Circuit) {
    metrics::gauge!(telemetry::WEBHOOK_CIRCUIT, "endpoint" => id.to_string()).set(circuit.gauge());
}

/// A uniform random number in `[0, 1)` for back-off jitter (0.5 if randomness fails).
fn jitter() -> f64 {
    getrandom::u32().map_or(0.5, |n| f64::from(n) / (f64::from(u32::MAX) + 1.0))
}
