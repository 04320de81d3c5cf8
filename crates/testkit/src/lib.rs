//! Test helpers shared by every crate's tests: a fresh database per test on each backend,
//! and fakes of external services that speak their real wire protocol.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod db;
pub mod fake_llm;
pub mod fake_twilio;

pub use db::{TestDb, pg_admin_url};
