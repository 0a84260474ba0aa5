//! The conversation the agent carries from turn to turn.
//!
//! Stored in `outbound.db` under `continuation:<provider>` (switching providers never hands one
//! backend's history to another), so a new container resumes where the last one stopped. Before
//! each model call the oldest exchanges are trimmed to fit the context budget; an exchange starts
//! at a user message that is not a tool result, so a tool call is never separated from its result.

use rusqlite::Connection;

use super::model::{Block, Message, Role};
use crate::db::outbound;

/// Said at the start of a trimmed conversation.
pub const TRIMMED_NOTE: &str =
    "[Earlier parts of this conversation were removed to fit the model's context.]";
/// Largest continuation kept (bytes of JSON), whatever the token budget.
pub const STORED_BYTES_MAX: usize = 4 * 1024 * 1024;

pub fn key(provider: &str) -> String {
    format!("continuation:{}", provider.to_lowercase())
}

/// Loads the stored conversation (empty when there is none or it cannot be read).
pub fn load(out: &Connection, provider: &str) -> Vec<Message> {
    match outbound::state(out, &key(provider)) {
        Ok(Some(json)) => serde_json::from_str(&json).unwrap_or_else(|e| {
            log::warn!("stored conversation is unreadable ({e}); starting a new one");
            Vec::new()
        }),
        Ok(None) => Vec::new(),
        Err(e) => {
            log::warn!("reading the stored conversation: {e}");
            Vec::new()
        }
    }
}

pub fn save(out: &Connection, provider: &str, messages: &[Message], now: i64) -> rusqlite::Result<()> {
    let json = serde_json::to_string(messages).expect("messages serialise");
    outbound::set_state(out, &key(provider), &json, now)
}

pub fn clear(out: &Connection, provider: &str) -> rusqlite::Result<()> {
    outbound::delete_state(out, &key(provider))
}

/// Rough token count of a message (4 bytes a token is close enough to plan a budget).
pub fn estimate_tokens(m: &Message) -> usize {
    let bytes: usize = m
        .content
        .iter()
        .map(|b| match b {
            Block::Text { text } => text.len(),
            Block::ToolUse { name, input, .. } => name.len() + input.to_string().len() + 20,
            Block::ToolResult { content, .. } => content.len() + 20,
            // A picture costs up to about 1,600 tokens with either protocol.
            Block::Image { .. } => 1600 * 4,
            // A PDF costs about that per page; a few pages is typical.
            Block::Pdf { .. } => 8000 * 4,
        })
        .sum();
    bytes / 4 + 4
}

/// True where a new exchange may begin: a user message carrying text, not only tool results.
fn starts_exchange(m: &Message) -> bool {
    m.role == Role::User && m.content.iter().any(|b| matches!(b, Block::Text { .. }))
}

/// Drops the oldest exchanges until the conversation fits `budget_tokens` (keeping at least the
/// newest exchange, even if it alone is larger), and marks the start as trimmed. Returns whether
/// anything was dropped.
pub fn trim(messages: &mut Vec<Message>, budget_tokens: usize) -> bool {
    let sizes: Vec<usize> = messages.iter().map(estimate_tokens).collect();
    let suffix = |i: usize| sizes[i..].iter().sum::<usize>();
    if suffix(0) <= budget_tokens {
        return false;
    }
    let starts: Vec<usize> = (1..messages.len()).filter(|&i| starts_exchange(&messages[i])).collect();
    let Some(cut) = starts.iter().copied().find(|&i| suffix(i) <= budget_tokens).or(starts.last().copied())
    else {
        return false;
    };
    messages.drain(..cut);
    if let Some(Block::Text { text }) = messages.first_mut().and_then(|m| m.content.first_mut()) {
        text.insert_str(0, &format!("{TRIMMED_NOTE}\n\n"));
    }
    true
}

/// Makes a stored conversation safe to send: it must start with a user exchange, and a trailing
/// assistant tool call without results (the container stopped mid-tool) gets error results.
pub fn repair(messages: &mut Vec<Message>) {
    while messages.first().is_some_and(|m| !starts_exchange(m)) {
        messages.remove(0);
    }
    if let Some(last) = messages.last()
        && last.role == Role::Assistant
        && last.tool_uses().next().is_some()
    {
        let results = last
            .tool_uses()
            .map(|(id, _, _)| Block::ToolResult {
                tool_use_id: id.to_string(),
                content: "The tool did not finish: the agent was restarted.".into(),
                is_error: true,
            })
            .collect();
        messages.push(Message { role: Role::User, content: results });
    }
}

/// Caps the stored size by trimming harder if needed.
pub fn fit_storage(messages: &mut Vec<Message>) {
    // Serialising is the exact measure but costs a pass over everything: only do it when the
    // estimate says it may be needed.
    if messages.iter().map(estimate_tokens).sum::<usize>() * 4 < STORED_BYTES_MAX / 2 {
        return;
    }
    let mut budget = usize::MAX;
    while serde_json::to_string(messages).map_or(0, |s| s.len()) > STORED_BYTES_MAX {
        let total: usize = messages.iter().map(estimate_tokens).sum();
        budget = budget.min(total) * 3 / 4;
        if !trim(messages, budget) {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::{self, Kind};

    fn user(t: &str) -> Message {
        Message::user_text(t)
    }

    fn tool_round(id: &str) -> [Message; 2] {
        [
            Message {
                role: Role::Assistant,
                content: vec![Block::ToolUse {
                    id: id.into(),
                    name: "bash".into(),
                    input: serde_json::json!({"command": "ls"}),
                }],
            },
            Message {
                role: Role::User,
                content: vec![Block::ToolResult {
                    tool_use_id: id.into(),
                    content: "x".repeat(400),
                    is_error: false,
                }],
            },
        ]
    }

    #[test]
    fn continuation_is_per_provider_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbound.db");
        let out = db::open(&path, Kind::Outbound).unwrap();
        let conv = vec![user("hi"), Message::assistant_text("hello")];
        save(&out, "anthropic", &conv, 1).unwrap();
        drop(out);
        let out = db::open(&path, Kind::Outbound).unwrap();
        assert_eq!(load(&out, "Anthropic"), conv);
        assert!(load(&out, "openai").is_empty());
        clear(&out, "anthropic").unwrap();
        assert!(load(&out, "anthropic").is_empty());
    }

    #[test]
    fn trimming_keeps_tool_pairs_and_the_newest_exchange() {
        let mut conv = vec![user(&"a".repeat(400)), Message::assistant_text("ok")];
        conv.extend(tool_round("t1"));
        conv.push(Message::assistant_text("done"));
        conv.push(user("second question"));
        conv.extend(tool_round("t2"));
        conv.push(Message::assistant_text("answer"));
        let before: usize = conv.iter().map(estimate_tokens).sum();
        assert!(!trim(&mut conv.clone(), before), "fits: nothing trimmed");
        let mut trimmed = conv.clone();
        assert!(trim(&mut trimmed, 200));
        assert!(
            trimmed[0].text().starts_with(TRIMMED_NOTE) && trimmed[0].text().ends_with("second question")
        );
        assert_eq!(trimmed.len(), 4, "the newest exchange with its tool round stays whole");
        // A budget below even the newest exchange keeps that exchange.
        let mut tiny = conv.clone();
        trim(&mut tiny, 1);
        assert_eq!(tiny.len(), 4);
    }

    #[test]
    fn repair_closes_a_dangling_tool_call() {
        let mut conv = vec![Message::assistant_text("orphan"), user("q")];
        conv.push(tool_round("t9")[0].clone());
        repair(&mut conv);
        assert_eq!(conv[0], user("q"));
        let last = conv.last().unwrap();
        assert!(
            matches!(&last.content[0], Block::ToolResult { tool_use_id, is_error: true, .. } if tool_use_id == "t9")
        );
    }
}
