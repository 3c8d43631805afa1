//! reel: a self-hosted video pipeline.
//!
//! # Layout
//! - [`config`]: settings from flags and `REEL_*` variables, validated once at start.
//! - [`app`]: builds the whole service (database, media root, hub, encoders, HTTP) from a `Config`.
//! - [`domain`]: the video resource and its small types (ids, statuses, source info, renditions).
//! - [`error`]: the one place where domain errors become HTTP responses.
//! - [`http`]: thin actix-web handlers for the v1 contract, SSE, files and health.
//! - [`upload`]: streams a request body to disk with a fixed buffer, sniffing and limits.
//! - [`media`]: the media volume layout (`sources/`, `hls/`, `tmp/`), staging and publishing.
//! - [`queue`]: the durable job queue and video store on SQLite.
//! - [`transcode`]: the encoder pool: probe, plan the ladder, one ffmpeg, publish.
//! - [`progress`]: the in-process hub that fans job events out to SSE subscribers.
//! - [`telemetry`]: tracing and Prometheus metric names.

pub mod app;
pub mod config;
pub mod domain;
pub mod error;
pub mod http;
pub mod media;
pub mod progress;
pub mod queue;
pub mod telemetry;
pub mod transcode;
pub mod upload;
