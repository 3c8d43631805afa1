//! Wiring for the two roles, `serve` and `work`, and nothing else: which store, bus and media,
//! which tasks, which routes.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use utoipa_actix_web::AppExt;

use crate::auth::Auth;
use crate::bus::local::LocalBus;
use crate::bus::notify::{self, PgBus};
use crate::bus::{Bus, Node};
use crate::config::{AuthMode, Config, ConfigError, Role};
use crate::feed;
use crate::geo::Geo;
use crate::http;
use crate::media::{Media, MediaError, OpenError};
use crate::progress::Hub;
use crate::recovery;
use crate::service::{Parts, Service};
use crate::store::{Store, StoreError};
use crate::telemetry;
use crate::tls::Tls;
use crate::transcode::tools::{ToolError, Tools};
use crate::transcode::{Encoders, Settings};

/// How long running jobs get to stop when the server shuts down.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);
/// How often a shared deployment looks for orphaned files and missed terminal events.
const JANITOR_EVERY: Duration = Duration::from_secs(600);
const RESYNC_EVERY: Duration = Duration::from_secs(30);
/// How often history past `--history-retention-days` is removed.
const HISTORY_PURGE_EVERY: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid setting: {0}")]
    Config(#[from] ConfigError),
    #[error("cannot prepare the media volume: {0}")]
    Media(#[from] MediaError),
    #[error("{0}")]
    Storage(#[from] OpenError),
    /// The start-up check of the store failed; in words from [`crate::media::explain`] (the
    /// store's own answer included, so no source chain follows it).
    #[error("the media store does not work: {0}")]
    StorageCheck(String),
    #[error("cannot open the database {url}: {source}")]
    Database {
        url: String,
        #[source]
        source: StoreError,
    },
    #[error("cannot listen to PostgreSQL notifications: {0}")]
    Bus(#[source] sqlx::Error),
    #[error("{0}")]
    Tools(#[from] ToolError),
    #[error(
        "`reel work` needs a PostgreSQL --database-url (workers share the queue with API nodes)"
    )]
    WorkNeedsPostgres,
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start webhook delivery: {0}")]
    Webhooks(#[source] reqwest::Error),
    #[error("the HTTP server failed: {0}")]
    Server(#[source] std::io::Error),
    #[error("{0}")]
    Geo(#[from] crate::geo::GeoError),
    #[error("cannot load the TLS certificate: {0}")]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot set up TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    service: Arc<Service>,
    node: Arc<Node>,
    store: Store,
    workers: Vec<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

impl Application {
    /// Opens the media volume and the database, reconciles them, checks the tools, binds the
    /// listener and starts the encoders. Nothing is served until [`Application::run_until_stopped`].
    pub async fn build(config: Config, role: Role) -> Result<Self, StartupError> {
        config.validate_for(role)?;
        let shared = config.is_postgres();
        if role == Role::Work && !shared {
            return Err(StartupError::WorkNeedsPostgres);
        }
        let media: Media = config.storage.open(&config.media_dir)?;
        media
            .check()
            .await
            .map_err(|error| StartupError::StorageCheck(crate::media::explain(&error)))?;
        let database_url = match &config.database_url {
            // Each process names itself in pg_stat_activity unless the URL already does.
            Some(url) if shared => crate::store::with_application_name(url, role.process_name()),
            Some(url) => url.clone(),
            None => Store::sqlite_url_in(media.work().root()),
        };
        let store = Store::connect(&database_url, config.database_connections)
            .await
            .map_err(|source| StartupError::Database {
                url: crate::store::redact(&database_url),
                source,
            })?;
        let encoder_count = config.encoder_count();
        let tools = Tools::check(&config.ffmpeg, &config.ffprobe).await?;
        info!(ffmpeg = %tools.version, "tools checked");

        // Single node (SQLite): whatever was running died with the previous process.
        recovery::reconcile(&store, media.as_ref(), !shared)
            .await
            .map_err(|source| StartupError::Database {
                url: store.redacted_url().to_owned(),
                source,
            })?;

        let node = Node::new(Arc::new(Hub::new()));
        let bus: Arc<dyn Bus> = if shared {
            PgBus::start(&database_url, store.clone(), node.clone())
                .await
                .map_err(StartupError::Bus)?
        } else {
            Arc::new(LocalBus::new(node.clone()))
        };
        let shutdown = CancellationToken::new();
        let mut settings = Settings::from(&config);
        settings.ffmpeg = tools.ffmpeg.clone();
        settings.ffprobe = tools.ffprobe.clone();
        let encoders = Encoders::new(
            store.clone(),
            media.clone(),
            bus.clone(),
            node.clone(),
            settings,
        );
        let workers = encoders.spawn(encoder_count, &shutdown);
        metrics::gauge!(telemetry::QUEUE_DEPTH)
            .set(f64::from(store.queued_count().await.unwrap_or(0)));

        let listen = config.listen.unwrap_or_else(|| role.default_listen());
        let listener = TcpListener::bind(listen).map_err(|source| StartupError::Bind {
            addr: listen,
            source,
        })?;
        let addr = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: listen,
            source,
        })?;
        let http_workers = config
            .http_workers
            .map(|n| n.get())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));

        let auth = match config.auth {
            Some(AuthMode::Jwt) => {
                Auth::Jwt(Box::new(config.jwt.verifier().map_err(ConfigError::Jwt)?))
            }
            Some(AuthMode::None) | None => Auth::None,
        };
        let edge = Edge {
            geo: web::Data::new(Geo::open(&config.geo)?),
            tls: Arc::new(Tls::load(&config.tls)?),
        };
        let config = Arc::new(config);
        let service = Arc::new(Service::new(Parts {
            config: config.clone(),
            store: store.clone(),
            media: media.clone(),
            bus: bus.clone(),
            node: node.clone(),
            tools,
            auth,
            shutdown: shutdown.clone(),
        }));
        let scheme = if edge.tls.serves() { "https" } else { "http" };
        let reloader = Tls::spawn_reloader(&edge.tls);
        let server = http_server(service.clone(), role, http_workers, listener, edge)?;
        let mut background =
            background_tasks(&store, &media, &node, shared, config.history_retention_days);
        background.extend(reloader);
        if role == Role::Serve && config.webhook_delivery {
            let settings = feed::webhooks::Settings::from_config(&config);
            let delivery = feed::webhooks::spawn(store.clone(), settings, shared, shutdown.clone());
            background.push(delivery.map_err(StartupError::Webhooks)?);
        }
        background.push(service.spawn_upload_sweeper());
        info!(%addr, scheme, role = ?role, storage = media.kind(), encoders = encoder_count, http_workers, bus = bus.name(), "listening");
        Ok(Self {
            port: addr.port(),
            server,
            service,
            node,
            store,
            workers,
            background,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until `stop` resolves, then shuts down in order: refuse uploads, end SSE streams
    /// with a `reconnect` event, stop the encoders (returning their jobs), stop HTTP.
    pub async fn run_until_stopped(
        self,
        stop: impl Future<Output = ()>,
    ) -> Result<(), StartupError> {
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        stop.await;
        info!("shutting down");
        self.service.shutdown.cancel();
        self.node.hub.close_all();
        let workers = futures_util::future::join_all(self.workers);
        if tokio::time::timeout(SHUTDOWN_DEADLINE, workers)
            .await
            .is_err()
        {
            warn!("encoders did not stop in time; their leases will expire and requeue the jobs");
        }
        for task in &self.background {
            task.abort();
        }
        handle.stop(true).await;
        let result = server
            .await
            .map_err(|join| StartupError::Server(std::io::Error::other(join)))?;
        self.store.close().await;
        result.map_err(StartupError::Server)
    }
}

/// What the HTTP layer needs about the network edge: the client's country, and TLS.
struct Edge {
    geo: web::Data<Geo>,
    tls: Arc<Tls>,
}

/// The HTTP server of a role: the whole API for `serve`, health and metrics for `work`;
/// HTTPS when `--tls-cert` is set.
fn http_server(
    service: Arc<Service>,
    role: Role,
    http_workers: usize,
    listener: TcpListener,
    edge: Edge,
) -> Result<actix_web::dev::Server, StartupError> {
    let addr = listener.local_addr().map_err(StartupError::Server)?;
    let service = web::Data::from(service);
    let metrics = web::Data::new(telemetry::init_metrics());
    let mut document = http::openapi_document();
    let properties: Vec<String> = service.property_names();
    http::filters::document_filters(&mut document, &properties);
    let openapi = web::Data::new(document);
    let tls_config = match edge.tls.serves() {
        true => Some(Tls::server_config(&edge.tls)?),
        false => None,
    };
    let (geo, tls) = (edge.geo, web::Data::from(edge.tls));
    let server = HttpServer::new(move || {
        let app = App::new()
            .wrap(actix_web::middleware::from_fn(http::latency::record))
            .wrap(http::security_headers())
            .app_data(service.clone())
            .app_data(metrics.clone())
            .app_data(openapi.clone())
            .app_data(geo.clone())
            .app_data(tls.clone());
        match role {
            Role::Serve => {
                let static_dir = service.config.static_dir.clone();
                app.into_utoipa_app()
                    .configure(http::api)
                    .into_app()
                    .configure(|c| http::configure_rest(c, &static_dir))
            }
            Role::Work => app
                .into_utoipa_app()
                .into_app()
                .configure(http::configure_worker),
        }
    })
    .workers(http_workers)
    .shutdown_timeout(5)
    .disable_signals();
    let bound = match tls_config {
        Some(config) => server.listen_rustls_0_23(listener, config),
        None => server.listen(listener),
    };
    Ok(bound
        .map_err(|source| StartupError::Bind { addr, source })?
        .run())
}

fn background_tasks(
    store: &Store,
    media: &Media,
    node: &Arc<Node>,
    shared: bool,
    retention_days: u32,
) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    if retention_days > 0 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(HISTORY_PURGE_EVERY);
            loop {
                tick.tick().await;
                match store.purge_history(retention_days).await {
                    Ok(0) => {}
                    Ok(removed) => info!(removed, retention_days, "history past retention removed"),
                    Err(error) => warn!(%error, "history could not be purged"),
                }
            }
        }));
    }
    let hub = node.hub.clone();
    tasks.push(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tick.tick().await;
            hub.sweep();
        }
    }));
    if shared {
        // NOTIFY is not durable: subscribers of a job whose terminal event was missed get it
        // from the row; files orphaned by a crash elsewhere are removed once old enough.
        let (store, node) = (store.clone(), node.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(RESYNC_EVERY);
            loop {
                tick.tick().await;
                notify::resync(&store, &node).await;
            }
        }));
    }
    if shared {
        let (store, media) = (store.clone(), media.clone());
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(JANITOR_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                if let Err(error) = recovery::reconcile(&store, media.as_ref(), false).await {
                    warn!(%error, "the janitor could not reconcile the media volume");
                }
            }
        }));
    } else if media.kind() == "bucket" {
        // One node: its start swept everything; a multipart upload the bucket created after
        // reel gave up waiting for it would otherwise wait for the next start.
        let media = media.clone();
        tasks.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(JANITOR_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let aborted = recovery::sweep_idle_uploads(media.as_ref()).await;
                if aborted > 0 {
                    info!(aborted, "idle multipart uploads aborted");
                }
            }
        }));
    }
    tasks
}

/// Runs a role until SIGINT or SIGTERM; a second signal exits at once.
pub async fn run(config: Config, role: Role) -> Result<(), StartupError> {
    let app = Application::build(config, role).await?;
    app.run_until_stopped(async {
        shutdown_signal().await;
        tokio::spawn(async {
            shutdown_signal().await;
            warn!("second signal: exiting now");
            std::process::exit(130);
        });
    })
    .await
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
