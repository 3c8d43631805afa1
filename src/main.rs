use clap::Parser;
use reel::config::{Cli, Command, Role};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    reel::telemetry::init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(config) => reel::app::run(config, Role::Serve).await,
            Command::Work(config) => reel::app::run(config, Role::Work).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Once, in plain words: the error and its causes on one line.
            tracing::error!("reel could not run: {}", reel::telemetry::chain(&error));
            std::process::ExitCode::FAILURE
        }
    }
}
