//! The bus of a single process: every signal is a direct call on this process's [`Node`].

use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;

use super::{Bus, Node};
use crate::domain::VideoId;
use crate::progress::JobEvent;

pub struct LocalBus {
    node: Arc<Node>,
}

impl LocalBus {
    pub fn new(node: Arc<Node>) -> Self {
        Self { node }
    }
}

impl Bus for LocalBus {
    fn publish(&self, video: VideoId, event: JobEvent) {
        self.node.hub.publish(video, event);
    }

    fn wake_workers(&self) {
        self.node.wake.notify_one();
    }

    fn cancel(&self, video: VideoId, wait: Duration) -> BoxFuture<'_, bool> {
        self.node.stop_local(video, wait).boxed()
    }

    fn name(&self) -> &'static str {
        "local"
    }
}
