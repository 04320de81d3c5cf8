//! TwiML responses for messaging webhooks.

use axum::response::{IntoResponse, Response};

/// A messaging TwiML document: one `<Message>` or an empty `<Response/>`.
pub struct Twiml(pub Option<String>);

impl Twiml {
    #[must_use]
    pub fn render(&self) -> String {
        match &self.0 {
            Some(text) => format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>{}</Message></Response>",
                escape(text)
            ),
            None => "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>".to_owned(),
        }
    }
}

impl IntoResponse for Twiml {
    fn into_response(self) -> Response {
        (
            [(http::header::CONTENT_TYPE, "text/xml; charset=utf-8")],
            self.render(),
        )
            .into_response()
    }
}

/// XML-escapes text; control characters XML 1.0 forbids are dropped.
#[must_use]
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_messages_and_empty_responses() {
        assert_eq!(
            Twiml(Some("Hello".into())).render(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Message>Hello</Message></Response>"
        );
        assert_eq!(
            Twiml(None).render(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response/>"
        );
        assert_eq!(escape("a<b>&\"c'\u{1}é"), "a&lt;b&gt;&amp;&quot;c&apos;é");
    }
}
