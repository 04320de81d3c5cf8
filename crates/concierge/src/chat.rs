//! `concierge chat`: an operator talks to a tenant's agents in the terminal. Every line goes
//! through the same path as a web-chat message (or, with `--as`, an SMS): recorded,
//! encrypted, answered by the configured engine, and visible through the API afterwards.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use domain::{ConversationId, PhoneNumber};
use messaging::{Messaging, MessagingConfig, TurnInfo, Vault};
use tokio::io::{AsyncBufReadExt as _, BufReader};

use crate::app;
use crate::config::Settings;

pub async fn run(
    settings: &Settings,
    tenant: &str,
    as_phone: Option<PhoneNumber>,
    profile: Option<String>,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let tenant_id = crate::admin::parse_tenant(tenant)?;
    let stores = app::open_store(settings).await?;
    let tenant = stores
        .data
        .get_tenant(tenant_id)
        .await?
        .with_context(|| format!("no tenant {tenant_id}; see `concierge admin tenant list`"))?;
    // With --as: an SMS from that number to the tenant's first number.
    let sms = match as_phone {
        Some(from) => {
            let to = tenant.phone_numbers.first().cloned().with_context(|| {
                "this tenant has no phone number, so --as cannot text it; leave --as out for web chat"
            })?;
            Some((from, to))
        }
        None => None,
    };
    let vault = Arc::new(Vault::new(app::master_key(settings)?, stores.data.clone()));
    if let Some(name) = &profile {
        anyhow::ensure!(
            agent::profiles::exists(stores.data.as_ref(), tenant.id, name).await?,
            "no profile {name:?} for this tenant; built-in profiles: {}; see `concierge profile list`",
            agent::profile::BUILTIN.join(", ")
        );
    }
    let engine = app::turn_engine(settings, &stores, profile)?.turns;
    // The operator waits for the answer: the budget covers every model attempt.
    let budget = Duration::from_millis(
        settings
            .llm
            .total_timeout_ms
            .saturating_mul(u64::from(settings.llm.max_attempts))
            .saturating_add(5_000),
    );
    let messaging = Messaging::new(
        stores.clone(),
        vault,
        engine,
        MessagingConfig {
            inline_budget: budget,
            max_attempts: settings.messaging.max_attempts,
            node_id: format!("chat-{}", std::process::id()),
        },
    );
    if !json {
        eprintln!(
            "Talking to {} ({}). Type a message; an empty line or Ctrl-D ends.",
            tenant.name.as_str(),
            sms.as_ref().map_or_else(
                || "web chat".to_owned(),
                |(from, _)| format!("SMS as {}", from.as_str())
            )
        );
    }
    let mut conversation: Option<ConversationId> = None;
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    while let Some(line) = lines.next_line().await.context("reading stdin")? {
        let text = line.trim();
        if text.is_empty() {
            break;
        }
        let (reply, turn, conv) = match &sms {
            Some((from, to)) => {
                let sid = format!("SMcli{}", uuid::Uuid::now_v7().simple());
                let r = messaging.receive_sms(&tenant, from, to, &sid, text).await?;
                (r.text, r.turn, r.conversation_id)
            }
            None => {
                let r = messaging
                    .receive_web_chat(tenant.id, conversation, text)
                    .await?;
                conversation = Some(r.conversation_id);
                (r.reply, r.turn, Some(r.conversation_id))
            }
        };
        print_turn(reply.as_deref(), turn.as_ref(), conv, json);
    }
    Ok(ExitCode::SUCCESS)
}

fn print_turn(
    reply: Option<&str>,
    turn: Option<&TurnInfo>,
    conversation: Option<ConversationId>,
    json: bool,
) {
    if json {
        out!(
            "{}",
            serde_json::json!({
                "reply": reply,
                "answered_by": turn.map(|t| t.answered_by),
                "agents": turn.map(|t| t.agents.clone()).unwrap_or_default(),
                "tools": turn.map(|t| t.tools.clone()).unwrap_or_default(),
                "conversation_id": conversation,
            })
        );
        return;
    }
    match (reply, turn) {
        (Some(reply), Some(turn)) => {
            let tools = if turn.tools.is_empty() {
                String::new()
            } else {
                format!(", tools: {}", turn.tools.join(", "))
            };
            let who = if turn.agents.is_empty() {
                turn.answered_by.to_owned()
            } else {
                format!("{} {}", turn.answered_by, turn.agents.join(" → "))
            };
            out!("[{who}{tools}] {reply}");
        }
        (Some(reply), None) => out!("[platform] {reply}"),
        (None, _) => out!("(no reply now: the worker will answer, or the number opted out)"),
    }
}
