//! The change feed: `GET /api/v1/changes` (long poll) and `GET /api/v1/changes/stream` (SSE).
//!
//! Every history event the caller may see (creators: their videos'; admins: all), each once per
//! cursor position, in strictly increasing `seq` order, which is commit order on both engines.
//! A consumer that stores the last `seq` it processed and asks for `after=<seq>` misses nothing.

use std::convert::Infallible;
use std::time::Duration;

use actix_web::{HttpRequest, Responder, get, web};
use actix_web_lab::sse::{self, Sse};
use futures_util::stream::{self, StreamExt};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::history::HistoryItem;
use super::resource::ChangeFrame;
use crate::auth::Caller;
use crate::error::{ApiError, ErrorBody};
use crate::service::Service;

const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// Events fetched per read of the stream.
const STREAM_BATCH: u32 = 200;

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ChangesQuery {
    /// Events after this `seq` (0, or absent, from the beginning of the retained history).
    #[param(minimum = 0)]
    pub after: Option<i64>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// Seconds to wait for an event when there is none yet (long poll), 0 to 60, default 0.
    #[param(minimum = 0, maximum = 60)]
    pub wait: Option<u64>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct StreamQuery {
    /// Events after this `seq` (0, or absent, from the beginning of the retained history).
    #[param(minimum = 0)]
    pub after: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ChangesPage {
    /// In `seq` order.
    pub items: Vec<HistoryItem>,
    /// The `seq` to pass as `after` next: the last item's, or the `after` given when empty.
    pub next_cursor: i64,
}

/// The change feed, with an optional long poll.
#[utoipa::path(
    tag = "changes",
    params(ChangesQuery),
    responses(
        (status = 200, description = "Events after the cursor, in seq order", body = ChangesPage),
        (status = 400, description = "Bad `after`, `limit` or `wait`", body = ErrorBody),
        (status = 401, description = "No valid bearer token (auth on)", body = ErrorBody),
        (status = 403, description = "The token grants no role", body = ErrorBody),
    )
)]
#[get("/api/v1/changes")]
pub async fn changes(
    service: web::Data<Service>,
    caller: Caller,
    query: web::Query<ChangesQuery>,
) -> Result<web::Json<ChangesPage>, ApiError> {
    let limit = super::page_limit(query.limit)?;
    let wait = query.wait.unwrap_or(0);
    if wait > 60 {
        return Err(ApiError::bad_request(
            "invalid_wait",
            "`wait` must be between 0 and 60 seconds.",
        ));
    }
    let after = query.after.unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request(
            "invalid_cursor",
            "`after` must be a seq from the feed (0 or more).",
        ));
    }
    let page = service
        .changes(&caller, after, limit, Duration::from_secs(wait))
        .await?;
    Ok(web::Json(ChangesPage {
        items: page.events.iter().map(HistoryItem::from).collect(),
        next_cursor: page.next,
    }))
}

/// The change feed as Server-Sent Events: `change` events whose `id` is the `seq`;
/// `Last-Event-ID` (or `?after=`) resumes. Keep-alive every 15 s.
#[utoipa::path(
    tag = "changes",
    params(StreamQuery,
           ("Last-Event-ID" = Option<String>, Header, description = "Resume after this seq (wins over `after`)")),
    responses(
        (status = 200, description = "`change` events, each a history item; keep-alive comments", content_type = "text/event-stream", body = ChangeFrame),
        (status = 400, description = "A query parameter is not valid", body = ErrorBody),
        (status = 401, description = "No valid bearer token (auth on)", body = ErrorBody),
        (status = 403, description = "The token grants no role", body = ErrorBody),
    )
)]
#[get("/api/v1/changes/stream")]
pub async fn changes_stream(
    service: web::Data<Service>,
    caller: Caller,
    req: HttpRequest,
    query: web::Query<StreamQuery>,
) -> Result<impl Responder, ApiError> {
    let resume = req
        .headers()
        .get("Last-Event-ID")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    let after = resume.or(query.after).unwrap_or(0);
    if after < 0 {
        return Err(ApiError::bad_request(
            "invalid_cursor",
            "`after` must be a seq from the feed (0 or more).",
        ));
    }
    // Checks the caller's rights before the stream starts (an error is a plain response).
    let first = service
        .changes(&caller, after, STREAM_BATCH, Duration::ZERO)
        .await?;
    let state = (service, caller, first.next, Some(first.events));
    let events = stream::unfold(state, |(service, caller, cursor, pending)| async move {
        let events = match pending {
            Some(events) => events,
            None => {
                match service
                    .changes(&caller, cursor, STREAM_BATCH, Duration::from_secs(30))
                    .await
                {
                    Ok(page) => page.events,
                    // The database is away: end the stream; the client reconnects and resumes.
                    Err(_) => return None,
                }
            }
        };
        if service.shutdown.is_cancelled() {
            return None;
        }
        let next = events.last().map_or(cursor, |e| e.seq);
        let frames: Vec<Result<sse::Event, Infallible>> = events
            .iter()
            .filter_map(|event| {
                let data = sse::Data::new_json(HistoryItem::from(event)).ok()?;
                Some(Ok(sse::Event::Data(
                    data.event("change").id(event.seq.to_string()),
                )))
            })
            .collect();
        Some((stream::iter(frames), (service, caller, next, None)))
    })
    .flatten();
    Ok(Sse::from_stream(events.boxed_local())
        .with_keep_alive(KEEP_ALIVE)
        .with_retry_duration(Duration::from_secs(3))
        .customize()
        .insert_header(("X-Accel-Buffering", "no"))
        .insert_header(("Cache-Control", "no-cache")))
}
