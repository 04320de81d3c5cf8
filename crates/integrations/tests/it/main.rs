//! Integration tests: the Twilio client against the fake Twilio server, and the pacers
//! (the Redis ones against a real Redis at 127.0.0.1:6379).

mod hetzner;
mod pacing;
mod twilio;

/// reqwest is built without a rustls crypto provider; the binary installs one in `main`.
fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
