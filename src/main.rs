use clap::Parser;
use reel::client::{self, ClientCommand};
use reel::config::{Cli, Command, Role};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let (config, role) = match cli.command {
        Command::Serve(config) => (config, Role::Serve),
        Command::Work(config) => (config, Role::Work),
        // Client commands print for people (or JSON with --json), not server logs.
        Command::Upload(args) => return client::main(ClientCommand::Upload(args)),
        Command::Ls(args) => return client::main(ClientCommand::Ls(args)),
        Command::Show(args) => return client::main(ClientCommand::Show(args)),
        Command::Rm(args) => return client::main(ClientCommand::Rm(args)),
        Command::Watch(args) => return client::main(ClientCommand::Watch(args)),
        Command::Pin(args) => return reel::tls::print_pins(&args),
        Command::Token(args) => {
            reel::telemetry::init_tracing(cli.log_format);
            return reel::auth::print_token(&args);
        }
    };
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
    match runtime.block_on(reel::app::run(config, role)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // Once, in plain words: the error and its causes on one line.
            tracing::error!("reel could not run: {}", reel::telemetry::chain(&error));
            std::process::ExitCode::FAILURE
        }
    }
}
