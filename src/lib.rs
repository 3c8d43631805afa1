//! reel: a self-hosted video pipeline.
//!
//! # Layout
//! - [`config`]: settings from flags and `REEL_*` variables, validated once at start.
//! - [`app`]: wiring for the roles `serve` and `work` (store, bus, media, tasks, routes).
//! - [`domain`]: the video, its history and their small types (ids, statuses, renditions); pure.
//! - [`auth`]: the caller (who asks, with which roles).
//! - [`service`]: what the API can do, each operation taking a caller; handlers call only this.
//! - [`store`]: videos, the queue with leases and fencing tokens, history and the change feed
//!   (SQLite or PostgreSQL).
//! - [`bus`]: progress and cancel between processes (in-process, or PostgreSQL NOTIFY).
//! - [`progress`]: the hub that fans job events out to this process's SSE subscribers.
//! - [`media`]: the media volume layout (`sources/`, `hls/`, `tmp/`), staging and publishing.
//! - [`feed`]: readers of the change feed: webhook delivery with its breaker and signatures.
//! - [`recovery`]: reconciles the media volume with the database after a crash.
//! - [`upload`]: streams a request body to disk with a fixed buffer, sniffing and limits.
//! - [`transcode`]: the encoder pool: probe, plan the ladder, one ffmpeg, publish.
//! - [`http`]: thin actix-web handlers for the v1 contract, SSE, files and health.
//! - [`error`]: the one place where service errors become HTTP responses.
//! - [`telemetry`]: tracing and Prometheus metric names.
//! - [`client`]: `reel upload|ls|show|rm|watch`, a command-line client of a reel server.
//! - [`properties`]: client metadata, operator properties by JSONPath, the upload metrics' labels.
//! - [`geo`]: the client's country (a trusted edge's header, or a GeoIP database).
//! - [`tls`]: HTTPS with certificates reloaded on SIGHUP, and their SPKI pins (`reel pin`).

pub mod app;
pub mod auth;
pub mod bus;
pub mod client;
pub mod config;
pub mod domain;
pub mod error;
pub mod feed;
pub mod geo;
pub mod http;
pub mod media;
pub mod progress;
pub mod properties;
pub mod recovery;
pub mod service;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod transcode;
pub mod upload;
