//! `reel` as a client of a reel server: `upload` (resumable, tus), `ls`, `show`, `rm`, `watch`.
//!
//! Progress bars on a terminal, plain lines otherwise, JSON lines with `--json`. Exit codes:
//! 0 done (with `--follow` / `watch`: every video ready), 1 a video failed or was canceled,
//! 2 bad usage, 3 refused by the server (too large, not a video, not found, forbidden, …),
//! 4 the server could not be reached or kept failing past every retry, 5 a local file could
//! not be read. With several files, the largest code of any of them.

mod commands;
mod follow;
mod http;
mod memory;
mod output;
mod tus;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use url::Url;

/// The exit codes, as `--help` shows them.
const EXIT_CODES: &str = "Exit codes: 0 done (with --follow / watch: ready), 1 a video failed or was canceled, \
     2 bad usage, 3 refused by the server, 4 server unreachable or failing past every retry, \
     5 a local file could not be read (with several files: the largest).";

/// Where the server is and who is asking; shared by every client command.
#[derive(Debug, Clone, Args)]
pub struct Connection {
    /// The reel server's base URL.
    #[arg(long, env = "REEL_SERVER", default_value = "http://127.0.0.1:8080")]
    pub server: Url,
    /// A bearer token, when the server checks them (`--auth jwt`).
    #[arg(long, env = "REEL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// One JSON object per line on stdout, for scripts (no bars).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = EXIT_CODES)]
pub struct UploadArgs {
    /// Video files, uploaded one after the other.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// The video's title (with one file only; otherwise the file name shows).
    #[arg(long)]
    pub title: Option<String>,
    /// Make the videos private.
    #[arg(long)]
    pub private: bool,
    /// Follow each video's transcode until it is ready, then print its master playlist URL.
    #[arg(long)]
    pub follow: bool,
    /// Bytes per request (suffixes KiB, MiB, GiB); below common proxy limits (100 MB).
    #[arg(long, default_value = "64MiB", value_parser = crate::config::parse_bytes)]
    pub chunk_size: u64,
    /// Failed attempts in a row (without progress) before an upload gives up; waits grow from
    /// 1 s to 30 s.
    #[arg(long, default_value_t = 10)]
    pub retries: u32,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = EXIT_CODES)]
pub struct LsArgs {
    /// Only videos with this status (queued, processing, ready, failed, canceled).
    #[arg(long)]
    pub status: Option<String>,
    /// Only videos whose title contains this text.
    #[arg(long, short = 'q')]
    pub search: Option<String>,
    /// How many, newest first (1 to 100).
    #[arg(long, default_value_t = 20)]
    pub limit: u32,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = EXIT_CODES)]
pub struct ShowArgs {
    /// The video's id.
    pub id: String,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = EXIT_CODES)]
pub struct RmArgs {
    /// Ids of the videos to delete (their jobs are canceled, their files removed).
    #[arg(required = true)]
    pub ids: Vec<String>,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Clone, Args)]
#[command(after_help = EXIT_CODES)]
pub struct WatchArgs {
    /// The video's id.
    pub id: String,
    #[command(flatten)]
    pub connection: Connection,
}

/// A client command.
#[derive(Debug, Clone)]
pub enum ClientCommand {
    Upload(UploadArgs),
    Ls(LsArgs),
    Show(ShowArgs),
    Rm(RmArgs),
    Watch(WatchArgs),
}

/// Runs a client command on its own small runtime; returns the process's exit code.
pub fn main(command: ClientCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("reel: cannot start: {error}");
            return ExitCode::from(4);
        }
    };
    ExitCode::from(runtime.block_on(commands::run(command)))
}
