//! The lease fence every write of a job's ladder to shared storage asks first (the finished
//! ladder's staging, and a bucket's growing ladder): see [`LeaseFence`].

use std::time::{Duration, Instant};

use crate::media::{Fence, MediaError};
use crate::store::{Lease, Store};

/// Lets a ladder write start only while the job's lease surely outlasts it: the lease was
/// confirmed (renewed) recently enough that `confirmed + bound < lease`. A new attempt can
/// claim the job only after the lease ran out, so a worker that lost it (paused, cut off from
/// the database) can never write over the ladder of the attempt that replaced it.
pub(super) struct LeaseFence<'a> {
    store: &'a Store,
    lease: Lease,
    /// The lease's length.
    duration: Duration,
    confirmed: tokio::sync::Mutex<Option<Instant>>,
}

impl<'a> LeaseFence<'a> {
    pub(super) fn new(store: &'a Store, lease: Lease, duration: Duration) -> Self {
        Self {
            store,
            lease,
            duration,
            confirmed: Default::default(),
        }
    }
}

#[async_trait::async_trait]
impl Fence for LeaseFence<'_> {
    async fn hold(&self, bound: Duration) -> Result<(), MediaError> {
        let mut confirmed = self.confirmed.lock().await;
        if confirmed.is_some_and(|at| at.elapsed() + bound < self.duration) {
            return Ok(());
        }
        let asked = Instant::now();
        match self.store.renew(&self.lease, self.duration).await {
            Ok(true) if bound < self.duration => {
                *confirmed = Some(asked);
                Ok(())
            }
            Ok(_) | Err(_) => Err(MediaError::Fenced),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{NewVideo, VideoId};

    const LEASE: Duration = Duration::from_secs(60);
    const BOUND: Duration = Duration::from_secs(5);

    /// A store with one job, claimed by a worker whose lease ran out at once and then by a
    /// second one: the first attempt's lease and the second's.
    async fn replaced() -> (tempfile::TempDir, Store, Lease, Lease) {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::connect(&Store::sqlite_url_in(dir.path()), 2)
            .await
            .expect("connect");
        let upload = NewVideo {
            id: VideoId::new(),
            source_size: 10,
            ..NewVideo::default()
        };
        store.insert_video(&upload, 10).await.expect("insert");
        let first = store.claim("w1", Duration::ZERO).await.expect("claim");
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = store.claim("w2", LEASE).await.expect("claim");
        let (first, second) = (first.expect("job").lease, second.expect("reclaimed").lease);
        (dir, store, first, second)
    }

    #[tokio::test]
    async fn a_worker_whose_lease_was_taken_over_is_fenced_out_and_the_new_holder_is_not() {
        let (_dir, store, lost, held) = replaced().await;
        let fence = LeaseFence::new(&store, lost, LEASE);
        assert!(matches!(fence.hold(BOUND).await, Err(MediaError::Fenced)));
        // Asked again, it still asks the database (a refusal is never remembered as a hold).
        assert!(matches!(fence.hold(BOUND).await, Err(MediaError::Fenced)));
        let fence = LeaseFence::new(&store, held, LEASE);
        assert!(fence.hold(BOUND).await.is_ok());
    }

    #[tokio::test]
    async fn a_write_that_may_outlast_the_lease_is_refused_even_to_its_holder() {
        let (_dir, store, _, held) = replaced().await;
        let fence = LeaseFence::new(&store, held, LEASE);
        assert!(matches!(fence.hold(LEASE).await, Err(MediaError::Fenced)));
        assert!(fence.hold(LEASE - BOUND).await.is_ok());
    }

    #[tokio::test]
    async fn a_confirmation_is_not_trusted_past_the_point_where_the_lease_could_have_run_out() {
        let (_dir, store, _, held) = replaced().await;
        // A short lease, renewed by the first write; the worker then stalls past it and a third
        // worker claims the job. The next write must not ride on the old confirmation.
        let short = Duration::from_millis(400);
        let fence = LeaseFence::new(&store, held, short);
        assert!(fence.hold(Duration::from_millis(50)).await.is_ok());
        tokio::time::sleep(short + Duration::from_millis(50)).await;
        let third = store.claim("w3", LEASE).await.expect("claim");
        assert!(third.is_some_and(|c| c.lease.token > held.token));
        assert!(matches!(
            fence.hold(Duration::from_millis(50)).await,
            Err(MediaError::Fenced)
        ));
    }
}
