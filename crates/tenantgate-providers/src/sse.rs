//! Incremental Server-Sent Events parsing (WHATWG rules that LLM APIs use: `event:` and `data:`
//! fields, multi-line data joined by `\n`, `:` comments, LF or CRLF line ends) and writing.

use bytes::{Bytes, BytesMut};

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `event:` field, empty when absent.
    pub event: String,
    pub data: String,
}

/// Feeds arbitrary byte chunks, yields complete events. Holds at most one partial line plus the
/// fields of the event being built, so memory is bounded by the largest single event.
#[derive(Debug, Default)]
pub struct Parser {
    buf: BytesMut,
    event: String,
    data: String,
    has_data: bool,
}

/// Largest event the parser accepts before reporting an error (a malformed upstream that never
/// sends a blank line must not grow memory without bound).
pub const MAX_EVENT_BYTES: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum SseError {
    #[error("upstream event larger than {MAX_EVENT_BYTES} bytes")]
    TooLarge,
    #[error("upstream event is not UTF-8")]
    NotUtf8,
}

impl Parser {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `chunk` and returns every event it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Result<Vec<Event>, SseError> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
            let mut line = self.buf.split_to(pos + 1);
            line.truncate(pos);
            if line.last() == Some(&b'\r') {
                line.truncate(pos - 1);
            }
            let line = std::str::from_utf8(&line).map_err(|_| SseError::NotUtf8)?;
            if let Some(ev) = self.line(line) {
                out.push(ev);
            }
        }
        if self.buf.len() + self.data.len() > MAX_EVENT_BYTES {
            return Err(SseError::TooLarge);
        }
        Ok(out)
    }

    /// Called at end of stream: a final event without its blank line is still dispatched.
    pub fn finish(&mut self) -> Option<Event> {
        if !self.buf.is_empty() {
            let rest = self.buf.split();
            if let Ok(line) = std::str::from_utf8(&rest) {
                let line = line.trim_end_matches('\r').to_owned();
                if let Some(ev) = self.line(&line) {
                    return Some(ev);
                }
            }
        }
        self.line("")
    }

    fn line(&mut self, line: &str) -> Option<Event> {
        if line.is_empty() {
            if !self.has_data {
                self.event.clear();
                return None;
            }
            let ev = Event {
                event: std::mem::take(&mut self.event),
                data: std::mem::take(&mut self.data),
            };
            self.has_data = false;
            return Some(ev);
        }
        if line.starts_with(':') {
            return None;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => self.event = value.to_owned(),
            "data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(value);
                self.has_data = true;
            }
            _ => {} // id, retry and unknown fields carry nothing the gateway uses
        }
        None
    }
}

/// `data: {json}\n\n`
pub fn data_frame(json: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(json.len() + 8);
    b.extend_from_slice(b"data: ");
    b.extend_from_slice(json.as_bytes());
    b.extend_from_slice(b"\n\n");
    b.freeze()
}

/// `event: name\ndata: {json}\n\n`
pub fn named_frame(event: &str, json: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(json.len() + event.len() + 16);
    b.extend_from_slice(b"event: ");
    b.extend_from_slice(event.as_bytes());
    b.extend_from_slice(b"\ndata: ");
    b.extend_from_slice(json.as_bytes());
    b.extend_from_slice(b"\n\n");
    b.freeze()
}

pub const DONE_FRAME: &[u8] = b"data: [DONE]\n\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_at_every_byte_boundary_parse_the_same() {
        let wire = "event: message_start\r\ndata: {\"a\":1}\r\n\r\n: ping comment\n\ndata: x\ndata: y\n\ndata: [DONE]\n\n";
        let whole = Parser::new().feed(wire.as_bytes()).unwrap();
        assert_eq!(whole.len(), 3);
        assert_eq!(whole[0].event, "message_start");
        assert_eq!(whole[0].data, "{\"a\":1}");
        assert_eq!(whole[1].data, "x\ny");
        assert_eq!(whole[2].data, "[DONE]");
        for split in 1..wire.len() {
            let mut p = Parser::new();
            let mut got = p.feed(&wire.as_bytes()[..split]).unwrap();
            got.extend(p.feed(&wire.as_bytes()[split..]).unwrap());
            assert_eq!(got, whole, "split at {split}");
        }
    }

    #[test]
    fn final_event_without_blank_line_is_dispatched_at_finish() {
        let mut p = Parser::new();
        assert!(p.feed(b"data: tail").unwrap().is_empty());
        assert_eq!(p.finish().map(|e| e.data), Some("tail".to_owned()));
    }

    #[test]
    fn unbounded_event_is_refused() {
        let mut p = Parser::new();
        let big = vec![b'a'; MAX_EVENT_BYTES + 1];
        assert_eq!(p.feed(&big), Err(SseError::TooLarge));
    }
}
