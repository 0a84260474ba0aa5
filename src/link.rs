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

/// A frame longer than this is a protocol error and closes the link.
pub const FRAME_BYTES_MAX: usize = 256 * 1024;

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
    Tool { stream: String, name: String, state: ToolState, summary: String },
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

/// Splits a byte stream into frames. Feed it what the socket gave; take complete lines out.
#[derive(Debug, Default)]
pub struct LineBuf {
    buf: Vec<u8>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct FrameTooLong;

impl LineBuf {
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete line without its newline, or `None` when more bytes are needed.
    pub fn next_line(&mut self) -> Result<Option<Vec<u8>>, FrameTooLong> {
        match self.buf.iter().position(|&b| b == b'\n') {
            Some(pos) if pos > FRAME_BYTES_MAX => Err(FrameTooLong),
            Some(pos) => {
                let mut line: Vec<u8> = self.buf.drain(..=pos).collect();
                line.pop();
                Ok(Some(line))
            }
            None if self.buf.len() > FRAME_BYTES_MAX => Err(FrameTooLong),
            None => Ok(None),
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
    fn overlong_frames_are_refused() {
        let mut lb = LineBuf::default();
        lb.push(&vec![b'x'; FRAME_BYTES_MAX + 1]);
        assert_eq!(lb.next_line(), Err(FrameTooLong));
    }
}
