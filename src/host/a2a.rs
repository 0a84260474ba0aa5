//! Agent-to-agent messages: a message an agent addresses to another agent (`<message to="B">`,
//! `send_message` to an agent destination) is delivered into a session of that agent, with the
//! way back: the other agent's answer returns to the session that asked.
//!
//! Which session of the target: the one the message answers (its `in_reply_to` row came from
//! there), else the target's conversation with this agent (one session per pair, without a room,
//! so it does not mix with the target's own rooms). Allowed when the sender has the target among
//! its destinations, or when it answers a message the target sent. Loops are bounded: each
//! forwarded message carries a hop count (a person's message starts at 0), and each ordered pair
//! of agents has a rate; a message over either is refused with a notice in the room the chain
//! started from. Files travel along (copied into the target's session).

use std::collections::{HashMap, VecDeque};
use std::path::Path;

use serde_json::{Value, json};

use super::sessions::{self, SessionDir};
use crate::db::central::{self, Agent, Session};
use crate::db::inbound::{self, NewInbound};
use crate::db::{self, Connection};

/// Messages between agents in a row (without a person in between) before the chain is stopped.
pub const HOPS_MAX: i64 = 8;
/// Messages one agent may send another within [`PAIR_WINDOW_MS`].
pub const PAIR_MESSAGES_MAX: usize = 30;
pub const PAIR_WINDOW_MS: i64 = 10 * 60 * 1000;
/// How far a notice looks back along a chain of sessions for a room.
const CHAIN_DEPTH_MAX: usize = 8;

/// Recent messages per ordered pair of agents (in memory: a restart forgets them, which only
/// ever allows more, never loses a message).
#[derive(Default)]
pub struct PairRates {
    sent: HashMap<(String, String), VecDeque<i64>>,
}

impl PairRates {
    /// Records a message from `from` to `to` at `now` if the pair is under its rate.
    fn admit(&mut self, from: &str, to: &str, now: i64) -> bool {
        if self.sent.len() > 10_000 {
            self.sent.retain(|_, q| q.back().is_some_and(|&t| now - t < PAIR_WINDOW_MS));
        }
        let q = self.sent.entry((from.to_string(), to.to_string())).or_default();
        while q.front().is_some_and(|&t| now - t >= PAIR_WINDOW_MS) {
            q.pop_front();
        }
        if q.len() >= PAIR_MESSAGES_MAX {
            return false;
        }
        q.push_back(now);
        true
    }
}

/// What routing decided: the target's session (to wake) and the row's id there.
pub struct Routed {
    pub session: Session,
    pub inbound_id: String,
}

/// Why a message was not forwarded (for the agent and the room).
pub type Refusal = String;

/// Forwards an outbound row of `source` (agent `from`) addressed to agent `target_id`.
/// `in_reply_to` is the source session's inbound row the message answers (if any).
#[allow(clippy::too_many_arguments)]
pub fn route(
    central: &Connection,
    data_dir: &Path,
    rates: &mut PairRates,
    source: &Session,
    from: &Agent,
    source_inb: &Connection,
    row_id: &str,
    in_reply_to: Option<&str>,
    target_id: &str,
    content: &Value,
    now: i64,
) -> anyhow::Result<Result<Routed, Refusal>> {
    let Some(target) = central::agent(central, target_id)? else {
        return Ok(Err(format!("there is no agent {target_id:?} (any more)")));
    };
    if target.id == from.id {
        return Ok(Err("an agent cannot send a message to itself".into()));
    }
    // What the message answers, as the host wrote it into the source's session.
    let answered = match in_reply_to {
        Some(id) => inbound::row_meta(source_inb, id)?,
        None => None,
    };
    let answers_target = answered.as_ref().is_some_and(|m| {
        m.channel_type.as_deref() == Some("agent") && m.platform_id.as_deref() == Some(&target.id)
    });
    if !answers_target && !central::may_send_to_agent(central, &from.id, &target.id)? {
        return Ok(Err(format!(
            "{} may not send messages to {} (no destination for it; the owner can add one)",
            from.name, target.name
        )));
    }
    let hops = 1 + answered
        .as_ref()
        .filter(|m| m.channel_type.as_deref() == Some("agent"))
        .and_then(|m| serde_json::from_str::<Value>(&m.content).ok())
        .and_then(|c| c.get("hops").and_then(Value::as_i64))
        .unwrap_or(0);
    if hops > HOPS_MAX {
        return Ok(Err(format!(
            "stopped after {HOPS_MAX} messages in a row between agents without a person in between (a possible loop)"
        )));
    }
    if !rates.admit(&from.id, &target.id, now) {
        return Ok(Err(format!(
            "{} sent {} more than {PAIR_MESSAGES_MAX} messages within {} minutes (a possible loop)",
            from.name,
            target.name,
            PAIR_WINDOW_MS / 60_000
        )));
    }
    // The session: the one that asked (the way back), else this pair's conversation.
    let back = answered
        .as_ref()
        .and_then(|m| m.source_session_id.as_deref())
        .map(|id| central::session(central, id))
        .transpose()?
        .flatten()
        .filter(|s| s.agent_id == target.id && s.status == "active");
    let session = match back {
        Some(s) => s,
        None => sessions::resolve_peer(central, data_dir, &target.id, &from.id, now)?,
    };
    let dir = SessionDir::new(data_dir, &target.id, &session.id);
    dir.ensure()?;
    let inbound_id = format!("a2a-{}-{row_id}", source.id);
    let files = match forward_files(
        &SessionDir::new(data_dir, &from.id, &source.id),
        &dir,
        row_id,
        &inbound_id,
        content,
    ) {
        Ok(f) => f,
        Err(why) => return Ok(Err(why)),
    };
    let mut forwarded = json!({
        "text": content.get("text").and_then(Value::as_str).unwrap_or_default(),
        "sender": from.name,
        "senderId": from.id,
        "senderName": from.name,
        "hops": hops,
    });
    if !files.is_empty() {
        forwarded["files"] = Value::Array(files);
    }
    let mut inb = dir.open_inbound()?;
    db::write_tx(&mut inb, |tx| {
        inbound::insert(
            tx,
            &NewInbound {
                id: &inbound_id,
                kind: "chat",
                timestamp: now,
                trigger: true,
                process_after: None,
                channel_type: Some("agent"),
                platform_id: Some(&from.id),
                thread_id: None,
                content: &forwarded.to_string(),
                on_wake: false,
                recurrence: None,
                series_id: None,
                source_session_id: Some(&source.id),
            },
        )?;
        Ok(())
    })?;
    Ok(Ok(Routed { session, inbound_id }))
}

/// Copies the files a message carries from the source's outbox into the target's session
/// (`inbox/<row>/`), as the target's container sees them.
fn forward_files(
    from: &SessionDir,
    to: &SessionDir,
    row_id: &str,
    inbound_id: &str,
    content: &Value,
) -> Result<Vec<Value>, Refusal> {
    let Some(names) = content.get("files").and_then(Value::as_array) else { return Ok(Vec::new()) };
    let src = from.path().join("outbox").join(row_id);
    let dst = to.path().join("inbox").join(inbound_id);
    let mut out = Vec::new();
    for n in names {
        let Some(name) = n.as_str().filter(|n| crate::ids::is_plain_file_name(n)) else {
            return Err(format!("the file name {n} is not allowed"));
        };
        let path = src.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => {}
            _ => return Err(format!("the file {name:?} is missing")),
        }
        std::fs::create_dir_all(&dst).map_err(|e| format!("copying {name:?}: {e}"))?;
        std::fs::copy(&path, dst.join(name)).map_err(|e| format!("copying {name:?}: {e}"))?;
        out.push(json!({ "name": name, "path": format!("/workspace/inbox/{inbound_id}/{name}") }));
    }
    Ok(out)
}

/// The session whose room should hear about `session`: itself when it has a room, else the one
/// its agent-to-agent messages came from (followed a few steps back).
pub fn room_session(central: &Connection, data_dir: &Path, session: &Session) -> Option<String> {
    let mut current = session.clone();
    for _ in 0..CHAIN_DEPTH_MAX {
        if current.room_id.is_some() {
            return Some(current.id);
        }
        let dir = SessionDir::new(data_dir, &current.agent_id, &current.id);
        let inb = db::open_readonly(&dir.inbound(), db::Kind::Inbound).ok()?;
        let from = inbound::latest_source_session(&inb).ok()??;
        current = central::session(central, &from).ok()??;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_pair_has_its_own_rate_window() {
        let mut r = PairRates::default();
        for i in 0..PAIR_MESSAGES_MAX {
            assert!(r.admit("a", "b", i as i64));
        }
        assert!(!r.admit("a", "b", 100), "over the rate");
        assert!(r.admit("b", "a", 100), "the other direction is a pair of its own");
        assert!(r.admit("a", "b", PAIR_WINDOW_MS + 1), "the window moves on");
    }
}
