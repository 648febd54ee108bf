//! A server-sent-events decoder (`text/event-stream`), the framing of every streaming HTTP
//! API liveagent talks to: Chat Completions, OpenAI and Mistral transcription and speech.
//!
//! Bytes go in as they arrive (chunk boundaries anywhere, even inside a UTF-8 character or a
//! CRLF pair); complete events come out. Multiple `data:` lines are joined with `\n`,
//! `:` comments and unknown fields are ignored, and a space after the colon is optional.
//!
//! ```
//! use liveagent_agent::sse::SseDecoder;
//! let mut d = SseDecoder::new(1 << 20);
//! let mut events = d.push(b"event: a\r\ndata: {\"x\"").unwrap();
//! events.extend(d.push(b":1}\r\n\r\ndata:[DONE]\n\n").unwrap());
//! assert_eq!(events[0].event.as_deref(), Some("a"));
//! assert_eq!(events[0].data, "{\"x\":1}");
//! assert_eq!(events[1].data, "[DONE]");
//! ```

/// One event of the stream.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `event:` name, when given.
    pub event: Option<String>,
    /// The `data:` lines, joined with `\n`.
    pub data: String,
}

/// The stream broke the SSE rules we can check.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SseError {
    /// A line or an event grew past the decoder's limit.
    #[error("server-sent event larger than {0} bytes")]
    TooLarge(usize),
}

/// Decodes a byte stream into [`SseEvent`]s. See the [module docs](self).
#[derive(Debug)]
pub struct SseDecoder {
    line: Vec<u8>,
    event: Option<String>,
    data: Option<String>,
    last_was_cr: bool,
    max: usize,
}

impl SseDecoder {
    /// A decoder refusing lines or events larger than `max` bytes.
    pub fn new(max: usize) -> Self {
        SseDecoder {
            line: Vec::new(),
            event: None,
            data: None,
            last_was_cr: false,
            max,
        }
    }

    /// Feeds bytes; returns the events they completed.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<SseEvent>, SseError> {
        let mut out = Vec::new();
        for &b in bytes {
            match b {
                b'\n' if self.last_was_cr => {
                    self.last_was_cr = false;
                }
                b'\n' | b'\r' => {
                    self.last_was_cr = b == b'\r';
                    self.end_line(&mut out)?;
                }
                _ => {
                    self.last_was_cr = false;
                    if self.line.len() >= self.max {
                        return Err(SseError::TooLarge(self.max));
                    }
                    self.line.push(b);
                }
            }
        }
        Ok(out)
    }

    /// The stream ended: returns the last event if it was not terminated by a blank line.
    pub fn finish(&mut self) -> Option<SseEvent> {
        let mut out = Vec::new();
        if !self.line.is_empty() {
            let _ = self.end_line(&mut out);
        }
        let _ = self.end_line(&mut out);
        out.pop()
    }

    fn end_line(&mut self, out: &mut Vec<SseEvent>) -> Result<(), SseError> {
        let line = std::mem::take(&mut self.line);
        if line.is_empty() {
            if let Some(data) = self.data.take() {
                out.push(SseEvent {
                    event: self.event.take(),
                    data,
                });
            } else {
                self.event = None;
            }
            return Ok(());
        }
        let line = String::from_utf8_lossy(&line);
        if line.starts_with(':') {
            return Ok(());
        }
        let (field, value) = match line.find(':') {
            Some(i) => {
                let v = &line[i + 1..];
                (&line[..i], v.strip_prefix(' ').unwrap_or(v))
            }
            None => (&line[..], ""),
        };
        match field {
            "data" => match self.data.as_mut() {
                Some(data) => {
                    if data.len() + value.len() >= self.max {
                        return Err(SseError::TooLarge(self.max));
                    }
                    data.push('\n');
                    data.push_str(value);
                }
                None => self.data = Some(value.to_owned()),
            },
            "event" => self.event = Some(value.to_owned()),
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_anywhere_and_joins_data_lines() {
        let text = b"data: a\ndata: b\n\n: comment\nevent: x\ndata:c\r\n\r\n";
        for cut in 0..text.len() {
            let mut d = SseDecoder::new(1024);
            let mut ev = d.push(&text[..cut]).unwrap();
            ev.extend(d.push(&text[cut..]).unwrap());
            assert_eq!(ev.len(), 2, "cut at {cut}");
            assert_eq!(ev[0].data, "a\nb");
            assert_eq!(ev[1].event.as_deref(), Some("x"));
            assert_eq!(ev[1].data, "c");
        }
    }

    #[test]
    fn empty_data_line_and_unterminated_last_event() {
        let mut d = SseDecoder::new(1024);
        assert_eq!(d.push(b"data:\n\n").unwrap()[0].data, "");
        assert!(d.push(b"data: tail").unwrap().is_empty());
        assert_eq!(d.finish().unwrap().data, "tail");
    }

    #[test]
    fn refuses_oversized_lines() {
        let mut d = SseDecoder::new(8);
        assert_eq!(d.push(b"data: 0123456789"), Err(SseError::TooLarge(8)));
    }
}
