//! Running the built binary from integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output};

pub const BIN: &str = env!("CARGO_BIN_EXE_concierge");

/// Runs the binary with a clean environment plus `env`, in `dir`.
pub fn concierge(dir: &Path, env: &[(&str, String)], args: &[&str]) -> Output {
    command(dir, env, args).output().expect("run concierge")
}

pub fn command(dir: &Path, env: &[(&str, String)], args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("CONCIERGE_LOG_LEVEL", "warn")
        .args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// The command's stdout as JSON; fails the test (showing both streams) if it did not succeed.
pub fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "command failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// Settings for a PostgreSQL test database, with a master key from `seed`.
pub fn postgres_env(db: &testkit::TestDb, seed: u8) -> Vec<(&'static str, String)> {
    vec![
        ("CONCIERGE_DATABASE_URL", db.url().to_owned()),
        ("CONCIERGE_MASTER_KEY", key(seed)),
    ]
}

/// Base64 of 32 bytes of `seed`: a valid master or backup key.
pub fn key(seed: u8) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode([seed; 32])
}
