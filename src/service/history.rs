//! A video's history and the change feed.

use super::{Result, Service, ServiceError};
use crate::auth::Caller;
use crate::domain::VideoId;
use crate::store::{ChangeScope, HistoryPage};

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

/// The longest a change-feed long poll waits.
pub const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl Service {
    /// Change-feed events the caller may see after `after` (a `seq`), in `seq` order. With
    /// `wait`, an empty answer waits up to that long (at most [`MAX_WAIT`]) for the next
    /// commit, then answers with whatever came (maybe nothing).
    pub async fn changes(
        &self,
        caller: &Caller,
        after: i64,
        limit: u32,
        wait: std::time::Duration,
    ) -> Result<HistoryPage> {
        if !caller.can_read() {
            return Err(ServiceError::Forbidden);
        }
        let scope = match caller.scope() {
            None => ChangeScope::All,
            Some(owner) => ChangeScope::Owner(owner),
        };
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        let mut appends = self.store.appends();
        loop {
            // Marked seen before the read, so a commit between the read and the wait wakes it.
            appends.borrow_and_update();
            let page = self.store.changes(after, limit, &scope).await?;
            if !page.events.is_empty() || tokio::time::Instant::now() >= deadline {
                return Ok(page);
            }
            // A slow poll as well: on PostgreSQL, another process's commit arrives by NOTIFY,
            // which a listener reconnecting may miss.
            let poll = tokio::time::Instant::now() + std::time::Duration::from_secs(2);
            tokio::select! {
                _ = appends.changed() => {}
                () = tokio::time::sleep_until(deadline.min(poll)) => {}
                () = self.shutdown.cancelled() => return Ok(page),
            }
        }
    }
}
