//! The conversation the agent carries from turn to turn.
//!
//! Stored in `outbound.db`, a message a row, per provider (switching providers never hands one
//! backend's history to another), so a new container resumes where the last one stopped. A turn
//! writes only what changed: the messages it added, the first message when trimming marked it,
//! and the deletion of those trimmed off the front. Before each model call the oldest exchanges
//! are trimmed to fit the context budget; an exchange starts at a user message that is not a tool
//! result, so a tool call is never separated from its result.

use rusqlite::Connection;

use super::model::{Block, Message, Role};
use crate::db::outbound;

/// Said at the start of a trimmed conversation.
pub const TRIMMED_NOTE: &str =
    "[Earlier parts of this conversation were removed to fit the model's context.]";
/// Largest conversation kept (bytes of JSON), whatever the token budget.
pub const STORED_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The conversation in memory, and how much of it is on disk as it is.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Conversation {
    messages: Vec<Message>,
    /// Position on disk of `messages[0]`.
    first_pos: i64,
    /// `messages[..saved]` are on disk, at `first_pos..`, as they are (but for the first one
    /// when `first_changed`).
    saved: usize,
    /// Trimming marked the first message since it was saved.
    first_changed: bool,
}

/// A conversation none of which is on disk yet.
impl From<Vec<Message>> for Conversation {
    fn from(messages: Vec<Message>) -> Conversation {
        Conversation { messages, ..Conversation::default() }
    }
}

impl Conversation {
    pub fn messages(&self) -> &[Message] {
        &self.messages
    }

    pub fn push(&mut self, m: Message) {
        self.messages.push(m);
    }

    /// Drops the `n` oldest messages.
    fn drop_front(&mut self, n: usize) {
        let n = n.min(self.messages.len());
        self.messages.drain(..n);
        self.first_pos += n as i64;
        self.saved = self.saved.saturating_sub(n);
    }

    /// Writes what changed since the last save (in the caller's transaction); call
    /// [`Conversation::mark_saved`] once that transaction is committed.
    pub fn save(&self, out: &Connection, provider: &str) -> rusqlite::Result<()> {
        let provider = provider.to_lowercase();
        outbound::drop_conversation_before(out, &provider, self.first_pos)?;
        let first = (self.first_changed && self.saved > 0).then_some(0);
        for i in first.into_iter().chain(self.saved..self.messages.len()) {
            let json = serde_json::to_string(&self.messages[i]).expect("messages serialise");
            outbound::put_conversation_message(out, &provider, self.first_pos + i as i64, &json)?;
        }
        Ok(())
    }

    /// The last [`Conversation::save`] is committed: everything is on disk as it is.
    pub fn mark_saved(&mut self) {
        self.saved = self.messages.len();
        self.first_changed = false;
    }
}

/// Loads the stored conversation (empty when there is none or it cannot be read; an unreadable
/// one is replaced at the next save).
pub fn load(out: &Connection, provider: &str) -> Conversation {
    let rows = match outbound::conversation(out, &provider.to_lowercase()) {
        Ok(rows) => rows,
        Err(e) => {
            log::warn!("reading the stored conversation: {e}");
            return Conversation::default();
        }
    };
    let first_pos = rows.first().map_or(0, |(pos, _)| *pos);
    let next_pos = rows.last().map_or(0, |(pos, _)| pos + 1);
    let mut messages = Vec::with_capacity(rows.len());
    for (i, (pos, json)) in rows.iter().enumerate() {
        let parsed = if *pos == first_pos + i as i64 {
            serde_json::from_str::<Message>(json).map_err(|e| e.to_string())
        } else {
            Err("a message is missing".into())
        };
        match parsed {
            Ok(m) => messages.push(m),
            Err(e) => {
                log::warn!("stored conversation is unreadable ({e}); starting a new one");
                return Conversation { first_pos: next_pos, ..Conversation::default() };
            }
        }
    }
    let saved = messages.len();
    Conversation { messages, first_pos, saved, first_changed: false }
}

/// Forgets the stored conversation.
pub fn clear(out: &Connection, provider: &str) -> rusqlite::Result<()> {
    outbound::delete_conversation(out, &provider.to_lowercase())
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
pub fn trim(conv: &mut Conversation, budget_tokens: usize) -> bool {
    let messages = &conv.messages;
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
    conv.drop_front(cut);
    if let Some(Block::Text { text }) = conv.messages.first_mut().and_then(|m| m.content.first_mut()) {
        text.insert_str(0, &format!("{TRIMMED_NOTE}\n\n"));
        conv.first_changed = true;
    }
    true
}

/// Makes a stored conversation safe to send: it must start with a user exchange, and a trailing
/// assistant tool call without results (the container stopped mid-tool) gets error results.
pub fn repair(conv: &mut Conversation) {
    let lead = conv.messages.iter().take_while(|m| !starts_exchange(m)).count();
    conv.drop_front(lead);
    if let Some(last) = conv.messages.last()
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
        conv.messages.push(Message { role: Role::User, content: results });
    }
}

/// Caps the stored size by trimming harder if needed.
pub fn fit_storage(conv: &mut Conversation) {
    // Serialising is the exact measure but costs a pass over everything: only do it when the
    // estimate says it may be needed.
    if conv.messages.iter().map(estimate_tokens).sum::<usize>() * 4 < STORED_BYTES_MAX / 2 {
        return;
    }
    let mut budget = usize::MAX;
    while serde_json::to_string(&conv.messages).map_or(0, |s| s.len()) > STORED_BYTES_MAX {
        let total: usize = conv.messages.iter().map(estimate_tokens).sum();
        budget = budget.min(total) * 3 / 4;
        if !trim(conv, budget) {
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
        let mut conv = Conversation::from(vec![user("hi"), Message::assistant_text("hello")]);
        conv.save(&out, "anthropic").unwrap();
        conv.mark_saved();
        drop(out);
        let out = db::open(&path, Kind::Outbound).unwrap();
        assert_eq!(load(&out, "Anthropic"), conv);
        assert!(load(&out, "openai").messages().is_empty());
        clear(&out, "anthropic").unwrap();
        assert!(load(&out, "anthropic").messages().is_empty());
    }

    fn out_db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let out = db::open(&dir.path().join("outbound.db"), Kind::Outbound).unwrap();
        (dir, out)
    }

    /// Saves and commits; returns the rows the save changed.
    fn save_counting(out: &Connection, conv: &mut Conversation) -> u64 {
        let before = out.total_changes();
        conv.save(out, "mock").unwrap();
        conv.mark_saved();
        out.total_changes() - before
    }

    #[test]
    fn a_save_writes_only_what_changed_and_reloads_the_same() {
        let (_dir, out) = out_db();
        let mut conv = Conversation::default();
        for i in 0..10 {
            conv.push(user(&format!("q{i} {}", "x".repeat(400))));
            conv.push(Message::assistant_text(format!("a{i}")));
        }
        assert_eq!(save_counting(&out, &mut conv), 20);
        assert_eq!(save_counting(&out, &mut conv), 0, "nothing new, nothing written");
        conv.push(user("q10"));
        conv.push(Message::assistant_text("a10"));
        assert_eq!(save_counting(&out, &mut conv), 2, "a turn writes its own messages");
        assert_eq!(load(&out, "mock"), conv);
        // Trimming drops exchanges off the front and marks the new first message: the dropped
        // rows are deleted and the first one rewritten, nothing else.
        assert!(trim(&mut conv, 500));
        let kept = conv.messages().len();
        assert!(kept < 22 && conv.messages()[0].text().starts_with(TRIMMED_NOTE));
        assert_eq!(save_counting(&out, &mut conv), (22 - kept) as u64 + 1);
        assert_eq!(load(&out, "mock"), conv);
        assert_eq!(outbound::conversation(&out, "mock").unwrap().len(), kept);
    }

    #[test]
    fn a_save_that_is_not_committed_is_written_again_by_the_next() {
        let (_dir, mut out) = out_db();
        let mut conv = Conversation::from(vec![user("q"), Message::assistant_text("a")]);
        let tx = out.transaction().unwrap();
        conv.save(&tx, "mock").unwrap();
        drop(tx); // rolled back: not marked saved
        conv.push(user("q2"));
        assert_eq!(save_counting(&out, &mut conv), 3);
        assert_eq!(load(&out, "mock"), conv);
    }

    #[test]
    fn an_unreadable_stored_conversation_starts_anew_and_is_replaced() {
        let (_dir, out) = out_db();
        outbound::put_conversation_message(&out, "mock", 0, &serde_json::to_string(&user("q")).unwrap())
            .unwrap();
        outbound::put_conversation_message(&out, "mock", 1, "{not json").unwrap();
        let mut conv = load(&out, "mock");
        assert!(conv.messages().is_empty());
        conv.push(user("fresh"));
        save_counting(&out, &mut conv);
        assert_eq!(load(&out, "mock").messages(), &[user("fresh")]);
        assert_eq!(outbound::conversation(&out, "mock").unwrap().len(), 1);
    }

    #[test]
    fn a_conversation_stored_whole_by_an_earlier_pincer_is_carried_over_per_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbound.db");
        let conv = vec![user("hi"), Message::assistant_text("hello")];
        {
            let old = Connection::open(&path).unwrap();
            db::migrate::migrate_to(&old, Kind::Outbound, 1).unwrap();
            let insert = "INSERT INTO session_state (key, value, updated_at) VALUES (?1, ?2, 1)";
            old.execute(insert, ["continuation:mock", &serde_json::to_string(&conv).unwrap()]).unwrap();
            old.execute(insert, ["continuation:openai", "{damaged"]).unwrap();
        }
        let out = db::open(&path, Kind::Outbound).unwrap();
        assert_eq!(load(&out, "mock").messages(), conv.as_slice());
        assert!(load(&out, "openai").messages().is_empty(), "an unreadable one starts anew");
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
        let conv = Conversation::from(conv);
        assert!(!trim(&mut conv.clone(), before), "fits: nothing trimmed");
        let mut trimmed = conv.clone();
        assert!(trim(&mut trimmed, 200));
        let first = trimmed.messages()[0].text();
        assert!(first.starts_with(TRIMMED_NOTE) && first.ends_with("second question"));
        assert_eq!(trimmed.messages().len(), 4, "the newest exchange with its tool round stays whole");
        // A budget below even the newest exchange keeps that exchange.
        let mut tiny = conv.clone();
        trim(&mut tiny, 1);
        assert_eq!(tiny.messages().len(), 4);
    }

    #[test]
    fn repair_closes_a_dangling_tool_call() {
        let mut conv = Conversation::from(vec![Message::assistant_text("orphan"), user("q")]);
        conv.push(tool_round("t9")[0].clone());
        repair(&mut conv);
        assert_eq!(conv.messages()[0], user("q"));
        let last = conv.messages().last().unwrap();
        assert!(
            matches!(&last.content[0], Block::ToolResult { tool_use_id, is_error: true, .. } if tool_use_id == "t9")
        );
    }
}
