//! Server-sent events, as the providers stream them: `event:` and `data:` fields, events
//! ended by a blank line, comments (`:`) ignored, `\n` or `\r\n` line ends, and chunks that
//! split lines (or UTF-8 characters) anywhere.

/// One dispatched event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` field, if any (Anthropic names its events; OpenAI and Gemini do not).
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Incremental parser: feed it bytes as they arrive, take the complete events.
#[derive(Debug, Default)]
pub struct SseParser {
    buffer: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
}

/// A single SSE line longer than this is refused (a broken or hostile stream).
const MAX_LINE: usize = 4 * 1024 * 1024;

impl SseParser {
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds bytes and returns the events they complete.
    ///
    /// # Errors
    /// A line longer than 4 MiB, or one that is not UTF-8.
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, String> {
        self.buffer.extend_from_slice(bytes);
        let mut events = Vec::new();
        let mut start = 0;
        while let Some(pos) = self.buffer[start..].iter().position(|&b| b == b'\n') {
            let end = start + pos;
            let mut line = &self.buffer[start..end];
            if line.last() == Some(&b'\r') {
                line = &line[..line.len() - 1];
            }
            let line = std::str::from_utf8(line)
                .map_err(|_| "stream line is not UTF-8".to_owned())?
                .to_owned();
            start = end + 1;
            if let Some(event) = self.line(&line) {
                events.push(event);
            }
        }
        self.buffer.drain(..start);
        if self.buffer.len() > MAX_LINE {
            return Err("stream line too long".into());
        }
        Ok(events)
    }

    /// Ends the stream: an event not followed by a blank line is still delivered.
    pub fn finish(&mut self) -> Option<SseEvent> {
        if !self.buffer.is_empty() {
            let rest = String::from_utf8_lossy(&std::mem::take(&mut self.buffer)).into_owned();
            if let Some(event) = self.line(rest.trim_end_matches('\r')) {
                return Some(event);
            }
        }
        self.dispatch()
    }

    fn line(&mut self, line: &str) -> Option<SseEvent> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = Some(value.to_owned()),
            "data" => match &mut self.data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            _ => {} // id, retry, unknown fields
        }
        None
    }

    fn dispatch(&mut self) -> Option<SseEvent> {
        let event = self.event.take();
        self.data.take().map(|data| SseEvent { event, data })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_anywhere() {
        let text = "event: message_start\r\ndata: {\"a\":1}\r\n\r\n: keep-alive\n\ndata: x\ndata: y\n\nevent: ping\ndata: {}\n\n";
        for split in 1..text.len() {
            let mut p = SseParser::new();
            let (a, b) = text.as_bytes().split_at(split);
            let mut events = p.feed(a).unwrap();
            events.extend(p.feed(b).unwrap());
            events.extend(p.finish());
            assert_eq!(
                events,
                vec![
                    SseEvent {
                        event: Some("message_start".into()),
                        data: "{\"a\":1}".into()
                    },
                    SseEvent {
                        event: None,
                        data: "x\ny".into()
                    },
                    SseEvent {
                        event: Some("ping".into()),
                        data: "{}".into()
                    },
                ],
                "split at {split}"
            );
        }
    }

    #[test]
    fn a_last_event_without_blank_line_is_delivered() {
        let mut p = SseParser::new();
        assert!(p.feed(b"data: [DONE]").unwrap().is_empty());
        assert_eq!(p.finish().unwrap().data, "[DONE]");
    }

    #[test]
    fn multibyte_characters_split_between_chunks() {
        let text = "data: caf\u{e9} \u{1f600}\n\n".as_bytes();
        let mut p = SseParser::new();
        let mut events = Vec::new();
        for b in text {
            events.extend(p.feed(std::slice::from_ref(b)).unwrap());
        }
        assert_eq!(events[0].data, "caf\u{e9} \u{1f600}");
    }
}
