//! Web-chat turns: `POST /api/v1/chat/messages` with a bearer API key, one conversation per
//! worker, each turn continuing the conversation the previous answer named.

use anyhow::Context as _;
use serde_json::{Map, Value};

use crate::http;
use crate::runner::Scenario;
use crate::stats::Outcome;

pub const PATH: &str = "/api/v1/chat/messages";

/// What simulated visitors type, in order, turn after turn.
const MESSAGES: &[&str] = &[
    "Hello! Are you open tomorrow?",
    "I'd like to book a table for four at 7:30pm.",
    "Do you have vegetarian options?",
    "Great, please put it under the name Martin.",
    "Can I change it to 8pm instead?",
    "Thanks, see you then!",
];

pub struct Chat {
    client: reqwest::Client,
    url: String,
    authorization: String,
    /// Start a new conversation after this many turns (0: never).
    turns_per_conversation: u64,
}

/// One worker's conversation.
#[derive(Debug, Default)]
pub struct Conversation {
    id: Option<String>,
    turns: u64,
}

impl Chat {
    /// # Errors
    /// When the API key cannot be sent in a header.
    pub fn new(
        client: reqwest::Client,
        url: &str,
        api_key: &str,
        turns_per_conversation: u64,
    ) -> anyhow::Result<Self> {
        let authorization = format!("Bearer {api_key}");
        reqwest::header::HeaderValue::from_str(&authorization)
            .context("--api-key contains characters not allowed in a header")?;
        Ok(Self {
            client,
            url: format!("{}{PATH}", url.trim_end_matches('/')),
            authorization,
            turns_per_conversation,
        })
    }

    /// The JSON body of the next turn of `conversation`.
    #[must_use]
    pub fn body(conversation: &Conversation) -> Value {
        let turn = usize::try_from(conversation.turns).unwrap_or(0) % MESSAGES.len();
        let mut body = Map::new();
        body.insert("message".to_owned(), Value::from(MESSAGES[turn]));
        if let Some(id) = &conversation.id {
            body.insert("conversation_id".to_owned(), Value::from(id.as_str()));
        }
        Value::Object(body)
    }

    /// The HTTP request for the next turn of `conversation`.
    pub fn request(&self, conversation: &Conversation) -> reqwest::RequestBuilder {
        self.client
            .post(&self.url)
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .json(&Self::body(conversation))
    }
}

impl Scenario for Chat {
    type Worker = Conversation;

    fn worker(&self, _index: usize) -> Conversation {
        Conversation::default()
    }

    async fn call(&self, conversation: &mut Conversation, _seq: u64) -> Outcome {
        if self.turns_per_conversation > 0 && conversation.turns >= self.turns_per_conversation {
            *conversation = Conversation::default();
        }
        let request = self.request(conversation);
        let outcome = http::exchange(request, |body| match conversation_id(body) {
            Ok(id) => {
                conversation.id = Some(id);
                Outcome::Ok
            }
            Err(why) => Outcome::BadBody(why),
        })
        .await;
        conversation.turns += 1;
        outcome
    }
}

/// The `conversation_id` of a chat answer (a string, or a number kept as its text).
fn conversation_id(body: &[u8]) -> Result<String, String> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| format!("not JSON ({e}): {:?}", crate::stats::snippet(body)))?;
    match value.get("conversation_id") {
        Some(Value::String(id)) if !id.is_empty() => Ok(id.clone()),
        Some(Value::Number(id)) => Ok(id.to_string()),
        _ => Err(format!(
            "no conversation_id in {:?}",
            crate::stats::snippet(body)
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use super::*;

    #[test]
    fn the_first_turn_has_no_conversation_id() {
        let mut conversation = Conversation::default();
        assert_eq!(Chat::body(&conversation), json!({"message": MESSAGES[0]}));
        conversation.id = Some("c-1".to_owned());
        conversation.turns = 1;
        assert_eq!(
            Chat::body(&conversation),
            json!({"message": MESSAGES[1], "conversation_id": "c-1"})
        );
    }

    #[test]
    fn conversation_ids_are_read_from_the_answer() {
        assert_eq!(
            conversation_id(br#"{"reply":"hi","conversation_id":"0198-ab"}"#),
            Ok("0198-ab".to_owned())
        );
        assert_eq!(
            conversation_id(br#"{"conversation_id":12}"#),
            Ok("12".to_owned())
        );
        assert!(conversation_id(br#"{"reply":"hi"}"#).is_err());
        assert!(conversation_id(b"<html>").is_err());
    }

    #[test]
    fn the_request_carries_the_key_and_json() {
        crate::http::install_crypto_provider();
        let chat = Chat::new(
            reqwest::Client::new(),
            "http://127.0.0.1:8080/",
            "ck_live_x",
            0,
        )
        .unwrap();
        let request = chat.request(&Conversation::default()).build().unwrap();
        assert_eq!(
            request.url().as_str(),
            "http://127.0.0.1:8080/api/v1/chat/messages"
        );
        assert_eq!(request.headers()["authorization"], "Bearer ck_live_x");
        assert_eq!(request.headers()["content-type"], "application/json");
        assert!(Chat::new(reqwest::Client::new(), "http://x", "bad\nkey", 0).is_err());
    }
}
