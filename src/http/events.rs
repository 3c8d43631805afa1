//! `GET /api/v1/videos/{id}/events`: Server-Sent Events for one video.
//!
//! A snapshot first, then live events from the hub, one terminal event, end of stream. Every
//! event carries an id; `Last-Event-ID` replays what the client missed instead of a snapshot
//! when the hub still holds it.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{HttpRequest, Responder, get, web};
use actix_web_lab::sse::{self, Sse};
use bytestring::ByteString;
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use tokio::sync::broadcast;

use super::parse_id;
use super::resource::{EventFrame, MediaLinks, VideoResource};
use crate::auth::Caller;
use crate::domain::{Video, VideoId, VideoStatus};
use crate::error::{ApiError, ErrorBody};
use crate::progress::{JobEvent, Stamped};
use crate::service::{Service, ServiceError};
use crate::telemetry;

const KEEP_ALIVE: Duration = Duration::from_secs(15);
const RETRY: Duration = Duration::from_secs(3);

#[derive(Serialize)]
struct StatusChange {
    id: VideoId,
    status: VideoStatus,
}

fn frame(id: u64, name: &'static str, payload: &impl Serialize) -> Option<sse::Event> {
    let data = sse::Data::new_json(payload).ok()?;
    Some(sse::Event::Data(data.event(name).id(id.to_string())))
}

fn json(payload: &impl Serialize) -> Option<ByteString> {
    serde_json::to_string(payload).ok().map(ByteString::from)
}

/// What a hub event looks like on the wire: its name and JSON data.
fn encode(
    video: VideoId,
    event: &JobEvent,
    links: &MediaLinks,
) -> Option<(&'static str, ByteString)> {
    let status = |status| StatusChange { id: video, status };
    Some(match event {
        JobEvent::Progress(update) => ("progress", json(update)?),
        JobEvent::Status(change) => ("status", json(&status(*change))?),
        JobEvent::Playable(video) => ("playable", json(&VideoResource::new(video, links))?),
        JobEvent::Ready(video) => ("ready", json(&VideoResource::new(video, links))?),
        JobEvent::Failed(video) => ("failed", json(&VideoResource::new(video, links))?),
        JobEvent::Canceled => ("canceled", json(&status(VideoStatus::Canceled))?),
        JobEvent::Reconnect => ("reconnect", json(&status(VideoStatus::Processing))?),
    })
}

/// A hub event as an SSE frame; the JSON is made once per event, not once per subscriber.
fn render(video: VideoId, stamped: &Stamped, links: &MediaLinks) -> Option<sse::Event> {
    let (name, data) = stamped
        .wire
        .get_or_init(|| encode(video, &stamped.event, links))
        .clone()?;
    Some(sse::Event::Data(
        sse::Data::new(data).event(name).id(stamped.id.to_string()),
    ))
}

fn terminal_frame(id: u64, video: &Video, links: &MediaLinks) -> Option<sse::Event> {
    match video.status {
        VideoStatus::Ready => frame(id, "ready", &VideoResource::new(video, links)),
        VideoStatus::Failed => frame(id, "failed", &VideoResource::new(video, links)),
        _ => frame(
            id,
            "canceled",
            &StatusChange {
                id: video.id,
                status: VideoStatus::Canceled,
            },
        ),
    }
}

/// Counts open streams for `/metrics`; dropped with the stream.
struct ClientGauge;

impl ClientGauge {
    fn open() -> Self {
        metrics::gauge!(telemetry::SSE_CLIENTS).increment(1.0);
        Self
    }
}

impl Drop for ClientGauge {
    fn drop(&mut self) {
        metrics::gauge!(telemetry::SSE_CLIENTS).decrement(1.0);
    }
}

struct Live {
    video: VideoId,
    links: MediaLinks,
    receiver: broadcast::Receiver<Arc<Stamped>>,
    last_sent: u64,
    finished: bool,
    _gauge: ClientGauge,
}

/// Live progress of one video as Server-Sent Events.
#[utoipa::path(
    tag = "videos",
    params(("id" = String, Path, description = "Video id (lowercase hyphenated UUID)"),
           ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event")),
    responses(
        (status = 200, description = "`snapshot`, then `progress` / `status` events, then one of `ready`, `failed`, `canceled`",
         content_type = "text/event-stream", body = EventFrame),
        (status = 404, description = "No video with this id", body = ErrorBody)
    )
)]
#[get("/api/v1/videos/{id}/events")]
pub async fn events(
    service: web::Data<Service>,
    caller: Caller,
    id: web::Path<String>,
    req: HttpRequest,
) -> Result<impl Responder, ApiError> {
    let hub = service.hub();
    let links = service.media_links().clone();
    let id = parse_id(&id)?;
    let last_event_id: Option<u64> = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok());
    // Subscribe before reading the database: an event published in between is then not lost.
    let subscription = hub.subscribe(id);
    // The snapshot reflects every event this node holds for the video and every event the
    // client saw (event ids are global on a shared bus): its id is the newest of those, so every
    // live event after it has a larger id, on every node, and the client's ids never go back.
    let snapshot_id = subscription
        .recent
        .last()
        .map_or(0, |e| e.id)
        .max(last_event_id.unwrap_or(0));
    let video = match service.video(&caller, id).await {
        Ok(video) => video,
        Err(error) => {
            drop(subscription);
            hub.release(id);
            return Err(match error {
                ServiceError::NotFound => ApiError::not_found(),
                other => other.into(),
            });
        }
    };

    let mut first: Vec<sse::Event> = Vec::new();
    let snapshot = |progress: f64| {
        let mut resource = VideoResource::new(&video, &links);
        resource.progress = resource.progress.max(progress);
        frame(snapshot_id, "snapshot", &resource)
    };

    if video.status.is_terminal() {
        drop(subscription);
        hub.release(id);
        if last_event_id.is_none() {
            first.extend(snapshot(0.0));
        }
        first.extend(terminal_frame(snapshot_id + 1, &video, &links));
        let once = stream::iter(first.into_iter().map(Ok::<_, Infallible>));
        return Ok(respond(once.boxed_local()));
    }

    let resumable = last_event_id.filter(|n| subscription.recent.iter().any(|e| e.id == *n));
    let last_sent = match resumable {
        Some(n) => {
            first.extend(
                subscription
                    .recent
                    .iter()
                    .filter(|e| e.id > n)
                    .filter_map(|e| render(id, e, &links)),
            );
            subscription.recent.last().map_or(n, |e| e.id.max(n))
        }
        None => {
            first.extend(snapshot(subscription.progress));
            // The snapshot already reflects everything buffered so far.
            snapshot_id
        }
    };
    let finished = subscription
        .recent
        .iter()
        .any(|e| e.id <= last_sent && e.event.is_terminal());
    let live = Live {
        video: id,
        links: links.clone(),
        receiver: subscription.receiver,
        last_sent,
        finished,
        _gauge: ClientGauge::open(),
    };
    let live = stream::unfold(live, |mut live| async move {
        if live.finished {
            return None;
        }
        loop {
            match live.receiver.recv().await {
                // A terminal event always goes out: on a shared bus its id may come from
                // another clock than the ones before it.
                Ok(stamped) if stamped.id <= live.last_sent && !stamped.event.is_terminal() => {
                    continue;
                }
                Ok(stamped) => {
                    live.last_sent = live.last_sent.max(stamped.id);
                    live.finished =
                        stamped.event.is_terminal() || matches!(stamped.event, JobEvent::Reconnect);
                    if let Some(event) = render(live.video, &stamped, &live.links) {
                        return Some((Ok::<_, Infallible>(event), live));
                    }
                }
                // Progress is latest-value: the next event carries the current state.
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let all = stream::iter(first.into_iter().map(Ok::<_, Infallible>)).chain(live);
    Ok(respond(all.boxed_local()))
}

fn respond(
    stream: futures_util::stream::LocalBoxStream<'static, Result<sse::Event, Infallible>>,
) -> impl Responder {
    Sse::from_stream(stream)
        .with_keep_alive(KEEP_ALIVE)
        .with_retry_duration(RETRY)
        .customize()
        .insert_header(("X-Accel-Buffering", "no"))
        .insert_header(("Cache-Control", "no-cache"))
}
