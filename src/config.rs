//! Settings: every flag has a `REEL_*` environment twin; bad values stop start-up with a clear message.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::http::pages::FrameAncestors;
use crate::transcode::ladder::{LadderRung, parse_ladder};

#[derive(Debug, Parser)]
#[command(
    name = "reel",
    version,
    about = "Self-hosted video pipeline: upload, HLS ladder, live progress"
)]
pub struct Cli {
    /// Log output format.
    #[arg(long, env = "REEL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Pretty, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Pretty,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP API, and the encoder pool unless `--encoders 0` (an API-only node).
    Serve(Config),
    /// Run encoders only (scale-out workers); `/healthz`, `/readyz` and `/metrics` on `--listen`
    /// (default 127.0.0.1:9090).
    Work(Config),
    /// Print an HS256 token signed with the configured secret, for operators and scripts.
    Token(TokenArgs),
    /// Upload videos to a reel server (resumable: survives dropped connections and reruns).
    Upload(crate::client::UploadArgs),
    /// List videos on a reel server, newest first.
    Ls(crate::client::LsArgs),
    /// Show one video.
    Show(crate::client::ShowArgs),
    /// Delete videos.
    Rm(crate::client::RmArgs),
    /// Follow a video's transcode until it ends; print its playlist URL when ready.
    Watch(crate::client::WatchArgs),
    /// Print the SPKI SHA-256 pin (RFC 7469, base64) of each certificate in a PEM file.
    Pin(crate::tls::PinArgs),
}

/// `reel token --sub alice --roles creator --ttl 1h`.
#[derive(Debug, Clone, Args)]
pub struct TokenArgs {
    /// The user the token stands for (`sub`).
    #[arg(long)]
    pub sub: String,
    /// Roles, comma separated: creator, viewer, admin.
    #[arg(long, value_delimiter = ',', default_value = "creator")]
    pub roles: Vec<String>,
    /// How long the token is valid (`90s`, `1h`, `30d`).
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    #[command(flatten)]
    pub jwt: crate::auth::jwt::JwtArgs,
}

/// Who may use the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum AuthMode {
    /// Anyone who can reach the server may upload, read and delete.
    None,
    /// Bearer JWTs: owners, roles (creator, viewer, admin).
    Jwt,
}

/// Which parts of reel a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `reel serve`: the HTTP API (and encoders, unless there are none).
    Serve,
    /// `reel work`: encoders only.
    Work,
}

impl Role {
    /// How the process names itself to PostgreSQL (`application_name`).
    pub fn process_name(self) -> &'static str {
        match self {
            Self::Serve => "reel-serve",
            Self::Work => "reel-work",
        }
    }
}

impl Role {
    pub fn default_listen(self) -> SocketAddr {
        match self {
            Self::Serve => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Self::Work => SocketAddr::from(([127, 0, 0, 1], 9090)),
        }
    }
}

#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address the HTTP server binds to (port 0 picks a free port); default 127.0.0.1:8080 for
    /// `serve`, 127.0.0.1:9090 for `work`.
    #[arg(long, env = "REEL_LISTEN")]
    pub listen: Option<SocketAddr>,

    /// Root of the media volume: sources/, hls/ and tmp/ live below it.
    #[arg(long, env = "REEL_MEDIA_DIR", default_value = "./media")]
    pub media_dir: PathBuf,

    #[command(flatten)]
    pub storage: crate::media::StorageArgs,

    /// Database URL: `sqlite://PATH` or `postgres://USER:PASSWORD@HOST/DB`; defaults to a
    /// SQLite file inside the media dir. PostgreSQL lets many API nodes and workers share one
    /// queue.
    #[arg(long, env = "REEL_DATABASE_URL")]
    pub database_url: Option<String>,

    /// Database connections this process may hold.
    #[arg(long, env = "REEL_DATABASE_CONNECTIONS", default_value_t = 8)]
    pub database_connections: u32,

    /// Number of concurrent encoders; defaults to one per two cores, at least one. `serve
    /// --encoders 0` is an API-only node (with PostgreSQL, workers run elsewhere).
    #[arg(long, env = "REEL_ENCODERS")]
    pub encoders: Option<usize>,

    /// Seconds a claimed job stays a worker's without a heartbeat; renewed every sixth of it.
    /// After it runs out, another worker takes the job over.
    #[arg(long, env = "REEL_LEASE_SECS", default_value_t = 60)]
    pub lease_secs: u64,

    /// Largest accepted upload, in bytes (suffixes KiB, MiB, GiB allowed).
    #[arg(long, env = "REEL_MAX_UPLOAD_BYTES", default_value = "4GiB", value_parser = parse_bytes)]
    pub max_upload_bytes: u64,

    /// Jobs that may wait in the queue before uploads are refused with 503.
    #[arg(long, env = "REEL_QUEUE_CAPACITY", default_value_t = 64)]
    pub queue_capacity: u32,

    /// Uploads are refused with 507 when the media volume has less free space than this.
    #[arg(long, env = "REEL_MIN_FREE_BYTES", default_value = "512MiB", value_parser = parse_bytes)]
    pub min_free_bytes: u64,

    /// The system ffmpeg binary (never downloaded).
    #[arg(long, env = "REEL_FFMPEG", default_value = "ffmpeg")]
    pub ffmpeg: PathBuf,

    /// The system ffprobe binary.
    #[arg(long, env = "REEL_FFPROBE", default_value = "ffprobe")]
    pub ffprobe: PathBuf,

    /// Ladder rungs as `height:video_kbps`, comma separated; rungs above the source are skipped.
    #[arg(long, env = "REEL_LADDER", default_value = "1080:5000,720:2800,480:1400,360:800,240:400", value_parser = parse_ladder)]
    pub ladder: LadderSpec,

    /// AAC bitrate of every rung, in kbit/s.
    #[arg(long, env = "REEL_AUDIO_KBPS", default_value_t = 128)]
    pub audio_kbps: u32,

    /// x264 preset: slower presets give smaller files for more CPU. `veryfast` also analyses
    /// P/B macroblocks whole (`partitions=none`, measured free: BENCHMARKS.md scenario 9).
    #[arg(long, env = "REEL_X264_PRESET", default_value = "veryfast")]
    pub x264_preset: String,

    /// Target HLS segment duration in seconds; every segment starts on a keyframe in every rung.
    #[arg(long, env = "REEL_SEGMENT_SECONDS", default_value_t = 4)]
    pub segment_seconds: u32,

    /// Kill ffmpeg and fail the job when its progress has not advanced for this many seconds.
    #[arg(long, env = "REEL_STALL_TIMEOUT_SECS", default_value_t = 120)]
    pub stall_timeout_secs: u64,

    /// Longest accepted source, in seconds.
    #[arg(long, env = "REEL_MAX_DURATION_SECS", default_value_t = 4 * 3600)]
    pub max_duration_secs: u64,

    /// Widest accepted picture (as displayed), in pixels.
    #[arg(long, env = "REEL_MAX_WIDTH", default_value_t = 8192)]
    pub max_width: u32,

    /// Tallest accepted picture (as displayed), in pixels.
    #[arg(long, env = "REEL_MAX_HEIGHT", default_value_t = 8192)]
    pub max_height: u32,

    /// Largest accepted picture area, in pixels (8K UHD by default).
    #[arg(long, env = "REEL_MAX_PIXELS", default_value_t = 7680 * 4320)]
    pub max_pixels: u64,

    /// Highest accepted frame rate.
    #[arg(long, env = "REEL_MAX_FRAME_RATE", default_value_t = 240.0)]
    pub max_frame_rate: f64,

    /// Most streams (video, audio, data, subtitles) a source may have.
    #[arg(long, env = "REEL_MAX_STREAMS", default_value_t = 32)]
    pub max_streams: usize,

    /// A client that sends no upload bytes for this long is cut off and its partial file removed.
    #[arg(long, env = "REEL_UPLOAD_IDLE_TIMEOUT_SECS", default_value_t = 60)]
    pub upload_idle_timeout_secs: u64,

    /// How long a resumable (tus) upload lives after its last bytes arrived (`Upload-Expires`);
    /// then it is removed with its file. Humantime: `24h`, `90m`, `30s`.
    #[arg(long, env = "REEL_UPLOAD_EXPIRY", default_value = "24h", value_parser = humantime::parse_duration)]
    pub upload_expiry: Duration,

    /// Niceness added to ffmpeg so the server stays responsive while it encodes.
    #[arg(long, env = "REEL_FFMPEG_NICE", default_value_t = 10)]
    pub ffmpeg_nice: i32,

    /// Serve the web page from this folder instead of the copy built into the binary (for
    /// working on the page without rebuilding).
    #[arg(long, env = "REEL_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,

    /// Sites that may put `/embed/{id}` in an iframe: a CSP `frame-ancestors` source list
    /// (`*`, `'self' https://blog.example`, …; `'none'` forbids embedding).
    #[arg(long, env = "REEL_EMBED_FRAME_ANCESTORS", default_value = "*")]
    pub embed_frame_ancestors: FrameAncestors,

    /// Behind nginx: answer source downloads with `X-Accel-Redirect: /_sources/<id>` and let nginx send the file.
    #[arg(long, env = "REEL_ACCEL_REDIRECT", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub accel_redirect: bool,

    /// Who may use the API: `none` or `jwt`. Unset, a `--listen` address other than loopback
    /// refuses to start: an open upload-and-delete API on a public address must be a decision.
    #[arg(long, env = "REEL_AUTH", value_enum)]
    pub auth: Option<AuthMode>,

    #[command(flatten)]
    pub jwt: crate::auth::jwt::JwtArgs,

    /// Secret that signs playback URLs of private videos (`?exp=…&sig=…`); nginx checks the same
    /// signature (REEL_PLAYBACK_SECRET in its config). At least 32 bytes. Without it, videos
    /// cannot be made private.
    #[arg(long, env = "REEL_PLAYBACK_SECRET", hide_env_values = true)]
    pub playback_secret: Option<String>,

    /// History events older than this many days are removed (daily); 0 keeps them forever.
    /// History outlives videos: a deleted video's events stay readable until then.
    #[arg(long, env = "REEL_HISTORY_RETENTION_DAYS", default_value_t = 365)]
    pub history_retention_days: u32,

    /// How long a signed playback URL stays valid, in seconds.
    #[arg(long, env = "REEL_PLAYBACK_URL_TTL_SECS", default_value_t = 6 * 3600)]
    pub playback_url_ttl_secs: u64,

    /// HTTP worker threads; defaults to the number of cores.
    #[arg(long, env = "REEL_HTTP_WORKERS")]
    pub http_workers: Option<NonZeroUsize>,

    /// Run webhook delivery in this `reel serve` process (off: it still serves the webhook API;
    /// other processes on the same PostgreSQL database deliver).
    #[arg(long, env = "REEL_WEBHOOK_DELIVERY", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = true, num_args = 0..=1, default_missing_value = "true")]
    pub webhook_delivery: bool,

    /// Let webhooks reach private, loopback and link-local addresses (tests, closed networks).
    #[arg(long, env = "REEL_WEBHOOK_ALLOW_PRIVATE", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false, num_args = 0..=1, default_missing_value = "true")]
    pub webhook_allow_private: bool,

    /// Calls a webhook event gets before it goes to the endpoint's dead letters.
    #[arg(long, env = "REEL_WEBHOOK_MAX_ATTEMPTS", default_value_t = 8)]
    pub webhook_max_attempts: u32,

    /// First retry delay of a webhook event, in milliseconds; doubles per attempt (with jitter).
    #[arg(long, env = "REEL_WEBHOOK_BACKOFF_BASE_MS", default_value_t = 2000)]
    pub webhook_backoff_base_ms: u64,

    /// Longest retry delay of a webhook event, in seconds.
    #[arg(long, env = "REEL_WEBHOOK_BACKOFF_MAX_SECS", default_value_t = 3600)]
    pub webhook_backoff_max_secs: u64,

    /// Consecutive failed calls that open an endpoint's circuit breaker.
    #[arg(long, env = "REEL_WEBHOOK_BREAKER_FAILURES", default_value_t = 5)]
    pub webhook_breaker_failures: u32,

    /// How long an open breaker makes no call before its probe, in seconds.
    #[arg(long, env = "REEL_WEBHOOK_BREAKER_COOLDOWN_SECS", default_value_t = 60)]
    pub webhook_breaker_cooldown_secs: u64,

    /// Webhook calls in flight at once in this process (each endpoint makes one at a time).
    #[arg(long, env = "REEL_WEBHOOK_CONCURRENCY", default_value_t = 16)]
    pub webhook_concurrency: usize,

    #[command(flatten)]
    pub properties: crate::properties::PropertyArgs,

    #[command(flatten)]
    pub geo: crate::geo::GeoArgs,

    #[command(flatten)]
    pub tls: crate::tls::TlsArgs,
}

/// The configured ladder, highest rung first after validation.
#[derive(Debug, Clone, PartialEq)]
pub struct LadderSpec(pub Vec<LadderRung>);

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("--segment-seconds must be between 1 and 30, got {0}")]
    SegmentSeconds(u32),
    #[error("--queue-capacity must be at least 1")]
    QueueCapacity,
    #[error("--stall-timeout-secs must be at least 5, got {0}")]
    StallTimeout(u64),
    #[error("--ffmpeg-nice must be between 0 and 19, got {0}")]
    Nice(i32),
    #[error("--audio-kbps must be between 32 and 512, got {0}")]
    AudioKbps(u32),
    #[error("--upload-idle-timeout-secs must be at least 1")]
    UploadIdle,
    #[error(
        "--x264-preset (REEL_X264_PRESET) {0:?} is not an x264 preset: one of {presets}",
        presets = X264_PRESETS.join(", ")
    )]
    Preset(String),
    #[error("--lease-secs must be between 2 and 3600, got {0}")]
    Lease(u64),
    #[error("--webhook-{0} must be at least 1")]
    Webhook(&'static str),
    #[error("`reel work` needs at least one encoder")]
    NoEncoders,
    #[error(
        "--encoders 0 needs a PostgreSQL --database-url: with SQLite no other process can encode"
    )]
    NobodyEncodes,
    #[error(
        "--listen {0} is not a loopback address: anyone reaching it could upload and delete. \
         Pass --auth jwt (with a key) or, if something in front of reel restricts access, --auth none"
    )]
    OpenApi(SocketAddr),
    #[error("--playback-secret must be at least 32 bytes")]
    PlaybackSecret,
    #[error("{0}")]
    Jwt(#[from] crate::auth::jwt::KeyError),
    #[error("{0}")]
    Storage(#[from] crate::media::StorageConfigError),
    #[error("{0}")]
    Properties(#[from] crate::properties::PropertyConfigError),
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsConfigError),
}

const X264_PRESETS: [&str; 10] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];

impl Config {
    /// Checks what clap's types cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=30).contains(&self.segment_seconds) {
            return Err(ConfigError::SegmentSeconds(self.segment_seconds));
        }
        if self.queue_capacity == 0 {
            return Err(ConfigError::QueueCapacity);
        }
        if self.stall_timeout_secs < 5 {
            return Err(ConfigError::StallTimeout(self.stall_timeout_secs));
        }
        if !(0..=19).contains(&self.ffmpeg_nice) {
            return Err(ConfigError::Nice(self.ffmpeg_nice));
        }
        if !(32..=512).contains(&self.audio_kbps) {
            return Err(ConfigError::AudioKbps(self.audio_kbps));
        }
        if self.upload_idle_timeout_secs == 0 {
            return Err(ConfigError::UploadIdle);
        }
        if !X264_PRESETS.contains(&self.x264_preset.as_str()) {
            return Err(ConfigError::Preset(self.x264_preset.clone()));
        }
        if !(2..=3600).contains(&self.lease_secs) {
            return Err(ConfigError::Lease(self.lease_secs));
        }
        self.storage.validate(self.lease_secs)?;
        for (name, value) in [
            ("max-attempts", u64::from(self.webhook_max_attempts)),
            ("backoff-base-ms", self.webhook_backoff_base_ms),
            ("backoff-max-secs", self.webhook_backoff_max_secs),
            ("breaker-failures", u64::from(self.webhook_breaker_failures)),
            ("breaker-cooldown-secs", self.webhook_breaker_cooldown_secs),
            ("concurrency", self.webhook_concurrency as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::Webhook(name));
            }
        }
        self.properties.validate()?;
        self.tls.validate()?;
        Ok(())
    }

    /// Checks what depends on the role the process runs.
    pub fn validate_for(&self, role: Role) -> Result<(), ConfigError> {
        self.validate()?;
        let encoders = self.encoder_count();
        if role == Role::Work && encoders == 0 {
            return Err(ConfigError::NoEncoders);
        }
        if role == Role::Serve && encoders == 0 && !self.is_postgres() {
            return Err(ConfigError::NobodyEncodes);
        }
        let listen = self.listen.unwrap_or_else(|| role.default_listen());
        if role == Role::Serve && self.auth.is_none() && !listen.ip().is_loopback() {
            return Err(ConfigError::OpenApi(listen));
        }
        if self.auth == Some(AuthMode::Jwt) {
            self.jwt.verifier()?;
        }
        if self.playback_secret.as_ref().is_some_and(|s| s.len() < 32) {
            return Err(ConfigError::PlaybackSecret);
        }
        Ok(())
    }

    /// The database is shared (PostgreSQL): other processes may run jobs and serve requests.
    pub fn is_postgres(&self) -> bool {
        self.database_url
            .as_deref()
            .is_some_and(|url| url.starts_with("postgres:") || url.starts_with("postgresql:"))
    }

    pub fn encoder_count(&self) -> usize {
        self.encoders.unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, NonZeroUsize::get);
            (cores / 2).max(1)
        })
    }

    pub fn input_limits(&self) -> crate::transcode::probe::InputLimits {
        crate::transcode::probe::InputLimits {
            max_duration: self.max_duration_secs as f64,
            max_width: self.max_width,
            max_height: self.max_height,
            max_pixels: self.max_pixels,
            max_frame_rate: self.max_frame_rate,
            max_streams: self.max_streams,
        }
    }

    pub fn stall_timeout(&self) -> Duration {
        Duration::from_secs(self.stall_timeout_secs)
    }

    /// A configuration for tests and embedding: everything below `media_dir`, port 0.
    pub fn for_dir(media_dir: impl Into<PathBuf>) -> Self {
        let ladder = parse_ladder("1080:5000,720:2800,480:1400,360:800,240:400")
            .unwrap_or_else(|_| LadderSpec(Vec::new()));
        Self {
            listen: Some(SocketAddr::from(([127, 0, 0, 1], 0))),
            media_dir: media_dir.into(),
            storage: Default::default(),
            database_url: None,
            database_connections: 8,
            encoders: Some(1),
            lease_secs: 60,
            max_upload_bytes: 4 << 30,
            queue_capacity: 64,
            min_free_bytes: 0,
            ffmpeg: "ffmpeg".into(),
            ffprobe: "ffprobe".into(),
            ladder,
            audio_kbps: 128,
            x264_preset: "veryfast".into(),
            segment_seconds: 4,
            stall_timeout_secs: 120,
            ffmpeg_nice: 10,
            max_duration_secs: 4 * 3600,
            max_width: 8192,
            max_height: 8192,
            max_pixels: 7680 * 4320,
            max_frame_rate: 240.0,
            max_streams: 32,
            upload_idle_timeout_secs: 60,
            upload_expiry: Duration::from_secs(24 * 3600),
            static_dir: None,
            embed_frame_ancestors: FrameAncestors::default(),
            accel_redirect: false,
            auth: None,
            jwt: crate::auth::jwt::JwtArgs {
                jwt_roles_claim: "roles".into(),
                ..Default::default()
            },
            playback_secret: None,
            playback_url_ttl_secs: 6 * 3600,
            history_retention_days: 365,
            http_workers: None,
            webhook_delivery: true,
            webhook_allow_private: false,
            webhook_max_attempts: 8,
            webhook_backoff_base_ms: 2000,
            webhook_backoff_max_secs: 3600,
            webhook_breaker_failures: 5,
            webhook_breaker_cooldown_secs: 60,
            webhook_concurrency: 16,
            properties: Default::default(),
            geo: Default::default(),
            tls: Default::default(),
        }
    }
}

/// Parses `1048576`, `512MiB`, `4GiB`, `10MB` (decimal) and the like.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let number: u64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a byte size"))?;
    let multiplier: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "t" | "tib" => 1 << 40,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        other => return Err(format!("unknown byte unit {other:?} in {text:?}")),
    };
    number
        .checked_mul(multiplier)
        .ok_or_else(|| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_accept_binary_and_decimal_units() {
        assert_eq!(parse_bytes("1024"), Ok(1024));
        assert_eq!(parse_bytes("4GiB"), Ok(4 << 30));
        assert_eq!(parse_bytes("512 MiB"), Ok(512 << 20));
        assert_eq!(parse_bytes("10MB"), Ok(10_000_000));
        assert!(parse_bytes("ten").is_err());
        assert!(parse_bytes("5 parsecs").is_err());
        assert!(parse_bytes("99999999999TiB").is_err());
    }

    #[test]
    fn a_bad_setting_is_a_typed_error() {
        let mut config = Config::for_dir("/tmp/x");
        config.segment_seconds = 0;
        assert!(matches!(
            config.validate(),
            Err(ConfigError::SegmentSeconds(0))
        ));
        let mut config = Config::for_dir("/tmp/x");
        config.x264_preset = "warp".into();
        assert!(matches!(config.validate(), Err(ConfigError::Preset(_))));
        assert!(Config::for_dir("/tmp/x").validate().is_ok());
    }
}
