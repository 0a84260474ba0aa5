//! Creating agents (and their 1:1 rooms), shared by the CLI, the HTTP API and first-run set-up.
//!
//! An agent is a row, a working folder `groups/<folder>/` with its instructions in `AGENT.md`,
//! and optionally a room wired to it with a destination back to that room.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::db::central::{self, Agent, Room};
use crate::db::{self, Connection};
use crate::ids::{is_slug, new_id, normalize_name};

/// Longest agent or room name, in characters.
pub const NAME_CHARS_MAX: usize = 64;
/// Largest instructions file written through the API.
pub const INSTRUCTIONS_BYTES_MAX: usize = 64 * 1024;
/// Name of the instructions file in an agent's folder.
pub const INSTRUCTIONS_FILE: &str = "AGENT.md";

/// The agent created on first run, so a fresh install is usable at once.
pub const FIRST_AGENT_NAME: &str = "Assistant";
const FIRST_AGENT_INSTRUCTIONS: &str = "You are Assistant, a helpful personal assistant. \
Answer clearly and concisely. Use your tools when they help, and say so when you are unsure.\n";

#[derive(Debug, Clone, Serialize)]
pub struct Created {
    pub agent: Agent,
    pub room: Option<Room>,
}

/// Checks a display name: 1..=64 characters, not only spaces, and nothing that makes it look
/// like another name: no control characters, no bidirectional overrides or isolates, no
/// zero-width or otherwise invisible characters.
pub fn validate_name(what: &str, name: &str) -> anyhow::Result<String> {
    let name = name.trim();
    if name.is_empty() {
        bail!("{what} name is empty: give it a name such as \"Research helper\"");
    }
    if name.chars().count() > NAME_CHARS_MAX {
        bail!("{what} name is {} characters long; the limit is {NAME_CHARS_MAX}", name.chars().count());
    }
    if name.chars().any(char::is_control) {
        bail!("{what} name contains control characters (newlines, tabs...); use plain text");
    }
    if let Some(c) = name.chars().find(|&c| is_hidden(c)) {
        bail!(
            "{what} name contains U+{:04X}, an invisible or text-direction character that can make one name look like another; use plain text",
            c as u32
        );
    }
    Ok(name.to_string())
}

/// Characters that change how text around them is shown without being visible themselves:
/// bidirectional controls, zero-width and joiner characters, invisible fillers, tags, and the
/// other format characters (Unicode category Cf), plus line and paragraph separators.
pub fn is_hidden(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
        | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
        | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFFB | 0x0600..=0x0605 | 0x06DD | 0x070F | 0x08E2
        | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
        | 0xE0000..=0xE0FFF)
}

/// Names compare case-insensitively and with runs of spaces as one.
pub fn same_name(a: &str, b: &str) -> bool {
    let fold = |s: &str| s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase();
    fold(a) == fold(b)
}

/// `base`, or `base-2`, `base-3`... whichever `taken` says is free.
pub fn unique_slug(
    base: &str,
    mut taken: impl FnMut(&str) -> anyhow::Result<bool>,
) -> anyhow::Result<String> {
    let base = if is_slug(base) { base.to_string() } else { normalize_name(base) };
    for n in 1..=1000 {
        let candidate = if n == 1 { base.clone() } else { format!("{base}-{n}") };
        if !taken(&candidate)? {
            return Ok(candidate);
        }
    }
    bail!("no free name derived from {base:?}")
}

/// Renames an agent and/or replaces its instructions (`AGENT.md`, read afresh every turn; a new
/// name reaches a running container at its next start). Returns the agent as it now is.
pub fn update(
    conn: &mut Connection,
    groups_dir: &Path,
    agent_id: &str,
    name: Option<&str>,
    instructions: Option<&str>,
) -> anyhow::Result<Agent> {
    if let Some(text) = instructions
        && text.len() > INSTRUCTIONS_BYTES_MAX
    {
        bail!("instructions are {} bytes; the limit is {INSTRUCTIONS_BYTES_MAX}", text.len());
    }
    let name = name.map(|n| validate_name("agent", n)).transpose()?;
    let agent = db::write_tx(conn, |tx| {
        let Some(mut agent) = central::agent(tx, agent_id)? else { bail!("no agent {agent_id:?}") };
        if let Some(n) = &name {
            if let Some(other) =
                central::agents(tx)?.into_iter().find(|a| a.id != agent.id && same_name(&a.name, n))
            {
                bail!("an agent named {:?} already exists; choose another name", other.name);
            }
            central::rename_agent(tx, &agent.id, n)?;
            agent.name = n.clone();
        }
        Ok(agent)
    })?;
    if let Some(text) = instructions {
        let dir = groups_dir.join(&agent.folder);
        std::fs::create_dir_all(&dir)?;
        let tmp = dir.join(format!(".{INSTRUCTIONS_FILE}.tmp"));
        std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, dir.join(INSTRUCTIONS_FILE))?;
    }
    Ok(agent)
}

/// Where deleted agents' folders and session directories are kept.
pub const ARCHIVE_DIR: &str = ".archived";

/// Deletes an agent (its containers must be stopping): the row and everything hanging off it in
/// the central DB, its folder moved to `groups/.archived/<folder>.<ms>` and its sessions to
/// `data/.archived/sessions/<id>.<ms>` (kept, never deleted); agents that could message it are
/// told it is gone. Returns where the folder went.
pub fn delete(
    conn: &mut Connection,
    data_dir: &Path,
    groups_dir: &Path,
    agent: &Agent,
    now: i64,
) -> anyhow::Result<PathBuf> {
    let linked = db::write_tx(conn, |tx| Ok(central::delete_agent(tx, &agent.id)?))?;
    let folder = groups_dir.join(&agent.folder);
    let kept = groups_dir.join(ARCHIVE_DIR).join(format!("{}.{now}", agent.folder));
    if folder.exists() {
        std::fs::create_dir_all(groups_dir.join(ARCHIVE_DIR))?;
        std::fs::rename(&folder, &kept)
            .with_context(|| format!("moving {} to {}", folder.display(), kept.display()))?;
    }
    let sessions = data_dir.join("sessions").join(&agent.id);
    if sessions.exists() {
        let to = data_dir.join(ARCHIVE_DIR).join("sessions");
        std::fs::create_dir_all(&to)?;
        std::fs::rename(&sessions, to.join(format!("{}.{now}", agent.id)))
            .with_context(|| format!("moving {}", sessions.display()))?;
    }
    for other in linked {
        reproject(conn, data_dir, &other);
    }
    Ok(kept)
}

/// An agent's instructions as written in its folder.
pub fn instructions(groups_dir: &Path, agent: &Agent) -> String {
    std::fs::read_to_string(groups_dir.join(&agent.folder).join(INSTRUCTIONS_FILE)).unwrap_or_default()
}

/// Creates an agent (and, with `with_room`, its own room wired to it) in one transaction, and its
/// folder with the instructions file. Nothing is left behind if any step fails.
pub fn create(
    conn: &mut Connection,
    groups_dir: &Path,
    name: &str,
    instructions: Option<&str>,
    with_room: bool,
    now: i64,
) -> anyhow::Result<Created> {
    let name = validate_name("agent", name)?;
    if let Some(text) = instructions
        && text.len() > INSTRUCTIONS_BYTES_MAX
    {
        bail!("instructions are {} bytes; the limit is {INSTRUCTIONS_BYTES_MAX}", text.len());
    }
    let mut made_dir: Option<PathBuf> = None;
    let res = db::write_tx(conn, |tx| {
        if let Some(other) = central::agents(tx)?.into_iter().find(|a| same_name(&a.name, &name)) {
            bail!("an agent named {:?} already exists; choose another name", other.name);
        }
        let folder = unique_slug(&normalize_name(&name), |f| {
            Ok(central::folder_taken(tx, f)? || groups_dir.join(f).exists())
        })?;
        let agent = Agent {
            id: new_id("ag"),
            name: name.clone(),
            folder: folder.clone(),
            provider: None,
            model: None,
            max_messages_per_prompt: None,
            mcp_servers: "{}".into(),
            created_at: now,
        };
        central::insert_agent(tx, &agent)?;
        let room = if with_room { Some(create_room_for(tx, &agent, now)?) } else { None };
        let dir = groups_dir.join(&folder);
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        made_dir = Some(dir.clone());
        let text = instructions.map(str::to_string).unwrap_or_default();
        std::fs::write(dir.join(INSTRUCTIONS_FILE), text)
            .with_context(|| format!("writing {}", dir.join(INSTRUCTIONS_FILE).display()))?;
        Ok(Created { agent, room })
    });
    if res.is_err()
        && let Some(dir) = made_dir
    {
        let _ = std::fs::remove_dir_all(dir);
    }
    res
}

/// A webchat room named after the agent, wired to it, with a destination back to it.
fn create_room_for(tx: &Connection, agent: &Agent, now: i64) -> anyhow::Result<Room> {
    let id = unique_slug(&agent.folder, |id| Ok(central::room_id_taken(tx, id)?))?;
    let room = Room {
        id: id.clone(),
        channel_type: "webchat".into(),
        platform_id: id.clone(),
        name: agent.name.clone(),
        is_group: true,
        created_at: now,
    };
    central::insert_room(tx, &room)?;
    central::insert_wiring(tx, &new_id("wire"), &room.id, &agent.id, now)?;
    let local =
        unique_slug(&normalize_name(&room.name), |n| Ok(central::destination_name_taken(tx, &agent.id, n)?))?;
    central::insert_destination(tx, &agent.id, &local, "channel", &room.id, now)?;
    // Its own room: it answers everything there.
    central::set_prime(tx, &room.id, Some(&agent.id))?;
    Ok(room)
}

/// Lets agent `from` send messages to agent `to` under a destination name (by default the
/// other agent's name as a slug); returns the name. Linking twice keeps the first name. Running
/// sessions of `from` see the destination on their next turn.
pub fn link(
    conn: &Connection,
    data_dir: &Path,
    from: &str,
    to: &str,
    name: Option<&str>,
    now: i64,
) -> anyhow::Result<String> {
    let Some(source) = central::agent(conn, from)? else { bail!("no agent {from:?}") };
    let Some(target) = central::agent(conn, to)? else { bail!("no agent {to:?}") };
    if source.id == target.id {
        bail!("an agent cannot be linked to itself");
    }
    if let Some((existing, _, _)) = central::destinations_of(conn, &source.id)?
        .into_iter()
        .find(|(_, t, id)| t == "agent" && *id == target.id)
    {
        return Ok(existing);
    }
    let local = match name {
        Some(n) => {
            let n = normalize_name(&validate_name("destination", n)?);
            if central::destination_name_taken(conn, &source.id, &n)? {
                bail!("{} already has a destination named {n:?}", source.name);
            }
            n
        }
        None => unique_slug(&normalize_name(&target.name), |n| {
            Ok(central::destination_name_taken(conn, &source.id, n)?)
        })?,
    };
    central::insert_destination(conn, &source.id, &local, "agent", &target.id, now)?;
    reproject(conn, data_dir, &source.id);
    Ok(local)
}

/// Removes one of an agent's destinations; true if it existed.
pub fn unlink(conn: &Connection, data_dir: &Path, agent_id: &str, name: &str) -> anyhow::Result<bool> {
    let removed = central::delete_destination(conn, agent_id, name)?;
    if removed {
        reproject(conn, data_dir, agent_id);
    }
    Ok(removed)
}

/// Rewrites the destination projection of the agent's active sessions.
pub fn reproject(conn: &Connection, data_dir: &Path, agent_id: &str) {
    for s in central::sessions_of_agent(conn, agent_id).unwrap_or_default() {
        let dir = super::sessions::SessionDir::new(data_dir, agent_id, &s.id);
        if dir.inbound().exists()
            && let Err(e) = super::sessions::project(conn, &dir, &s)
        {
            log::warn!("updating the destinations of session {}: {e:#}", s.id);
        }
    }
}

/// First run: with no agents at all, create "Assistant" with its own room.
pub fn ensure_first_agent(
    conn: &mut Connection,
    groups_dir: &Path,
    now: i64,
) -> anyhow::Result<Option<Created>> {
    if central::agent_count(conn)? > 0 {
        return Ok(None);
    }
    let created = create(conn, groups_dir, FIRST_AGENT_NAME, Some(FIRST_AGENT_INSTRUCTIONS), true, now)?;
    log::info!(
        "first run: created agent {:?} with room {:?}",
        created.agent.name,
        created.room.as_ref().map(|r| &r.id)
    );
    Ok(Some(created))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Kind;

    fn setup() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = db::open(&dir.path().join("pincer.db"), Kind::Central).unwrap();
        (dir, conn)
    }

    #[test]
    fn creates_agent_room_wiring_and_destination() {
        let (dir, mut conn) = setup();
        let groups = dir.path().join("groups");
        let c = create(&mut conn, &groups, " Research Helper ", Some("Be brief."), true, 5).unwrap();
        assert_eq!(c.agent.name, "Research Helper");
        assert_eq!(c.agent.folder, "research-helper");
        let room = c.room.unwrap();
        assert_eq!((room.id.as_str(), room.name.as_str()), ("research-helper", "Research Helper"));
        assert_eq!(std::fs::read_to_string(groups.join("research-helper/AGENT.md")).unwrap(), "Be brief.");
        assert_eq!(central::wirings_of_room(&conn, &room.id).unwrap().len(), 1);
        let dests = central::resolved_destinations(&conn, &c.agent.id).unwrap();
        assert_eq!(dests.len(), 1);
        assert_eq!(dests[0].platform_id.as_deref(), Some("research-helper"));
        // The same name in another case or spacing is taken...
        let err = create(&mut conn, &groups, "research  HELPER", None, true, 6).unwrap_err();
        assert!(err.to_string().contains("already exists"), "{err}");
        // ...a different name with the same folder gets a suffix.
        let c2 = create(&mut conn, &groups, "Research-Helper", None, true, 6).unwrap();
        assert_eq!(c2.agent.folder, "research-helper-2");
        assert_eq!(c2.room.unwrap().id, "research-helper-2");
    }

    #[test]
    fn bad_names_are_refused_and_leave_nothing() {
        let (dir, mut conn) = setup();
        let groups = dir.path().join("groups");
        let spoofs = [
            "Ass\u{200B}istant",
            "\u{202E}tnatsissA",
            "Assistant\u{2066}",
            "A\u{FEFF}b",
            "\u{3164}",
            "a\u{E0041}",
        ];
        for name in ["", "   ", "a\nb", &"x".repeat(65)].into_iter().chain(spoofs) {
            assert!(create(&mut conn, &groups, name, None, true, 1).is_err(), "{name:?}");
        }
        let big = "x".repeat(INSTRUCTIONS_BYTES_MAX + 1);
        assert!(create(&mut conn, &groups, "ok", Some(&big), false, 1).is_err());
        assert_eq!(central::agent_count(&conn).unwrap(), 0);
        assert!(!groups.join("ok").exists());
    }

    #[test]
    fn first_agent_only_once() {
        let (dir, mut conn) = setup();
        let groups = dir.path().join("groups");
        let first = ensure_first_agent(&mut conn, &groups, 1).unwrap().unwrap();
        assert_eq!(first.agent.name, FIRST_AGENT_NAME);
        assert!(first.room.is_some());
        assert!(ensure_first_agent(&mut conn, &groups, 2).unwrap().is_none());
    }
}
