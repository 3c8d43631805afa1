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
