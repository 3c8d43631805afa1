//! Resumable uploads in the bucket: each request's durable bytes are chunk objects
//! `uploads/<upload>/<start>-<end>` (offsets zero-padded to 20 digits, so keys sort by start),
//! written whole by one PUT each. A request with a checksum writes
//! `<start>-<end>.unverified-<tag>` instead (a name that is not a chunk's), copied to the
//! chunk's name within the bucket once the checksum matched. Any node can continue an upload another began, and the one
//! that receives the last byte concatenates the chunks into the source
//! (`crate::upload::resumable::chunks`).

use std::ops::Range;

use bytes::Bytes;
use futures_util::StreamExt;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::{BucketStore, mapped};
use crate::media::{ByteStream, MediaError};

impl BucketStore {
    fn uploads_key(&self, upload: &str) -> Key {
        self.key(&format!("uploads/{upload}"))
    }

    fn chunk_key(&self, upload: &str, chunk: &Range<u64>, unverified: Option<&str>) -> Key {
        let name = format!("{:020}-{:020}", chunk.start, chunk.end);
        match unverified {
            None => self.key(&format!("uploads/{upload}/{name}")),
            Some(tag) => self.key(&format!("uploads/{upload}/{name}.unverified-{tag}")),
        }
    }

    pub(super) async fn put_chunk(
        &self,
        upload: &str,
        start: u64,
        parts: Vec<Bytes>,
        unverified: Option<&str>,
    ) -> Result<(), MediaError> {
        let len: u64 = parts.iter().map(|p| p.len() as u64).sum();
        let key = self.chunk_key(upload, &(start..start + len), unverified);
        self.put(&key, PutPayload::from_iter(parts)).await
    }

    pub(super) async fn promote_chunk(
        &self,
        upload: &str,
        chunk: Range<u64>,
        unverified: &str,
        keep: bool,
    ) -> Result<(), MediaError> {
        let aside = self.chunk_key(upload, &chunk, Some(unverified));
        if keep {
            let key = self.chunk_key(upload, &chunk, None);
            self.store
                .copy(&aside, &key)
                .await
                .map_err(|e| mapped(key.as_ref(), e))?;
        }
        self.delete(&aside).await
    }

    pub(super) async fn list_chunks(&self, upload: &str) -> Result<Vec<Range<u64>>, MediaError> {
        let prefix = self.uploads_key(upload);
        let mut listed = self.store.list(Some(&prefix));
        let mut chunks = Vec::new();
        while let Some(object) = listed.next().await {
            let object = object.map_err(|e| mapped(prefix.as_ref(), e))?;
            // A name that does not parse, or whose size disagrees with it, is not a chunk.
            if let Some(chunk) = object.location.filename().and_then(parse_chunk_name)
                && chunk.end - chunk.start == object.size
            {
                chunks.push(chunk);
            }
        }
        Ok(chunks)
    }

    pub(super) async fn read_chunk(
        &self,
        upload: &str,
        chunk: Range<u64>,
    ) -> Result<ByteStream, MediaError> {
        let len = chunk.end - chunk.start;
        self.read(self.chunk_key(upload, &chunk, None), 0, len)
            .await
    }

    pub(super) async fn remove_chunks(&self, upload: &str) -> Result<(), MediaError> {
        let prefix = self.key(&format!("uploads/{upload}/"));
        self.delete_below(&prefix).await
    }

    pub(super) async fn chunked(&self) -> Result<Vec<String>, MediaError> {
        let prefix = self.key("uploads");
        let listed = self
            .store
            .list_with_delimiter(Some(&prefix))
            .await
            .map_err(|e| mapped(prefix.as_ref(), e))?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect())
    }
}

/// `start-end` as written by [`BucketStore::put_chunk`]; `None` for anything else.
fn parse_chunk_name(name: &str) -> Option<Range<u64>> {
    let (start, end) = name.split_once('-')?;
    let (start, end) = (start.parse().ok()?, end.parse().ok()?);
    (start < end).then_some(start..end)
}

#[cfg(test)]
mod tests {
    use super::parse_chunk_name;

    #[test]
    fn chunk_names_parse_back_to_their_range() {
        assert_eq!(
            parse_chunk_name("00000000000000000000-00000000000000008192"),
            Some(0..8192)
        );
        assert_eq!(parse_chunk_name("5-3"), None, "backwards");
        assert_eq!(parse_chunk_name("7-7"), None, "empty");
        assert_eq!(parse_chunk_name("x-9"), None);
        assert_eq!(parse_chunk_name("12"), None);
        assert_eq!(
            parse_chunk_name("00000000000000000000-00000000000000008192.unverified-ab12"),
            None,
            "kept aside until its checksum matched"
        );
    }
}
