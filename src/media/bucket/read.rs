//! Reading objects from the bucket: ranged GETs as streams, each wait bounded.

use futures_util::StreamExt;
use object_store::path::Path as Key;
use object_store::{GetOptions, GetRange, ObjectStore};

use super::{BucketStore, mapped};
use crate::media::{ByteStream, MediaError};

impl BucketStore {
    /// A ranged GET as a stream; each wait for the next bytes is bounded by the time-out.
    pub(super) async fn read(
        &self,
        key: Key,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, MediaError> {
        if len == 0 {
            return Ok(futures_util::stream::empty().boxed());
        }
        let options = GetOptions {
            range: Some(GetRange::Bounded(start..start + len)),
            ..Default::default()
        };
        let what = key.as_ref().to_owned();
        let result = tokio::time::timeout(self.timeout, self.streaming.get_opts(&key, options))
            .await
            .map_err(|_| timed_out(&what))?
            .map_err(|e| mapped(&what, e))?;
        let idle = self.timeout;
        let stream = futures_util::stream::unfold(
            (result.into_stream(), what),
            move |(mut stream, what)| async move {
                let next = match tokio::time::timeout(idle, stream.next()).await {
                    Err(_) => Some(Err(timed_out(&what))),
                    Ok(None) => None,
                    Ok(Some(chunk)) => Some(chunk.map_err(|e| mapped(&what, e))),
                };
                next.map(|item| (item, (stream, what)))
            },
        );
        Ok(stream.boxed())
    }
}

/// The error of a request that got no answer within the time-out (retryable).
pub(super) fn timed_out(what: &str) -> MediaError {
    MediaError::Unavailable {
        what: what.to_owned(),
        source: object_store::Error::Generic {
            store: "S3",
            source: "no answer within the time-out".into(),
        },
    }
}
