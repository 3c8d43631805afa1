//! Specs against the real thing: the `reel` binary on port 0, real ffmpeg, real disk.
//! One test binary, so one link step; modules only here.

mod corpus;
mod events;
mod faults;
mod fixtures;
mod helpers;
mod inputs;
mod library;
mod lifecycle;
mod pipeline;
mod tus;
mod tus_faults;
mod tus_refusals;
mod upload;
