//! Server-sent events, as the model APIs send them: `event:` and `data:` fields (with or without
//! a space after the colon), multi-line data joined with `\n`, comments (`:`) ignored, events
//! ended by a blank line, `\r\n` or `\n` line ends. One event's data is bounded.

use std::io::{self, BufRead};

/// Largest data of one event.
pub const EVENT_BYTES_MAX: usize = 8 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    pub event: Option<String>,
    pub data: String,
}

pub struct SseReader<R> {
    r: R,
    line: Vec<u8>,
}

impl<R: BufRead> SseReader<R> {
    pub fn new(r: R) -> SseReader<R> {
        SseReader { r, line: Vec::new() }
    }

    /// The next event, or `None` at the end of the stream (a final event without its blank line
    /// is still returned).
    pub fn next_event(&mut self) -> io::Result<Option<Event>> {
        let mut ev = Event::default();
        let mut has_data = false;
        loop {
            self.line.clear();
            let n = std::io::Read::take(&mut self.r, EVENT_BYTES_MAX as u64 + 1)
                .read_until(b'\n', &mut self.line)?;
            if n == 0 {
                return Ok((has_data || ev.event.is_some()).then_some(ev));
            }
            if self.line.len() > EVENT_BYTES_MAX {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "server-sent event too large"));
            }
            while matches!(self.line.last(), Some(b'\n' | b'\r')) {
                self.line.pop();
            }
            if self.line.is_empty() {
                if has_data || ev.event.is_some() {
                    return Ok(Some(ev));
                }
                continue;
            }
            let line = String::from_utf8_lossy(&self.line);
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_ref(), ""),
            };
            match field {
                "event" => ev.event = Some(value.to_string()),
                "data" => {
                    if has_data {
                        ev.data.push('\n');
                    }
                    ev.data.push_str(value);
                    has_data = true;
                    if ev.data.len() > EVENT_BYTES_MAX {
                        return Err(io::Error::new(
                            io::ErrorKind::InvalidData,
                            "server-sent event too large",
                        ));
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &str) -> Vec<Event> {
        let mut r = SseReader::new(input.as_bytes());
        let mut out = Vec::new();
        while let Some(ev) = r.next_event().unwrap() {
            out.push(ev);
        }
        out
    }

    fn ev(event: Option<&str>, data: &str) -> Event {
        Event { event: event.map(str::to_string), data: data.to_string() }
    }

    #[test]
    fn parses_the_variants_servers_send() {
        let input = "event: ping\ndata: {\"type\": \"ping\"}\n\n\
                     data:{\"no\":\"space\"}\r\n\r\n\
                     : a comment\n\
                     data: line one\ndata: line two\n\n\
                     \n\n\
                     data: [DONE]";
        assert_eq!(
            all(input),
            vec![
                ev(Some("ping"), "{\"type\": \"ping\"}"),
                ev(None, "{\"no\":\"space\"}"),
                ev(None, "line one\nline two"),
                ev(None, "[DONE]"),
            ]
        );
    }

    #[test]
    fn refuses_oversized_events() {
        let big = format!("data: {}\n\n", "x".repeat(EVENT_BYTES_MAX + 1));
        let mut r = SseReader::new(big.as_bytes());
        assert!(r.next_event().is_err());
    }
}
