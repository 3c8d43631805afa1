use clap::Parser;
use reel::config::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    reel::telemetry::init_tracing(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the async runtime");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(config) => reel::app::serve(config).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %error, error.chain = ?error, "reel stopped with an error");
            std::process::ExitCode::FAILURE
        }
    }
}
