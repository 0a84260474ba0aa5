//! The central DB's approvals: requests of agents that a person decides.

use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Approval {
    pub id: String,
    pub kind: String,
    pub agent_id: String,
    pub session_id: String,
    pub room_id: Option<String>,
    pub requested_by: Option<String>,
    pub payload: String,
    pub summary: String,
    pub status: String,
    pub message_id: Option<String>,
    pub source_id: String,
    pub created_at: i64,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub outcome: Option<String>,
}

impl Approval {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Approval> {
        Ok(Approval {
            id: r.get("id")?,
            kind: r.get("kind")?,
            agent_id: r.get("agent_id")?,
            session_id: r.get("session_id")?,
            room_id: r.get("room_id")?,
            requested_by: r.get("requested_by")?,
            payload: r.get("payload")?,
            summary: r.get("summary")?,
            status: r.get("status")?,
            message_id: r.get("message_id")?,
            source_id: r.get("source_id")?,
            created_at: r.get("created_at")?,
            decided_by: r.get("decided_by")?,
            decided_at: r.get("decided_at")?,
            outcome: r.get("outcome")?,
        })
    }
}

/// Stores a request once per `source_id`; returns the stored one (new or earlier).
pub fn insert(conn: &Connection, a: &Approval) -> rusqlite::Result<Approval> {
    conn.execute(
        "INSERT OR IGNORE INTO approvals (id, kind, agent_id, session_id, room_id, requested_by, payload, summary,
                                          status, source_id, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'pending', ?9, ?10)",
        params![a.id, a.kind, a.agent_id, a.session_id, a.room_id, a.requested_by, a.payload, a.summary, a.source_id, a.created_at],
    )?;
    conn.query_row("SELECT * FROM approvals WHERE source_id = ?1", [&a.source_id], Approval::from_row)
}

pub fn get(conn: &Connection, id: &str) -> rusqlite::Result<Option<Approval>> {
    conn.query_row("SELECT * FROM approvals WHERE id = ?1", [id], Approval::from_row).optional()
}

/// The newest request whose source id starts with `prefix`.
pub fn latest_by_source_prefix(conn: &Connection, prefix: &str) -> rusqlite::Result<Option<Approval>> {
    conn.query_row(
        "SELECT * FROM approvals WHERE substr(source_id, 1, length(?1)) = ?1 ORDER BY created_at DESC LIMIT 1",
        [prefix],
        Approval::from_row,
    )
    .optional()
}

pub fn pending(conn: &Connection) -> rusqlite::Result<Vec<Approval>> {
    let mut stmt =
        conn.prepare_cached("SELECT * FROM approvals WHERE status = 'pending' ORDER BY created_at")?;
    stmt.query_map([], Approval::from_row)?.collect()
}

pub fn set_message(conn: &Connection, id: &str, message_id: &str) -> rusqlite::Result<()> {
    conn.execute("UPDATE approvals SET message_id = ?2 WHERE id = ?1", [id, message_id])?;
    Ok(())
}

/// Records the decision if the request is still pending; true if this call decided it.
pub fn decide(
    conn: &Connection,
    id: &str,
    status: &str,
    by: &str,
    outcome: &str,
    now: i64,
) -> rusqlite::Result<bool> {
    Ok(conn.execute(
        "UPDATE approvals SET status = ?2, decided_by = ?3, outcome = ?4, decided_at = ?5
         WHERE id = ?1 AND status = 'pending'",
        params![id, status, by, outcome, now],
    )? == 1)
}
