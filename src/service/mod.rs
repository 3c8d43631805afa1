//! What the API can do, each operation taking the [`Caller`] who asks. Handlers call this and
//! nothing deeper; it speaks to the seams (store, bus, media) and decides who may do what.

mod history;
mod properties;
mod uploads;
mod videos;
mod webhooks;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

pub use uploads::{Append, CreateUpload, UploadStatus};
pub use videos::{SourceFile, UploadMeta, VideoList};
pub use webhooks::{WebhookInput, Webhooks};

use crate::auth::jwt::TokenError;
use crate::auth::playback::PlaybackSigner;
use crate::auth::{Auth, Caller};
use crate::bus::{Bus, Node};
use crate::config::Config;
use crate::media::{Media, MediaError};
use crate::progress::Hub;
use crate::store::{Store, StoreError};
use crate::transcode::tools::Tools;
use crate::upload::{UploadError, UploadLimits};

/// Why an operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// No such video, or one the caller may not see (existence is not leaked).
    #[error("no such video")]
    NotFound,
    /// The caller lacks the role for this operation.
    #[error("the caller lacks the role for this")]
    Forbidden,
    /// The server is shutting down: retry shortly.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// A request that is well-formed but not acceptable (`code` is stable, for scripts).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// No such webhook endpoint, or one the caller may not see.
    #[error("no such webhook")]
    NoSuchWebhook,
    /// The system's random source failed: no secret can be made.
    #[error(transparent)]
    Randomness(#[from] crate::feed::signing::NoRandomness),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error(transparent)]
    Media(#[from] MediaError),
    #[error(transparent)]
    Tus(#[from] crate::upload::tus::TusError),
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

/// The service and the seams it works through. Cheap to share (`Arc`).
pub struct Service {
    pub config: Arc<Config>,
    store: Store,
    media: Media,
    bus: Arc<dyn Bus>,
    node: Arc<Node>,
    tools: Tools,
    auth: Auth,
    signer: Option<PlaybackSigner>,
    /// How resources spell media links (the signer again, and `--public-base-url`).
    links: crate::http::resource::MediaLinks,
    /// `--property` expressions, evaluated at upload (the worker evaluates them again).
    properties: crate::properties::Properties,
    /// The upload metrics with their `--metric-label` labels.
    labels: crate::properties::labels::MetricLabels,
    /// Cancelled when the server starts shutting down: uploads are refused from then on.
    pub shutdown: CancellationToken,
}

/// The seams and settings a [`Service`] is made of.
pub struct Parts {
    pub config: Arc<Config>,
    pub store: Store,
    pub media: Media,
    pub bus: Arc<dyn Bus>,
    pub node: Arc<Node>,
    pub tools: Tools,
    pub auth: Auth,
    pub shutdown: CancellationToken,
}

/// How long a delete waits for the worker running the job to confirm its ffmpeg is gone.
const CANCEL_WAIT: Duration = Duration::from_secs(15);

impl Service {
    pub fn new(parts: Parts) -> Self {
        let signer = parts.config.playback_secret.as_deref().map(|secret| {
            PlaybackSigner::new(
                secret,
                Duration::from_secs(parts.config.playback_url_ttl_secs),
            )
        });
        let declared = &parts.config.properties;
        let properties = crate::properties::Properties::new(declared.properties.clone());
        let labels = crate::properties::labels::MetricLabels::new(
            &declared.metric_labels,
            declared.metric_label_cap,
        );
        let links = crate::http::resource::MediaLinks::new(
            signer.clone(),
            parts.config.storage.public_base_url.clone(),
        );
        Self {
            links,
            properties,
            labels,
            config: parts.config,
            store: parts.store,
            media: parts.media,
            bus: parts.bus,
            node: parts.node,
            tools: parts.tools,
            auth: parts.auth,
            signer,
            shutdown: parts.shutdown,
        }
    }

    /// The caller behind a request's bearer token (`None`: no token was given).
    pub fn authenticate(&self, token: Option<&str>) -> Result<Caller, TokenError> {
        self.auth.authenticate(token)
    }

    /// How video resources spell their media links: signed for private videos (with a
    /// `--playback-secret`), below `--public-base-url` when set.
    pub fn media_links(&self) -> &crate::http::resource::MediaLinks {
        &self.links
    }

    /// This process's SSE hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.node.hub
    }

    pub fn media(&self) -> &Media {
        &self.media
    }

    pub fn upload_limits(&self) -> UploadLimits {
        UploadLimits {
            max_bytes: self.config.max_upload_bytes,
            min_free_bytes: self.config.min_free_bytes,
            idle_timeout: Duration::from_secs(self.config.upload_idle_timeout_secs),
        }
    }

    /// Readiness: can this process take an upload and run a job? Each check by name.
    pub async fn readiness(&self) -> Readiness {
        let database = self.store.ping().await.is_ok();
        let media = {
            let work = self.media.work().clone();
            tokio::task::spawn_blocking(move || work.is_writable())
                .await
                .unwrap_or(false)
        };
        let storage = self.media.ready().await;
        let space = self
            .media
            .upload_free_bytes()
            .is_ok_and(|free| free.is_none_or(|free| free >= self.config.min_free_bytes));
        let tools = self.tools.available();
        Readiness {
            database,
            media,
            storage,
            space,
            tools,
            accepting: !self.shutdown.is_cancelled(),
        }
    }

    /// The visible video `id`, or [`ServiceError::NotFound`].
    async fn visible(
        &self,
        caller: &Caller,
        id: crate::domain::VideoId,
    ) -> Result<crate::domain::Video> {
        match self.store.video(id).await? {
            Some(video) if caller.owns(video.owner.as_deref()) => Ok(video),
            _ => Err(ServiceError::NotFound),
        }
    }
}

/// The result of the readiness checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Readiness {
    pub database: bool,
    /// The local work area (`--media-dir`) can be written.
    pub media: bool,
    /// The media store (the folder, or the bucket) answers.
    pub storage: bool,
    /// Free space at or above `--min-free-bytes` (below it every upload gets 507).
    pub space: bool,
    /// ffmpeg and ffprobe are still where the start-up check found them.
    pub tools: bool,
    /// Not shutting down.
    pub accepting: bool,
}

impl Readiness {
    pub fn ready(&self) -> bool {
        self.database && self.media && self.storage && self.space && self.tools && self.accepting
    }
}

impl Service {
    /// Sets the queue gauges from the shared queue (every node reports the same numbers).
    pub async fn refresh_queue_gauges(&self) {
        if let Ok(depth) = self.store.queued_count().await {
            metrics::gauge!(crate::telemetry::QUEUE_DEPTH).set(f64::from(depth));
        }
        if let Ok(running) = self.store.processing_count().await {
            metrics::gauge!(crate::telemetry::JOBS_RUNNING).set(f64::from(running));
        }
    }
}
