//! The `switchboard` binary: `switchboard --config FILE` runs the proxy,
//! `switchboard check FILE` validates a config, `switchboard reload [FILE]` asks the running
//! proxy to re-read its config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use switchboard::registry;

/// jemalloc with background purging gives memory back to the system once clients leave;
/// glibc's malloc keeps it (issue 12, measured in `Cargo.toml`'s `[features]`).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    /// Ask the running proxy to re-read its config file and apply it (POST /reload on its
    /// admin listener). Exits 0 when applied, 2 when the file was refused (the running config
    /// stays; the reason is printed as `check` prints it), 1 when the proxy cannot be reached.
    Reload {
        /// The config file the proxy runs with, read only for its `[admin] listen` address
        /// (default: `--config`, else 127.0.0.1:9090).
        file: Option<PathBuf>,
        /// The admin listener's address, instead of the one in the file.
        #[arg(long, value_name = "HOST:PORT")]
        admin: Option<SocketAddr>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Reload { file, admin }) = &cli.command {
        let admin =
            admin.unwrap_or_else(|| admin_listen_of(file.as_deref().or(cli.config.as_deref())));
        return reload(admin);
    }
    if let Some(Command::Check { file }) = cli.command {
        let checked = registry::load(&file)
            .map_err(|e| e.to_string())
            .and_then(|c| {
                switchboard::server::check(&c)
                    .map(|()| c)
                    .map_err(|e| e.to_string())
            });
        return match checked {
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
        eprintln!(
            "usage: switchboard --config FILE | switchboard check FILE | switchboard reload [FILE]"
        );
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
    // Accepting, admin, reloads and the hub's Redis link: one thread is plenty, as
    // connections run on the session workers (`limits.workers`).
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(switchboard::run_from(config, Some(path))) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "switchboard failed");
            eprintln!("switchboard: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The `[admin] listen` address of a config file (with the `SWITCHBOARD_` environment layer),
/// read leniently: the rest of the file may be what the proxy is about to refuse.
fn admin_listen_of(file: Option<&Path>) -> SocketAddr {
    use figment::Figment;
    use figment::providers::{Env, Format, Toml};
    let default = switchboard::config::Admin::default().listen;
    let Some(text) = file.and_then(|f| std::fs::read_to_string(f).ok()) else {
        return default;
    };
    Figment::new()
        .merge(Toml::string(&text))
        .merge(Env::prefixed("SWITCHBOARD_").split("__"))
        .extract_inner::<SocketAddr>("admin.listen")
        .ok()
        .or_else(|| scan_admin_listen(&text))
        .unwrap_or(default)
}

/// `listen = "…"` under `[admin]`, found line by line: for a file that is not even TOML,
/// which the proxy is then asked to refuse with its line.
fn scan_admin_listen(text: &str) -> Option<SocketAddr> {
    let mut in_admin = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_admin = line == "[admin]";
        } else if let Some((k, v)) = line.split_once('=').filter(|_| in_admin)
            && k.trim() == "listen"
        {
            let v = v.split('#').next().unwrap_or_default().trim();
            return v.trim_matches(|c| c == '"' || c == '\'').parse().ok();
        }
    }
    None
}

/// `POST /reload` to the admin listener at `admin`, and the answer as an exit code.
fn reload(admin: SocketAddr) -> ExitCode {
    use std::io::{Read, Write};
    use std::time::Duration;
    let ask = || -> std::io::Result<Vec<u8>> {
        let mut tcp = std::net::TcpStream::connect_timeout(&admin, Duration::from_secs(5))?;
        // The proxy gives a reload 60 s (binding, reading TLS files) before answering 504.
        tcp.set_read_timeout(Some(Duration::from_secs(90)))?;
        write!(
            tcp,
            "POST /reload HTTP/1.1\r\nHost: {admin}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut answer = Vec::new();
        tcp.read_to_end(&mut answer)?;
        Ok(answer)
    };
    let answer = match ask() {
        Ok(a) => a,
        Err(e) => {
            eprintln!(
                "switchboard reload: cannot reach the admin listener at {admin}: {e} \
                 (is switchboard running? `--admin HOST:PORT` names another address)"
            );
            return ExitCode::FAILURE;
        }
    };
    let answer = String::from_utf8_lossy(&answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.split(' ').nth(1).unwrap_or_default();
    match status {
        "200" => {
            print!("{body}");
            ExitCode::SUCCESS
        }
        "422" => {
            eprint!("switchboard reload: refused, the running config stays: {body}");
            ExitCode::from(2)
        }
        _ => {
            let first = head.lines().next().unwrap_or_default();
            eprintln!("switchboard reload: unexpected answer from {admin}: {first}: {body}");
            ExitCode::FAILURE
        }
    }
}
