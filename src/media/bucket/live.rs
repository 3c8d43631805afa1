//! A growing ladder in the bucket (see [`crate::media::live`]): the marker object first, then
//! each finished segment once (a PUT, `immutable`), then the growing playlists (replaced by a
//! PUT, `Cache-Control: no-cache`), and the master once segment 0 is in every rendition, last.
//! Every write first asks the job's lease fence, as the finished ladder's do ([`super::ladder`]),
//! so a worker that lost its lease writes nothing more; that fence is also what keeps a newer
//! attempt's ladder safe from an older one (the bucket has no conditional writes to lean on).
//!
//! At ready, [`super::ladder::stage`] sends only what is not stored yet (segments are the same
//! files), then the VOD playlists; the commit writes the master and removes the marker. A
//! withdraw deletes the master first and the marker last, so a withdraw cut short still leaves
//! a ladder that is invisible and known to be growing (the restart's sweep finishes it).

use async_trait::async_trait;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path as Key;
use object_store::{Attribute, ObjectStore, ObjectStoreExt};

use super::ladder::{PUTS_IN_FLIGHT, attributes, put_bytes, put_file};
use super::{BucketStore, mapped};
use crate::domain::VideoId;
use crate::media::live::{GROWING_MARKER, GrowingLadder, Growth};
use crate::media::{Fence, MASTER, MediaError, PRIVATE_MARKER};

/// Largest marker read (a decimal lease token).
const MARKER_LIMIT: usize = 64;

/// The growing ladder of one attempt below `hls/<id>/`.
pub(super) struct BucketGrowing<'a> {
    store: &'a BucketStore,
    id: VideoId,
    token: i64,
    private: bool,
}

impl<'a> BucketGrowing<'a> {
    pub(super) fn new(store: &'a BucketStore, id: VideoId, token: i64, private: bool) -> Self {
        Self {
            store,
            id,
            token,
            private,
        }
    }

    /// One fenced PUT of `bytes` at `rel`; playlists are marked `no-cache` while they grow.
    async fn put(&self, rel: &str, bytes: Vec<u8>, fence: &dyn Fence) -> Result<(), MediaError> {
        fence.hold(self.store.write_bound()).await?;
        let mut attributes = attributes(rel);
        attributes.insert(Attribute::CacheControl, "no-cache".into());
        put_bytes(
            self.store,
            self.store.ladder_key(self.id, rel),
            bytes,
            attributes,
        )
        .await
    }

    /// The files (a few at a time, each fenced), then the playlists that name them.
    async fn put_growth(&self, growth: Growth, fence: &dyn Fence) -> Result<(), MediaError> {
        let bound = self.store.write_bound();
        let mut files = futures_util::stream::iter(growth.files)
            .map(|(rel, path)| async move {
                fence.hold(bound).await?;
                put_file(self.store, &path, self.store.ladder_key(self.id, &rel)).await
            })
            .buffer_unordered(PUTS_IN_FLIGHT);
        while let Some(put) = files.next().await {
            put?;
        }
        let mut playlists = futures_util::stream::iter(growth.playlists)
            .map(|(rel, bytes)| async move { self.put(&rel, bytes, fence).await })
            .buffer_unordered(PUTS_IN_FLIGHT);
        while let Some(put) = playlists.next().await {
            put?;
        }
        Ok(())
    }
}

#[async_trait]
impl GrowingLadder for BucketGrowing<'_> {
    async fn appear(
        &mut self,
        growth: Growth,
        masters: Vec<(String, Vec<u8>)>,
        fence: &dyn Fence,
    ) -> Result<(), MediaError> {
        // First: whatever follows is known to be a growing ladder, whoever finds it.
        let token = self.token.to_string().into_bytes();
        self.put(GROWING_MARKER, token, fence).await?;
        self.put_growth(growth, fence).await?;
        if self.private {
            self.put(PRIVATE_MARKER, Vec::new(), fence).await?;
        }
        let (master, others): (Vec<_>, Vec<_>) =
            masters.into_iter().partition(|(rel, _)| rel == MASTER);
        for (rel, bytes) in others.into_iter().chain(master) {
            self.put(&rel, bytes, fence).await?;
        }
        self.store.seen.remember_growing(self.id, true);
        Ok(())
    }

    async fn extend(&mut self, growth: Growth, fence: &dyn Fence) -> Result<bool, MediaError> {
        // The fence is the owner check: only the attempt holding the lease passes it.
        self.put_growth(growth, fence).await?;
        Ok(true)
    }
}

/// The lease token in `id`'s growing marker, if there is one.
async fn owner(store: &BucketStore, id: VideoId) -> Result<Option<String>, MediaError> {
    let key = store.ladder_key(id, GROWING_MARKER);
    let result = match store.store.get(&key).await {
        Ok(result) => result,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(error) => return Err(mapped(key.as_ref(), error)),
    };
    let bytes = result.bytes().await.map_err(|e| mapped(key.as_ref(), e))?;
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(MARKER_LIMIT)]);
    Ok(Some(text.trim().to_owned()))
}

/// Whether `id`'s ladder grows: its master is there and so is its marker (asked in that
/// order: the marker is written before the master and removed after it, so a master found
/// before a missing marker belongs to a ladder that is done growing). Answers are reused
/// briefly; an unpublished ladder is not growing (and not remembered).
pub(super) async fn is_growing(store: &BucketStore, id: VideoId) -> Result<bool, MediaError> {
    if let Some(growing) = store.seen.growing(id) {
        return Ok(growing);
    }
    if !store.is_published(id).await? {
        return Ok(false);
    }
    let growing = store
        .head(&store.ladder_key(id, GROWING_MARKER))
        .await?
        .is_some();
    store.seen.remember_growing(id, growing);
    Ok(growing)
}

/// Deletes `id`'s growing ladder when `owner_token` owns it (any owner when `None`): the
/// master first (nothing is served any more), then the rest, then the marker.
pub(super) async fn withdraw(
    store: &BucketStore,
    id: VideoId,
    owner_token: Option<i64>,
) -> Result<bool, MediaError> {
    let Some(found) = owner(store, id).await? else {
        return Ok(false);
    };
    if owner_token.is_some_and(|token| token.to_string() != found) {
        return Ok(false);
    }
    store.seen.forget(id);
    store.delete(&store.ladder_key(id, MASTER)).await?;
    let marker = store.ladder_key(id, GROWING_MARKER);
    let prefix = store.key(&format!("hls/{id}/"));
    let what = prefix.as_ref().to_owned();
    let kept = marker.clone();
    let keys = store
        .store
        .list(Some(&prefix))
        .map_ok(|meta| meta.location)
        .try_filter(move |key| std::future::ready(key != &kept))
        .boxed();
    let mut deleted = store.store.delete_stream(keys);
    while let Some(result) = deleted.next().await {
        match result {
            Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
            Err(error) => return Err(mapped(&what, error)),
        }
    }
    store.delete(&marker).await?;
    store.seen.forget(id);
    Ok(true)
}

/// Sizes of the objects stored below `hls/<id>/`, by path relative to it.
pub(super) async fn stored_sizes(
    store: &BucketStore,
    id: VideoId,
) -> Result<std::collections::HashMap<String, u64>, MediaError> {
    let prefix = store.key(&format!("hls/{id}/"));
    let base = format!("{}/", prefix.as_ref());
    let listed: Vec<_> = store
        .store
        .list(Some(&prefix))
        .try_collect()
        .await
        .map_err(|e| mapped(prefix.as_ref(), e))?;
    Ok(listed
        .into_iter()
        .filter_map(|meta| {
            let rel = meta.location.as_ref().strip_prefix(&base)?.to_owned();
            Some((rel, meta.size))
        })
        .collect())
}

/// The marker's key, for the commit that removes it.
pub(super) fn marker_key(store: &BucketStore, id: VideoId) -> Key {
    store.ladder_key(id, GROWING_MARKER)
}
