//! Rooms and their agents: creating a room with existing or new agents, adding and removing an
//! agent, the prime agent. Wiring an agent into a room also gives it a destination for the room
//! (so it may post there); removing it takes both away. Running sessions see the change on their
//! next turn.

use std::path::Path;

use anyhow::{Context, bail};
use serde::Serialize;

use super::agents::{self, unique_slug};
use crate::db::central::{self, Agent, Room};
use crate::db::{self, Connection};
use crate::ids::{new_id, normalize_name};

/// Agents a room may hold.
pub const AGENTS_PER_ROOM_MAX: usize = 16;

/// An agent to put in a new room.
#[derive(Debug, Clone)]
pub enum AgentSpec {
    Existing(String),
    New { name: String, instructions: Option<String> },
}

#[derive(Debug, Clone, Serialize)]
pub struct AgentRef {
    pub id: String,
    pub name: String,
    pub folder: String,
}

/// Creates a room with its agents in one go (new agents get their folders). Nobody is prime:
/// with several agents, people address them with `@name` (`mention-only`); with one, it answers
/// everything.
pub fn create(
    conn: &mut Connection,
    data_dir: &Path,
    groups_dir: &Path,
    name: &str,
    specs: &[AgentSpec],
    now: i64,
) -> anyhow::Result<(Room, Vec<AgentRef>)> {
    let name = agents::validate_name("room", name)?;
    if specs.len() > AGENTS_PER_ROOM_MAX {
        bail!("a room holds at most {AGENTS_PER_ROOM_MAX} agents");
    }
    // New agents first (each in its own transaction, with its folder); on a later failure they
    // stay, as agents without a room.
    let mut members: Vec<Agent> = Vec::new();
    for spec in specs {
        let agent = match spec {
            AgentSpec::Existing(id) => {
                central::agent(conn, id)?.with_context(|| format!("no agent {id:?}"))?
            }
            AgentSpec::New { name, instructions } => {
                agents::create(conn, groups_dir, name, instructions.as_deref(), false, now)?.agent
            }
        };
        if !members.iter().any(|m| m.id == agent.id) {
            members.push(agent);
        }
    }
    let room = db::write_tx(conn, |tx| {
        let id = unique_slug(&normalize_name(&name), |id| Ok(central::room_id_taken(tx, id)?))?;
        let room = Room {
            id: id.clone(),
            channel_type: "webchat".into(),
            platform_id: id,
            name: name.clone(),
            is_group: true,
            created_at: now,
        };
        central::insert_room(tx, &room)?;
        for a in &members {
            wire(tx, &room, a, now)?;
        }
        match members.as_slice() {
            [only] => central::set_prime(tx, &room.id, Some(&only.id))?,
            _ => central::set_engage_default(tx, &room.id, "mention-only")?,
        }
        Ok(room)
    })?;
    for a in &members {
        agents::reproject(conn, data_dir, &a.id);
    }
    let refs = members.into_iter().map(|a| AgentRef { id: a.id, name: a.name, folder: a.folder }).collect();
    Ok((room, refs))
}

/// The wiring and the agent's destination for the room.
fn wire(tx: &Connection, room: &Room, agent: &Agent, now: i64) -> anyhow::Result<()> {
    central::insert_wiring(tx, &new_id("wire"), &room.id, &agent.id, now)?;
    let already = central::destinations_of(tx, &agent.id)?
        .into_iter()
        .any(|(_, t, id)| t == "channel" && id == room.id);
    if !already {
        let local = unique_slug(&normalize_name(&room.name), |n| {
            Ok(central::destination_name_taken(tx, &agent.id, n)?)
        })?;
        central::insert_destination(tx, &agent.id, &local, "channel", &room.id, now)?;
    }
    Ok(())
}

/// Puts an agent in a room; the first agent of an empty room becomes its prime.
pub fn add_agent(
    conn: &mut Connection,
    data_dir: &Path,
    room: &Room,
    agent: &Agent,
    now: i64,
) -> anyhow::Result<()> {
    db::write_tx(conn, |tx| {
        let wirings = central::wirings_of_room(tx, &room.id)?;
        if wirings.iter().any(|w| w.agent_id == agent.id) {
            return Ok(());
        }
        if wirings.len() >= AGENTS_PER_ROOM_MAX {
            bail!("{} already holds {AGENTS_PER_ROOM_MAX} agents", room.name);
        }
        wire(tx, room, agent, now)?;
        if wirings.is_empty() {
            central::set_prime(tx, &room.id, Some(&agent.id))?;
        }
        Ok(())
    })?;
    agents::reproject(conn, data_dir, &agent.id);
    Ok(())
}

/// Takes an agent out of a room (its wiring and its destination for the room); false if it
/// was not in it.
pub fn remove_agent(
    conn: &mut Connection,
    data_dir: &Path,
    room: &Room,
    agent_id: &str,
) -> anyhow::Result<bool> {
    let removed = db::write_tx(conn, |tx| {
        if !central::delete_wiring(tx, &room.id, agent_id)? {
            return Ok(false);
        }
        for (name, t, id) in central::destinations_of(tx, agent_id)? {
            if t == "channel" && id == room.id {
                central::delete_destination(tx, agent_id, &name)?;
            }
        }
        let eng = central::engagement(tx, &room.id)?;
        if eng.prime_agent_id.as_deref() == Some(agent_id) {
            central::set_prime(tx, &room.id, None)?;
        }
        if eng.sticky_agent_id.as_deref() == Some(agent_id) {
            central::set_sticky(tx, &room.id, None)?;
        }
        Ok(true)
    })?;
    if removed {
        agents::reproject(conn, data_dir, agent_id);
    }
    Ok(removed)
}
