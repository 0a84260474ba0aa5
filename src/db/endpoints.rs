//! The model endpoints the owner added in the app (table `model_endpoints`): kind, URL, key and
//! default model. An agent whose `provider` is an endpoint's id uses it.

use rusqlite::{Connection, OptionalExtension, params};

/// One endpoint as stored. `api_key` never leaves the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub id: String,
    pub name: String,
    /// `anthropic` or `openai` (the wire protocol).
    pub kind: String,
    /// Anthropic: without `/v1`; OpenAI-compatible: up to and including `/v1` (or its equivalent).
    pub base_url: String,
    pub api_key: Option<String>,
    pub default_model: Option<String>,
    pub created_at: i64,
}

const COLUMNS: &str = "id, name, kind, base_url, api_key, default_model, created_at";

fn from_row(r: &rusqlite::Row) -> rusqlite::Result<Endpoint> {
    Ok(Endpoint {
        id: r.get(0)?,
        name: r.get(1)?,
        kind: r.get(2)?,
        base_url: r.get(3)?,
        api_key: r.get(4)?,
        default_model: r.get(5)?,
        created_at: r.get(6)?,
    })
}

pub fn list(conn: &Connection) -> rusqlite::Result<Vec<Endpoint>> {
    let mut stmt = conn.prepare(&format!("SELECT {COLUMNS} FROM model_endpoints ORDER BY created_at, id"))?;
    stmt.query_map([], from_row)?.collect()
}

pub fn get(conn: &Connection, id: &str) -> rusqlite::Result<Option<Endpoint>> {
    conn.query_row(&format!("SELECT {COLUMNS} FROM model_endpoints WHERE id = ?1"), [id], from_row).optional()
}

/// The endpoint a session's agent uses, if it uses one of these.
pub fn of_session(conn: &Connection, session_id: &str) -> rusqlite::Result<Option<Endpoint>> {
    conn.query_row(
        "SELECT e.id, e.name, e.kind, e.base_url, e.api_key, e.default_model, e.created_at
         FROM sessions s JOIN agents a ON a.id = s.agent_id JOIN model_endpoints e ON e.id = a.provider
         WHERE s.id = ?1",
        [session_id],
        from_row,
    )
    .optional()
}

/// Whether another endpoint has this name (case-insensitively).
pub fn name_taken(conn: &Connection, name: &str, except: Option<&str>) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM model_endpoints WHERE name = ?1 COLLATE NOCASE AND id IS NOT ?2)",
        params![name, except],
        |r| r.get(0),
    )
}

pub fn insert(conn: &Connection, e: &Endpoint) -> rusqlite::Result<()> {
    conn.execute(
        &format!("INSERT INTO model_endpoints ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"),
        params![e.id, e.name, e.kind, e.base_url, e.api_key, e.default_model, e.created_at],
    )?;
    Ok(())
}

pub fn update(conn: &Connection, e: &Endpoint) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE model_endpoints SET name = ?2, kind = ?3, base_url = ?4, api_key = ?5, default_model = ?6
         WHERE id = ?1",
        params![e.id, e.name, e.kind, e.base_url, e.api_key, e.default_model],
    )?;
    Ok(())
}

/// The agents using an endpoint.
pub fn agents_using(conn: &Connection, id: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT id FROM agents WHERE provider = ?1 ORDER BY id")?;
    stmt.query_map([id], |r| r.get(0))?.collect()
}

/// Removes an endpoint; the agents using it go back to the host's default model.
pub fn delete(conn: &mut Connection, id: &str) -> rusqlite::Result<usize> {
    let tx = conn.transaction()?;
    let moved = tx.execute("UPDATE agents SET provider = NULL, model = NULL WHERE provider = ?1", [id])?;
    tx.execute("DELETE FROM model_endpoints WHERE id = ?1", [id])?;
    tx.commit()?;
    Ok(moved)
}
