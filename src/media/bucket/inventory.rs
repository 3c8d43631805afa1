//! What the bucket holds, by video, for the janitor's reconciliation with the database.

use std::time::Duration;

use futures_util::StreamExt;
use object_store::ObjectStore;

use super::{BucketStore, age_of, mapped};
use crate::domain::VideoId;
use crate::media::{Inventory, LadderState, MASTER, MediaError, PRIVATE_MARKER};

/// Ladders listed at once.
const LIST_CONCURRENCY: usize = 8;

/// Every source (with its age) and every ladder (published, private, age of its newest
/// top-level object) below the prefix.
pub async fn inventory(store: &BucketStore) -> Result<Inventory, MediaError> {
    let mut inventory = Inventory::default();
    let sources = store.key("sources");
    let mut listed = store.store.list(Some(&sources));
    while let Some(object) = listed.next().await {
        let object = object.map_err(|e| mapped(sources.as_ref(), e))?;
        if let Some(id) = object.location.filename().and_then(|n| n.parse().ok()) {
            inventory.sources.insert(id, age_of(object.last_modified));
        }
    }
    let hls = store.key("hls");
    let ids: Vec<VideoId> = store
        .store
        .list_with_delimiter(Some(&hls))
        .await
        .map_err(|e| mapped(hls.as_ref(), e))?
        .common_prefixes
        .iter()
        .filter_map(|p| p.filename().and_then(|n| n.parse().ok()))
        .collect();
    let states: Vec<_> = futures_util::stream::iter(ids)
        .map(|id| async move { (id, ladder_state(store, id).await) })
        .buffer_unordered(LIST_CONCURRENCY)
        .collect()
        .await;
    for (id, state) in states {
        inventory.ladders.insert(id, state?);
    }
    Ok(inventory)
}

/// Top-level objects of a ladder: published, private, newest.
async fn ladder_state(store: &BucketStore, id: VideoId) -> Result<LadderState, MediaError> {
    let prefix = store.key(&format!("hls/{id}"));
    let listed = store
        .store
        .list_with_delimiter(Some(&prefix))
        .await
        .map_err(|e| mapped(prefix.as_ref(), e))?;
    let mut state = LadderState {
        age: Duration::MAX,
        ..Default::default()
    };
    for object in listed.objects {
        match object.location.filename() {
            Some(MASTER) => state.published = true,
            Some(PRIVATE_MARKER) => state.private = true,
            _ => {}
        }
        state.age = state.age.min(age_of(object.last_modified));
    }
    if state.age == Duration::MAX {
        state.age = Duration::ZERO;
    }
    Ok(state)
}
