//! The `concierge` binary: parses the command line, loads configuration, starts telemetry
//! and dispatches to a role. Role code lives in the libraries and in `app`.

/// Prints a line on stdout like `println!`, but a closed pipe (`concierge ... | head`) ends
/// the program quietly instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout().lock(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

mod admin;
mod app;
mod backup;
mod chat;
mod cli;
mod config;
mod doctor;
mod healthcheck;
mod infra;
mod profiles;
mod simulate;
mod telemetry;

use clap::Parser;

fn main() -> std::process::ExitCode {
    // One TLS crypto provider for the whole tree (reqwest and sqlx use rustls without one).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = cli::Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(cli::run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
