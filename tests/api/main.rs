//! Specs against the real thing: the `reel` binary on port 0, real ffmpeg, real disk.
//! One test binary, so one link step; modules only here.

mod auth;
mod bucket;
mod bucket_faults;
mod cli;
mod contract;
mod corpus;
mod events;
mod faults;
mod feed;
mod fixtures;
mod forms;
mod geoip;
mod helpers;
mod history;
mod inputs;
mod ladder_checks;
mod library;
mod lifecycle;
mod live;
mod monitoring;
mod openapi;
mod pipeline;
mod private;
mod properties;
mod ranges;
mod recovery;
mod s3;
mod scale;
mod storyboard;
mod tls;
mod tus;
mod tus_faults;
mod tus_refusals;
mod upload;
mod webhooks;
