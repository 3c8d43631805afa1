//! Logs (tracing) and the names of every Prometheus metric, in one place.

use metrics::{describe_counter, describe_gauge, describe_histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::{Context, Filter, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::LogFormat;

pub const UPLOADS: &str = "reel_uploads_total";
pub const UPLOAD_BYTES: &str = "reel_upload_bytes_total";
pub const QUEUE_DEPTH: &str = "reel_queue_depth";
pub const ENCODERS_BUSY: &str = "reel_encoders_busy";
pub const JOBS_RUNNING: &str = "reel_jobs_processing";
pub const JOBS: &str = "reel_jobs_total";
pub const JOB_DURATION: &str = "reel_job_duration_seconds";
pub const TIME_TO_PLAYABLE: &str = "reel_time_to_playable_seconds";
pub const LADDER_PUBLISH: &str = "reel_ladder_publish_seconds";
pub const SSE_CLIENTS: &str = "reel_sse_clients";
pub const WEBHOOK_DELIVERIES: &str = "reel_webhook_deliveries_total";
pub const WEBHOOK_DURATION: &str = "reel_webhook_delivery_duration_seconds";
pub const WEBHOOK_CIRCUIT: &str = "reel_webhook_circuit_state";
pub const WEBHOOK_DEAD_LETTERS: &str = "reel_webhook_dead_letters_total";
pub const BAD_REQUESTS: &str = "reel_http_unparsable_requests_total";
pub const UPLOADS_BY_COUNTRY: &str = "reel_uploads_by_country_total";
pub const UPLOAD_SIZE: &str = "reel_upload_size_bytes";
pub const UPLOAD_DURATION: &str = "reel_upload_duration_seconds";
pub const HTTP_DURATION: &str = "reel_http_request_duration_seconds";

/// Upload sizes: 256 KiB to 16 GiB, ×4 apart.
const SIZE_BUCKETS: [f64; 12] = [
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
    268_435_456.0,
    1_073_741_824.0,
    2_147_483_648.0,
    4_294_967_296.0,
    8_589_934_592.0,
    12_884_901_888.0,
    17_179_869_184.0,
];
/// Upload wall times, seconds: a phone on a train to a LAN.
const UPLOAD_SECONDS: [f64; 14] = [
    0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];
/// Publishing a finished ladder, seconds: a folder's rename to a bucket's upload of a long 1080p
/// ladder from a slow server.
const PUBLISH_SECONDS: [f64; 13] = [
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
];
/// API latencies, seconds.
const REQUEST_SECONDS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0, 30.0,
];

/// Installs the global tracing subscriber; `RUST_LOG` overrides the default level.
pub fn init_tracing(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry();
    let _ = match format {
        LogFormat::Pretty => registry
            .with(layer.with_filter(filter).with_filter(NoClientParseErrors))
            .try_init(),
        LogFormat::Json => registry
            .with(
                layer
                    .json()
                    .with_filter(filter)
                    .with_filter(NoClientParseErrors),
            )
            .try_init(),
    };
}

/// actix-http logs a request it cannot parse (a client's malformed head) at ERROR, as
/// `stream error: request parse error: …`, after answering it 400. That is the client's
/// fault, not the server's: it is counted in [`BAD_REQUESTS`] instead of logged.
struct NoClientParseErrors;

impl<S: tracing::Subscriber> Filter<S> for NoClientParseErrors {
    fn enabled(&self, _: &tracing::Metadata<'_>, _: &Context<'_, S>) -> bool {
        true
    }

    fn event_enabled(&self, event: &tracing::Event<'_>, _: &Context<'_, S>) -> bool {
        let metadata = event.metadata();
        if *metadata.level() != tracing::Level::ERROR
            || !metadata.target().starts_with("actix_http::h1")
        {
            return true;
        }
        let mut message = Message(String::new());
        event.record(&mut message);
        if message.0.starts_with("stream error: request parse error") {
            metrics::counter!(BAD_REQUESTS).increment(1);
            return false;
        }
        true
    }
}

struct Message(String);

impl tracing::field::Visit for Message {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

/// Builds the Prometheus recorder. Installed globally once per process; later calls (tests
/// running several servers in one process) reuse the first handle.
pub fn init_metrics() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full(JOB_DURATION.into()),
                    &[
                        1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
                    ],
                )
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(TIME_TO_PLAYABLE.into()),
                        &[1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(
                        Matcher::Full(WEBHOOK_DURATION.into()),
                        &[0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0],
                    )
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(LADDER_PUBLISH.into()), &PUBLISH_SECONDS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(UPLOAD_SIZE.into()), &SIZE_BUCKETS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(UPLOAD_DURATION.into()), &UPLOAD_SECONDS)
                })
                .and_then(|b| {
                    b.set_buckets_for_metric(Matcher::Full(HTTP_DURATION.into()), &REQUEST_SECONDS)
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(
        UPLOADS,
        "Uploads by outcome (accepted, too_large, not_video, …)."
    );
    describe_counter!(UPLOAD_BYTES, "Bytes of accepted uploads.");
    describe_gauge!(QUEUE_DEPTH, "Jobs waiting in the (shared) queue.");
    describe_gauge!(
        ENCODERS_BUSY,
        "Encoders of this process running a job right now."
    );
    describe_gauge!(
        JOBS_RUNNING,
        "Jobs processing right now on any worker (the shared queue)."
    );
    describe_counter!(
        JOBS,
        "Finished jobs by outcome (ready, failed, canceled, requeued)."
    );
    describe_histogram!(
        JOB_DURATION,
        metrics::Unit::Seconds,
        "Wall time of a job from claim to its end, by outcome."
    );
    describe_histogram!(
        TIME_TO_PLAYABLE,
        metrics::Unit::Seconds,
        "Wall time from an upload's acceptance to its growing ladder being watchable (the \
         first segment of every rendition published)."
    );
    describe_histogram!(
        LADDER_PUBLISH,
        metrics::Unit::Seconds,
        "Wall time of publishing a finished ladder that became ready, by media store (folder, \
         bucket): its files staged (a bucket: uploaded) and its commit with the ready row (a \
         folder: one rename; a bucket: the master playlist, written last)."
    );
    describe_gauge!(SSE_CLIENTS, "Open Server-Sent Events streams.");
    describe_counter!(
        WEBHOOK_DELIVERIES,
        "Webhook calls by outcome (delivered, rejected, timeout, unreachable, refused)."
    );
    describe_histogram!(
        WEBHOOK_DURATION,
        metrics::Unit::Seconds,
        "Duration of a webhook call, by outcome."
    );
    describe_gauge!(
        WEBHOOK_CIRCUIT,
        "Circuit breaker of a webhook endpoint (label: endpoint id): 0 closed, 1 open, 2 half-open."
    );
    describe_counter!(
        WEBHOOK_DEAD_LETTERS,
        "Webhook events moved to an endpoint's dead letters after their last attempt."
    );
    describe_counter!(
        UPLOADS_BY_COUNTRY,
        "Uploads that ended, by country (ISO 3166-1 alpha-2, XX unknown), sniffed content type \
         (unknown when refused before) and outcome, plus --metric-label properties."
    );
    describe_histogram!(
        UPLOAD_SIZE,
        metrics::Unit::Bytes,
        "Bytes of accepted uploads, by country (and --metric-label properties)."
    );
    describe_histogram!(
        UPLOAD_DURATION,
        metrics::Unit::Seconds,
        "Wall time of accepted uploads from the request (tus: the creation) to filing, by country."
    );
    describe_histogram!(
        HTTP_DURATION,
        metrics::Unit::Seconds,
        "Time to the response head, by route pattern, method and status class."
    );
    describe_counter!(
        BAD_REQUESTS,
        "Requests whose head could not be parsed (answered 400 by actix-http)."
    );
}

/// An error and its causes as one line (`outer: inner: root`), skipping causes whose text the
/// outer message already contains.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !line.contains(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}
