//! The link: one Unix stream socket per session between the host and its container
//! (`<session dir>/link.sock`, `/workspace/link.sock` inside), carrying newline-delimited JSON
//! frames both ways.
//!
//! It makes both sides wake instead of poll: the host says "inbound.db changed" ([`ToAgent::Wake`]),
//! the container says "outbound.db changed" ([`ToHost::Out`]). It also carries what is ephemeral:
//! model text deltas and tool events for the browser, and `stop`. Nothing that must survive a
//! crash goes over the link; the session DBs are the durable path and both sides keep a slow
//! safety poll for a missed wake.

use serde::{Deserialize, Serialize};

/// File name of the socket inside the session directory.
pub const SOCKET_NAME: &str = "link.sock";

/// A frame longer than this is a protocol error: it is skipped (the link stays up).
pub const FRAME_BYTES_MAX: usize = 256 * 1024;
/// Text of one `delta` frame; longer model output is sent as several frames.
pub const DELTA_BYTES_MAX: usize = 16 * 1024;
/// Largest tool arguments or output sent for people to read (the model gets the whole output).
pub const TOOL_DETAIL_BYTES_MAX: usize = 4 * 1024;

/// Container → host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ToHost {
    /// New rows were committed to `outbound.db`.
    Out,
    /// A streamed turn starts; its deltas go to this address.
    StreamStart { stream: String, channel_type: String, platform_id: String },
    /// Model text as it arrives.
    Delta { stream: String, text: String },
    /// A tool call started or ended.
    Tool {
        stream: String,
        name: String,
        state: ToolState,
        summary: String,
        /// The call's arguments as JSON, cut to [`TOOL_DETAIL_BYTES_MAX`] (on start and end).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        input: Option<String>,
        /// What the tool returned (on end), cut in the middle to [`TOOL_DETAIL_BYTES_MAX`].
        #[serde(default, skip_serializing_if = "Option::is_none")]
        output: Option<String>,
    },
    /// The streamed turn is over (its final reply arrives as an outbound row).
    StreamEnd { stream: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ToolState {
    Start,
    End,
}

/// Host → container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ToAgent {
    /// New rows were committed to `inbound.db`.
    Wake,
    /// Abort the running turn.
    Stop,
}

/// Encodes a frame as one line.
pub fn encode<T: Serialize>(frame: &T) -> Vec<u8> {
    let mut line = serde_json::to_vec(frame).expect("link frames always serialise");
    line.push(b'\n');
    line
}

/// Splits model text into pieces of at most [`DELTA_BYTES_MAX`] bytes, on character boundaries.
pub fn delta_pieces(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let mut end = rest.len().min(DELTA_BYTES_MAX);
        while !rest.is_char_boundary(end) {
            end -= 1;
        }
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

/// Splits a byte stream into frames. Feed it what the socket gave; take complete lines out.
/// A line over [`FRAME_BYTES_MAX`] is reported once and skipped, never buffered whole.
#[derive(Debug, Default)]
pub struct LineBuf {
    buf: Vec<u8>,
    /// Dropping the rest of an overlong line.
    skipping: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub struct FrameTooLong;

impl LineBuf {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line without its newline, `None` when more bytes are needed, or
    /// `FrameTooLong` once for a line over the limit (the reader goes on after it).
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, FrameTooLong> {
        loop {
            let newline = self.buf.iter().position(|&b| b == b'\n');
            if self.skipping {
                match newline {
                    Some(pos) => {
                        self.buf.drain(..=pos);
                        self.skipping = false;
                        continue;
                    }
                    None => {
                        self.buf.clear();
                        return Ok(None);
                    }
                }
            }
            return match newline {
                Some(pos) if pos > FRAME_BYTES_MAX => {
                    self.buf.drain(..=pos);
                    Err(FrameTooLong)
                }
                Some(pos) => {
                    let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                    line.pop();
                    Ok(Some(line))
                }
                None if self.buf.len() > FRAME_BYTES_MAX => {
                    self.buf.clear();
                    self.skipping = true;
                    Err(FrameTooLong)
                }
                None => Ok(None),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let frames = vec![
            ToHost::Out,
            ToHost::StreamStart {
                stream: "s1".into(),
                channel_type: "webchat".into(),
                platform_id: "r".into(),
            },
            ToHost::Delta { stream: "s1".into(), text: "hé\nllo".into() },
            ToHost::Tool {
                stream: "s1".into(),
                name: "bash".into(),
                state: ToolState::Start,
                summary: "ls".into(),
                input: Some(r#"{"command":"ls"}"#.into()),
                output: None,
            },
            ToHost::StreamEnd { stream: "s1".into() },
        ];
        let mut lb = LineBuf::default();
        let bytes: Vec<u8> = frames.iter().flat_map(encode).collect();
        // Feed in awkward pieces to exercise partial lines.
        for chunk in bytes.chunks(7) {
            lb.push(chunk);
        }
        let mut got = Vec::new();
        while let Some(line) = lb.next_line().unwrap() {
            got.push(serde_json::from_slice::<ToHost>(&line).unwrap());
        }
        assert_eq!(got, frames);
        assert_eq!(encode(&ToAgent::Wake), b"{\"t\":\"wake\"}\n");
    }

    #[test]
    fn overlong_frames_are_skipped_and_reading_goes_on() {
        let mut lb = LineBuf::default();
        lb.push(&vec![b'x'; FRAME_BYTES_MAX + 1]);
        assert_eq!(lb.next_line(), Err(FrameTooLong));
        assert!(lb.buf.is_empty(), "the overlong line is not kept");
        lb.push(&vec![b'x'; 1000]);
        assert_eq!(lb.next_line(), Ok(None), "still skipping the same line");
        lb.push(b"x\n{\"t\":\"out\"}\n");
        assert_eq!(lb.next_line(), Ok(Some(b"{\"t\":\"out\"}".to_vec())));
        // An overlong line that arrives whole is skipped too.
        lb.push(&[vec![b'y'; FRAME_BYTES_MAX + 5], b"\nnext\n".to_vec()].concat());
        assert_eq!(lb.next_line(), Err(FrameTooLong));
        assert_eq!(lb.next_line(), Ok(Some(b"next".to_vec())));
    }

    #[test]
    fn deltas_are_split_on_character_boundaries() {
        let text = "é".repeat(DELTA_BYTES_MAX);
        let pieces: Vec<&str> = delta_pieces(&text).collect();
        assert!(pieces.len() > 1);
        assert!(pieces.iter().all(|p| p.len() <= DELTA_BYTES_MAX && !p.is_empty()));
        assert_eq!(pieces.concat(), text);
        assert_eq!(delta_pieces("").count(), 0);
    }
}
