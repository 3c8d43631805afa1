//! The bus across machines: PostgreSQL `LISTEN/NOTIFY`.
//!
//! Channels (payloads are JSON, well under PostgreSQL's 8000-byte limit):
//! - `reel_events` `{id, video, event}`: a job event. `id` comes from the `event_ids` sequence
//!   in the same statement, so it is global: `Last-Event-ID` taken from one API node resumes on
//!   another. Terminal events carry no resource: each node reads the row (the durable state).
//! - `reel_cancel` `{video}`: whichever process runs the job stops it, then sends
//!   `reel_stopped` `{video}`, which resolves the waiting delete.
//! - `reel_wake` `{}`: a job was queued; every idle worker looks at the queue at once.
//!
//! Sending goes through one task and a bounded queue (never blocks a caller; progress is
//! dropped when it is full). The listener reconnects with back-off on its own; after a
//! reconnect it re-reads every watched video's row, so a terminal event missed while it was
//! away still reaches its subscribers exactly once.

use std::sync::Arc;
use std::time::Duration;

use dashmap::DashMap;
use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::{Bus, Node};
use crate::domain::{VideoId, VideoStatus};
use crate::progress::{JobEvent, ProgressUpdate};
use crate::store::Store;

const EVENTS: &str = "reel_events";
const CANCEL: &str = "reel_cancel";
const STOPPED: &str = "reel_stopped";
const WAKE: &str = "reel_wake";
/// Sent inside every transaction that appends history (see `store::history`).
const HISTORY: &str = "reel_history";
/// Messages waiting to be sent; past this, progress is dropped.
const OUTBOX: usize = 1024;
/// How long a process gets to stop a canceled job before it confirms anyway.
const STOP_WAIT: Duration = Duration::from_secs(15);

/// A job event as it crosses machines.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum WireEvent {
    Progress { update: ProgressUpdate },
    Status { status: VideoStatus },
    Playable,
    Ready,
    Failed,
    Canceled,
}

#[derive(Debug, Serialize, Deserialize)]
struct EventMessage {
    id: u64,
    video: VideoId,
    event: WireEvent,
}

#[derive(Debug, Serialize, Deserialize)]
struct VideoMessage {
    video: VideoId,
}

enum Outgoing {
    Event {
        video: VideoId,
        event: WireEvent,
    },
    Signal {
        channel: &'static str,
        video: Option<VideoId>,
    },
}

pub struct PgBus {
    outbox: mpsc::Sender<Outgoing>,
    /// Deletes waiting for a `reel_stopped`, by video.
    waiting: Arc<DashMap<VideoId, Vec<oneshot::Sender<()>>>>,
}

impl PgBus {
    /// Connects the listener (so nothing sent from here on is missed) and starts the sender
    /// and listener tasks. Errors when PostgreSQL cannot be reached at all.
    pub async fn start(url: &str, store: Store, node: Arc<Node>) -> Result<Arc<Self>, sqlx::Error> {
        let mut listener = PgListener::connect(url).await?;
        listener
            .listen_all([EVENTS, CANCEL, STOPPED, WAKE, HISTORY])
            .await?;
        let (outbox, receiver) = mpsc::channel(OUTBOX);
        let bus = Arc::new(Self {
            outbox,
            waiting: Arc::new(DashMap::new()),
        });
        tokio::spawn(send_loop(store.clone(), receiver));
        tokio::spawn(listen_loop(listener, store, node, bus.clone()));
        Ok(bus)
    }

    fn send(&self, message: Outgoing) {
        if self.outbox.try_send(message).is_err() {
            debug!("bus outbox full; a message was dropped");
        }
    }
}

impl Bus for PgBus {
    fn publish(&self, video: VideoId, event: JobEvent) {
        let event = match event {
            JobEvent::Progress(update) => WireEvent::Progress { update },
            JobEvent::Status(status) => WireEvent::Status { status },
            JobEvent::Playable(_) => WireEvent::Playable,
            JobEvent::Ready(_) => WireEvent::Ready,
            JobEvent::Failed(_) => WireEvent::Failed,
            JobEvent::Canceled => WireEvent::Canceled,
            // Only this process is going away: not for other nodes.
            JobEvent::Reconnect => return,
        };
        self.send(Outgoing::Event { video, event });
    }

    fn wake_workers(&self) {
        self.send(Outgoing::Signal {
            channel: WAKE,
            video: None,
        });
    }

    fn cancel(&self, video: VideoId, wait: Duration) -> BoxFuture<'_, bool> {
        async move {
            let (done, stopped) = oneshot::channel();
            self.waiting.entry(video).or_default().push(done);
            self.send(Outgoing::Signal {
                channel: CANCEL,
                video: Some(video),
            });
            let confirmed = matches!(tokio::time::timeout(wait, stopped).await, Ok(Ok(())));
            self.waiting.remove(&video);
            confirmed
        }
        .boxed()
    }

    fn name(&self) -> &'static str {
        "postgres"
    }
}

/// Sends queued messages in order, one statement each. While PostgreSQL is away messages are
/// dropped (logged once per outage): progress is latest-value and terminal states are in rows.
async fn send_loop(store: Store, mut receiver: mpsc::Receiver<Outgoing>) {
    let mut failing = false;
    while let Some(message) = receiver.recv().await {
        let result = match &message {
            Outgoing::Event { video, event } => {
                let json = serde_json::to_string(event).unwrap_or_default();
                store.notify_event(EVENTS, &video.to_string(), &json).await
            }
            Outgoing::Signal { channel, video } => {
                let payload = match video {
                    Some(video) => {
                        serde_json::to_string(&VideoMessage { video: *video }).unwrap_or_default()
                    }
                    None => "{}".to_owned(),
                };
                store.notify(channel, &payload).await
            }
        };
        match result {
            Err(error) if !failing => {
                failing = true;
                warn!(%error, "cannot send bus messages; dropping them until PostgreSQL is back");
            }
            Ok(()) if failing => {
                failing = false;
                info!("bus messages flow again");
            }
            _ => {}
        }
    }
}

async fn listen_loop(mut listener: PgListener, store: Store, node: Arc<Node>, bus: Arc<PgBus>) {
    loop {
        match listener.try_recv().await {
            Ok(Some(notification)) => {
                deliver(
                    notification.channel(),
                    notification.payload(),
                    &store,
                    &node,
                    &bus,
                )
                .await;
            }
            Ok(None) | Err(_) => {
                warn!("bus listener lost PostgreSQL; reconnecting");
                reconnect(&mut listener).await;
                info!("bus listener reconnected");
                // Whatever was sent while away is lost: read the rows instead.
                resync(&store, &node).await;
                node.wake.notify_waiters();
                store.appended_elsewhere();
            }
        }
    }
}

/// Reconnects (and re-LISTENs) with exponential back-off from 250 ms to 5 s.
async fn reconnect(listener: &mut PgListener) {
    let mut delay = Duration::from_millis(250);
    loop {
        // Any statement through the listener reconnects it and listens again.
        if sqlx::query("SELECT 1")
            .execute(&mut *listener)
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

async fn deliver(channel: &str, payload: &str, store: &Store, node: &Arc<Node>, bus: &Arc<PgBus>) {
    match channel {
        EVENTS => {
            let Ok(message) = serde_json::from_str::<EventMessage>(payload) else {
                warn!(payload, "unreadable bus event");
                return;
            };
            if !node.hub.is_watched(message.video) {
                return;
            }
            let event = match message.event {
                WireEvent::Progress { update } => JobEvent::Progress(update),
                WireEvent::Status { status } => JobEvent::Status(status),
                WireEvent::Canceled => JobEvent::Canceled,
                WireEvent::Playable => match store.video(message.video).await {
                    Ok(Some(video)) if video.status == VideoStatus::Processing => {
                        JobEvent::Playable(Arc::new(video))
                    }
                    // Ended meanwhile: its terminal event follows.
                    Ok(_) => return,
                    Err(error) => {
                        warn!(%error, "cannot read a playable video; its subscribers miss the event");
                        return;
                    }
                },
                WireEvent::Ready | WireEvent::Failed => match store.video(message.video).await {
                    Ok(Some(video)) => terminal_event(video),
                    Ok(None) => JobEvent::Canceled,
                    Err(error) => {
                        warn!(%error, "cannot read a finished video; its subscribers resync later");
                        return;
                    }
                },
            };
            node.hub.publish_with_id(message.video, event, message.id);
        }
        CANCEL => {
            let Ok(message) = serde_json::from_str::<VideoMessage>(payload) else {
                return;
            };
            if node.running.contains_key(&message.video) {
                let (node, bus) = (node.clone(), bus.clone());
                tokio::spawn(async move {
                    node.stop_local(message.video, STOP_WAIT).await;
                    bus.send(Outgoing::Signal {
                        channel: STOPPED,
                        video: Some(message.video),
                    });
                });
            }
        }
        STOPPED => {
            if let Ok(message) = serde_json::from_str::<VideoMessage>(payload)
                && let Some((_, waiters)) = bus.waiting.remove(&message.video)
            {
                for waiter in waiters {
                    let _ = waiter.send(());
                }
            }
        }
        WAKE => node.wake.notify_waiters(),
        HISTORY => store.appended_elsewhere(),
        _ => {}
    }
}

fn terminal_event(video: crate::domain::Video) -> JobEvent {
    match video.status {
        VideoStatus::Ready => JobEvent::Ready(Arc::new(video)),
        VideoStatus::Failed => JobEvent::Failed(Arc::new(video)),
        VideoStatus::Canceled => JobEvent::Canceled,
        VideoStatus::Queued => JobEvent::Status(VideoStatus::Queued),
        VideoStatus::Processing => JobEvent::Status(VideoStatus::Processing),
    }
}

/// After the listener was away: every watched video whose job ended meanwhile gets its
/// terminal event from the row (the hub ends the channel with it, so it is sent once).
pub async fn resync(store: &Store, node: &Node) {
    for video in node.hub.watched() {
        match store.video(video).await {
            Ok(Some(row)) if row.status.is_terminal() => {
                node.hub.publish(video, terminal_event(row));
            }
            Ok(None) => {
                node.hub.publish(video, JobEvent::Canceled);
            }
            Ok(Some(_)) => {}
            Err(error) => {
                warn!(%error, "resync stopped: the database is away");
                return;
            }
        }
    }
}
