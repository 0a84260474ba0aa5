//! Tools that talk to people: send a message or a file, edit a message, react, ask a question.
//!
//! They write rows to `outbound.db` through [`Actions`]; the host checks the destination and
//! delivers. Message ids are the `id` attributes the agent sees in its prompt (and the ids these
//! tools return).

use std::path::PathBuf;

use serde_json::{Value, json};

use super::{Action, Tool, ToolCtx, ToolOutput, opt_str_arg, str_arg};
use crate::agent::model::ToolSpec;

/// Longest text a message tool sends.
pub const TEXT_BYTES_MAX: usize = 64 * 1024;
/// Options of one question card.
pub const OPTIONS_MAX: usize = 10;
/// Files per `send_file` call.
pub const FILES_MAX: usize = 10;

pub fn tools() -> Vec<Box<dyn Tool>> {
    vec![
        Box::new(SendMessage),
        Box::new(SendFile),
        Box::new(EditMessage),
        Box::new(AddReaction),
        Box::new(AskUserQuestion),
    ]
}

fn spec(name: &str, description: &str, schema: Value) -> ToolSpec {
    ToolSpec { name: name.into(), description: description.into(), input_schema: schema }
}

fn text_arg<'v>(input: &'v Value, name: &str) -> Result<&'v str, ToolOutput> {
    let t = str_arg(input, name)?;
    if t.trim().is_empty() {
        return Err(ToolOutput::error(format!("`{name}` is empty")));
    }
    if t.len() > TEXT_BYTES_MAX {
        return Err(ToolOutput::error(format!(
            "`{name}` is {} bytes; the limit is {TEXT_BYTES_MAX}",
            t.len()
        )));
    }
    Ok(t)
}

fn id_arg(input: &Value, name: &str) -> Result<i64, ToolOutput> {
    match input.get(name) {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .filter(|n| *n > 0)
    .ok_or_else(|| {
        ToolOutput::error(format!("`{name}` must be a message id (the number in <message id=\"…\">)"))
    })
}

fn act(ctx: &mut ToolCtx<'_>, action: Action) -> ToolOutput {
    match ctx.actions.act(action) {
        Ok(done) => ToolOutput::ok(done),
        Err(e) => ToolOutput::error(e),
    }
}

fn cut(s: &str, n: usize) -> String {
    let line = s.lines().next().unwrap_or("");
    if line.chars().count() > n {
        format!("{}…", line.chars().take(n).collect::<String>())
    } else {
        line.to_string()
    }
}

struct SendMessage;

impl Tool for SendMessage {
    fn spec(&self) -> ToolSpec {
        spec(
            "send_message",
            "Send a chat message now, without waiting for the end of your turn: progress updates, or a \
             message to another destination. Omit `to` for the conversation you are answering.",
            json!({"type": "object", "properties": {
                "text": {"type": "string", "description": "The message (Markdown)."},
                "to": {"type": "string", "description": "Destination name from your destinations list."}
            }, "required": ["text"]}),
        )
    }

    fn summary(&self, input: &Value) -> String {
        cut(input.get("text").and_then(Value::as_str).unwrap_or(""), 100)
    }

    fn run(&self, input: &Value, ctx: &mut ToolCtx<'_>) -> ToolOutput {
        let (text, to) = match (text_arg(input, "text"), opt_str_arg(input, "to")) {
            (Ok(t), Ok(to)) => (t, to),
            (Err(e), _) | (_, Err(e)) => return e,
        };
        act(ctx, Action::Send { to: to.map(str::to_string), text: text.to_string(), files: Vec::new() })
    }
}

struct SendFile;

impl Tool for SendFile {
    fn spec(&self) -> ToolSpec {
        spec(
            "send_file",
            "Send files from your folder to the user (or another destination), with an optional message. \
             Paths are relative to /workspace/agent (absolute paths under it work too).",
            json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "The file to send."},
                "paths": {"type": "array", "items": {"type": "string"}, "description": "Several files to send."},
                "text": {"type": "string", "description": "A message to go with the files."},
                "to": {"type": "string", "description": "Destination name; omit for the current conversation."}
            }}),
        )
    }

    fn summary(&self, input: &Value) -> String {
        input.get("path").and_then(Value::as_str).unwrap_or("files").to_string()
    }

    fn run(&self, input: &Value, ctx: &mut ToolCtx<'_>) -> ToolOutput {
        let mut paths: Vec<String> = Vec::new();
        if let Some(p) = input.get("path").and_then(Value::as_str) {
            paths.push(p.to_string());
        }
        if let Some(list) = input.get("paths").and_then(Value::as_array) {
            paths.extend(list.iter().filter_map(Value::as_str).map(str::to_string));
        }
        if paths.is_empty() {
            return ToolOutput::error("give `path` (or `paths`) of the file to send");
        }
        if paths.len() > FILES_MAX {
            return ToolOutput::error(format!("at most {FILES_MAX} files per call"));
        }
        let text = match opt_str_arg(input, "text") {
            Ok(t) => t.unwrap_or("").to_string(),
            Err(e) => return e,
        };
        let to = match opt_str_arg(input, "to") {
            Ok(t) => t.map(str::to_string),
            Err(e) => return e,
        };
        let files: Vec<PathBuf> = paths.iter().map(PathBuf::from).collect();
        act(ctx, Action::Send { to, text, files })
    }
}

struct EditMessage;

impl Tool for EditMessage {
    fn spec(&self) -> ToolSpec {
        spec(
            "edit_message",
            "Replace the text of a message you sent earlier (by its id).",
            json!({"type": "object", "properties": {
                "message_id": {"type": "integer", "description": "Id of your earlier message."},
                "text": {"type": "string", "description": "The new text (Markdown)."}
            }, "required": ["message_id", "text"]}),
        )
    }

    fn summary(&self, input: &Value) -> String {
        format!("message {}", input.get("message_id").map(Value::to_string).unwrap_or_default())
    }

    fn run(&self, input: &Value, ctx: &mut ToolCtx<'_>) -> ToolOutput {
        match (id_arg(input, "message_id"), text_arg(input, "text")) {
            (Ok(seq), Ok(text)) => act(ctx, Action::Edit { message_seq: seq, text: text.to_string() }),
            (Err(e), _) | (_, Err(e)) => e,
        }
    }
}

struct AddReaction;

impl Tool for AddReaction {
    fn spec(&self) -> ToolSpec {
        spec(
            "add_reaction",
            "React to a message with an emoji (e.g. 👍, ✅, 👀).",
            json!({"type": "object", "properties": {
                "message_id": {"type": "integer", "description": "Id of the message to react to."},
                "emoji": {"type": "string", "description": "One emoji."}
            }, "required": ["message_id", "emoji"]}),
        )
    }

    fn summary(&self, input: &Value) -> String {
        input.get("emoji").and_then(Value::as_str).unwrap_or("").to_string()
    }

    fn run(&self, input: &Value, ctx: &mut ToolCtx<'_>) -> ToolOutput {
        let seq = match id_arg(input, "message_id") {
            Ok(s) => s,
            Err(e) => return e,
        };
        let emoji = match str_arg(input, "emoji") {
            Ok(e) => e.trim(),
            Err(e) => return e,
        };
        if emoji.is_empty()
            || emoji.chars().count() > 8
            || emoji.chars().any(|c| c.is_ascii_alphanumeric() || c.is_control())
        {
            return ToolOutput::error("`emoji` must be a single emoji such as 👍");
        }
        act(ctx, Action::React { message_seq: seq, emoji: emoji.to_string() })
    }
}

struct AskUserQuestion;

impl Tool for AskUserQuestion {
    fn spec(&self) -> ToolSpec {
        spec(
            "ask_user_question",
            "Ask the user a question with buttons to answer. The card is sent at once; the user's answer \
             arrives as their next message, so end your turn after asking.",
            json!({"type": "object", "properties": {
                "question": {"type": "string"},
                "options": {"type": "array", "items": {"type": "string"}, "minItems": 2, "maxItems": OPTIONS_MAX,
                            "description": "The answers to offer, as short labels."},
                "title": {"type": "string", "description": "A short heading for the card."}
            }, "required": ["question", "options"]}),
        )
    }

    fn summary(&self, input: &Value) -> String {
        cut(input.get("question").and_then(Value::as_str).unwrap_or(""), 100)
    }

    fn run(&self, input: &Value, ctx: &mut ToolCtx<'_>) -> ToolOutput {
        let question = match text_arg(input, "question") {
            Ok(q) => q.to_string(),
            Err(e) => return e,
        };
        let title = match opt_str_arg(input, "title") {
            Ok(t) => t.unwrap_or("Question").trim().chars().take(120).collect::<String>(),
            Err(e) => return e,
        };
        let options: Vec<String> = match input.get("options").and_then(Value::as_array) {
            Some(list) => list
                .iter()
                .filter_map(Value::as_str)
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
            None => return ToolOutput::error("`options` must be a list of answer labels"),
        };
        if options.len() < 2 || options.len() > OPTIONS_MAX {
            return ToolOutput::error(format!("give between 2 and {OPTIONS_MAX} options"));
        }
        if options.iter().any(|o| o.chars().count() > 100) {
            return ToolOutput::error("each option must be at most 100 characters");
        }
        act(ctx, Action::Ask { title, question, options })
    }
}
