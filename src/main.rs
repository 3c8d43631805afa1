use clap::Parser;
use reel::config::{Cli, Command, Role};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    reel::telemetry::init_tracing(cli.log_format);
    let (config, role) = match cli.command {
        Command::Serve(config) => (config, Role::Serve),
        Command::Work(config) => (config, Role::Work),
        Command::Token(args) => return reel::auth::print_token(&args),
    };
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
    match runtime.block_on(reel::app::run(config, role)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Once, in plain words: the error and its causes on one line.
            tracing::error!("reel could not run: {}", reel::telemetry::chain(&error));
            std::process::ExitCode::FAILURE
        }
    }
}
