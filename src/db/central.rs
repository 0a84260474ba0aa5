//! Typed queries on the central DB (`data/pincer.db`): agents, rooms, wirings, sessions, users and
//! roles, destinations, room messages and settings.
//!
//! Functions take a `&Connection` (a `Transaction` derefs to one) so callers group them into
//! transactions. Nothing here renders, routes or decides policy.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

/// Default engage settings of a new wiring: every message, all senders, one shared session.
pub const DEFAULT_ENGAGE_MODE: &str = "pattern";

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Agent {
    pub id: String,
    pub name: String,
    pub folder: String,
    pub provider: Option<String>,
    pub model: Option<String>,
    pub max_messages_per_prompt: Option<i64>,
    /// Approved MCP servers (JSON object).
    #[serde(skip)]
    pub mcp_servers: String,
    pub created_at: i64,
}

impl Agent {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Agent> {
        Ok(Agent {
            id: r.get("id")?,
            name: r.get("name")?,
            folder: r.get("folder")?,
            provider: r.get("provider")?,
            model: r.get("model")?,
            max_messages_per_prompt: r.get("max_messages_per_prompt")?,
            mcp_servers: r.get("mcp_servers")?,
            created_at: r.get("created_at")?,
        })
    }
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Room {
    pub id: String,
    pub channel_type: String,
    pub platform_id: String,
    pub name: String,
    pub is_group: bool,
    pub created_at: i64,
}

impl Room {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Room> {
        Ok(Room {
            id: r.get("id")?,
            channel_type: r.get("channel_type")?,
            platform_id: r.get("platform_id")?,
            name: r.get("name")?,
            is_group: r.get("is_group")?,
            created_at: r.get("created_at")?,
        })
    }
}

#[cfg(test)]
impl Room {
    /// A webchat room whose id and address are `id` (tests).
    pub(crate) fn webchat_for_tests(id: &str) -> Room {
        Room {
            id: id.into(),
            channel_type: "webchat".into(),
            platform_id: id.into(),
            name: "Room".into(),
            is_group: true,
            created_at: 1,
        }
    }
}

/// The texts of the messages the search index finds for `query`, in the order they were stored
/// (tests).
#[cfg(test)]
pub(crate) fn indexed_texts(conn: &Connection, query: &str) -> Vec<String> {
    let mut stmt = conn
        .prepare(
            "SELECT m.text FROM message_search s JOIN room_messages m ON m.rowid = s.rowid
             WHERE message_search MATCH ?1 ORDER BY m.rowid",
        )
        .unwrap();
    stmt.query_map([query], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap()
}

#[derive(Debug, Clone, PartialEq)]
pub struct Wiring {
    pub id: String,
    pub room_id: String,
    pub agent_id: String,
    pub engage_mode: String,
    pub engage_pattern: Option<String>,
    pub sender_scope: String,
    pub ignored_message_policy: String,
    pub session_mode: String,
    pub priority: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Session {
    pub id: String,
    pub agent_id: String,
    pub room_id: Option<String>,
    pub thread_id: Option<String>,
    pub status: String,
    pub container_status: String,
    pub last_active: Option<i64>,
    pub created_at: i64,
}

impl Session {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Session> {
        Ok(Session {
            id: r.get("id")?,
            agent_id: r.get("agent_id")?,
            room_id: r.get("room_id")?,
            thread_id: r.get("thread_id")?,
            status: r.get("status")?,
            container_status: r.get("container_status")?,
            last_active: r.get("last_active")?,
            created_at: r.get("created_at")?,
        })
    }
}

/// A stored room message, serialised exactly as the `Message` of CONTRACT.md §3.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RoomMessage {
    pub id: String,
    pub seq: i64,
    pub room_id: String,
    pub sender: String,
    pub sender_id: Option<String>,
    pub sender_type: String,
    pub text: String,
    pub html: String,
    pub files: serde_json::Value,
    pub created_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// A question card (`{"type": "ask_question", "question_id", "title", "question", "options"}`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub card: Option<serde_json::Value>,
    /// `[{"emoji", "by", "by_type"}]`.
    pub reactions: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub edited_at: Option<i64>,
    /// Taken back by its sender: text, HTML and files are gone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<i64>,
    /// The tools an agent used for this reply: `[{"name", "summary"}]`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<serde_json::Value>,
}

const MESSAGE_COLUMNS: &str = "id, seq, room_id, sender, sender_id, sender_type, text, html, files, created_at, client_id, card, reactions, edited_at, deleted_at, tools";

impl RoomMessage {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<RoomMessage> {
        let files: String = r.get("files")?;
        let card: Option<String> = r.get("card")?;
        let reactions: String = r.get("reactions")?;
        Ok(RoomMessage {
            id: r.get("id")?,
            seq: r.get("seq")?,
            room_id: r.get("room_id")?,
            sender: r.get("sender")?,
            sender_id: r.get("sender_id")?,
            sender_type: r.get("sender_type")?,
            text: r.get("text")?,
            html: r.get("html")?,
            files: serde_json::from_str(&files).unwrap_or_else(|_| serde_json::json!([])),
            created_at: r.get("created_at")?,
            client_id: r.get("client_id")?,
            card: card.and_then(|c| serde_json::from_str(&c).ok()),
            reactions: serde_json::from_str(&reactions).unwrap_or_else(|_| serde_json::json!([])),
            edited_at: r.get("edited_at")?,
            deleted_at: r.get("deleted_at")?,
            tools: r.get::<_, Option<String>>("tools")?.and_then(|t| serde_json::from_str(&t).ok()),
        })
    }
}

/// What a new room message carries; `seq` and `id` are assigned on insert.
#[derive(Debug, Clone)]
pub struct NewMessage<'a> {
    pub room_id: &'a str,
    pub sender: &'a str,
    pub sender_id: Option<&'a str>,
    pub sender_type: &'a str,
    pub text: &'a str,
    pub html: &'a str,
    pub files: &'a serde_json::Value,
    pub client_id: Option<&'a str>,
    pub source_id: Option<&'a str>,
    pub card: Option<&'a serde_json::Value>,
    /// Only user messages are routed to agents; others are stored as already routed.
    pub needs_routing: bool,
    pub now: i64,
}

// ---------------------------------------------------------------------------------------------
// Settings

// ---------------------------------------------------------------------------------------------
// Agents

/// Deletes an agent: its row (wirings, sessions, memberships, its own destinations, approvals
/// and drop records go with it; rooms lose it as prime or sticky) and other agents'
/// destinations that name it. Returns the agents that had such a destination.
pub fn delete_agent(conn: &Connection, id: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT agent_id FROM agent_destinations WHERE target_type = 'agent' AND target_id = ?1 AND agent_id != ?1",
    )?;
    let linked: Vec<String> = stmt.query_map([id], |r| r.get(0))?.collect::<Result<_, _>>()?;
    conn.prepare_cached("DELETE FROM agent_destinations WHERE target_type = 'agent' AND target_id = ?1")?
        .execute([id])?;
    conn.prepare_cached("DELETE FROM agents WHERE id = ?1")?.execute([id])?;
    Ok(linked)
}

pub fn rename_agent(conn: &Connection, id: &str, name: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE agents SET name = ?2 WHERE id = ?1")?.execute(params![id, name])?;
    Ok(())
}

pub fn insert_agent(conn: &Connection, agent: &Agent) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO agents (id, name, folder, provider, model, max_messages_per_prompt, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        agent.id,
        agent.name,
        agent.folder,
        agent.provider,
        agent.model,
        agent.max_messages_per_prompt,
        agent.created_at
    ])?;
    Ok(())
}

pub fn agents(conn: &Connection) -> rusqlite::Result<Vec<Agent>> {
    let mut stmt = conn.prepare_cached("SELECT * FROM agents ORDER BY created_at, id")?;
    stmt.query_map([], Agent::from_row)?.collect()
}

pub fn agent(conn: &Connection, id: &str) -> rusqlite::Result<Option<Agent>> {
    conn.prepare_cached("SELECT * FROM agents WHERE id = ?1")?.query_row([id], Agent::from_row).optional()
}

pub fn agent_count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COUNT(*) FROM agents")?.query_row([], |r| r.get(0))
}

pub fn folder_taken(conn: &Connection, folder: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM agents WHERE folder = ?1)")?
        .query_row([folder], |r| r.get(0))
}

// ---------------------------------------------------------------------------------------------
// Rooms and wirings

/// Stores a room; who its agents answer starts `strict` (people with access to them).
pub fn insert_room(conn: &Connection, room: &Room) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO rooms (id, channel_type, platform_id, name, is_group, created_at, unknown_sender_policy)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'strict')",
    )?
    .execute(params![
        room.id,
        room.channel_type,
        room.platform_id,
        room.name,
        room.is_group,
        room.created_at
    ])?;
    Ok(())
}

/// How a room decides which of its agents answer.
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize)]
pub struct Engagement {
    /// Answers messages that mention nobody.
    pub prime_agent_id: Option<String>,
    /// Without a prime: `broadcast` (every agent answers) or `mention-only`.
    pub engage_default: String,
    /// The agent a `mention-sticky` conversation is with.
    pub sticky_agent_id: Option<String>,
}

pub fn engagement(conn: &Connection, room_id: &str) -> rusqlite::Result<Engagement> {
    conn.prepare_cached("SELECT prime_agent_id, engage_default, sticky_agent_id FROM rooms WHERE id = ?1")?
        .query_row([room_id], |r| {
            Ok(Engagement {
                prime_agent_id: r.get(0)?,
                engage_default: r.get(1)?,
                sticky_agent_id: r.get(2)?,
            })
        })
        .optional()
        .map(Option::unwrap_or_default)
}

pub fn set_prime(conn: &Connection, room_id: &str, agent_id: Option<&str>) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE rooms SET prime_agent_id = ?2 WHERE id = ?1")?
        .execute(params![room_id, agent_id])?;
    Ok(())
}

pub fn set_engage_default(conn: &Connection, room_id: &str, default: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE rooms SET engage_default = ?2 WHERE id = ?1")?
        .execute(params![room_id, default])?;
    Ok(())
}

pub fn set_sticky(conn: &Connection, room_id: &str, agent_id: Option<&str>) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE rooms SET sticky_agent_id = ?2 WHERE id = ?1")?
        .execute(params![room_id, agent_id])?;
    Ok(())
}

pub fn rename_room(conn: &Connection, room_id: &str, name: &str) -> rusqlite::Result<bool> {
    Ok(conn.prepare_cached("UPDATE rooms SET name = ?2 WHERE id = ?1")?.execute(params![room_id, name])? == 1)
}

pub fn delete_room(conn: &Connection, room_id: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("DELETE FROM agent_destinations WHERE target_type = 'channel' AND target_id = ?1")?
        .execute([room_id])?;
    Ok(conn.prepare_cached("DELETE FROM rooms WHERE id = ?1")?.execute([room_id])? == 1)
}

pub fn set_archived(
    conn: &Connection,
    room_id: &str,
    user_id: &str,
    archived: bool,
    now: i64,
) -> rusqlite::Result<()> {
    if archived {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO room_archives (room_id, user_id, archived_at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![room_id, user_id, now])?;
    } else {
        conn.prepare_cached("DELETE FROM room_archives WHERE room_id = ?1 AND user_id = ?2")?
            .execute([room_id, user_id])?;
    }
    Ok(())
}

/// Keeps a room at the top of one person's list, or not.
pub fn set_pinned(
    conn: &Connection,
    room_id: &str,
    user_id: &str,
    pinned: bool,
    now: i64,
) -> rusqlite::Result<()> {
    if pinned {
        conn.prepare_cached(
            "INSERT OR IGNORE INTO room_pins (room_id, user_id, pinned_at) VALUES (?1, ?2, ?3)",
        )?
        .execute(params![room_id, user_id, now])?;
    } else {
        conn.prepare_cached("DELETE FROM room_pins WHERE room_id = ?1 AND user_id = ?2")?
            .execute([room_id, user_id])?;
    }
    Ok(())
}

pub fn is_pinned(conn: &Connection, room_id: &str, user_id: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM room_pins WHERE room_id = ?1 AND user_id = ?2)")?
        .query_row([room_id, user_id], |r| r.get(0))
}

pub fn is_archived(conn: &Connection, room_id: &str, user_id: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM room_archives WHERE room_id = ?1 AND user_id = ?2)")?
        .query_row([room_id, user_id], |r| r.get(0))
}

/// A wiring's own settings (engage mode and pattern, sender scope, what happens to messages it
/// does not engage on, how its sessions are shared).
pub fn update_wiring(
    conn: &Connection,
    room_id: &str,
    agent_id: &str,
    engage_mode: &str,
    engage_pattern: Option<&str>,
    ignored_message_policy: &str,
    session_mode: &str,
) -> rusqlite::Result<bool> {
    Ok(conn.prepare_cached("UPDATE wirings SET engage_mode = ?3, engage_pattern = ?4, ignored_message_policy = ?5, session_mode = ?6
         WHERE room_id = ?1 AND agent_id = ?2")?.execute(params![room_id, agent_id, engage_mode, engage_pattern, ignored_message_policy, session_mode],
    )? == 1)
}

pub fn delete_wiring(conn: &Connection, room_id: &str, agent_id: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM wirings WHERE room_id = ?1 AND agent_id = ?2")?
        .execute([room_id, agent_id])?
        == 1)
}

/// Who a room's agents answer: `strict` (people with access to the agent), `request_approval`
/// (others are asked about), `public` (everyone signed in).
pub fn room_policy(conn: &Connection, room_id: &str) -> rusqlite::Result<String> {
    conn.prepare_cached("SELECT unknown_sender_policy FROM rooms WHERE id = ?1")?
        .query_row([room_id], |r| r.get(0))
        .optional()
        .map(|p| p.unwrap_or_else(|| "strict".into()))
}

pub fn set_room_policy(conn: &Connection, room_id: &str, policy: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached("UPDATE rooms SET unknown_sender_policy = ?2 WHERE id = ?1")?
        .execute([room_id, policy])?
        == 1)
}

/// A message an agent did not get, and why.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Dropped {
    pub message_id: String,
    pub agent_id: String,
    pub sender_id: Option<String>,
    pub reason: String,
    pub created_at: i64,
    pub replayed_at: Option<i64>,
}

/// Records a message not given to an agent (once per message and agent).
pub fn insert_dropped(
    conn: &Connection,
    room_id: &str,
    message_id: &str,
    agent_id: &str,
    sender_id: Option<&str>,
    reason: &str,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR IGNORE INTO dropped_messages (room_id, message_id, agent_id, sender_id, reason, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)")?.execute(params![room_id, message_id, agent_id, sender_id, reason, now],
    )?;
    Ok(())
}

/// The newest drops of a room.
pub fn dropped_in_room(conn: &Connection, room_id: &str, limit: i64) -> rusqlite::Result<Vec<Dropped>> {
    let mut stmt = conn.prepare_cached(
        "SELECT message_id, agent_id, sender_id, reason, created_at, replayed_at FROM dropped_messages
         WHERE room_id = ?1 ORDER BY created_at DESC, id DESC LIMIT ?2",
    )?;
    stmt.query_map(params![room_id, limit], |r| {
        Ok(Dropped {
            message_id: r.get(0)?,
            agent_id: r.get(1)?,
            sender_id: r.get(2)?,
            reason: r.get(3)?,
            created_at: r.get(4)?,
            replayed_at: r.get(5)?,
        })
    })?
    .collect()
}

/// Messages held for a person awaiting approval in a room, for one agent; marks them replayed
/// and makes them routable again (routing is idempotent per session, so others are not doubled).
pub fn replay_held(
    conn: &Connection,
    room_id: &str,
    agent_id: &str,
    sender_id: &str,
    now: i64,
) -> rusqlite::Result<usize> {
    let ids: Vec<String> = {
        let mut stmt = conn.prepare(
            "SELECT message_id FROM dropped_messages
             WHERE room_id = ?1 AND agent_id = ?2 AND sender_id = ?3 AND reason = 'awaiting_approval' AND replayed_at IS NULL",
        )?;
        stmt.query_map(params![room_id, agent_id, sender_id], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    for id in &ids {
        conn.prepare_cached("UPDATE room_messages SET routed_at = NULL WHERE id = ?1")?.execute([id])?;
        conn.prepare_cached(
            "UPDATE dropped_messages SET replayed_at = ?3 WHERE message_id = ?1 AND agent_id = ?2",
        )?
        .execute(params![id, agent_id, now])?;
    }
    Ok(ids.len())
}

pub fn rooms(conn: &Connection, channel_type: &str) -> rusqlite::Result<Vec<Room>> {
    let mut stmt =
        conn.prepare_cached("SELECT * FROM rooms WHERE channel_type = ?1 ORDER BY created_at, id")?;
    stmt.query_map([channel_type], Room::from_row)?.collect()
}

pub fn room(conn: &Connection, id: &str) -> rusqlite::Result<Option<Room>> {
    let mut stmt = conn.prepare_cached("SELECT * FROM rooms WHERE id = ?1")?;
    stmt.query_row([id], Room::from_row).optional()
}

/// What routing a message needs of its room, in one read: the room, its sender policy and its
/// engagement rules.
pub fn room_for_routing(conn: &Connection, id: &str) -> rusqlite::Result<Option<(Room, String, Engagement)>> {
    let mut stmt = conn.prepare_cached("SELECT * FROM rooms WHERE id = ?1")?;
    stmt.query_row([id], |r| {
        let engagement = Engagement {
            prime_agent_id: r.get("prime_agent_id")?,
            engage_default: r.get("engage_default")?,
            sticky_agent_id: r.get("sticky_agent_id")?,
        };
        Ok((Room::from_row(r)?, r.get("unknown_sender_policy")?, engagement))
    })
    .optional()
}

/// The room of a channel address.
pub fn room_by_address(
    conn: &Connection,
    channel_type: &str,
    platform_id: &str,
) -> rusqlite::Result<Option<Room>> {
    let mut stmt = conn.prepare_cached("SELECT * FROM rooms WHERE channel_type = ?1 AND platform_id = ?2")?;
    stmt.query_row([channel_type, platform_id], Room::from_row).optional()
}

pub fn room_id_taken(conn: &Connection, id: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM rooms WHERE id = ?1)")?.query_row([id], |r| r.get(0))
}

/// Wires an agent to a room with the default engage settings (every message, shared session).
pub fn insert_wiring(
    conn: &Connection,
    id: &str,
    room_id: &str,
    agent_id: &str,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO wirings (id, room_id, agent_id, engage_mode, engage_pattern, sender_scope,
                              ignored_message_policy, session_mode, priority, created_at)
         VALUES (?1, ?2, ?3, ?4, '.', 'all', 'drop', 'shared', 0, ?5)",
    )?
    .execute(params![id, room_id, agent_id, DEFAULT_ENGAGE_MODE, now])?;
    Ok(())
}

/// The rooms an agent is wired into.
pub fn rooms_of_agent(conn: &Connection, agent_id: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT room_id FROM wirings WHERE agent_id = ?1 ORDER BY room_id")?;
    stmt.query_map([agent_id], |r| r.get(0))?.collect()
}

/// A room's wirings, highest priority first (priority only orders the fan-out).
pub fn wirings_of_room(conn: &Connection, room_id: &str) -> rusqlite::Result<Vec<Wiring>> {
    Ok(wirings_with_folders(conn, room_id)?.into_iter().map(|(w, _)| w).collect())
}

/// [`wirings_of_room`], each with its agent's folder (routing matches mentions against it).
pub fn wirings_with_folders(conn: &Connection, room_id: &str) -> rusqlite::Result<Vec<(Wiring, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT w.*, a.folder AS agent_folder FROM wirings w JOIN agents a ON a.id = w.agent_id
         WHERE w.room_id = ?1 ORDER BY w.priority DESC, w.created_at, w.id",
    )?;
    stmt.query_map([room_id], |r| {
        let wiring = Wiring {
            id: r.get("id")?,
            room_id: r.get("room_id")?,
            agent_id: r.get("agent_id")?,
            engage_mode: r.get("engage_mode")?,
            engage_pattern: r.get("engage_pattern")?,
            sender_scope: r.get("sender_scope")?,
            ignored_message_policy: r.get("ignored_message_policy")?,
            session_mode: r.get("session_mode")?,
            priority: r.get("priority")?,
        };
        Ok((wiring, r.get("agent_folder")?))
    })?
    .collect()
}

/// The agents wired to a room, by name.
pub fn agents_of_room(conn: &Connection, room_id: &str) -> rusqlite::Result<Vec<Agent>> {
    let mut stmt = conn.prepare_cached(
        "SELECT a.* FROM agents a JOIN wirings w ON w.agent_id = a.id WHERE w.room_id = ?1 ORDER BY a.name, a.id",
    )?;
    stmt.query_map([room_id], Agent::from_row)?.collect()
}

/// The agent's own provider and model (`None`: the host's default).
pub fn set_agent_model(
    conn: &Connection,
    agent_id: &str,
    provider: Option<&str>,
    model: Option<&str>,
) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE agents SET provider = ?2, model = ?3 WHERE id = ?1")?
        .execute(params![agent_id, provider, model])?;
    Ok(())
}

/// Replaces an agent's approved MCP servers (a JSON object: name → {command, args, env}).
pub fn set_mcp_servers(conn: &Connection, agent_id: &str, json: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE agents SET mcp_servers = ?2 WHERE id = ?1")?.execute([agent_id, json])?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Destinations

pub fn insert_destination(
    conn: &Connection,
    agent_id: &str,
    local_name: &str,
    target_type: &str,
    target_id: &str,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO agent_destinations (agent_id, local_name, target_type, target_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![agent_id, local_name, target_type, target_id, now])?;
    Ok(())
}

pub fn destination_name_taken(conn: &Connection, agent_id: &str, local_name: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM agent_destinations WHERE agent_id = ?1 AND local_name = ?2)",
    )?
    .query_row([agent_id, local_name], |r| r.get(0))
}

/// A destination resolved for projection into a session: channel targets carry their room's
/// address, agent targets the agent id. Targets that no longer exist are left out.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedDestination {
    pub name: String,
    pub display_name: String,
    pub target_type: String,
    pub channel_type: Option<String>,
    pub platform_id: Option<String>,
    pub agent_id: Option<String>,
}

pub fn resolved_destinations(
    conn: &Connection,
    agent_id: &str,
) -> rusqlite::Result<Vec<ResolvedDestination>> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.local_name, d.target_type, r.name AS room_name, r.channel_type, r.platform_id,
                a.id AS target_agent, a.name AS agent_name
         FROM agent_destinations d
         LEFT JOIN rooms r ON d.target_type = 'channel' AND r.id = d.target_id
         LEFT JOIN agents a ON d.target_type = 'agent' AND a.id = d.target_id
         WHERE d.agent_id = ?1 AND (r.id IS NOT NULL OR a.id IS NOT NULL)
         ORDER BY d.local_name",
    )?;
    stmt.query_map([agent_id], |r| {
        let name: String = r.get("local_name")?;
        let target_type: String = r.get("target_type")?;
        let display: Option<String> =
            if target_type == "channel" { r.get("room_name")? } else { r.get("agent_name")? };
        Ok(ResolvedDestination {
            display_name: display.unwrap_or_else(|| name.clone()),
            name,
            target_type,
            channel_type: r.get("channel_type")?,
            platform_id: r.get("platform_id")?,
            agent_id: r.get("target_agent")?,
        })
    })?
    .collect()
}

/// True if `agent_id` may send to the room: it has a channel destination pointing at it.
pub fn may_send_to_room(conn: &Connection, agent_id: &str, room_id: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM agent_destinations
                        WHERE agent_id = ?1 AND target_type = 'channel' AND target_id = ?2)",
    )?
    .query_row([agent_id, room_id], |r| r.get(0))
}

/// True if `agent_id` may send to agent `target_id`: it has an agent destination pointing at it.
pub fn may_send_to_agent(conn: &Connection, agent_id: &str, target_id: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM agent_destinations
                        WHERE agent_id = ?1 AND target_type = 'agent' AND target_id = ?2)",
    )?
    .query_row([agent_id, target_id], |r| r.get(0))
}

/// An agent's destinations as stored (name, type, target id).
pub fn destinations_of(conn: &Connection, agent_id: &str) -> rusqlite::Result<Vec<(String, String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT local_name, target_type, target_id FROM agent_destinations WHERE agent_id = ?1 ORDER BY local_name",
    )?;
    stmt.query_map([agent_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect()
}

pub fn delete_destination(conn: &Connection, agent_id: &str, local_name: &str) -> rusqlite::Result<bool> {
    Ok(conn
        .prepare_cached("DELETE FROM agent_destinations WHERE agent_id = ?1 AND local_name = ?2")?
        .execute([agent_id, local_name])?
        == 1)
}

/// The active session an agent keeps with another agent (no room; thread `agent:<peer>`).
pub fn peer_session(conn: &Connection, agent_id: &str, peer_id: &str) -> rusqlite::Result<Option<Session>> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM sessions WHERE agent_id = ?1 AND room_id IS NULL AND thread_id = ?2 AND status = 'active'
         ORDER BY created_at DESC LIMIT 1",
    )?;
    stmt.query_row(params![agent_id, format!("agent:{peer_id}")], Session::from_row).optional()
}

// ---------------------------------------------------------------------------------------------
// Sessions

pub fn session(conn: &Connection, id: &str) -> rusqlite::Result<Option<Session>> {
    let mut stmt = conn.prepare_cached("SELECT * FROM sessions WHERE id = ?1")?;
    stmt.query_row([id], Session::from_row).optional()
}

/// The active session of an agent in a room (and thread; `None` matches no thread).
pub fn active_session_in_room(
    conn: &Connection,
    agent_id: &str,
    room_id: &str,
    thread_id: Option<&str>,
) -> rusqlite::Result<Option<Session>> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM sessions WHERE agent_id = ?1 AND room_id = ?2 AND thread_id IS ?3 AND status = 'active'
         ORDER BY created_at DESC LIMIT 1",
    )?;
    stmt.query_row(params![agent_id, room_id, thread_id], Session::from_row).optional()
}

/// The newest active session of an agent in any room.
pub fn newest_active_session(conn: &Connection, agent_id: &str) -> rusqlite::Result<Option<Session>> {
    conn.prepare_cached(
        "SELECT * FROM sessions WHERE agent_id = ?1 AND status = 'active' ORDER BY created_at DESC LIMIT 1",
    )?
    .query_row([agent_id], Session::from_row)
    .optional()
}

pub fn insert_session(conn: &Connection, s: &Session) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO sessions (id, agent_id, room_id, thread_id, status, container_status, last_active, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)")?.execute(params![s.id, s.agent_id, s.room_id, s.thread_id, s.status, s.container_status, s.last_active, s.created_at],
    )?;
    Ok(())
}

pub fn active_sessions(conn: &Connection) -> rusqlite::Result<Vec<Session>> {
    let mut stmt =
        conn.prepare_cached("SELECT * FROM sessions WHERE status = 'active' ORDER BY created_at")?;
    stmt.query_map([], Session::from_row)?.collect()
}

/// An agent's active sessions.
pub fn sessions_of_agent(conn: &Connection, agent_id: &str) -> rusqlite::Result<Vec<Session>> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM sessions WHERE agent_id = ?1 AND status = 'active' ORDER BY created_at",
    )?;
    stmt.query_map([agent_id], Session::from_row)?.collect()
}

/// Active sessions attached to a room.
pub fn sessions_of_room(conn: &Connection, room_id: &str) -> rusqlite::Result<Vec<Session>> {
    let mut stmt = conn.prepare_cached(
        "SELECT * FROM sessions WHERE room_id = ?1 AND status = 'active' ORDER BY created_at",
    )?;
    stmt.query_map([room_id], Session::from_row)?.collect()
}

pub fn set_container_status(
    conn: &Connection,
    session_id: &str,
    status: &str,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE sessions SET container_status = ?2, last_active = ?3 WHERE id = ?1")?
        .execute(params![session_id, status, now])?;
    Ok(())
}

/// Marks every session's container stopped (start-up: no container survives a host restart).
/// The next container generation of a session (1, 2, ...), taken durably.
pub fn next_container_gen(conn: &Connection, session_id: &str) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "UPDATE sessions SET container_gen = container_gen + 1 WHERE id = ?1 RETURNING container_gen",
    )?
    .query_row([session_id], |r| r.get(0))
}

/// Makes sure the session's next generation is above `gen` (an adopted container's).
pub fn raise_container_gen(conn: &Connection, session_id: &str, generation: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE sessions SET container_gen = MAX(container_gen, ?2) WHERE id = ?1")?
        .execute(params![session_id, generation])?;
    Ok(())
}

/// Ends a session (a new one is created for the next message).
pub fn close_session(conn: &Connection, session_id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE sessions SET status = 'closed', container_status = 'stopped' WHERE id = ?1")?
        .execute([session_id])?;
    Ok(())
}

pub fn reset_container_status(conn: &Connection) -> rusqlite::Result<usize> {
    conn.prepare_cached(
        "UPDATE sessions SET container_status = 'stopped' WHERE container_status <> 'stopped'",
    )?
    .execute([])
}

pub fn touch_session(conn: &Connection, session_id: &str, now: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE sessions SET last_active = ?2 WHERE id = ?1")?
        .execute(params![session_id, now])?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Users and roles

pub fn upsert_user(
    conn: &Connection,
    id: &str,
    kind: &str,
    display_name: &str,
    now: i64,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO users (id, kind, display_name, created_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET display_name = excluded.display_name
         WHERE users.display_name IS NOT excluded.display_name",
    )?
    .execute(params![id, kind, display_name, now])?;
    Ok(())
}

/// Makes `user_id` the owner if the install has none yet; atomic (one statement).
pub fn bootstrap_owner(conn: &Connection, user_id: &str, now: i64) -> rusqlite::Result<bool> {
    let n = conn
        .prepare_cached(
            "INSERT INTO user_roles (user_id, role, agent_id, granted_by, granted_at)
         SELECT ?1, 'owner', NULL, NULL, ?2 WHERE NOT EXISTS (SELECT 1 FROM user_roles WHERE role = 'owner')",
        )?
        .execute(params![user_id, now])?;
    Ok(n == 1)
}

/// Makes `user_id` an owner (another owner may exist); true if it was not one before.
pub fn grant_owner(conn: &Connection, user_id: &str, now: i64) -> rusqlite::Result<bool> {
    let n = conn.prepare_cached("INSERT INTO user_roles (user_id, role, agent_id, granted_by, granted_at)
         SELECT ?1, 'owner', NULL, NULL, ?2
         WHERE NOT EXISTS (SELECT 1 FROM user_roles WHERE user_id = ?1 AND role = 'owner' AND agent_id IS NULL)")?.execute(params![user_id, now],
    )?;
    Ok(n == 1)
}

pub fn is_owner(conn: &Connection, user_id: &str) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM user_roles WHERE user_id = ?1 AND role = 'owner' AND agent_id IS NULL)",
    )?;
    stmt.query_row([user_id], |r| r.get(0))
}

/// Owner, global admin, admin of the agent, or member of the agent.
pub fn can_access_agent(conn: &Connection, user_id: &str, agent_id: &str) -> rusqlite::Result<bool> {
    let mut stmt = conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM user_roles WHERE user_id = ?1 AND (agent_id IS NULL OR agent_id = ?2))
             OR EXISTS (SELECT 1 FROM agent_members WHERE user_id = ?1 AND agent_id = ?2)",
    )?;
    stmt.query_row([user_id, agent_id], |r| r.get(0))
}

// ---------------------------------------------------------------------------------------------
// Room messages

/// Stores a message with the next `seq` of its room. Idempotent: a message with the same
/// `(room, sender_id, client_id)` or the same `source_id` is returned instead of a second copy.
/// Returns the stored message and whether it was created now. Call inside a write transaction so
/// `seq` allocation and insert are atomic.
pub fn insert_message(conn: &Connection, m: &NewMessage<'_>) -> rusqlite::Result<(RoomMessage, bool)> {
    if let Some(existing) = existing_message(conn, m)? {
        return Ok((existing, false));
    }
    let id = crate::ids::new_id("msg");
    let seq: i64 = conn
        .prepare_cached("SELECT COALESCE(MAX(seq), 0) + 1 FROM room_messages WHERE room_id = ?1")?
        .query_row([m.room_id], |r| r.get(0))?;
    let routed_at = if m.needs_routing { None } else { Some(m.now) };
    let mut stmt = conn.prepare_cached(
        "INSERT INTO room_messages (id, room_id, seq, sender, sender_id, sender_type, text, html, files,
                                    client_id, source_id, routed_at, created_at, card)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?;
    stmt.execute(params![
        id,
        m.room_id,
        seq,
        m.sender,
        m.sender_id,
        m.sender_type,
        m.text,
        m.html,
        m.files.to_string(),
        m.client_id,
        m.source_id,
        routed_at,
        m.now,
        m.card.map(|c| c.to_string())
    ])?;
    let stored = RoomMessage {
        id,
        seq,
        room_id: m.room_id.to_string(),
        sender: m.sender.to_string(),
        sender_id: m.sender_id.map(str::to_string),
        sender_type: m.sender_type.to_string(),
        text: m.text.to_string(),
        html: m.html.to_string(),
        files: m.files.clone(),
        created_at: m.now,
        client_id: m.client_id.map(str::to_string),
        card: m.card.cloned(),
        reactions: serde_json::json!([]),
        edited_at: None,
        deleted_at: None,
        tools: None,
    };
    Ok((stored, true))
}

/// The message a sender stored in a room under a client-chosen id.
pub fn message_by_client_id(
    conn: &Connection,
    room_id: &str,
    sender_id: Option<&str>,
    client_id: &str,
) -> rusqlite::Result<Option<RoomMessage>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM room_messages WHERE room_id = ?1 AND sender_id IS ?2 AND client_id = ?3"
    ))?;
    stmt.query_row(params![room_id, sender_id, client_id], RoomMessage::from_row).optional()
}

fn existing_message(conn: &Connection, m: &NewMessage<'_>) -> rusqlite::Result<Option<RoomMessage>> {
    if let Some(client_id) = m.client_id
        && let Some(found) = message_by_client_id(conn, m.room_id, m.sender_id, client_id)?
    {
        return Ok(Some(found));
    }
    if let Some(source_id) = m.source_id {
        let mut stmt = conn
            .prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} FROM room_messages WHERE source_id = ?1"))?;
        return stmt.query_row([source_id], RoomMessage::from_row).optional();
    }
    Ok(None)
}

/// A stored message by id.
pub fn message(conn: &Connection, id: &str) -> rusqlite::Result<Option<RoomMessage>> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} FROM room_messages WHERE id = ?1"))?;
    stmt.query_row([id], RoomMessage::from_row).optional()
}

/// The message stored for an agent's outbound row.
pub fn message_by_source(conn: &Connection, source_id: &str) -> rusqlite::Result<Option<RoomMessage>> {
    let mut stmt =
        conn.prepare_cached(&format!("SELECT {MESSAGE_COLUMNS} FROM room_messages WHERE source_id = ?1"))?;
    stmt.query_row([source_id], RoomMessage::from_row).optional()
}

/// Replaces a message's text (an agent editing its own message).
/// Replaces a message's card (its text stays).
pub fn set_message_card(conn: &Connection, id: &str, card: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE room_messages SET card = ?2 WHERE id = ?1")?.execute([id, card])?;
    Ok(())
}

pub fn edit_message(conn: &Connection, id: &str, text: &str, html: &str, now: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE room_messages SET text = ?2, html = ?3, edited_at = ?4 WHERE id = ?1")?
        .execute(params![id, text, html, now])?;
    Ok(())
}

/// Takes a message back: its text, HTML, files, card and reactions cleared, the row kept.
pub fn delete_message(conn: &Connection, id: &str, now: i64) -> rusqlite::Result<bool> {
    Ok(conn.prepare_cached("UPDATE room_messages SET text = '', html = '', files = '[]', card = NULL, reactions = '[]', deleted_at = ?2
         WHERE id = ?1 AND deleted_at IS NULL")?.execute(params![id, now],
    )? == 1)
}

/// Records the tools an agent used for a reply.
pub fn set_tools(conn: &Connection, id: &str, tools: &serde_json::Value) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE room_messages SET tools = ?2 WHERE id = ?1")?
        .execute(params![id, tools.to_string()])?;
    Ok(())
}

/// Replaces a message's reactions (JSON array).
pub fn set_reactions(conn: &Connection, id: &str, reactions: &serde_json::Value) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE room_messages SET reactions = ?2 WHERE id = ?1")?
        .execute(params![id, reactions.to_string()])?;
    Ok(())
}

/// Messages of a room with `seq > after_seq`, ascending, at most `limit`.
pub fn messages_after(
    conn: &Connection,
    room_id: &str,
    after_seq: i64,
    limit: i64,
) -> rusqlite::Result<Vec<RoomMessage>> {
    Ok(messages_after_within(conn, room_id, after_seq, limit, usize::MAX)?.0)
}

/// Like [`messages_after`], and stops once `max_bytes` of text and HTML are read (after at least
/// one message), so a catch-up through a room of large messages holds a frame's worth, not a
/// page of them. The flag says whether more may follow.
pub fn messages_after_within(
    conn: &Connection,
    room_id: &str,
    after_seq: i64,
    limit: i64,
    max_bytes: usize,
) -> rusqlite::Result<(Vec<RoomMessage>, bool)> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {MESSAGE_COLUMNS} FROM room_messages WHERE room_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
    ))?;
    let mut rows = stmt.query(params![room_id, after_seq, limit])?;
    let mut out = Vec::new();
    let mut bytes = 0usize;
    while let Some(row) = rows.next()? {
        let m = RoomMessage::from_row(row)?;
        bytes = bytes.saturating_add(m.text.len() + m.html.len());
        out.push(m);
        if bytes >= max_bytes {
            return Ok((out, true));
        }
    }
    let more = out.len() as i64 >= limit;
    Ok((out, more))
}

/// The `limit` messages just before `before_seq`, ascending (paging back through history).
pub fn messages_before(
    conn: &Connection,
    room_id: &str,
    before_seq: i64,
    limit: i64,
) -> rusqlite::Result<Vec<RoomMessage>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT * FROM (SELECT {MESSAGE_COLUMNS} FROM room_messages WHERE room_id = ?1 AND seq < ?2
                        ORDER BY seq DESC LIMIT ?3)
         ORDER BY seq"
    ))?;
    stmt.query_map(params![room_id, before_seq, limit], RoomMessage::from_row)?.collect()
}

/// Indexes for search up to `max` of the messages stored since the last batch (the oldest
/// first); how many. A message is not indexed as it is stored: see `0015_search_batches.sql`.
pub fn index_batch(conn: &Connection, max: i64) -> rusqlite::Result<usize> {
    let upto: i64 =
        conn.prepare_cached("SELECT indexed_upto FROM search_state")?.query_row([], |r| r.get(0))?;
    let n = conn
        .prepare_cached(
            "INSERT INTO message_search (rowid, text)
             SELECT rowid, text FROM room_messages WHERE rowid > ?1 ORDER BY rowid LIMIT ?2",
        )?
        .execute(params![upto, max])?;
    if n > 0 {
        conn.prepare_cached(
            "UPDATE search_state SET indexed_upto =
               (SELECT MAX(rowid) FROM (SELECT rowid FROM room_messages WHERE rowid > ?1 ORDER BY rowid LIMIT ?2))",
        )?
        .execute(params![upto, max])?;
    }
    Ok(n)
}

/// Whether stored messages wait to be indexed for search.
pub fn unindexed_left(conn: &Connection) -> rusqlite::Result<bool> {
    conn.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM room_messages WHERE rowid > (SELECT indexed_upto FROM search_state))",
    )?
    .query_row([], |r| r.get(0))
}

/// Messages matching every word of `words` (the last one also as a prefix), best first, in
/// the given rooms only. Only indexed messages are found: index the queue first
/// ([`index_batch`]).
pub fn search(
    conn: &Connection,
    words: &[String],
    rooms: &[String],
    limit: i64,
) -> rusqlite::Result<Vec<RoomMessage>> {
    if words.is_empty() || rooms.is_empty() {
        return Ok(Vec::new());
    }
    // Every word quoted (FTS5 operators in what people type stay text); the last is a prefix.
    let mut query: Vec<String> = words.iter().map(|w| format!("\"{}\"", w.replace('"', "\"\""))).collect();
    if let Some(last) = query.last_mut() {
        last.push('*');
    }
    let placeholders = (0..rooms.len()).map(|i| format!("?{}", i + 3)).collect::<Vec<_>>().join(",");
    let columns = MESSAGE_COLUMNS.split(", ").map(|c| format!("m.{c}")).collect::<Vec<_>>().join(", ");
    let sql = format!(
        "SELECT {columns}
         FROM message_search JOIN room_messages m ON m.rowid = message_search.rowid
         WHERE message_search MATCH ?1 AND m.room_id IN ({placeholders})
         ORDER BY rank LIMIT ?2"
    );
    let mut stmt = conn.prepare(&sql)?;
    let query_text = query.join(" ");
    let mut args: Vec<&dyn rusqlite::ToSql> = vec![&query_text, &limit];
    for r in rooms {
        args.push(r);
    }
    stmt.query_map(args.as_slice(), RoomMessage::from_row)?.collect()
}

/// The newest `limit` messages of a room, ascending.
pub fn latest_messages(conn: &Connection, room_id: &str, limit: i64) -> rusqlite::Result<Vec<RoomMessage>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT * FROM (SELECT {MESSAGE_COLUMNS} FROM room_messages WHERE room_id = ?1 ORDER BY seq DESC LIMIT ?2)
         ORDER BY seq"
    ))?;
    stmt.query_map(params![room_id, limit], RoomMessage::from_row)?.collect()
}

/// A user message waiting to be routed to the room's agents.
#[derive(Debug, Clone)]
pub struct Unrouted {
    pub id: String,
    pub room_id: String,
    pub sender: String,
    pub sender_id: Option<String>,
    pub text: String,
    pub files: String,
    pub created_at: i64,
}

/// The oldest unrouted user messages.
pub fn unrouted_messages(conn: &Connection, limit: i64) -> rusqlite::Result<Vec<Unrouted>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, room_id, sender, sender_id, text, files, created_at FROM room_messages
         WHERE routed_at IS NULL ORDER BY created_at, room_id, seq LIMIT ?1",
    )?;
    stmt.query_map([limit], |r| {
        Ok(Unrouted {
            id: r.get(0)?,
            room_id: r.get(1)?,
            sender: r.get(2)?,
            sender_id: r.get(3)?,
            text: r.get(4)?,
            files: r.get(5)?,
            created_at: r.get(6)?,
        })
    })?
    .collect()
}

/// Marks a message routed by a pass that began at `now` — unless a person was let in during the
/// pass and the message was released for them meanwhile: then it stays queued for another pass.
pub fn mark_routed(conn: &Connection, message_id: &str, now: i64) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE room_messages SET routed_at = ?2 WHERE id = ?1
         AND NOT EXISTS (SELECT 1 FROM dropped_messages WHERE message_id = ?1 AND replayed_at >= ?2)",
    )?
    .execute(params![message_id, now])?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Status

/// What `pincer status` counts in the central DB.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Counts {
    /// Messages stored and not yet handed to the agents.
    pub unrouted: i64,
    pub approvals_pending: i64,
    pub push_subscriptions: i64,
    pub people: i64,
    pub rooms: i64,
}

pub fn counts(conn: &Connection) -> rusqlite::Result<Counts> {
    let n = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0));
    Ok(Counts {
        unrouted: n("SELECT COUNT(*) FROM room_messages WHERE routed_at IS NULL")?,
        approvals_pending: n("SELECT COUNT(*) FROM approvals WHERE status = 'pending'")?,
        push_subscriptions: n("SELECT COUNT(*) FROM push_subscriptions")?,
        people: n("SELECT COUNT(*) FROM users")?,
        rooms: n("SELECT COUNT(*) FROM rooms")?,
    })
}
