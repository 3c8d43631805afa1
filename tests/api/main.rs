//! Specs against the real thing: the `reel` binary on port 0, real ffmpeg, real disk.
//! One test binary, so one link step; modules only here.

mod bucket;
mod contract;
mod corpus;
mod events;
mod faults;
mod fixtures;
mod forms;
mod helpers;
mod inputs;
mod ladder_checks;
mod library;
mod lifecycle;
mod openapi;
mod pipeline;
mod ranges;
mod s3;
mod scale;
mod tus;
mod tus_faults;
mod tus_refusals;
mod upload;
mod webhooks;
