//! Provider-neutral conversation types: what the agent loop builds and every provider translates
//! to and from its own wire format.
//!
//! The conversation is stored in `outbound.db` (`conversation`, a message's JSON a row, per
//! provider), so these types are also the continuation format.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One piece of a message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Block {
    Text {
        text: String,
    },
    ToolUse {
        id: String,
        name: String,
        input: Value,
    },
    ToolResult {
        tool_use_id: String,
        content: String,
        is_error: bool,
    },
    /// A picture for the model to look at, read from `path` each time a request is built.
    Image {
        path: String,
        media_type: String,
    },
    /// A PDF for the model to read (as a document), read from `path` each time a request is built.
    Pdf {
        path: String,
        name: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    pub content: Vec<Block>,
}

impl Message {
    pub fn user_text(text: impl Into<String>) -> Message {
        Message { role: Role::User, content: vec![Block::Text { text: text.into() }] }
    }

    pub fn assistant_text(text: impl Into<String>) -> Message {
        Message { role: Role::Assistant, content: vec![Block::Text { text: text.into() }] }
    }

    /// The concatenated text blocks.
    pub fn text(&self) -> String {
        self.content
            .iter()
            .filter_map(|b| match b {
                Block::Text { text } => Some(text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("")
    }

    /// The tool calls in this message.
    pub fn tool_uses(&self) -> impl Iterator<Item = (&str, &str, &Value)> {
        self.content.iter().filter_map(|b| match b {
            Block::ToolUse { id, name, input } => Some((id.as_str(), name.as_str(), input)),
            _ => None,
        })
    }
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments object.
    pub input_schema: Value,
}

/// One model call.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    pub model: &'a str,
    pub system: &'a str,
    pub messages: &'a [Message],
    pub tools: &'a [ToolSpec],
    pub max_tokens: u32,
}

/// Why the model stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    /// Finished its turn.
    EndTurn,
    /// Wants the results of the tool calls in its message.
    ToolUse,
    /// Ran into `max_tokens`; the text so far can be continued.
    MaxTokens,
    /// Anything else the provider reported.
    Other(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub input_tokens: u64,
    pub output_tokens: u64,
}

/// The result of one model call.
#[derive(Debug, Clone, PartialEq)]
pub struct Response {
    pub message: Message,
    pub stop: Stop,
    pub usage: Option<Usage>,
}

/// What a provider reports while a call streams.
#[derive(Debug, Clone, PartialEq)]
pub enum StreamEvent {
    /// Text as it arrives.
    TextDelta(String),
    /// The model started writing a tool call.
    ToolCallStart { name: String },
}

/// A model call that failed.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelError {
    /// The server answered with an error status (`retry_after_s` from `retry-after`).
    Status { status: u16, message: String, retry_after_s: Option<u64> },
    /// The connection failed or broke.
    Transport(String),
    /// Nothing came from the model for the whole model timeout (not retried: the timeout is
    /// long already, and a server that hangs once usually hangs again).
    Timeout(String),
    /// The server's stream did not make sense (or reported an error mid-stream).
    Protocol(String),
    /// Stopped by the user.
    Cancelled,
}

impl ModelError {
    /// Worth trying again after a pause: rate limits, overload, server errors, broken connections.
    pub fn retryable(&self) -> bool {
        match self {
            ModelError::Status { status, .. } => matches!(status, 408 | 409 | 429 | 500..=599),
            ModelError::Transport(_) => true,
            ModelError::Timeout(_) => false,
            ModelError::Protocol(m) => m.contains("overloaded"),
            ModelError::Cancelled => false,
        }
    }
}

impl std::fmt::Display for ModelError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ModelError::Status { status, message, .. } => write!(f, "{status} — {message}"),
            ModelError::Transport(m) => write!(f, "connection failed — {m}"),
            ModelError::Timeout(m) => write!(f, "no answer — {m}"),
            ModelError::Protocol(m) => write!(f, "bad response — {m}"),
            ModelError::Cancelled => write!(f, "stopped"),
        }
    }
}

impl std::error::Error for ModelError {}

/// Shared "stop what you are doing" signal for one turn: a flag plus hooks that interrupt
/// blocking work at once (close the model connection, kill the tool's process group).
#[derive(Clone, Default)]
pub struct Cancel {
    inner: Arc<CancelInner>,
}

type Hook = Box<dyn Fn() + Send>;

#[derive(Default)]
struct CancelInner {
    flag: AtomicBool,
    hooks: Mutex<Vec<(u64, Hook)>>,
    next: std::sync::atomic::AtomicU64,
}

/// Removes its hook when dropped.
pub struct HookGuard {
    cancel: Cancel,
    id: u64,
}

impl Drop for HookGuard {
    fn drop(&mut self) {
        self.cancel.inner.hooks.lock().unwrap_or_else(|e| e.into_inner()).retain(|(id, _)| *id != self.id);
    }
}

impl Cancel {
    pub fn is_cancelled(&self) -> bool {
        self.inner.flag.load(Ordering::SeqCst)
    }

    /// Sets the flag and runs every registered hook.
    pub fn cancel(&self) {
        self.inner.flag.store(true, Ordering::SeqCst);
        for (_, hook) in self.inner.hooks.lock().unwrap_or_else(|e| e.into_inner()).iter() {
            hook();
        }
    }

    /// Clears the flag for the next turn.
    pub fn reset(&self) {
        self.inner.flag.store(false, Ordering::SeqCst);
    }

    /// Runs `hook` on cancel while the guard lives (at once if already cancelled).
    pub fn on_cancel(&self, hook: impl Fn() + Send + 'static) -> HookGuard {
        let id = self.inner.next.fetch_add(1, Ordering::SeqCst);
        if self.is_cancelled() {
            hook();
        }
        self.inner.hooks.lock().unwrap_or_else(|e| e.into_inner()).push((id, Box::new(hook)));
        HookGuard { cancel: self.clone(), id }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversation_round_trips_as_json() {
        let conv = vec![
            Message::user_text("hi"),
            Message {
                role: Role::Assistant,
                content: vec![
                    Block::Text { text: "let me look".into() },
                    Block::ToolUse {
                        id: "t1".into(),
                        name: "read_file".into(),
                        input: serde_json::json!({"path": "a"}),
                    },
                ],
            },
            Message {
                role: Role::User,
                content: vec![Block::ToolResult {
                    tool_use_id: "t1".into(),
                    content: "x".into(),
                    is_error: false,
                }],
            },
        ];
        let json = serde_json::to_string(&conv).unwrap();
        let back: Vec<Message> = serde_json::from_str(&json).unwrap();
        assert_eq!(back, conv);
        assert_eq!(conv[1].text(), "let me look");
        assert_eq!(conv[1].tool_uses().count(), 1);
    }

    #[test]
    fn cancel_runs_hooks_until_their_guard_drops() {
        let c = Cancel::default();
        let hits = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = hits.clone();
        let guard = c.on_cancel(move || {
            h.fetch_add(1, Ordering::SeqCst);
        });
        c.cancel();
        assert_eq!(hits.load(Ordering::SeqCst), 1);
        assert!(c.is_cancelled());
        drop(guard);
        c.reset();
        c.cancel();
        assert_eq!(hits.load(Ordering::SeqCst), 1, "dropped hook does not run");
        // A hook registered after cancel runs at once.
        let h = hits.clone();
        let _g = c.on_cancel(move || {
            h.fetch_add(10, Ordering::SeqCst);
        });
        assert_eq!(hits.load(Ordering::SeqCst), 11);
    }

    #[test]
    fn retryable_errors() {
        let status = |s| ModelError::Status { status: s, message: String::new(), retry_after_s: None };
        assert!(status(429).retryable() && status(529).retryable() && status(500).retryable());
        assert!(!status(400).retryable() && !status(401).retryable());
        assert!(ModelError::Transport("reset".into()).retryable());
        assert!(!ModelError::Cancelled.retryable());
    }
}
