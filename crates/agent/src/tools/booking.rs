//! The booking tools' interface. A booking system (built-in availability rules, Cal.com,
//! Google Calendar...) implements [`Bookings`]; the agent runtime exposes it to models as
//! three tools, and the offline engine calls it directly. Without one, the tools are not
//! offered and booking requests go to staff.

use std::sync::Arc;

use async_trait::async_trait;
use domain::{ConversationId, EndUserId, TenantId};
use jiff::Zoned;
use schemars::JsonSchema;
use serde::Deserialize;

use super::{Tool, ToolContext, ToolOutput, TypedTool, parse_when, step_uuid, typed};

pub const CHECK_AVAILABILITY: &str = "check_availability";
pub const BOOK_APPOINTMENT: &str = "book_appointment";
pub const CANCEL_APPOINTMENT: &str = "cancel_appointment";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BookingError {
    #[error("unknown service {0:?}")]
    UnknownService(String),
    /// The slot is taken or outside opening hours.
    #[error("that time is not available")]
    Unavailable,
    #[error("no such booking")]
    NotFound,
    /// The booking system failed; worth trying later.
    #[error("booking system unavailable: {0}")]
    Failed(String),
}

/// Free start times for a service on a day.
#[derive(Clone, Debug, PartialEq)]
pub struct Availability {
    pub service: String,
    pub starts: Vec<Zoned>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BookingRequest {
    pub end_user: EndUserId,
    pub conversation: ConversationId,
    pub service: String,
    pub at: Zoned,
    pub name: String,
    /// The same key again must not book twice.
    pub idempotency_key: String,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BookingConfirmation {
    /// The booking's reference, to cancel or move it.
    pub reference: String,
    pub service: String,
    pub at: Zoned,
}

#[async_trait]
pub trait Bookings: Send + Sync + 'static {
    /// Free start times of `service` on the day of `day`, in `day`'s time zone.
    async fn availability(
        &self,
        tenant: TenantId,
        service: &str,
        day: &Zoned,
    ) -> Result<Availability, BookingError>;
    async fn book(
        &self,
        tenant: TenantId,
        request: BookingRequest,
    ) -> Result<BookingConfirmation, BookingError>;
    /// Cancels one of the end user's bookings.
    async fn cancel(
        &self,
        tenant: TenantId,
        end_user: EndUserId,
        reference: &str,
    ) -> Result<(), BookingError>;
}

pub(super) fn all(bookings: &Arc<dyn Bookings>) -> Vec<Arc<dyn Tool>> {
    vec![
        typed(CheckAvailability(bookings.clone())),
        typed(BookAppointment(bookings.clone())),
        typed(CancelAppointment(bookings.clone())),
    ]
}

fn failure(e: &BookingError) -> ToolOutput {
    match e {
        BookingError::Failed(detail) => {
            tracing::warn!(error = %detail, "booking system failed");
            ToolOutput::error(
                "The booking system is unavailable; offer to have a member of staff confirm.",
            )
        }
        other => ToolOutput::error(other.to_string()),
    }
}

struct CheckAvailability(Arc<dyn Bookings>);

#[derive(Deserialize, JsonSchema)]
struct AvailabilityArgs {
    /// The service, as the business names it.
    service: String,
    /// The day, as a local date: 2026-11-23.
    day: String,
}

#[async_trait]
impl TypedTool for CheckAvailability {
    type Args = AvailabilityArgs;
    const NAME: &'static str = CHECK_AVAILABILITY;
    const DESCRIPTION: &'static str = "Free start times for a service on a day (local time).";

    async fn run(&self, ctx: &ToolContext<'_>, args: AvailabilityArgs) -> ToolOutput {
        let Ok(date) = args.day.trim().parse::<jiff::civil::Date>() else {
            return ToolOutput::error("day must be a date like 2026-11-23");
        };
        let Ok(day) = date.to_zoned(ctx.now.time_zone().clone()) else {
            return ToolOutput::error("day is out of range");
        };
        if day.date() < ctx.now.date() {
            return ToolOutput::error("that day is in the past");
        }
        match self.0.availability(ctx.tenant, &args.service, &day).await {
            Ok(a) if a.starts.is_empty() => ToolOutput::ok("Nothing is free that day."),
            Ok(a) => ToolOutput::ok(format!(
                "Free start times for {}: {}",
                a.service,
                a.starts
                    .iter()
                    .take(12)
                    .map(|s| s.strftime("%H:%M").to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Err(e) => failure(&e),
        }
    }
}

struct BookAppointment(Arc<dyn Bookings>);

#[derive(Deserialize, JsonSchema)]
struct BookArgs {
    service: String,
    /// The start, as a local date and time: 2026-11-23T10:00.
    at: String,
    /// The customer's name.
    name: String,
}

#[async_trait]
impl TypedTool for BookAppointment {
    type Args = BookArgs;
    const NAME: &'static str = BOOK_APPOINTMENT;
    const DESCRIPTION: &'static str =
        "Book a service at a start time for the customer, after they confirmed the details.";

    async fn run(&self, ctx: &ToolContext<'_>, args: BookArgs) -> ToolOutput {
        let at = match parse_when(&args.at, ctx.now) {
            Ok(at) => at,
            Err(e) => return ToolOutput::error(e),
        };
        if args.name.trim().is_empty() || args.service.trim().is_empty() {
            return ToolOutput::error("service and name are required");
        }
        let request = BookingRequest {
            end_user: ctx.end_user,
            conversation: ctx.conversation,
            service: args.service.trim().to_owned(),
            at,
            name: args.name.trim().to_owned(),
            idempotency_key: format!("book:{}", step_uuid(ctx.turn, ctx.seq)),
        };
        match self.0.book(ctx.tenant, request).await {
            Ok(c) => ToolOutput::ok(format!(
                "Booked {} on {} (reference {}).",
                c.service,
                c.at.strftime("%A %-d %B at %H:%M"),
                c.reference
            )),
            Err(e) => failure(&e),
        }
    }
}

struct CancelAppointment(Arc<dyn Bookings>);

#[derive(Deserialize, JsonSchema)]
struct CancelArgs {
    /// The booking's reference.
    reference: String,
}

#[async_trait]
impl TypedTool for CancelAppointment {
    type Args = CancelArgs;
    const NAME: &'static str = CANCEL_APPOINTMENT;
    const DESCRIPTION: &'static str = "Cancel one of the customer's bookings by its reference.";

    async fn run(&self, ctx: &ToolContext<'_>, args: CancelArgs) -> ToolOutput {
        match self
            .0
            .cancel(ctx.tenant, ctx.end_user, args.reference.trim())
            .await
        {
            Ok(()) => ToolOutput::ok("Cancelled."),
            Err(e) => failure(&e),
        }
    }
}
