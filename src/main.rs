//! The `switchboard` binary: `switchboard --config FILE` runs the proxy,
//! `switchboard check FILE` validates a config.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchboard::registry;

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Translating reverse proxy for real-time WebSocket sub-protocols"
)]
struct Cli {
    /// Config file to run with.
    #[arg(long, short, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a config file and exit (non-zero with key, line and reason on error).
    Check {
        /// The file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Check { file }) = cli.command {
        return match registry::load(&file) {
            Ok(c) => {
                println!("{}: ok ({} route(s))", file.display(), c.routes.len());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", file.display());
                ExitCode::from(2)
            }
        };
    }
    let Some(path) = cli.config else {
        eprintln!("usage: switchboard --config FILE | switchboard check FILE");
        return ExitCode::from(2);
    };
    let config = match registry::load(&path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{}: {e}", path.display());
            return ExitCode::from(2);
        }
    };
    switchboard::logging::init(&config.log);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(switchboard::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "switchboard failed");
            eprintln!("switchboard: {e}");
            ExitCode::FAILURE
        }
    }
}
