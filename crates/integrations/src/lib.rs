//! Small clients for external services: Twilio REST, pacing.

pub mod pacing;
pub mod twilio;

pub use pacing::{LocalPacer, Pacer, PacingError, RedisPacer};
pub use twilio::{OutboundSms, SentSms, SmsError, SmsSender, TwilioClient, TwilioConfig};
