//! Requests an agent makes that need a person: a new agent (when the person it was answering may
//! not create one), or a new MCP server. A request becomes a pending approval with a card in
//! the room; the owner or an admin of that agent decides (the server checks who clicks); the
//! outcome is shown on the card and told to the agent, which is woken to carry on.
//!
//! `create_agent` from an agent needs no approval when the person whose message the agent was
//! answering is the owner or an admin of that agent: who that was is read from the row the host
//! wrote into the session, never from what the container says.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use super::channels::{Body, Channels, DeliverError, Outgoing};
use super::containers::Containers;
use super::sessions::SessionDir;
use crate::db::approvals::{self, Approval};
use crate::db::central::{self, Agent, Session};
use crate::db::inbound;
use crate::db::{Connection, people};
use crate::ids::new_id;

/// Longest instructions for an agent created by an agent.
pub const INSTRUCTIONS_BYTES_MAX: usize = 64 * 1024;

/// What the host needs to act on requests.
pub struct Env<'a> {
    pub central: &'a Connection,
    pub data_dir: &'a Path,
    pub groups_dir: &'a Path,
    pub channels: &'a Channels,
    pub containers: &'a Arc<Containers>,
    /// Has the router look at its queue again (messages held for a person who was let in).
    pub reroute: Option<&'a dyn Fn()>,
}

/// Whether `action` is a request handled here.
pub fn is_request(action: &str) -> bool {
    matches!(action, "create_agent" | "add_mcp_server")
}

/// The person whose message the session's agent was answering when it wrote `row_in_reply_to`
/// (from the host-written inbound row).
pub fn requester(inb: &Connection, in_reply_to: Option<&str>) -> anyhow::Result<Option<String>> {
    let Some(id) = in_reply_to else { return Ok(None) };
    let Some(meta) = inbound::row_meta(inb, id)? else { return Ok(None) };
    if meta.channel_type.as_deref() == Some("agent") {
        return Ok(None);
    }
    let content: Value = serde_json::from_str(&meta.content).unwrap_or_default();
    Ok(content
        .get("senderId")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty() && *s != "system")
        .map(str::to_string))
}

/// Whether `user` may decide for `agent_id`: the owner, or an admin (global or of that agent).
pub fn may_decide(central: &Connection, user: &str, agent_id: &str) -> rusqlite::Result<bool> {
    Ok(central::is_owner(central, user)? || people::is_admin_of(central, user, Some(agent_id))?)
}

/// Handles a request from `agent`'s session. `Ok(platform id)` when it was done or put up for
/// approval; `Err` refuses it with a reason for the agent and the room.
#[allow(clippy::too_many_arguments)]
pub fn request(
    env: &Env<'_>,
    session: &Session,
    agent: &Agent,
    inb: &Connection,
    row_id: &str,
    in_reply_to: Option<&str>,
    action: &str,
    payload: &Value,
    now: i64,
) -> Result<String, DeliverError> {
    let retry = |e: anyhow::Error| DeliverError::Retry(format!("{e:#}"));
    let (summary, checked) = check(action, payload).map_err(DeliverError::Permanent)?;
    let requested_by = requester(inb, in_reply_to).map_err(retry)?;
    if action == "create_agent"
        && let Some(user) = &requested_by
        && may_decide(env.central, user, &agent.id).map_err(|e| retry(e.into()))?
    {
        let text = create_agent(env, agent, &checked, now).map_err(DeliverError::Permanent)?;
        note(env, session, &text, false, now).map_err(retry)?;
        return Ok(format!("done:{action}"));
    }
    let a = approvals::insert(
        env.central,
        &Approval {
            id: new_id("appr"),
            kind: action.to_string(),
            agent_id: agent.id.clone(),
            session_id: session.id.clone(),
            room_id: card_room(env, session),
            requested_by,
            payload: checked.to_string(),
            summary: summary.clone(),
            status: "pending".into(),
            message_id: None,
            source_id: format!("{}/{row_id}", session.id),
            created_at: now,
            decided_by: None,
            decided_at: None,
            outcome: None,
        },
    )
    .map_err(|e| retry(e.into()))?;
    if a.message_id.is_none() {
        post_card(env, agent, &a).map_err(retry)?;
    }
    log::info!("approval {} requested by agent {}: {summary}", a.id, agent.name);
    Ok(format!("approval:{}", a.id))
}

/// The room a session's approval card goes to (its own, or where its chain of agents started).
fn card_room(env: &Env<'_>, session: &Session) -> Option<String> {
    let id = super::a2a::room_session(env.central, env.data_dir, session)?;
    central::session(env.central, &id).ok().flatten().and_then(|s| s.room_id)
}

/// Validates a request; returns a one-line summary and the payload as the host will use it.
fn check(action: &str, p: &Value) -> Result<(String, Value), String> {
    let text = |k: &str| p.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    match action {
        "create_agent" => {
            let name = super::agents::validate_name("agent", text("name").ok_or("`name` is required")?)
                .map_err(|e| format!("{e:#}"))?;
            let instructions = p.get("instructions").and_then(Value::as_str).unwrap_or("");
            if instructions.len() > INSTRUCTIONS_BYTES_MAX {
                return Err(format!("the instructions are longer than {INSTRUCTIONS_BYTES_MAX} bytes"));
            }
            Ok((
                format!("create an agent named {name:?}"),
                json!({ "name": name, "instructions": instructions }),
            ))
        }
        "add_mcp_server" => {
            let name = text("name").ok_or("`name` is required")?;
            let server = json!({
                "command": text("command").ok_or("`command` is required")?,
                "args": p.get("args").cloned().unwrap_or(json!([])),
                "env": p.get("env").cloned().unwrap_or(json!({})),
            });
            let one = json!({ name: server.clone() });
            crate::agent::mcp::parse_config(&one.to_string())?;
            let args: Vec<&str> =
                server["args"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let line = std::iter::once(server["command"].as_str().unwrap_or(""))
                .chain(args)
                .collect::<Vec<_>>()
                .join(" ");
            let env_keys: Vec<&String> =
                server["env"].as_object().map(|o| o.keys().collect()).unwrap_or_default();
            let env_note = if env_keys.is_empty() {
                String::new()
            } else {
                format!(" with {}", env_keys.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", "))
            };
            Ok((
                format!("add the MCP server {name:?}: `{line}`{env_note}"),
                json!({ "name": name, "server": server }),
            ))
        }
        other => Err(format!("the request {other:?} is not known")),
    }
}

/// The approval card, as a message of the agent in the room.
fn post_card(env: &Env<'_>, agent: &Agent, a: &Approval) -> anyhow::Result<()> {
    let Some(room) = a.room_id.as_deref().map(|id| central::room(env.central, id)).transpose()?.flatten()
    else {
        log::warn!("approval {} has no room to ask in; it is listed in GET /api/approvals", a.id);
        return Ok(());
    };
    let Some(adapter) = env.channels.get(&room.channel_type) else { return Ok(()) };
    let card = card_json(a, None);
    let text = format!(
        "{} asks to {}. The owner or an admin of {} can approve or deny this.",
        agent.name, a.summary, agent.name
    );
    let id = adapter
        .deliver(&Outgoing {
            room: &room,
            agent,
            source_id: &format!("approval/{}", a.id),
            stream_id: None,
            body: Body::Message { text: &text, files: &[], card: Some(&card), notice: false },
        })
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    approvals::set_message(env.central, &a.id, &id)?;
    Ok(())
}

/// The card: `{"type": "approval", "approval_id", "title", "question", "options", "state"?}`.
fn card_json(a: &Approval, decided: Option<(&str, &str)>) -> Value {
    let mut card = json!({
        "type": "approval",
        "approval_id": a.id,
        "title": match a.kind.as_str() {
            "create_agent" => "New agent",
            "add_mcp_server" => "New MCP server",
            "sender" => "New person",
            _ => "Request",
        },
        "question": a.summary,
        "options": [{ "label": "Approve", "value": "approve" }, { "label": "Deny", "value": "deny" }],
    });
    if let Some((state, by)) = decided {
        card["state"] = json!(state);
        card["decided_by"] = json!(by);
    }
    card
}

/// Where a person without access stands in a room that asks about them.
#[derive(Debug, PartialEq)]
pub enum SenderState {
    /// Someone decided against letting them in.
    Denied,
    /// An approval is pending.
    Asked,
    /// Nobody has been asked (or they were let in once and lost access since).
    Unasked,
}

fn sender_key(room_id: &str, agent_id: &str, sender: &str) -> String {
    format!("sender/{room_id}/{agent_id}/{sender}")
}

pub fn sender_state(
    central: &Connection,
    room_id: &str,
    agent_id: &str,
    sender: &str,
) -> rusqlite::Result<SenderState> {
    Ok(match approvals::latest_by_source_prefix(central, &sender_key(room_id, agent_id, sender))? {
        Some(a) if a.status == "pending" => SenderState::Asked,
        Some(a) if a.status == "denied" => SenderState::Denied,
        _ => SenderState::Unasked,
    })
}

/// A person without access to `agent_id` wrote in `room`, which asks before letting people in:
/// a card for the owner or the agent's admins to decide on.
pub fn ask_about_sender(
    central: &Connection,
    channels: &Channels,
    room: &central::Room,
    agent_id: &str,
    sender: &str,
    sender_name: &str,
    now: i64,
) -> anyhow::Result<()> {
    let key = sender_key(&room.id, agent_id, sender);
    let Some(agent) = central::agent(central, agent_id)? else { return Ok(()) };
    let a = approvals::insert(
        central,
        &Approval {
            id: new_id("appr"),
            kind: "sender".into(),
            agent_id: agent.id.clone(),
            session_id: String::new(),
            room_id: Some(room.id.clone()),
            requested_by: Some(sender.to_string()),
            payload: json!({ "room_id": room.id, "user_id": sender, "user_name": sender_name }).to_string(),
            summary: format!("let {sender_name} talk to {} in {}", agent.name, room.name),
            status: "pending".into(),
            message_id: None,
            source_id: format!("{key}/{now}"),
            created_at: now,
            decided_by: None,
            decided_at: None,
            outcome: None,
        },
    )?;
    if let Some(adapter) = channels.get(&room.channel_type) {
        let card = card_json(&a, None);
        let text = format!(
            "{sender_name} wants to talk to {}. The owner or an admin of {} can let them in.",
            agent.name, agent.name
        );
        match adapter.deliver(&Outgoing {
            room,
            agent: &agent,
            source_id: &format!("approval/{}", a.id),
            stream_id: None,
            body: Body::Message { text: &text, files: &[], card: Some(&card), notice: false },
        }) {
            Ok(id) => approvals::set_message(central, &a.id, &id)?,
            Err(e) => log::error!("posting the card of approval {}: {e:?}", a.id),
        }
    }
    log::info!("approval {}: {sender} asks to talk to agent {} in room {}", a.id, agent.name, room.id);
    Ok(())
}

/// Why a decision was not taken.
#[derive(Debug, PartialEq)]
pub enum DecideError {
    NotFound,
    /// The caller may not decide it.
    Forbidden(String),
    /// Decided already.
    Decided(String),
}

/// A person decides a pending request. Returns the outcome as told to the room and the agent.
pub fn decide(
    env: &Env<'_>,
    id: &str,
    user: &str,
    user_name: &str,
    approve: bool,
    now: i64,
) -> anyhow::Result<Result<String, DecideError>> {
    let Some(a) = approvals::get(env.central, id)? else { return Ok(Err(DecideError::NotFound)) };
    if !may_decide(env.central, user, &a.agent_id)? {
        return Ok(Err(DecideError::Forbidden(
            "only the owner or an admin of the agent can decide this".into(),
        )));
    }
    if a.status != "pending" {
        return Ok(Err(DecideError::Decided(format!("this request was {} already", a.status))));
    }
    let Some(agent) = central::agent(env.central, &a.agent_id)? else {
        return Ok(Err(DecideError::NotFound));
    };
    let session = central::session(env.central, &a.session_id)?;
    let payload: Value = serde_json::from_str(&a.payload).unwrap_or_default();
    let (status, outcome) = if !approve {
        ("denied", format!("{user_name} denied the request to {}.", a.summary))
    } else {
        let done = match a.kind.as_str() {
            "create_agent" => create_agent(env, &agent, &payload, now),
            "add_mcp_server" => add_mcp_server(env, &agent, &payload),
            "sender" => let_in(env, &agent, &payload, user, now),
            other => Err(format!("{other} cannot be carried out by this host")),
        };
        match done {
            Ok(text) => ("approved", format!("{user_name} approved: {text}")),
            Err(why) => {
                ("failed", format!("{user_name} approved the request to {}, but it failed: {why}", a.summary))
            }
        }
    };
    if !approvals::decide(env.central, &a.id, status, user, &outcome, now)? {
        return Ok(Err(DecideError::Decided("this request was decided already".into())));
    }
    log::info!("approval {} {status} by {user}", a.id);
    // The card shows the decision; the agent hears of it and carries on. (The card's id may not
    // be recorded yet when a decision comes right after it was posted: it is found by source.)
    let card_id = match &a.message_id {
        Some(id) => Some(id.clone()),
        None => central::message_by_source(env.central, &format!("approval/{}", a.id))?.map(|m| m.id),
    };
    if let (Some(mid), Some(room)) =
        (&card_id, a.room_id.as_deref().map(|r| central::room(env.central, r)).transpose()?.flatten())
        && let Some(adapter) = env.channels.get(&room.channel_type)
    {
        adapter.update_card(&room, mid, &card_json(&a, Some((status, user_name))));
    }
    if let Some(s) = &session {
        note(env, s, &outcome, status == "approved" && a.kind == "add_mcp_server", now)?;
    }
    Ok(Ok(outcome))
}

/// Creates the requested agent and links it with its creator both ways.
fn create_agent(env: &Env<'_>, creator: &Agent, p: &Value, now: i64) -> Result<String, String> {
    let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
    let instructions = p.get("instructions").and_then(Value::as_str).filter(|s| !s.is_empty());
    // A connection of its own: creating an agent is one transaction.
    let mut conn = crate::db::open(&env.data_dir.join("pincer.db"), crate::db::Kind::Central)
        .map_err(|e| format!("{e:#}"))?;
    let created = super::agents::create(&mut conn, env.groups_dir, name, instructions, false, now)
        .map_err(|e| format!("{e:#}"))?;
    let to_child = super::agents::link(env.central, env.data_dir, &creator.id, &created.agent.id, None, now)
        .map_err(|e| format!("{e:#}"))?;
    let _ =
        super::agents::link(env.central, env.data_dir, &created.agent.id, &creator.id, Some("parent"), now)
            .or_else(|_| {
                super::agents::link(env.central, env.data_dir, &created.agent.id, &creator.id, None, now)
            });
    log::info!("agent {} created agent {}", creator.name, created.agent.name);
    Ok(format!(
        "agent \"{}\" was created; message it with <message to=\"{to_child}\">…</message> (it answers you)",
        created.agent.name
    ))
}

/// Makes a person a member of the agent and gives it the messages held for them.
fn let_in(env: &Env<'_>, agent: &Agent, p: &Value, by: &str, now: i64) -> Result<String, String> {
    let field = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or_default().to_string();
    let (room, user, name) = (field("room_id"), field("user_id"), field("user_name"));
    people::add_member(env.central, &user, &agent.id, by, now).map_err(|e| e.to_string())?;
    let held = central::replay_held(env.central, &room, &agent.id, &user, now).map_err(|e| e.to_string())?;
    if held > 0
        && let Some(reroute) = env.reroute
    {
        reroute();
    }
    Ok(format!("{name} may now talk to {}; {held} message(s) of theirs were passed on", agent.name))
}

/// Adds an MCP server to the agent and restarts its containers so the next turn has its tools.
fn add_mcp_server(env: &Env<'_>, agent: &Agent, p: &Value) -> Result<String, String> {
    let name = p.get("name").and_then(Value::as_str).unwrap_or_default();
    let mut servers: serde_json::Map<String, Value> =
        serde_json::from_str(&agent.mcp_servers).unwrap_or_default();
    servers.insert(name.to_string(), p.get("server").cloned().unwrap_or_default());
    let json = Value::Object(servers).to_string();
    crate::agent::mcp::parse_config(&json)?;
    central::set_mcp_servers(env.central, &agent.id, &json).map_err(|e| e.to_string())?;
    for s in central::sessions_of_agent(env.central, &agent.id).map_err(|e| e.to_string())? {
        env.containers.stop(&s.id, "its MCP servers changed");
    }
    Ok(format!(
        "the MCP server \"{name}\" was added to {}; its tools are available from the next turn",
        agent.name
    ))
}

/// Tells the session's agent something and wakes it to carry on. `restarted`: the agent's
/// containers were stopped for the change, so only a fresh one (with it) may read the note.
fn note(env: &Env<'_>, session: &Session, text: &str, restarted: bool, now: i64) -> anyhow::Result<()> {
    let inb = SessionDir::new(env.data_dir, &session.agent_id, &session.id).open_inbound()?;
    super::sessions::note(&inb, &new_id("note"), text, true, restarted, now)?;
    if let Err(e) = env.containers.wake(env.central, session) {
        log::warn!("waking session {} after a decision: {e:#}", session.id);
    }
    Ok(())
}
