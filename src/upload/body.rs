//! One idle timeout and one byte budget over every read of a request body.
//!
//! A multipart form is parsed from this stream, so whatever part a byte belongs to (the file,
//! a title, an unknown field, the framing between them), it is counted and a stall anywhere is
//! cut off. What went wrong is kept aside, because the parser turns it into its own error type.

use std::cell::Cell;
use std::io;
use std::rc::Rc;
use std::time::Duration;

use actix_web::error::PayloadError;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use super::UploadError;

/// Why a guarded body stopped, when the stream itself decided it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Nothing arrived for the idle timeout.
    Idle(Duration),
    /// More than the budget arrived.
    OverBudget { limit: u64 },
}

impl From<Stop> for UploadError {
    fn from(stop: Stop) -> Self {
        match stop {
            Stop::Idle(after) => UploadError::IdleTimeout(after),
            Stop::OverBudget { limit } => UploadError::TooLarge { limit },
        }
    }
}

/// Shared with whoever reads the guarded stream: set once the stream has stopped it.
#[derive(Debug, Clone, Default)]
pub struct StopCell(Rc<Cell<Option<Stop>>>);

impl StopCell {
    pub fn get(&self) -> Option<Stop> {
        self.0.get()
    }
}

/// Wraps `body`: each chunk must arrive within `idle` of the previous one (or of the start),
/// and at most `budget` bytes in all may arrive. Past either, the stream yields one error and
/// ends; [`StopCell::get`] then says which.
pub fn guard<S>(
    body: S,
    idle: Duration,
    budget: u64,
) -> (
    impl Stream<Item = Result<Bytes, PayloadError>> + 'static,
    StopCell,
)
where
    S: Stream<Item = Result<Bytes, PayloadError>> + 'static,
{
    let cell = StopCell::default();
    let stopped = cell.clone();
    let mut read: u64 = 0;
    let timed = tokio_stream::StreamExt::timeout(body, idle).map(move |item| {
        let stop = match item {
            Err(_elapsed) => Stop::Idle(idle),
            Ok(Err(error)) => return Err(error),
            Ok(Ok(chunk)) => {
                read = read.saturating_add(chunk.len() as u64);
                if read <= budget {
                    return Ok(chunk);
                }
                Stop::OverBudget { limit: budget }
            }
        };
        stopped.0.set(Some(stop));
        Err(PayloadError::Io(io::Error::other(UploadError::from(stop))))
    });
    // One error, then the end, without polling the body again: a parser that polls on must
    // neither see the next chunk nor wait on a client that stalled.
    let stream =
        futures_util::stream::unfold((Box::pin(timed), false), |(mut timed, failed)| async move {
            if failed {
                return None;
            }
            let item = timed.next().await?;
            let failed = item.is_err();
            Some((item, (timed, failed)))
        })
        // A parser may poll again after the end.
        .fuse();
    (stream, cell)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    #[tokio::test]
    async fn counts_every_byte_and_stops_once() {
        let chunks = stream::iter(vec![
            Ok(Bytes::from_static(b"12345")),
            Ok(Bytes::from_static(b"6789")),
            Ok(Bytes::from_static(b"never read")),
        ]);
        let (body, stop) = guard(chunks, Duration::from_secs(5), 8);
        let items: Vec<_> = body.collect().await;
        assert_eq!(items.len(), 2, "one chunk, one error, then the end");
        assert!(items[1].is_err());
        assert_eq!(stop.get(), Some(Stop::OverBudget { limit: 8 }));
    }

    #[tokio::test]
    async fn a_stall_anywhere_ends_the_body() {
        let stalled = stream::iter(vec![Ok(Bytes::from_static(b"part"))]).chain(stream::pending());
        let (body, stop) = guard(stalled, Duration::from_millis(50), 1 << 20);
        let items: Vec<_> = body.collect().await;
        assert_eq!(items.len(), 2);
        assert_eq!(stop.get(), Some(Stop::Idle(Duration::from_millis(50))));
    }
}
