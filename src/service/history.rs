//! A video's history and the change feed.

use super::{Result, Service, ServiceError};
use crate::auth::Caller;
use crate::domain::VideoId;
use crate::store::HistoryPage;

impl Service {
    /// A video's history after `after` (a `seq`), oldest first. It outlives the video: after a
    /// delete its owner and admins can still read it.
    pub async fn history(
        &self,
        caller: &Caller,
        id: VideoId,
        after: i64,
        limit: u32,
    ) -> Result<HistoryPage> {
        match self.store.history_owner(id).await? {
            Some(owner) if caller.owns(owner.as_deref()) => {
                Ok(self.store.history(id, after, limit).await?)
            }
            _ => Err(ServiceError::NotFound),
        }
    }
}
