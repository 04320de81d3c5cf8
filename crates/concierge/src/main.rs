//! The `concierge` binary: parses the command line, loads configuration, starts telemetry
//! and dispatches to a role. Role code lives in the libraries and in `app`.

// A command-line program prints its results on stdout.
#![allow(clippy::print_stdout)]

mod admin;
mod app;
mod cli;
mod config;
mod doctor;
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
