//! Rows as both engines return them, and their conversion into domain types.

use std::collections::BTreeMap;
use std::str::FromStr;

use sqlx::FromRow;
use sqlx::any::AnyRow;

use super::{Result, StoreError};
use crate::domain::{
    HistoryEvent, HistoryKind, JobError, Millis, Step, Video, VideoId, VideoStatus, Visibility,
};

/// The columns of `videos` read into a [`Video`], in the order of [`VideoRow`].
macro_rules! video_columns {
    () => {
        "videos.id, videos.owner, videos.title, videos.filename, videos.visibility, \
         videos.status, videos.step, videos.progress, videos.source_size, videos.source_json, \
         videos.renditions_json, videos.metadata_json, videos.properties_json, videos.error_code, \
         videos.error_message, videos.attempts, videos.interruptions, videos.playable_at, \
         videos.created_at, videos.updated_at"
    };
}

/// A CTE `q (id, position)`: queue positions of every queued video, in the order workers
/// claim them: round-robin across owners. Each owner's waiting jobs take turns 1, 2, 3… by age;
/// within one turn, the owner served longest ago (or never) goes first; then by age. So one
/// creator's fifty uploads do not starve another's one, whatever runs meanwhile.
macro_rules! queue_positions {
    () => {
        "q AS ( \
           SELECT t.id, ROW_NUMBER() OVER (ORDER BY t.turn, t.served, t.id) AS position FROM ( \
             SELECT v.id, ROW_NUMBER() OVER (PARTITION BY v.owner ORDER BY v.id) AS turn, \
                    COALESCE(s.served, 0) AS served \
             FROM videos v LEFT JOIN ( \
               SELECT owner, MAX(started_at) AS served FROM videos \
               WHERE started_at IS NOT NULL \
                 AND owner IN (SELECT owner FROM videos WHERE status = 'queued') \
               GROUP BY owner \
             ) s ON s.owner = v.owner \
             WHERE v.status = 'queued' \
           ) t \
         )"
    };
}

/// `SELECT` of videos with their queue position; append `WHERE …`.
macro_rules! select_videos {
    () => {
        concat!(
            "WITH ",
            $crate::store::rows::queue_positions!(),
            " SELECT ",
            $crate::store::rows::video_columns!(),
            ", q.position FROM videos LEFT JOIN q ON q.id = videos.id "
        )
    };
}

pub(super) use {queue_positions, select_videos, video_columns};

#[derive(FromRow)]
pub(super) struct VideoRow {
    id: String,
    owner: String,
    title: Option<String>,
    filename: Option<String>,
    visibility: String,
    status: String,
    step: String,
    progress: f64,
    source_size: i64,
    source_json: Option<String>,
    renditions_json: Option<String>,
    metadata_json: Option<String>,
    properties_json: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    attempts: i64,
    interruptions: i64,
    playable_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

/// A video row followed by its queue position (`q.position`, NULL when not queued).
pub(super) fn video(row: &AnyRow) -> Result<Video> {
    let raw = VideoRow::from_row(row)?;
    let position: Option<i64> = sqlx::Row::try_get(row, "position").unwrap_or(None);
    let mut video = Video::try_from(raw)?;
    video.queue_position = position.and_then(|p| u32::try_from(p).ok());
    Ok(video)
}

fn json<T: serde::de::DeserializeOwned>(id: &str, text: Option<&str>) -> Result<Option<T>> {
    text.map(|text| {
        serde_json::from_str(text).map_err(|error| StoreError::Corrupt {
            id: id.to_owned(),
            reason: error.to_string(),
        })
    })
    .transpose()
}

impl TryFrom<VideoRow> for Video {
    type Error = StoreError;

    fn try_from(row: VideoRow) -> Result<Self> {
        let corrupt = |reason: String| StoreError::Corrupt {
            id: row.id.clone(),
            reason,
        };
        let id = VideoId::from_str(&row.id).map_err(|e| corrupt(e.to_string()))?;
        let status = VideoStatus::from_str(&row.status).map_err(|e| corrupt(e.to_string()))?;
        let properties: Option<BTreeMap<String, serde_json::Value>> =
            json(&row.id, row.properties_json.as_deref())?;
        Ok(Video {
            id,
            owner: (!row.owner.is_empty()).then_some(row.owner.clone()),
            title: row.title.clone(),
            filename: row.filename.clone(),
            visibility: Visibility::parse(&row.visibility),
            status,
            step: Step::parse(&row.step),
            progress: row.progress,
            source_size: u64::try_from(row.source_size).unwrap_or(0),
            source: json(&row.id, row.source_json.as_deref())?,
            renditions: json(&row.id, row.renditions_json.as_deref())?.unwrap_or_default(),
            metadata: json(&row.id, row.metadata_json.as_deref())?,
            properties: properties.unwrap_or_default(),
            error: row.error_code.clone().map(|code| JobError {
                code,
                message: row.error_message.clone().unwrap_or_default(),
            }),
            attempts: u32::try_from(row.attempts).unwrap_or(0),
            interruptions: u32::try_from(row.interruptions).unwrap_or(0),
            queue_position: None,
            playable_at: row.playable_at.map(Millis),
            created_at: Millis(row.created_at),
            updated_at: Millis(row.updated_at),
        })
    }
}

/// The columns of `history` read into a [`HistoryEvent`].
macro_rules! history_columns {
    () => {
        "seq, video_id, owner, kind, at, data"
    };
}

pub(super) use history_columns;

#[derive(FromRow)]
pub(super) struct HistoryRow {
    seq: i64,
    video_id: String,
    owner: String,
    kind: String,
    at: i64,
    data: String,
}

pub(super) fn history(row: &AnyRow) -> Result<HistoryEvent> {
    let raw = HistoryRow::from_row(row)?;
    let corrupt = |reason: String| StoreError::Corrupt {
        id: format!("history {}", raw.seq),
        reason,
    };
    Ok(HistoryEvent {
        seq: raw.seq,
        video: VideoId::from_str(&raw.video_id).map_err(|e| corrupt(e.to_string()))?,
        owner: (!raw.owner.is_empty()).then(|| raw.owner.clone()),
        kind: HistoryKind::parse(&raw.kind).ok_or_else(|| corrupt(raw.kind.clone()))?,
        at: Millis(raw.at),
        data: serde_json::from_str(&raw.data).map_err(|e| corrupt(e.to_string()))?,
    })
}

/// Bytes and counts are unsigned in Rust and BIGINT in SQL.
pub(super) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}
