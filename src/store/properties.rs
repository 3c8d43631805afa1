//! Properties the worker extracts once the source is probed: the context kept from the upload
//! request, and the fenced write of the result (see `crate::properties`).

use std::collections::BTreeMap;

use serde_json::json;

use super::history::append;
use super::{Lease, Result, Store, StoreError, first};
use crate::domain::{HistoryKind, NewEvent, VideoId};

impl Store {
    /// The JSON kept at upload for the evaluation after the probe (`None`: nothing was kept).
    pub async fn property_context(&self, id: VideoId) -> Result<Option<serde_json::Value>> {
        let rows = sqlx::query("SELECT property_context_json FROM videos WHERE id = $1")
            .bind(id.to_string())
            .fetch_all(&self.pool)
            .await?;
        let Some(row) = first(rows) else {
            return Ok(None);
        };
        let text: Option<String> = sqlx::Row::try_get(&row, "property_context_json")?;
        text.map(|text| {
            serde_json::from_str(&text).map_err(|error| StoreError::Corrupt {
                id: id.to_string(),
                reason: error.to_string(),
            })
        })
        .transpose()
    }

    /// Replaces a running job's properties and appends `updated` with them, in one
    /// transaction fenced by the lease; `false` when the lease is no longer held.
    pub async fn record_properties(
        &self,
        lease: &Lease,
        properties: &BTreeMap<String, serde_json::Value>,
    ) -> Result<bool> {
        let mut tx = self.begin_write().await?;
        let rows = sqlx::query(self.sql(
            "UPDATE videos SET properties_json = $1, updated_at = {now} \
             WHERE id = $2 AND lease_token = $3 AND status = 'processing' RETURNING owner",
        ))
        .bind((!properties.is_empty()).then(|| json!(properties).to_string()))
        .bind(lease.video.to_string())
        .bind(lease.token)
        .fetch_all(&mut *tx)
        .await?;
        let Some(row) = first(rows) else {
            return Ok(false);
        };
        let owner: String = sqlx::Row::try_get(&row, "owner")?;
        let event = NewEvent::new(HistoryKind::Updated, json!({ "properties": properties }));
        append(&mut tx, self, lease.video, Some(owner.as_str()), &event).await?;
        self.commit(tx).await?;
        Ok(true)
    }
}
