//! The webchat's access to the central DB: a small connection pool and the message operations
//! (store a user message, an agent reply, a notice; read history; list rooms for a user).
//!
//! Every stored message gets its sanitised HTML here, once.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde::Serialize;

use super::indexer::Indexer;
use super::render::markdown_to_html;
use crate::db::central::{self, NewMessage, Room, RoomMessage};
use crate::db::{self, Connection, Kind};
use crate::ids::now_ms;

/// Idle connections kept in the pool.
const POOL_IDLE_MAX: usize = 8;
/// Reactions kept on one message.
pub const REACTIONS_MAX: usize = 50;

pub struct Store {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    /// Told of every stored message (without one, messages wait unindexed for a search).
    indexer: OnceLock<Arc<Indexer>>,
}

/// A pooled connection, returned on drop.
pub struct Pooled<'a> {
    store: &'a Store,
    conn: Option<Connection>,
}

impl std::ops::Deref for Pooled<'_> {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        self.conn.as_ref().expect("present until drop")
    }
}

impl std::ops::DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.conn.as_mut().expect("present until drop")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            let mut idle = self.store.idle.lock().unwrap_or_else(|e| e.into_inner());
            if idle.len() < POOL_IDLE_MAX {
                idle.push(conn);
            }
        }
    }
}

/// A room as listed to a client.
#[derive(Debug, Clone, Serialize)]
pub struct RoomInfo {
    pub id: String,
    pub name: String,
    pub created_at: i64,
    pub agents: Vec<AgentRef>,
    pub last_seq: i64,
    /// Who its agents answer: `strict`, `request_approval` or `public`.
    pub unknown_sender_policy: String,
    /// Answers messages that mention nobody.
    pub prime_agent_id: Option<String>,
    /// Without a prime: `broadcast` or `mention-only`.
    pub engage_default: String,
    /// The caller has put the room away.
    pub archived: bool,
    /// The caller keeps the room at the top of their list.
    pub pinned: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentRef {
    pub id: String,
    pub name: String,
    pub folder: String,
    /// How it engages in this room: `pattern` (the room's rules, or its own pattern), `mention`,
    /// `mention-sticky`.
    pub engage_mode: String,
    pub engage_pattern: Option<String>,
}

impl Store {
    pub fn new(path: &Path) -> Store {
        Store { path: path.to_path_buf(), idle: Mutex::new(Vec::new()), indexer: OnceLock::new() }
    }

    /// Tells `indexer` of every message stored from now on.
    pub fn index_with(&self, indexer: Arc<Indexer>) {
        let _ = self.indexer.set(indexer);
    }

    pub fn conn(&self) -> anyhow::Result<Pooled<'_>> {
        let pooled = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let conn = match pooled {
            Some(c) => c,
            None => db::open(&self.path, Kind::Central)?,
        };
        Ok(Pooled { store: self, conn: Some(conn) })
    }

    /// Inserts a message (rendering its HTML) in its own transaction.
    fn insert(&self, m: NewMessage<'_>) -> anyhow::Result<(RoomMessage, bool)> {
        let mut conn = self.conn()?;
        let stored = db::write_tx(&mut conn, |tx| Ok(central::insert_message(tx, &m)?))?;
        if stored.1
            && let Some(i) = self.indexer.get()
        {
            i.stored();
        }
        Ok(stored)
    }

    /// The message this user already stored in the room under `client_id`, if any.
    pub fn message_by_client_id(
        &self,
        room_id: &str,
        user_id: &str,
        client_id: &str,
    ) -> anyhow::Result<Option<RoomMessage>> {
        let conn = self.conn()?;
        Ok(central::message_by_client_id(&conn, room_id, Some(user_id), client_id)?)
    }

    /// Stores a user's message (idempotent by `client_id`), queued for the router.
    pub fn user_message(
        &self,
        room: &Room,
        user_id: &str,
        display_name: &str,
        text: &str,
        client_id: Option<&str>,
        files: &serde_json::Value,
    ) -> anyhow::Result<(RoomMessage, bool)> {
        let html = markdown_to_html(text);
        self.insert(NewMessage {
            room_id: &room.id,
            sender: display_name,
            sender_id: Some(user_id),
            sender_type: "user",
            text,
            html: &html,
            files,
            client_id,
            source_id: None,
            card: None,
            needs_routing: true,
            now: now_ms(),
        })
    }

    /// Stores an agent's message once per `source_id`: text, files (already copied to
    /// uploads), an optional card. `system` stores it as a notice (e.g. the agent's model failed).
    #[allow(clippy::too_many_arguments)]
    pub fn agent_message(
        &self,
        room: &Room,
        agent_id: &str,
        agent_name: &str,
        text: &str,
        source_id: &str,
        files: &serde_json::Value,
        card: Option<&serde_json::Value>,
        system: bool,
    ) -> anyhow::Result<(RoomMessage, bool)> {
        let html = markdown_to_html(text);
        self.insert(NewMessage {
            room_id: &room.id,
            sender: agent_name,
            sender_id: Some(agent_id),
            sender_type: if system { "system" } else { "agent" },
            text,
            html: &html,
            files,
            client_id: None,
            source_id: Some(source_id),
            card,
            needs_routing: false,
            now: now_ms(),
        })
    }

    /// Stores a notice from pincer itself.
    pub fn notice(&self, room: &Room, text: &str) -> anyhow::Result<RoomMessage> {
        let html = markdown_to_html(text);
        let files = serde_json::json!([]);
        let (m, _) = self.insert(NewMessage {
            room_id: &room.id,
            sender: "pincer",
            sender_id: None,
            sender_type: "system",
            text,
            html: &html,
            files: &files,
            client_id: None,
            source_id: None,
            card: None,
            needs_routing: false,
            now: now_ms(),
        })?;
        Ok(m)
    }

    /// Replaces the text of a message; returns the updated message.
    pub fn edit(&self, message_id: &str, text: &str) -> anyhow::Result<Option<RoomMessage>> {
        let html = markdown_to_html(text);
        let mut conn = self.conn()?;
        db::write_tx(&mut conn, |tx| {
            central::edit_message(tx, message_id, text, &html, now_ms())?;
            Ok(central::message(tx, message_id)?)
        })
    }

    /// Replaces a message's card; returns the updated message.
    pub fn set_card(
        &self,
        message_id: &str,
        card: &serde_json::Value,
    ) -> anyhow::Result<Option<RoomMessage>> {
        let conn = self.conn()?;
        central::set_message_card(&conn, message_id, &card.to_string())?;
        Ok(central::message(&conn, message_id)?)
    }

    /// Records the tools an agent used for a reply; returns the updated message.
    pub fn set_tools(
        &self,
        message_id: &str,
        tools: &serde_json::Value,
    ) -> anyhow::Result<Option<RoomMessage>> {
        let conn = self.conn()?;
        central::set_tools(&conn, message_id, tools)?;
        Ok(central::message(&conn, message_id)?)
    }

    /// Adds a reaction (once per emoji and reacting party); returns the updated message.
    pub fn react(
        &self,
        message_id: &str,
        emoji: &str,
        by: &str,
        by_type: &str,
    ) -> anyhow::Result<Option<RoomMessage>> {
        let mut conn = self.conn()?;
        db::write_tx(&mut conn, |tx| {
            let Some(m) = central::message(tx, message_id)? else { return Ok(None) };
            let mut list = m.reactions.as_array().cloned().unwrap_or_default();
            let entry = serde_json::json!({ "emoji": emoji, "by": by, "by_type": by_type });
            if !list.contains(&entry) && list.len() < REACTIONS_MAX {
                list.push(entry);
            }
            central::set_reactions(tx, message_id, &serde_json::Value::Array(list))?;
            Ok(central::message(tx, message_id)?)
        })
    }

    /// Webchat rooms the user may see, with their agents.
    pub fn rooms_for(&self, user_id: &str, owner: bool) -> anyhow::Result<Vec<RoomInfo>> {
        let conn = self.conn()?;
        let mut out = Vec::new();
        for room in central::rooms(&conn, "webchat")? {
            let agents = central::agents_of_room(&conn, &room.id)?;
            let policy = central::room_policy(&conn, &room.id)?;
            if !owner && policy == "strict" && !visible(&conn, user_id, &agents)? {
                continue;
            }
            let last_seq = central::latest_messages(&conn, &room.id, 1)?.first().map_or(0, |m| m.seq);
            let wirings = central::wirings_of_room(&conn, &room.id)?;
            let eng = central::engagement(&conn, &room.id)?;
            let archived = central::is_archived(&conn, &room.id, user_id)?;
            let pinned = central::is_pinned(&conn, &room.id, user_id)?;
            out.push(RoomInfo {
                agents: agents
                    .into_iter()
                    .map(|a| {
                        let w = wirings.iter().find(|w| w.agent_id == a.id);
                        AgentRef {
                            engage_mode: w.map_or_else(|| "pattern".into(), |w| w.engage_mode.clone()),
                            engage_pattern: w.and_then(|w| w.engage_pattern.clone()),
                            id: a.id,
                            name: a.name,
                            folder: a.folder,
                        }
                    })
                    .collect(),
                id: room.id,
                name: room.name,
                created_at: room.created_at,
                last_seq,
                unknown_sender_policy: policy,
                prime_agent_id: eng.prime_agent_id,
                engage_default: eng.engage_default,
                archived,
                pinned,
            });
        }
        Ok(out)
    }

    /// The room, if it exists and the user may use it.
    pub fn accessible_room(&self, room_id: &str, user_id: &str, owner: bool) -> anyhow::Result<Option<Room>> {
        let conn = self.conn()?;
        let Some(room) = central::room(&conn, room_id)? else {
            return Ok(None);
        };
        if room.channel_type != "webchat" {
            return Ok(None);
        }
        // A room that answers or asks about everyone is open to every signed-in person.
        if owner
            || central::room_policy(&conn, &room.id)? != "strict"
            || visible(&conn, user_id, &central::agents_of_room(&conn, &room.id)?)?
        {
            return Ok(Some(room));
        }
        Ok(None)
    }
}

fn visible(conn: &Connection, user_id: &str, agents: &[central::Agent]) -> anyhow::Result<bool> {
    for a in agents {
        if central::can_access_agent(conn, user_id, &a.id)? {
            return Ok(true);
        }
    }
    Ok(false)
}
