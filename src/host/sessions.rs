//! Session directories and session resolution.
//!
//! A session is one agent's conversation: a row in the central DB plus a directory
//! `data/sessions/<agent>/<session>/` with `inbound.db`, `outbound.db`, the heartbeat file, the
//! link socket and `inbox/`/`outbox/`. This module creates them (idempotently) and projects the
//! agent's destinations and default reply address into `inbound.db` before a container starts.

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::db::central::{self, Room, Session};
use crate::db::{self, Connection, Kind, inbound};
use crate::ids::new_id;

/// Paths of one session directory.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionDir(pub PathBuf);

impl SessionDir {
    pub fn new(data_dir: &Path, agent_id: &str, session_id: &str) -> SessionDir {
        SessionDir(data_dir.join("sessions").join(agent_id).join(session_id))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn inbound(&self) -> PathBuf {
        self.0.join("inbound.db")
    }

    pub fn outbound(&self) -> PathBuf {
        self.0.join("outbound.db")
    }

    pub fn heartbeat(&self) -> PathBuf {
        self.0.join(".heartbeat")
    }

    pub fn link(&self) -> PathBuf {
        self.0.join(crate::link::SOCKET_NAME)
    }

    /// Creates the directory tree and both DBs if missing (safe to call on every wake).
    pub fn ensure(&self) -> anyhow::Result<()> {
        for sub in ["", "inbox", "outbox", "agent"] {
            let p = self.0.join(sub);
            std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        }
        // The host creates outbound.db too (empty, migrated) so it can always read it; after
        // this the container is its only writer.
        drop(db::open(&self.inbound(), Kind::Inbound)?);
        drop(db::open(&self.outbound(), Kind::Outbound)?);
        Ok(())
    }

    /// Opens `inbound.db` for a one-off host write. The router and delivery, which write for
    /// every message, keep theirs open instead ([`crate::db::kept`]).
    pub fn open_inbound(&self) -> anyhow::Result<Connection> {
        db::open(&self.inbound(), Kind::Inbound)
    }
}

/// How sessions of a wiring are shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionMode {
    /// One session per agent and room (thread ignored).
    Shared,
    /// One session per agent, room and thread.
    PerThread,
    /// One session per agent across all rooms.
    AgentShared,
}

impl SessionMode {
    pub fn parse(s: &str) -> SessionMode {
        match s {
            "per-thread" => SessionMode::PerThread,
            "agent-shared" => SessionMode::AgentShared,
            _ => SessionMode::Shared,
        }
    }
}

/// Finds the active session for a message to `agent_id` in `room`, creating it (row, directory
/// and DBs) when there is none.
pub fn resolve(
    conn: &Connection,
    data_dir: &Path,
    agent_id: &str,
    room: &Room,
    thread_id: Option<&str>,
    mode: SessionMode,
    now: i64,
) -> anyhow::Result<Session> {
    let found = match mode {
        SessionMode::AgentShared => central::newest_active_session(conn, agent_id)?,
        SessionMode::Shared => central::active_session_in_room(conn, agent_id, &room.id, None)?,
        SessionMode::PerThread => central::active_session_in_room(conn, agent_id, &room.id, thread_id)?,
    };
    if let Some(s) = found {
        return Ok(s);
    }
    let session = Session {
        id: new_id("sess"),
        agent_id: agent_id.to_string(),
        room_id: Some(room.id.clone()),
        thread_id: if mode == SessionMode::PerThread { thread_id.map(str::to_string) } else { None },
        status: "active".into(),
        container_status: "stopped".into(),
        last_active: Some(now),
        created_at: now,
    };
    // Directory first: a row without a directory would be visible to other threads too early.
    SessionDir::new(data_dir, agent_id, &session.id).ensure()?;
    central::insert_session(conn, &session)?;
    log::info!("new session {} for agent {agent_id} in room {}", session.id, room.id);
    Ok(session)
}

/// The session an agent keeps for its conversation with another agent (created when there is
/// none): no room, so the peer's messages do not mix with the agent's own rooms.
pub fn resolve_peer(
    conn: &Connection,
    data_dir: &Path,
    agent_id: &str,
    peer_id: &str,
    now: i64,
) -> anyhow::Result<Session> {
    if let Some(s) = central::peer_session(conn, agent_id, peer_id)? {
        return Ok(s);
    }
    let session = Session {
        id: new_id("sess"),
        agent_id: agent_id.to_string(),
        room_id: None,
        thread_id: Some(format!("agent:{peer_id}")),
        status: "active".into(),
        container_status: "stopped".into(),
        last_active: Some(now),
        created_at: now,
    };
    SessionDir::new(data_dir, agent_id, &session.id).ensure()?;
    central::insert_session(conn, &session)?;
    log::info!("new session {} for agent {agent_id} talking with agent {peer_id}", session.id);
    Ok(session)
}

/// Tells a session's agent something from pincer (a refusal, a decision, a change made by a
/// person), addressed to the session's conversation. `trigger`: wakes the agent to act on it;
/// otherwise it rides along with the next prompt. `on_wake`: only a freshly started container
/// sees it (a change that needs a restart, such as new tools). Idempotent by `id`.
pub fn note(
    inb: &Connection,
    id: &str,
    text: &str,
    trigger: bool,
    on_wake: bool,
    now: i64,
) -> rusqlite::Result<()> {
    let route = inbound::routing(inb)?.unwrap_or_default();
    let content = serde_json::json!({ "text": text, "sender": "system", "senderId": "system" }).to_string();
    inbound::insert(
        inb,
        &inbound::NewInbound {
            id,
            kind: "chat",
            timestamp: now,
            trigger,
            process_after: None,
            channel_type: route.channel_type.as_deref(),
            platform_id: route.platform_id.as_deref(),
            thread_id: route.thread_id.as_deref(),
            content: &content,
            on_wake,
            recurrence: None,
            series_id: None,
            source_session_id: None,
        },
    )?;
    Ok(())
}

/// Sets a damaged session aside: its directory moves to `data/quarantine/<session>-<time>/`
/// (kept for inspection) and the session is closed, so the next message starts a fresh one.
/// Returns where the directory went.
pub fn quarantine(
    conn: &Connection,
    data_dir: &Path,
    session: &Session,
    now: i64,
) -> anyhow::Result<PathBuf> {
    let dir = SessionDir::new(data_dir, &session.agent_id, &session.id);
    let to = data_dir.join("quarantine").join(format!("{}-{now}", session.id));
    std::fs::create_dir_all(data_dir.join("quarantine"))?;
    if dir.path().exists() {
        std::fs::rename(dir.path(), &to)
            .with_context(|| format!("moving {} to {}", dir.path().display(), to.display()))?;
    }
    central::close_session(conn, &session.id)?;
    log::error!("session {} quarantined: its files are in {}", session.id, to.display());
    Ok(to)
}

/// Writes the agent's destinations and the session's default reply address into `inbound.db`.
pub fn project(conn: &Connection, dir: &SessionDir, session: &Session) -> anyhow::Result<()> {
    let dests = central::resolved_destinations(conn, &session.agent_id)?;
    let room = match &session.room_id {
        Some(id) => central::room(conn, id)?,
        None => None,
    };
    let mut inb = dir.open_inbound()?;
    db::write_tx(&mut inb, |tx| {
        inbound::write_destinations(tx, &dests)?;
        match &room {
            Some(r) => inbound::write_routing(
                tx,
                Some(&r.channel_type),
                Some(&r.platform_id),
                session.thread_id.as_deref(),
            )?,
            None => inbound::write_routing(tx, None, None, None)?,
        }
        Ok(())
    })
}
