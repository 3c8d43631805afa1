//! Readers of the change feed (the history table, read by `seq`): webhook delivery with its
//! per-endpoint cursor, circuit breaker and Standard Webhooks signatures.
//!
//! - [`webhooks`]: the delivery task (leases per endpoint, retries, dead letters).
//! - [`breaker`]: the circuit breaker and back-off, pure.
//! - [`client`]: one signed call.
//! - [`signing`]: `whsec_` secrets and `webhook-signature` values.
//! - [`destination`]: which URLs may be called (no private addresses), also at connect time.

pub mod breaker;
pub mod client;
pub mod destination;
pub mod signing;
pub mod webhooks;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use crate::domain::{HistoryEvent, HistoryKind};

/// A webhook event type: the history kinds an app acts on, as `video.<kind>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
pub enum EventType {
    #[serde(rename = "video.uploaded")]
    Uploaded,
    #[serde(rename = "video.processing")]
    Processing,
    #[serde(rename = "video.playable")]
    Playable,
    #[serde(rename = "video.ready")]
    Ready,
    #[serde(rename = "video.failed")]
    Failed,
    #[serde(rename = "video.canceled")]
    Canceled,
    #[serde(rename = "video.deleted")]
    Deleted,
}

impl EventType {
    pub const ALL: [EventType; 7] = [
        Self::Uploaded,
        Self::Processing,
        Self::Playable,
        Self::Ready,
        Self::Failed,
        Self::Canceled,
        Self::Deleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Uploaded => "video.uploaded",
            Self::Processing => "video.processing",
            Self::Playable => "video.playable",
            Self::Ready => "video.ready",
            Self::Failed => "video.failed",
            Self::Canceled => "video.canceled",
            Self::Deleted => "video.deleted",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// The event type of a history kind; `None` for kinds no webhook carries (`queued`,
    /// `retried`, `downloaded`, `updated`).
    pub fn of(kind: HistoryKind) -> Option<Self> {
        match kind {
            HistoryKind::Uploaded => Some(Self::Uploaded),
            HistoryKind::Processing => Some(Self::Processing),
            HistoryKind::Playable => Some(Self::Playable),
            HistoryKind::Ready => Some(Self::Ready),
            HistoryKind::Failed => Some(Self::Failed),
            HistoryKind::Canceled => Some(Self::Canceled),
            HistoryKind::Deleted => Some(Self::Deleted),
            HistoryKind::Queued
            | HistoryKind::Retried
            | HistoryKind::Downloaded
            | HistoryKind::Updated => None,
        }
    }
}

/// The `webhook-id` of a history event: stable across retries, redeliveries and endpoints, so
/// receivers can deduplicate (at-least-once delivery).
pub fn message_id(seq: i64) -> String {
    format!("evt_{seq}")
}

/// The JSON body of an event (Standard Webhooks payload structure):
/// `{"type": "video.ready", "timestamp": RFC 3339 of the event, "data": {"id": video id,
/// "owner": user or null, "seq": history seq, …the kind's facts (see `HistoryKind`)}}`.
pub fn payload(event: &HistoryEvent, event_type: EventType) -> Value {
    let mut data = match &event.data {
        Value::Object(facts) => facts.clone(),
        _ => Map::new(),
    };
    data.insert("id".into(), json!(event.video));
    data.insert("owner".into(), json!(event.owner));
    data.insert("seq".into(), json!(event.seq));
    json!({
        "type": event_type.as_str(),
        "timestamp": event.at.to_rfc3339(),
        "data": data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Millis, VideoId};

    #[test]
    fn every_history_kind_has_a_decided_event_type_and_names_round_trip() {
        let carried: Vec<_> = HistoryKind::ALL
            .into_iter()
            .filter_map(EventType::of)
            .collect();
        assert_eq!(carried, EventType::ALL);
        for event_type in EventType::ALL {
            assert_eq!(EventType::parse(event_type.as_str()), Some(event_type));
            assert_eq!(
                serde_json::to_value(event_type).expect("json"),
                event_type.as_str()
            );
        }
        assert_eq!(EventType::parse("video.queued"), None);
    }

    #[test]
    fn the_payload_carries_type_time_video_owner_and_the_kinds_facts() {
        let video = VideoId::new();
        let event = HistoryEvent {
            seq: 42,
            video,
            owner: Some("alice".into()),
            kind: HistoryKind::Failed,
            at: Millis(1_700_000_000_000),
            data: json!({"code": "no_video_stream", "id": "spoofed"}),
        };
        let body = payload(&event, EventType::Failed);
        assert_eq!(body["type"], "video.failed");
        assert_eq!(body["timestamp"], "2023-11-14T22:13:20.000Z");
        assert_eq!(body["data"]["id"], video.to_string());
        assert_eq!(body["data"]["owner"], "alice");
        assert_eq!(body["data"]["seq"], 42);
        assert_eq!(body["data"]["code"], "no_video_stream");
        assert_eq!(message_id(42), "evt_42");
    }
}

#[cfg(test)]
mod delivery_tests;
