//! Queries on a session's `outbound.db`.
//!
//! The container is its only writer while it runs: replies and actions (`messages_out`, odd
//! `seq`), claims on inbound rows (`processing_ack`), the conversation (`conversation`) and the tool
//! in flight (`container_state`). The host reads it; it writes only to clear the claims of a
//! container that is gone ([`delete_processing_claims`]).

use rusqlite::{Connection, OptionalExtension, params};

/// Next odd `seq` for a container row: `m = max(MAX(seq) out, MAX(seq) in)`; the next odd > m.
pub fn next_odd_seq(max_out: Option<i64>, max_in: Option<i64>) -> i64 {
    let m = max_out.unwrap_or(0).max(max_in.unwrap_or(0));
    if m.rem_euclid(2) == 0 { m + 1 } else { m + 2 }
}

/// A reply or action written by the agent.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutbound<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub in_reply_to: Option<&'a str>,
    pub timestamp: i64,
    pub deliver_after: Option<i64>,
    pub channel_type: Option<&'a str>,
    pub platform_id: Option<&'a str>,
    pub thread_id: Option<&'a str>,
    pub content: &'a str,
}

/// Inserts an outbound row with the next odd seq after both tables (`max_in` is read by the
/// caller from `inbound.db`). Returns the seq.
pub fn insert(conn: &Connection, m: &NewOutbound<'_>, max_in: Option<i64>) -> rusqlite::Result<i64> {
    let max_out: Option<i64> =
        conn.prepare_cached("SELECT MAX(seq) FROM messages_out")?.query_row([], |r| r.get(0))?;
    let seq = next_odd_seq(max_out, max_in);
    conn.prepare_cached(
        "INSERT INTO messages_out (id, seq, in_reply_to, timestamp, deliver_after, kind,
                                   platform_id, channel_type, thread_id, content)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?
    .execute(params![
        m.id,
        seq,
        m.in_reply_to,
        m.timestamp,
        m.deliver_after,
        m.kind,
        m.platform_id,
        m.channel_type,
        m.thread_id,
        m.content
    ])?;
    Ok(seq)
}

/// Claims (or re-states) inbound rows: `processing`, `completed` or `failed`.
pub fn set_ack(conn: &Connection, ids: &[&str], status: &str, now: i64) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO processing_ack (message_id, status, status_changed) VALUES (?1, ?2, ?3)
         ON CONFLICT (message_id) DO UPDATE SET status = excluded.status, status_changed = excluded.status_changed",
    )?;
    for id in ids {
        stmt.execute(params![id, status, now])?;
    }
    Ok(())
}

/// Drops the claims of these rows (they were claimed but are left for a later turn).
pub fn delete_claims(conn: &Connection, ids: &[&str]) -> rusqlite::Result<()> {
    let mut stmt =
        conn.prepare_cached("DELETE FROM processing_ack WHERE message_id = ?1 AND status = 'processing'")?;
    for id in ids {
        stmt.execute([id])?;
    }
    Ok(())
}

/// Drops claims still `processing` (a fresh container retries what its predecessor left).
pub fn delete_processing_claims(conn: &Connection) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM processing_ack WHERE status = 'processing'")?.execute([])
}

/// The stored conversation of `provider` (lowercase): each message's position and JSON, in order.
pub fn conversation(conn: &Connection, provider: &str) -> rusqlite::Result<Vec<(i64, String)>> {
    let mut stmt =
        conn.prepare_cached("SELECT pos, message FROM conversation WHERE provider = ?1 ORDER BY pos")?;
    stmt.query_map([provider], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
}

/// Stores one message of the conversation at `pos`, replacing what was there.
pub fn put_conversation_message(
    conn: &Connection,
    provider: &str,
    pos: i64,
    message: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO conversation (provider, pos, message) VALUES (?1, ?2, ?3)")?
        .execute(params![provider, pos, message])?;
    Ok(())
}

/// Drops the messages before `pos` (trimmed off the conversation's front).
pub fn drop_conversation_before(conn: &Connection, provider: &str, pos: i64) -> rusqlite::Result<usize> {
    conn.prepare_cached("DELETE FROM conversation WHERE provider = ?1 AND pos < ?2")?
        .execute(params![provider, pos])
}

/// Forgets the whole conversation of `provider`.
pub fn delete_conversation(conn: &Connection, provider: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM conversation WHERE provider = ?1")?.execute([provider])?;
    Ok(())
}

/// Records the tool in flight (`None` clears it).
pub fn set_current_tool(
    conn: &Connection,
    tool: Option<(&str, Option<i64>)>,
    now: i64,
) -> rusqlite::Result<()> {
    let (name, timeout, started) = match tool {
        Some((name, timeout)) => (Some(name), timeout, Some(now)),
        None => (None, None, None),
    };
    conn.prepare_cached("INSERT INTO container_state (id, current_tool, tool_declared_timeout_ms, tool_started_at, updated_at)
         VALUES (1, ?1, ?2, ?3, ?4)
         ON CONFLICT (id) DO UPDATE SET current_tool = excluded.current_tool,
             tool_declared_timeout_ms = excluded.tool_declared_timeout_ms,
             tool_started_at = excluded.tool_started_at, updated_at = excluded.updated_at")?.execute(params![name, timeout, started, now],
    )?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Host side (read-only)

/// An outbound row as the host reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundRow {
    pub id: String,
    pub seq: i64,
    pub in_reply_to: Option<String>,
    pub timestamp: i64,
    pub deliver_after: Option<i64>,
    pub kind: String,
    pub channel_type: Option<String>,
    pub platform_id: Option<String>,
    pub thread_id: Option<String>,
    pub content: String,
}

/// Rows with `seq > after_seq`, ascending, at most `limit`.
pub fn rows_after(conn: &Connection, after_seq: i64, limit: i64) -> rusqlite::Result<Vec<OutboundRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, seq, in_reply_to, timestamp, deliver_after, kind, channel_type, platform_id, thread_id, content
         FROM messages_out WHERE seq > ?1 ORDER BY seq LIMIT ?2",
    )?;
    stmt.query_map(params![after_seq, limit], |r| {
        Ok(OutboundRow {
            id: r.get(0)?,
            seq: r.get(1)?,
            in_reply_to: r.get(2)?,
            timestamp: r.get(3)?,
            deliver_after: r.get(4)?,
            kind: r.get(5)?,
            channel_type: r.get(6)?,
            platform_id: r.get(7)?,
            thread_id: r.get(8)?,
            content: r.get(9)?,
        })
    })?
    .collect()
}

/// The highest `seq` written so far (0 for none).
pub fn last_seq(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM messages_out")?.query_row([], |r| r.get(0))
}

/// The id of the row with this seq.
pub fn id_by_seq(conn: &Connection, seq: i64) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT id FROM messages_out WHERE seq = ?1")?
        .query_row([seq], |r| r.get(0))
        .optional()
}

/// Every final acknowledgement: `(message id, status)` (for tests; the host asks by key,
/// [`finished_acks_of`]).
#[cfg(test)]
pub fn finished_acks(conn: &Connection) -> rusqlite::Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT message_id, status FROM processing_ack WHERE status IN ('completed', 'failed')",
    )?;
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
}

/// The final acknowledgement of each of these rows that has one: `(message id, status)`. Looked
/// up by key, so it costs what the caller asks about, however long the session's history.
pub fn finished_acks_of(conn: &Connection, ids: &[String]) -> rusqlite::Result<Vec<(String, String)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT status FROM processing_ack WHERE message_id = ?1 AND status IN ('completed', 'failed')",
    )?;
    let mut acks = Vec::new();
    for id in ids {
        if let Some(status) = stmt.query_row([id], |r| r.get::<_, String>(0)).optional()? {
            acks.push((id.clone(), status));
        }
    }
    Ok(acks)
}

/// A claim the container holds: `(message id, claimed at)`.
pub fn processing_claims(conn: &Connection) -> rusqlite::Result<Vec<(String, i64)>> {
    let mut stmt = conn.prepare_cached(
        "SELECT message_id, status_changed FROM processing_ack WHERE status = 'processing'",
    )?;
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()
}

/// The tool in flight and its declared timeout, if any.
pub fn current_tool(conn: &Connection) -> rusqlite::Result<Option<(String, Option<i64>)>> {
    conn.prepare_cached("SELECT current_tool, tool_declared_timeout_ms FROM container_state WHERE id = 1 AND current_tool IS NOT NULL")?.query_row([],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .optional()
}
