//! The agent's tools: functions the model calls with JSON arguments (JSON Schema in their spec).
//!
//! Every tool validates its arguments, has limits (time, sizes, counts) and answers with a
//! [`ToolOutput`]; a failure is an error result the model can read and act on, never a crash of
//! the runner. File tools are confined to the agent's folder and `/workspace/extra` ([`Roots`]).
//! Tools that send messages or ask the host for something write rows to `outbound.db` through
//! [`Actions`]; the host re-validates all of them.

pub mod bash;
pub mod fs;
pub mod messaging;
pub mod tasks;
pub mod web;

use std::path::PathBuf;

use serde_json::Value;

use super::model::{Cancel, ToolSpec};

/// The built-in file, shell and web tools.
pub fn builtin() -> Vec<Box<dyn Tool>> {
    vec![
        Box::new(fs::ReadFile),
        Box::new(fs::WriteFile),
        Box::new(fs::EditFile),
        Box::new(fs::ListFiles),
        Box::new(bash::Bash::new()),
        Box::new(web::WebFetch::new()),
    ]
}

/// What a tool call produced, as the model will read it.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub content: String,
    pub is_error: bool,
}

impl ToolOutput {
    pub fn ok(content: impl Into<String>) -> ToolOutput {
        ToolOutput { content: content.into(), is_error: false }
    }

    pub fn error(content: impl Into<String>) -> ToolOutput {
        ToolOutput { content: content.into(), is_error: true }
    }
}

/// Where file tools may read and write.
#[derive(Debug, Clone)]
pub struct Roots {
    /// The session directory (`/workspace`).
    pub workspace: PathBuf,
    /// The agent's folder (`/workspace/agent`): relative paths resolve here.
    pub agent: PathBuf,
    /// Extra mounted folders (`/workspace/extra`).
    pub extra: PathBuf,
}

impl Roots {
    pub fn new(workspace: PathBuf) -> Roots {
        Roots { agent: workspace.join("agent"), extra: workspace.join("extra"), workspace }
    }
}

/// A message or request the agent sends through a tool (written to `outbound.db`).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// A chat message to a named destination (`None`: the conversation being answered).
    Send { to: Option<String>, text: String, files: Vec<PathBuf> },
    /// Replace the text of one of the agent's earlier messages (by its seq).
    Edit { message_seq: i64, text: String },
    /// React to a message (by its seq).
    React { message_seq: i64, emoji: String },
    /// A question card with options; the answer arrives as the user's next message.
    Ask { title: String, question: String, options: Vec<String> },
    /// A request for the host (`schedule_task`, `create_agent`, ...), re-validated there.
    System { action: String, payload: Value },
}

/// How tools reach the outside world: implemented by the turn, which writes `outbound.db`.
pub trait Actions {
    /// Carries out an action; returns a short confirmation for the model (e.g. the new seq).
    fn act(&mut self, action: Action) -> Result<String, String>;
    /// Names of the destinations the agent may send to.
    fn destinations(&self) -> Vec<String>;
    /// The session's scheduled tasks (one per series, newest row), as stored in `inbound.db`.
    fn tasks(&self) -> Result<Vec<TaskInfo>, String>;
}

/// A scheduled task as `list_tasks` shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskInfo {
    pub series_id: String,
    pub status: String,
    pub process_after: Option<i64>,
    pub recurrence: Option<String>,
    pub prompt: String,
}

/// Everything a running tool may use.
pub struct ToolCtx<'a> {
    pub roots: &'a Roots,
    pub cancel: &'a Cancel,
    pub actions: &'a mut dyn Actions,
    /// IANA zone for tools that take local times.
    pub tz: &'a str,
}

pub trait Tool: Send + Sync {
    fn spec(&self) -> ToolSpec;

    /// One line for the browser's tool chip (the command, the path...), at most ~120 chars.
    fn summary(&self, input: &Value) -> String;

    /// How long this call says it may take (bash's `timeout`), so the host's stuck-container
    /// detection waits at least that long.
    fn declared_timeout_ms(&self, _input: &Value) -> Option<i64> {
        None
    }

    fn run(&self, input: &Value, ctx: &mut ToolCtx<'_>) -> ToolOutput;
}

/// A required string argument, or an error output naming it.
pub fn str_arg<'v>(input: &'v Value, name: &str) -> Result<&'v str, ToolOutput> {
    input
        .get(name)
        .and_then(Value::as_str)
        .ok_or_else(|| ToolOutput::error(format!("missing string argument `{name}`")))
}

/// An optional string argument (absent or null is `None`; another type is an error).
pub fn opt_str_arg<'v>(input: &'v Value, name: &str) -> Result<Option<&'v str>, ToolOutput> {
    match input.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(ToolOutput::error(format!("argument `{name}` must be a string"))),
    }
}

/// Cuts `s` to at most `max` bytes (on a char boundary), keeping the head and the tail, with a
/// note of what was left out.
pub fn cap_middle(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let half = max / 2;
    let mut head_end = half;
    while !s.is_char_boundary(head_end) {
        head_end -= 1;
    }
    let mut tail_start = s.len() - half;
    while !s.is_char_boundary(tail_start) {
        tail_start += 1;
    }
    format!("{}\n… [{} bytes left out] …\n{}", &s[..head_end], tail_start - head_end, &s[tail_start..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_keep_head_and_tail() {
        assert_eq!(cap_middle("short", 10), "short");
        let capped = cap_middle(&"a".repeat(50).to_string().replace("aaaaa", "abcde"), 20);
        assert!(capped.starts_with("abcdeabcde") && capped.ends_with("abcdeabcde"), "{capped}");
        assert!(capped.contains("30 bytes left out"), "{capped}");
        let multibyte = cap_middle(&"é".repeat(100), 11);
        assert!(multibyte.contains("left out"));
    }

    #[test]
    fn argument_helpers() {
        let v = serde_json::json!({"a": "x", "n": 1, "z": null});
        assert_eq!(str_arg(&v, "a").unwrap(), "x");
        assert!(str_arg(&v, "n").unwrap_err().content.contains("`n`"));
        assert_eq!(opt_str_arg(&v, "z").unwrap(), None);
        assert_eq!(opt_str_arg(&v, "missing").unwrap(), None);
        assert!(opt_str_arg(&v, "n").is_err());
    }
}
