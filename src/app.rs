//! Builds the service from a [`Config`] and runs it until a shutdown signal.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use utoipa_actix_web::AppExt;

use crate::config::{Config, ConfigError};
use crate::domain::VideoId;
use crate::http;
use crate::media::{MediaError, MediaRoot};
use crate::progress::{Hub, JobEvent};
use crate::queue::{NewVideo, QueueError, Store, Video};
use crate::telemetry;
use crate::transcode::{Encoders, Settings};
use crate::upload::{self, UploadError, UploadLimits};

/// How long running jobs get to stop when the server shuts down.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);
/// How long a delete waits for a running ffmpeg to be killed and reaped.
const CANCEL_WAIT: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid setting: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot prepare the media volume: {0}")]
    Media(#[from] MediaError),
    #[error("cannot open the database: {0}")]
    Database(#[from] QueueError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Server(#[source] std::io::Error),
}

/// Everything the handlers and the encoders share. Handlers call these methods and nothing deeper.
pub struct AppState {
    pub config: Config,
    pub store: Store,
    pub media: MediaRoot,
    pub hub: Arc<Hub>,
    pub encoders: Arc<Encoders>,
    pub metrics: PrometheusHandle,
    /// Cancelled when the server starts shutting down: uploads are refused from then on.
    pub shutdown: CancellationToken,
}

/// What an upload says about itself besides its bytes.
#[derive(Debug, Default, Clone)]
pub struct UploadMeta {
    pub title: Option<String>,
    pub filename: Option<String>,
    pub declared_size: Option<u64>,
}

impl AppState {
    pub fn upload_limits(&self) -> UploadLimits {
        UploadLimits {
            max_bytes: self.config.max_upload_bytes,
            min_free_bytes: self.config.min_free_bytes,
            idle_timeout: Duration::from_secs(self.config.upload_idle_timeout_secs),
        }
    }

    /// Refuses an upload before its body is read: shutting down, declared too large, queue full, disk full.
    pub async fn admit_upload(&self, meta: &UploadMeta) -> Result<(), crate::error::ApiError> {
        if self.shutdown.is_cancelled() {
            return Err(crate::error::ApiError::unavailable(
                "The server is restarting; retry shortly.",
                5,
            )
            .closing());
        }
        if let Some(size) = meta.declared_size
            && size > self.config.max_upload_bytes
        {
            return Err(UploadError::TooLarge {
                limit: self.config.max_upload_bytes,
            }
            .into());
        }
        if self.store.queued_count().await? >= self.config.queue_capacity {
            return Err(crate::error::ApiError::from(QueueError::Full {
                capacity: self.config.queue_capacity,
            })
            .closing());
        }
        upload::check_space(&self.media, &self.upload_limits(), meta.declared_size)?;
        Ok(())
    }

    /// Files a fully received upload: moves it to `sources/`, queues its job, wakes an encoder.
    /// The id is made here, so queue order is the order in which uploads completed.
    pub async fn file_upload(
        &self,
        received: upload::Received,
        meta: UploadMeta,
    ) -> Result<Video, crate::error::ApiError> {
        let id = VideoId::new();
        let size = received.size;
        received.persist(&self.media, id).await?;
        let new = NewVideo {
            id,
            title: meta.title,
            filename: meta.filename,
            source_size: size,
        };
        match self.store.enqueue(&new, self.config.queue_capacity).await {
            Ok(video) => {
                metrics::counter!(telemetry::UPLOADS, "outcome" => "accepted").increment(1);
                metrics::counter!(telemetry::UPLOAD_BYTES).increment(size);
                metrics::gauge!(telemetry::QUEUE_DEPTH).increment(1.0);
                self.encoders.wake();
                info!(video.id = %id, bytes = size, "upload accepted");
                Ok(video)
            }
            Err(error) => {
                // Not queued: the source must not stay behind.
                let _ = self.media.remove_video(id);
                Err(error.into())
            }
        }
    }

    /// Deletes a video: stops its job (killing ffmpeg), removes its row and every file.
    /// Returns `false` when there was no such video.
    pub async fn delete_video(&self, id: VideoId) -> Result<bool, crate::error::ApiError> {
        let Some(status) = self.store.delete(id).await? else {
            return Ok(false);
        };
        self.encoders.cancel(id, CANCEL_WAIT).await;
        self.media.remove_video(id)?;
        self.hub.publish(id, JobEvent::Canceled);
        info!(video.id = %id, was = status.as_str(), "video deleted");
        Ok(true)
    }
}

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    state: web::Data<AppState>,
    workers: Vec<JoinHandle<()>>,
    sweeper: JoinHandle<()>,
}

impl Application {
    /// Opens the media volume and the database, recovers interrupted jobs, binds the listener
    /// and starts the encoders. Nothing is served until [`Application::run_until_stopped`].
    pub async fn build(config: Config) -> Result<Self, StartupError> {
        config.validate()?;
        let media = MediaRoot::open(&config.media_dir)?;
        let database_url = config
            .database_url
            .clone()
            .unwrap_or_else(|| Store::sqlite_url_in(media.root()));
        let store = Store::connect(&database_url).await?;

        // Single node: whatever was processing died with the previous process.
        let requeued = store.requeue_all_processing().await?;
        let swept = media.remove_tmp_where(|_| true)?;
        if requeued > 0 || swept > 0 {
            info!(requeued, swept, "recovered interrupted work");
        }

        let hub = Arc::new(Hub::new());
        let encoders = Encoders::new(
            store.clone(),
            media.clone(),
            hub.clone(),
            Settings::from(&config),
        );
        let shutdown = CancellationToken::new();
        let encoder_count = config.encoder_count();
        let workers = encoders.spawn(encoder_count, &shutdown);
        metrics::gauge!(telemetry::QUEUE_DEPTH).set(f64::from(store.queued_count().await?));

        let listener = TcpListener::bind(config.listen).map_err(|source| StartupError::Bind {
            addr: config.listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: config.listen,
            source,
        })?;
        let http_workers = config
            .http_workers
            .map(|n| n.get())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

        let state = web::Data::new(AppState {
            metrics: telemetry::init_metrics(),
            config,
            store,
            media,
            hub: hub.clone(),
            encoders,
            shutdown,
        });
        let openapi = web::Data::new(http::openapi_document());
        let app_state = state.clone();
        let static_dir = state.config.static_dir.clone();
        let server = HttpServer::new(move || {
            App::new()
                .wrap(http::security_headers())
                .app_data(app_state.clone())
                .app_data(openapi.clone())
                .into_utoipa_app()
                .configure(http::api)
                .into_app()
                .configure(|c| http::configure_rest(c, &static_dir))
        })
        .workers(http_workers)
        .shutdown_timeout(5)
        .disable_signals()
        .listen(listener)
        .map_err(|source| StartupError::Bind { addr, source })?
        .run();

        let sweeper = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(30));
            loop {
                tick.tick().await;
                hub.sweep();
            }
        });
        info!(%addr, encoders = encoder_count, http_workers, "listening");
        Ok(Self {
            port: addr.port(),
            server,
            state,
            workers,
            sweeper,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `stop` resolves, then shuts down in order: refuse uploads, end SSE streams
    /// with a `reconnect` event, stop the encoders (requeueing their jobs), stop HTTP.
    pub async fn run_until_stopped(
        self,
        stop: impl Future<Output = ()>,
    ) -> Result<(), StartupError> {
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        stop.await;
        info!("shutting down");
        self.state.shutdown.cancel();
        self.state.hub.close_all();
        let workers = futures_util::future::join_all(self.workers);
        if tokio::time::timeout(SHUTDOWN_DEADLINE, workers)
            .await
            .is_err()
        {
            warn!("encoders did not stop in time; their leases will expire and requeue the jobs");
        }
        self.sweeper.abort();
        handle.stop(true).await;
        let result = server
            .await
            .map_err(|join| StartupError::Server(std::io::Error::other(join)))?;
        self.state.store.close().await;
        result.map_err(StartupError::Server)
    }
}

/// `reel serve`: runs until SIGINT or SIGTERM; a second signal exits at once.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    app.run_until_stopped(async {
        shutdown_signal().await;
        tokio::spawn(async {
            shutdown_signal().await;
            warn!("second signal: exiting now");
            std::process::exit(130);
        });
    })
    .await?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process can still be killed; run forever.
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
}
