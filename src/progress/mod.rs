//! The progress hub: one channel per watched job, fanned out to SSE subscribers.
//!
//! Each channel keeps a `broadcast` sender for live events and a short ring of recent events so
//! a reconnecting browser (`Last-Event-ID`) continues where it stopped. Event ids grow
//! monotonically across jobs and restarts (they start from the clock), and job progress never
//! goes backwards. A terminal event removes the channel, which ends every subscriber's stream.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytestring::ByteString;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;
use utoipa::ToSchema;

use crate::domain::Video;
use crate::domain::{Step, VideoId, VideoStatus};

/// Live events buffered per subscriber before it is told it lagged.
const CHANNEL_CAPACITY: usize = 64;
/// Recent events kept for `Last-Event-ID` resumption.
const RING: usize = 32;
/// A channel nobody listens to is dropped after this long without events.
const IDLE: Duration = Duration::from_secs(60);

/// Progress of a queued or running job, as sent in `progress` events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ProgressUpdate {
    pub status: VideoStatus,
    pub step: Step,
    /// 0.0 to 1.0, never decreasing.
    pub progress: f64,
    /// `progress` × 100.
    pub percent: f64,
    pub fps: Option<f64>,
    pub speed: Option<f64>,
    pub eta_seconds: Option<f64>,
    /// 1-based place in the queue while queued.
    pub queue_position: Option<u32>,
    /// When the process running the job published this event: RFC 3339, UTC, microseconds
    /// (`2026-11-25T10:00:00.123456Z`). Receipt time minus this is the delivery lag (across
    /// machines, as far as their clocks agree).
    pub at: String,
}

/// Now, as [`ProgressUpdate::at`] writes it.
fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

impl ProgressUpdate {
    pub fn new(status: VideoStatus, step: Step, progress: f64) -> Self {
        // Four decimals are finer than any bar; more is float noise on the wire.
        let progress = (progress.clamp(0.0, 1.0) * 10_000.0).round() / 10_000.0;
        Self {
            status,
            step,
            progress,
            percent: (progress * 1000.0).round() / 10.0,
            fps: None,
            speed: None,
            eta_seconds: None,
            queue_position: None,
            at: now_rfc3339(),
        }
    }
}

#[derive(Debug, Clone)]
pub enum JobEvent {
    Progress(ProgressUpdate),
    Status(VideoStatus),
    Ready(Arc<Video>),
    Failed(Arc<Video>),
    Canceled,
    /// The server is going away: reconnect later.
    Reconnect,
}

impl JobEvent {
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Ready(_) | Self::Failed(_) | Self::Canceled)
    }
}

#[derive(Debug)]
pub struct Stamped {
    pub id: u64,
    pub event: JobEvent,
    /// The event as subscribers receive it (name and JSON), serialized once for all of them.
    pub wire: OnceLock<Option<(&'static str, ByteString)>>,
}

struct Channel {
    sender: broadcast::Sender<Arc<Stamped>>,
    state: Mutex<ChannelState>,
}

struct ChannelState {
    recent: VecDeque<Arc<Stamped>>,
    /// Id of the newest event that fell out of `recent` (0: none did).
    evicted_up_to: u64,
    progress: f64,
    last_event: Instant,
}

/// What a new subscriber gets: a receiver, then the backlog it may replay.
pub struct Subscription {
    pub receiver: broadcast::Receiver<Arc<Stamped>>,
    pub recent: Vec<Arc<Stamped>>,
    pub evicted_up_to: u64,
    pub progress: f64,
}

#[derive(Default)]
pub struct Hub {
    channels: DashMap<VideoId, Arc<Channel>>,
    last_id: AtomicU64,
}

impl Hub {
    pub fn new() -> Self {
        Self::default()
    }

    fn next_id(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as u64);
        let mut current = self.last_id.load(Ordering::Relaxed);
        loop {
            let next = now.max(current + 1);
            match self.last_id.compare_exchange_weak(
                current,
                next,
                Ordering::Relaxed,
                Ordering::Relaxed,
            ) {
                Ok(_) => return next,
                Err(actual) => current = actual,
            }
        }
    }

    /// Subscribes to a job's events, creating its channel when nobody watched it yet.
    pub fn subscribe(&self, id: VideoId) -> Subscription {
        // Copied out of the map before anything else: no shard guard is held past this line.
        let channel = self
            .channels
            .entry(id)
            .or_insert_with(|| {
                Arc::new(Channel {
                    sender: broadcast::channel(CHANNEL_CAPACITY).0,
                    state: Mutex::new(ChannelState {
                        recent: VecDeque::with_capacity(RING),
                        evicted_up_to: 0,
                        progress: 0.0,
                        last_event: Instant::now(),
                    }),
                })
            })
            .clone();
        // Subscribe under the state lock so no event falls between the backlog and the receiver.
        let state = channel
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Subscription {
            receiver: channel.sender.subscribe(),
            recent: state.recent.iter().cloned().collect(),
            evicted_up_to: state.evicted_up_to,
            progress: state.progress,
        }
    }

    /// Publishes to a job's subscribers, if it has any channel, under a new local id; returns
    /// the id used.
    pub fn publish(&self, id: VideoId, event: JobEvent) -> Option<u64> {
        self.publish_as(id, event, None)
    }

    /// Publishes an event that already has an id given by the bus (global across API nodes).
    pub fn publish_with_id(&self, id: VideoId, event: JobEvent, event_id: u64) -> Option<u64> {
        self.publish_as(id, event, Some(event_id))
    }

    fn publish_as(&self, id: VideoId, mut event: JobEvent, event_id: Option<u64>) -> Option<u64> {
        let terminal = event.is_terminal();
        let channel = if terminal {
            self.channels.remove(&id).map(|(_, channel)| channel)
        } else {
            self.channels.get(&id).map(|entry| entry.value().clone())
        }?;
        let mut state = channel
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let JobEvent::Progress(update) = &mut event {
            if update.progress < state.progress {
                update.progress = state.progress;
                update.percent = (state.progress * 1000.0).round() / 10.0;
            }
            state.progress = update.progress;
            // An event from the bus keeps the time its worker published it, so the lag a
            // subscriber measures spans the machines; a local one is stamped here.
            if event_id.is_none() {
                update.at = now_rfc3339();
            }
        }
        let stamped = Arc::new(Stamped {
            id: match event_id {
                Some(given) => {
                    self.last_id.fetch_max(given, Ordering::Relaxed);
                    given
                }
                None => self.next_id(),
            },
            event,
            wire: OnceLock::new(),
        });
        if state.recent.len() == RING
            && let Some(old) = state.recent.pop_front()
        {
            state.evicted_up_to = old.id;
        }
        state.recent.push_back(stamped.clone());
        state.last_event = Instant::now();
        // No receiver is fine: the ring still serves a browser that reconnects.
        let _ = channel.sender.send(stamped.clone());
        Some(stamped.id)
    }

    /// An id for an event made outside the hub (snapshots), ordered with the rest.
    pub fn stamp(&self) -> u64 {
        self.next_id()
    }

    pub fn is_watched(&self, id: VideoId) -> bool {
        self.channels.contains_key(&id)
    }

    /// Watched jobs, for queue-position updates.
    pub fn watched(&self) -> Vec<VideoId> {
        self.channels.iter().map(|entry| *entry.key()).collect()
    }

    /// Tells every subscriber to reconnect later and ends their streams (shutdown).
    pub fn close_all(&self) {
        let ids = self.watched();
        for id in ids {
            self.publish(id, JobEvent::Reconnect);
            self.channels.remove(&id);
        }
    }

    /// Drops channels nobody listens to and nothing published to lately.
    pub fn sweep(&self) -> usize {
        let before = self.channels.len();
        self.channels.retain(|_, channel| {
            let idle = channel
                .state
                .lock()
                .map(|state| state.last_event.elapsed() > IDLE)
                .unwrap_or(true);
            channel.sender.receiver_count() > 0 || !idle
        });
        before - self.channels.len()
    }

    /// Drops a channel at once when nobody listens (a subscriber found the job already over).
    pub fn release(&self, id: VideoId) {
        self.channels
            .remove_if(&id, |_, channel| channel.sender.receiver_count() == 0);
    }

    pub fn channel_count(&self) -> usize {
        self.channels.len()
    }

    pub fn subscriber_count(&self) -> usize {
        self.channels
            .iter()
            .map(|entry| entry.sender.receiver_count())
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(p: f64) -> JobEvent {
        JobEvent::Progress(ProgressUpdate::new(
            VideoStatus::Processing,
            Step::Encoding,
            p,
        ))
    }

    #[test]
    fn events_reach_subscribers_in_order_with_growing_ids() {
        let hub = Hub::new();
        let id = VideoId::new();
        assert_eq!(hub.publish(id, progress(0.1)), None, "nobody watches yet");
        let mut sub = hub.subscribe(id);
        let a = hub.publish(id, progress(0.2)).unwrap();
        let b = hub.publish(id, progress(0.3)).unwrap();
        assert!(b > a);
        assert_eq!(sub.receiver.try_recv().unwrap().id, a);
        assert_eq!(sub.receiver.try_recv().unwrap().id, b);
    }

    #[test]
    fn progress_never_goes_backwards() {
        let hub = Hub::new();
        let id = VideoId::new();
        let mut sub = hub.subscribe(id);
        hub.publish(id, progress(0.5));
        hub.publish(id, progress(0.4));
        let _ = sub.receiver.try_recv();
        match &sub.receiver.try_recv().unwrap().event {
            JobEvent::Progress(update) => assert_eq!(update.progress, 0.5),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn a_terminal_event_ends_the_channel() {
        let hub = Hub::new();
        let id = VideoId::new();
        let mut sub = hub.subscribe(id);
        hub.publish(id, JobEvent::Canceled);
        assert!(matches!(
            sub.receiver.try_recv().unwrap().event,
            JobEvent::Canceled
        ));
        assert!(matches!(
            sub.receiver.try_recv(),
            Err(broadcast::error::TryRecvError::Closed)
        ));
        assert!(!hub.is_watched(id));
    }

    #[test]
    fn late_subscribers_get_the_backlog() {
        let hub = Hub::new();
        let id = VideoId::new();
        let first = hub.subscribe(id);
        for i in 0..40 {
            hub.publish(id, progress(f64::from(i) / 100.0));
        }
        drop(first);
        let late = hub.subscribe(id);
        assert_eq!(late.recent.len(), RING);
        assert!(late.evicted_up_to > 0);
        assert!(late.recent.iter().all(|e| e.id > late.evicted_up_to));
        assert!((late.progress - 0.39).abs() < 1e-9);
    }

    #[test]
    fn release_and_sweep_drop_unwatched_channels() {
        let hub = Hub::new();
        let id = VideoId::new();
        let sub = hub.subscribe(id);
        hub.release(id);
        assert!(hub.is_watched(id), "still has a subscriber");
        drop(sub);
        hub.release(id);
        assert!(!hub.is_watched(id));
    }
}
