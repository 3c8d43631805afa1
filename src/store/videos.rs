//! Videos: create on upload (with queue admission), read, list, change, delete.

use serde_json::json;

use super::history::append;
use super::rows::{self, select_videos, to_i64};
use super::{Result, Store, StoreError, first};
use crate::domain::{HistoryKind, NewEvent, NewVideo, Video, VideoId, VideoStatus, Visibility};

/// Filters of a list, newest first.
#[derive(Debug, Clone, Default)]
pub struct VideoQuery {
    /// Only this owner's videos (`None`: everyone's).
    pub owner: Option<String>,
    pub status: Option<VideoStatus>,
    /// Case-insensitive substring of the title, or of the file name when untitled (ASCII case
    /// folding on SQLite).
    pub title_contains: Option<String>,
    /// Only videos older than this one (the cursor).
    pub before: Option<VideoId>,
    /// `(name, value)` pairs every listed video's properties must match.
    pub properties: Vec<(String, serde_json::Value)>,
    pub limit: u32,
}

/// Changes a creator may make to a video; `None` leaves a field as it is.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VideoPatch {
    /// `Some(None)` clears the title.
    pub title: Option<Option<String>>,
    pub visibility: Option<Visibility>,
}

impl VideoPatch {
    pub fn is_empty(&self) -> bool {
        self.title.is_none() && self.visibility.is_none()
    }
}

/// `%`, `_` and `\` in a search term match themselves.
fn like_pattern(term: &str) -> String {
    let mut pattern = String::with_capacity(term.len() + 2);
    pattern.push('%');
    for c in term.chars() {
        if matches!(c, '%' | '_' | '\\') {
            pattern.push('\\');
        }
        pattern.push(c);
    }
    pattern.push('%');
    pattern
}

impl Store {
    /// Files an accepted upload as a queued video unless the queue is at capacity, appending
    /// `uploaded` and `queued` to its history, all in one transaction.
    ///
    /// Errors: [`StoreError::QueueFull`] when `capacity` videos are already waiting.
    pub async fn insert_video(&self, new: &NewVideo, capacity: u32) -> Result<Video> {
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(self.sql(
            "INSERT INTO videos (id, owner, title, filename, visibility, status, step, progress, \
                 source_size, metadata_json, properties_json, property_context_json, \
                 created_at, updated_at) \
             SELECT $1, $2, $3, $4, $5, 'queued', 'queued', 0, $6, $7, $8, $9, {now}, {now} \
             WHERE (SELECT COUNT(*) FROM videos WHERE status = 'queued') < $10",
        ))
        .bind(new.id.to_string())
        .bind(new.owner.clone().unwrap_or_default())
        .bind(new.title.clone())
        .bind(new.filename.clone())
        .bind(new.visibility.as_str())
        .bind(to_i64(new.source_size))
        .bind(new.metadata.as_ref().map(|m| m.to_string()))
        .bind((!new.properties.is_empty()).then(|| json!(new.properties).to_string()))
        .bind(new.property_context.as_ref().map(|c| c.to_string()))
        .bind(i64::from(capacity))
        .execute(&mut *tx)
        .await?;
        if inserted.rows_affected() == 0 {
            return Err(StoreError::QueueFull { capacity });
        }
        let owner = new.owner.as_deref();
        let mut uploaded = serde_json::to_value(&new.upload).unwrap_or_default();
        if let Some(facts) = uploaded.as_object_mut()
            && !new.properties.is_empty()
        {
            facts.insert("properties".into(), json!(new.properties));
        }
        append(
            &mut tx,
            self,
            new.id,
            owner,
            &NewEvent::new(HistoryKind::Uploaded, uploaded),
        )
        .await?;
        append(
            &mut tx,
            self,
            new.id,
            owner,
            &NewEvent::bare(HistoryKind::Queued),
        )
        .await?;
        let video = self.video_in(&mut tx, new.id).await?;
        self.commit(tx).await?;
        video.ok_or_else(|| StoreError::Corrupt {
            id: new.id.to_string(),
            reason: "inserted row not found".into(),
        })
    }

    /// One video with its queue position, read in one statement (so the two agree).
    pub async fn video(&self, id: VideoId) -> Result<Option<Video>> {
        let rows = sqlx::query(self.sql(concat!(select_videos!(), "WHERE videos.id = $1")))
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await?;
        first(rows).map(|row| rows::video(&row)).transpose()
    }

    pub(super) async fn video_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        id: VideoId,
    ) -> Result<Option<Video>> {
        let rows = sqlx::query(self.sql(concat!(select_videos!(), "WHERE videos.id = $1")))
            .bind(id.to_string())
            .fetch_all(&mut **tx)
            .await?;
        first(rows).map(|row| rows::video(&row)).transpose()
    }

    /// Videos matching `query`, newest first, each with its queue position.
    pub async fn videos(&self, query: &VideoQuery) -> Result<Vec<Video>> {
        let rows = sqlx::query(self.sql(concat!(
            select_videos!(),
            "WHERE ($1 IS NULL OR videos.owner = $1) \
               AND ($2 IS NULL OR videos.status = $2) \
               AND ($3 IS NULL OR COALESCE(videos.title, videos.filename, '') {like} $3 ESCAPE '\\') \
               AND ($4 IS NULL OR videos.id < $4) \
               AND ($5 IS NULL OR {properties_match}) \
             ORDER BY videos.id DESC LIMIT $6"
        )))
        .bind(query.owner.clone())
        .bind(query.status.map(VideoStatus::as_str))
        .bind(query.title_contains.as_deref().map(like_pattern))
        .bind(query.before.map(|id| id.to_string()))
        .bind((!query.properties.is_empty()).then(|| {
            serde_json::Value::Object(query.properties.iter().cloned().collect()).to_string()
        }))
        .bind(i64::from(query.limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::video).collect()
    }

    /// Applies `patch` and appends `updated` with the new values; `None` when there is no such video.
    pub async fn update_video(&self, id: VideoId, patch: &VideoPatch) -> Result<Option<Video>> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(self.sql(
            "UPDATE videos SET \
                 title = CASE WHEN $1 = 1 THEN $2 ELSE title END, \
                 visibility = COALESCE($3, visibility), updated_at = {now} \
             WHERE id = $4 RETURNING owner",
        ))
        .bind(i64::from(patch.title.is_some()))
        .bind(patch.title.clone().flatten())
        .bind(patch.visibility.map(Visibility::as_str))
        .bind(id.to_string())
        .fetch_all(&mut *tx)
        .await?;
        let Some(row) = first(updated) else {
            return Ok(None);
        };
        let owner: String = sqlx::Row::try_get(&row, "owner")?;
        let mut changes = serde_json::Map::new();
        if let Some(title) = &patch.title {
            changes.insert("title".into(), json!(title));
        }
        if let Some(visibility) = patch.visibility {
            changes.insert("visibility".into(), json!(visibility));
        }
        let event = NewEvent::new(HistoryKind::Updated, changes.into());
        append(&mut tx, self, id, Some(owner.as_str()), &event).await?;
        let video = self.video_in(&mut tx, id).await?;
        self.commit(tx).await?;
        Ok(video)
    }

    /// Deletes a video's row, appending `canceled` (when its job had not ended) and `deleted`
    /// (`by`: who asked). Returns the video as it was; `None` when there was no such video.
    /// The row is gone once this returns `Ok`: only then may its files be removed.
    pub async fn delete_video(&self, id: VideoId, by: Option<&str>) -> Result<Option<Video>> {
        let mut tx = self.begin_write().await?;
        let Some(video) = self.video_in(&mut tx, id).await? else {
            return Ok(None);
        };
        let deleted = sqlx::query(self.sql("DELETE FROM videos WHERE id = $1"))
            .bind(id.to_string())
            .execute(&mut *tx)
            .await?;
        if deleted.rows_affected() == 0 {
            return Ok(None);
        }
        let owner = video.owner.as_deref();
        if !video.status.is_terminal() {
            let event = NewEvent::new(HistoryKind::Canceled, json!({ "was": video.status }));
            append(&mut tx, self, id, owner, &event).await?;
        }
        let event = NewEvent::new(HistoryKind::Deleted, json!({ "by": by }));
        append(&mut tx, self, id, owner, &event).await?;
        self.commit(tx).await?;
        Ok(Some(video))
    }

    /// Waiting jobs (the queue depth).
    pub async fn queued_count(&self) -> Result<u32> {
        let rows = sqlx::query("SELECT COUNT(*) AS n FROM videos WHERE status = 'queued'")
            .fetch_all(&self.pool)
            .await?;
        let n: i64 = match first(rows) {
            Some(row) => sqlx::Row::try_get(&row, "n")?,
            None => 0,
        };
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    /// Every video with a row (id, status, visibility), for reconciling the media volume
    /// against the database.
    pub async fn all_ids(&self) -> Result<Vec<(VideoId, VideoStatus, Visibility)>> {
        let rows = sqlx::query("SELECT id, status, visibility FROM videos")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let id: String = sqlx::Row::try_get(row, "id").ok()?;
                let status: String = sqlx::Row::try_get(row, "status").ok()?;
                let visibility: String = sqlx::Row::try_get(row, "visibility").ok()?;
                Some((
                    id.parse().ok()?,
                    status.parse().ok()?,
                    Visibility::parse(&visibility),
                ))
            })
            .collect())
    }
}
