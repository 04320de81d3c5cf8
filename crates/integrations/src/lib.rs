//! Small clients for external services: Twilio REST, Hetzner Cloud (read-only), pacing.

pub mod hetzner;
pub mod pacing;
pub mod twilio;

pub use pacing::{LocalPacer, Pacer, PacingError, RedisPacer};
pub use twilio::{OutboundSms, SentSms, SmsError, SmsSender, TwilioClient, TwilioConfig};
