//! `GET /api/v1/videos/{id}/history`: what happened to a video, in order.

use actix_web::{get, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::parse_id;
use crate::auth::Caller;
use crate::domain::{HistoryEvent, HistoryKind, VideoId};
use crate::error::{ApiError, ErrorBody};
use crate::service::Service;

/// One history event. `seq` grows strictly in commit order across every video.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryItem {
    pub seq: i64,
    pub video: VideoId,
    pub owner: Option<String>,
    pub kind: HistoryKind,
    /// RFC 3339.
    pub at: String,
    /// Kind-specific facts (bytes, attempt, worker, renditions, code, …).
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
}

impl From<&HistoryEvent> for HistoryItem {
    fn from(event: &HistoryEvent) -> Self {
        Self {
            seq: event.seq,
            video: event.video,
            owner: event.owner.clone(),
            kind: event.kind,
            at: event.at.to_rfc3339(),
            data: event.data.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryPage {
    /// Oldest first.
    pub items: Vec<HistoryItem>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct HistoryQuery {
    /// Only events after this `seq` (a `next_cursor`).
    pub after: Option<i64>,
    /// 1 to 1000, default 100.
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
}

/// The history of a video, also after it was deleted (its owner and admins).
#[utoipa::path(
    tag = "videos",
    params(("id" = String, Path, description = "Video id"), HistoryQuery),
    responses(
        (status = 200, description = "Events, oldest first", body = HistoryPage),
        (status = 400, description = "Bad `after` or `limit`", body = ErrorBody),
        (status = 404, description = "No such video, or not the caller's", body = ErrorBody),
    )
)]
#[get("/api/v1/videos/{id}/history")]
pub async fn history(
    service: web::Data<Service>,
    caller: Caller,
    id: web::Path<String>,
    query: web::Query<HistoryQuery>,
) -> Result<web::Json<HistoryPage>, ApiError> {
    let limit = super::page_limit(query.limit)?;
    let after = query.after.unwrap_or(0).max(0);
    let page = service
        .history(&caller, parse_id(&id)?, after, limit + 1)
        .await?;
    let more = page.events.len() > limit as usize;
    let items: Vec<HistoryItem> = page
        .events
        .iter()
        .take(limit as usize)
        .map(HistoryItem::from)
        .collect();
    let next_cursor = more
        .then(|| items.last().map(|item| item.seq.to_string()))
        .flatten();
    Ok(web::Json(HistoryPage { items, next_cursor }))
}
