//! Queries on a session's `inbound.db`.
//!
//! The host is its only writer (messages for the agent, delivery outcomes, the destination
//! projection, the default reply address). The container reads it through a fresh read-only
//! connection per poll ([`pending`]). Host rows get even `seq` ([`next_even_seq`]).

use std::collections::HashSet;

use rusqlite::{Connection, OptionalExtension, params};

use super::central::ResolvedDestination;

/// Next even `seq` for a host row: `m = MAX(seq)`; `m < 2 → 2`, else the next even number > m.
pub fn next_even_seq(max_seq: Option<i64>) -> i64 {
    match max_seq {
        None => 2,
        Some(m) if m < 2 => 2,
        Some(m) => m + 2 - m.rem_euclid(2),
    }
}

/// A row for the agent.
#[derive(Debug, Clone, PartialEq)]
pub struct NewInbound<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub timestamp: i64,
    pub trigger: bool,
    pub process_after: Option<i64>,
    pub channel_type: Option<&'a str>,
    pub platform_id: Option<&'a str>,
    pub thread_id: Option<&'a str>,
    pub content: &'a str,
    pub on_wake: bool,
    /// A task's cron schedule.
    pub recurrence: Option<&'a str>,
    /// The series a task run belongs to (`None`: its own id).
    pub series_id: Option<&'a str>,
    /// The session an agent-to-agent message came from (its way back).
    pub source_session_id: Option<&'a str>,
}

#[cfg(test)]
impl<'a> NewInbound<'a> {
    /// A person's chat message in webchat room `r1` (tests).
    pub(crate) fn chat_for_tests(id: &'a str, trigger: bool, process_after: Option<i64>) -> NewInbound<'a> {
        NewInbound {
            id,
            kind: "chat",
            timestamp: 1,
            trigger,
            process_after,
            channel_type: Some("webchat"),
            platform_id: Some("r1"),
            thread_id: None,
            content: r#"{"text":"x"}"#,
            on_wake: false,
            recurrence: None,
            series_id: None,
            source_session_id: None,
        }
    }
}

/// Inserts a row with the next even seq unless a row with the same id exists (re-routing after a
/// crash is then a no-op). Returns the row's seq and whether it was inserted now.
pub fn insert(conn: &Connection, m: &NewInbound<'_>) -> rusqlite::Result<(i64, bool)> {
    if let Some(seq) = conn
        .query_row("SELECT seq FROM messages_in WHERE id = ?1", [m.id], |r| r.get::<_, i64>(0))
        .optional()?
    {
        return Ok((seq, false));
    }
    let max: Option<i64> =
        conn.prepare_cached("SELECT MAX(seq) FROM messages_in")?.query_row([], |r| r.get(0))?;
    let seq = next_even_seq(max);
    conn.prepare_cached(
        "INSERT INTO messages_in (id, seq, kind, timestamp, status, process_after, series_id, trigger,
                                  platform_id, channel_type, thread_id, content, on_wake, recurrence, source_session_id)
         VALUES (?1, ?2, ?3, ?4, 'pending', ?5, COALESCE(?13, ?1), ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?14)",
    )?
    .execute(params![
        m.id,
        seq,
        m.kind,
        m.timestamp,
        m.process_after,
        m.trigger,
        m.platform_id,
        m.channel_type,
        m.thread_id,
        m.content,
        m.on_wake,
        m.recurrence,
        m.series_id,
        m.source_session_id
    ])?;
    Ok((seq, true))
}

/// Rewrites the destination projection wholesale.
pub fn write_destinations(conn: &Connection, dests: &[ResolvedDestination]) -> rusqlite::Result<()> {
    conn.prepare_cached("DELETE FROM destinations")?.execute([])?;
    let mut stmt = conn.prepare_cached(
        "INSERT INTO destinations (name, display_name, type, channel_type, platform_id, agent_id)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    for d in dests {
        stmt.execute(params![
            d.name,
            d.display_name,
            d.target_type,
            d.channel_type,
            d.platform_id,
            d.agent_id
        ])?;
    }
    Ok(())
}

/// Sets the session's default reply address.
pub fn write_routing(
    conn: &Connection,
    channel_type: Option<&str>,
    platform_id: Option<&str>,
    thread_id: Option<&str>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO session_routing (id, channel_type, platform_id, thread_id) VALUES (1, ?1, ?2, ?3)
         ON CONFLICT (id) DO UPDATE SET channel_type = excluded.channel_type,
             platform_id = excluded.platform_id, thread_id = excluded.thread_id",
    )?
    .execute(params![channel_type, platform_id, thread_id])?;
    Ok(())
}

/// Outcome of an outbound row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    Failed,
}

/// Records the outcome of an outbound row once; a second record of the same row is ignored.
pub fn record_outcome(
    conn: &Connection,
    message_out_id: &str,
    outcome: Outcome,
    platform_message_id: Option<&str>,
    reason: Option<&str>,
    now: i64,
) -> rusqlite::Result<bool> {
    let status = match outcome {
        Outcome::Delivered => "delivered",
        Outcome::Failed => "failed",
    };
    let n = conn.prepare_cached(
        "INSERT OR IGNORE INTO delivered (message_out_id, platform_message_id, status, reason, delivered_at)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![message_out_id, platform_message_id, status, reason, now])?;
    Ok(n == 1)
}

/// True if the outbound row already has an outcome.
pub fn has_outcome(conn: &Connection, message_out_id: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM delivered WHERE message_out_id = ?1)")?
        .query_row([message_out_id], |r| r.get(0))
}

/// Whether any of the rows is a task's run (its end may schedule the next run).
pub fn any_task<'a>(conn: &Connection, ids: impl IntoIterator<Item = &'a str>) -> rusqlite::Result<bool> {
    let mut stmt =
        conn.prepare_cached("SELECT EXISTS (SELECT 1 FROM messages_in WHERE id = ?1 AND kind = 'task')")?;
    for id in ids {
        if stmt.query_row([id], |r| r.get::<_, bool>(0))? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Applies the container's acknowledgements: claimed rows that finished become `completed` or
/// `failed`. Returns how many rows changed.
pub fn apply_acks(conn: &Connection, acks: &[(String, String)]) -> rusqlite::Result<usize> {
    let mut stmt =
        conn.prepare_cached("UPDATE messages_in SET status = ?2 WHERE id = ?1 AND status = 'pending'")?;
    let mut n = 0;
    for (id, status) in acks {
        let status = if status == "failed" { "failed" } else { "completed" };
        n += stmt.execute(params![id, status])?;
    }
    Ok(n)
}

/// Rows that should wake the agent now: pending, triggering, due.
pub fn due_count(conn: &Connection, now: i64) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "SELECT COUNT(*) FROM messages_in
         WHERE status = 'pending' AND trigger = 1 AND (process_after IS NULL OR process_after <= ?1)",
    )?
    .query_row([now], |r| r.get(0))
}

/// The ids of every row still pending, triggering or not (the ones an acknowledgement in
/// `outbound.db` may finish).
pub fn pending_rows(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached("SELECT id FROM messages_in WHERE status = 'pending'")?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

/// Rows the agent has not finished: pending, claimed or not, and not among `finished` (the rows
/// the container acknowledged as finished in `outbound.db`, which reach this file a moment later).
pub fn pending_count(conn: &Connection, finished: &HashSet<String>) -> rusqlite::Result<i64> {
    let mut stmt =
        conn.prepare_cached("SELECT id FROM messages_in WHERE status = 'pending' AND kind != 'task'")?;
    let mut n = 0;
    for id in stmt.query_map([], |r| r.get::<_, String>(0))? {
        n += i64::from(!finished.contains(&id?));
    }
    Ok(n)
}

/// The soonest `process_after` of a pending triggering row that is not yet due.
pub fn next_due_at(conn: &Connection, now: i64) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT MIN(process_after) FROM messages_in WHERE status = 'pending' AND trigger = 1 AND process_after > ?1")?.query_row([now],
        |r| r.get(0),
    )
}

/// A pending row claimed by a container that is gone.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryState {
    pub id: String,
    pub tries: i64,
    pub process_after: Option<i64>,
}

pub fn retry_state(conn: &Connection, id: &str) -> rusqlite::Result<Option<RetryState>> {
    conn.prepare_cached(
        "SELECT id, tries, process_after FROM messages_in WHERE id = ?1 AND status = 'pending'",
    )?
    .query_row([id], |r| Ok(RetryState { id: r.get(0)?, tries: r.get(1)?, process_after: r.get(2)? }))
    .optional()
}

/// Schedules another try of a row at `process_after`.
pub fn schedule_retry(conn: &Connection, id: &str, tries: i64, process_after: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE messages_in SET tries = ?2, process_after = ?3 WHERE id = ?1")?
        .execute(params![id, tries, process_after])?;
    Ok(())
}

/// Gives up on a row.
pub fn mark_failed(conn: &Connection, id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE messages_in SET status = 'failed' WHERE id = ?1")?.execute([id])?;
    Ok(())
}

/// Pending triggering rows (ids and text content) for reporting failures.
pub fn pending_ids(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut stmt =
        conn.prepare("SELECT id FROM messages_in WHERE status = 'pending' AND trigger = 1 ORDER BY seq")?;
    stmt.query_map([], |r| r.get(0))?.collect()
}

// ---------------------------------------------------------------------------------------------
// Container side (read-only)

/// An inbound row as the agent sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundRow {
    pub id: String,
    pub seq: i64,
    pub kind: String,
    pub timestamp: i64,
    pub trigger: bool,
    pub channel_type: Option<String>,
    pub platform_id: Option<String>,
    pub thread_id: Option<String>,
    pub content: String,
}

/// Pending rows for the agent, oldest first: due, not yet claimed in `outbound.db` (attached as
/// `outb`), at most `limit` (the newest `limit` when more are waiting). `on_wake` rows only on the
/// first poll of a fresh container. System rows never count against the limit.
pub fn pending(
    conn: &Connection,
    now: i64,
    first_poll: bool,
    limit: i64,
) -> rusqlite::Result<Vec<InboundRow>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, seq, kind, timestamp, trigger, channel_type, platform_id, thread_id, content
         FROM messages_in m
         WHERE m.status = 'pending' AND m.kind <> 'system'
           AND (m.process_after IS NULL OR m.process_after <= ?1)
           AND (m.on_wake = 0 OR ?2)
           AND NOT EXISTS (SELECT 1 FROM outb.processing_ack a WHERE a.message_id = m.id)
         ORDER BY m.seq DESC LIMIT ?3",
    )?;
    let mut rows: Vec<InboundRow> = stmt
        .query_map(params![now, first_poll, limit], |r| {
            Ok(InboundRow {
                id: r.get(0)?,
                seq: r.get(1)?,
                kind: r.get(2)?,
                timestamp: r.get(3)?,
                trigger: r.get(4)?,
                channel_type: r.get(5)?,
                platform_id: r.get(6)?,
                thread_id: r.get(7)?,
                content: r.get(8)?,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    rows.reverse();
    Ok(rows)
}

/// A scheduled task: the newest row of each series of `kind = 'task'`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRow {
    pub series_id: String,
    pub status: String,
    pub process_after: Option<i64>,
    pub recurrence: Option<String>,
    pub content: String,
}

/// The session's tasks, soonest first.
pub fn tasks(conn: &Connection) -> rusqlite::Result<Vec<TaskRow>> {
    let mut stmt = conn.prepare(
        "SELECT COALESCE(series_id, id), status, process_after, recurrence, content FROM messages_in m
         WHERE kind = 'task' AND seq = (SELECT MAX(seq) FROM messages_in s
                                        WHERE COALESCE(s.series_id, s.id) = COALESCE(m.series_id, m.id))
         ORDER BY process_after IS NULL, process_after, seq",
    )?;
    stmt.query_map([], |r| {
        Ok(TaskRow {
            series_id: r.get(0)?,
            status: r.get(1)?,
            process_after: r.get(2)?,
            recurrence: r.get(3)?,
            content: r.get(4)?,
        })
    })?
    .collect()
}

/// A task series' current row (the newest), while it is open (pending or paused).
#[derive(Debug, Clone, PartialEq)]
pub struct OpenTask {
    pub id: String,
    pub status: String,
    pub process_after: Option<i64>,
    pub recurrence: Option<String>,
    pub content: String,
}

pub fn open_task(conn: &Connection, series_id: &str) -> rusqlite::Result<Option<OpenTask>> {
    conn.prepare_cached(
        "SELECT id, status, process_after, recurrence, content FROM messages_in
         WHERE kind = 'task' AND COALESCE(series_id, id) = ?1 ORDER BY seq DESC LIMIT 1",
    )?
    .query_row([series_id], |r| {
        Ok(OpenTask {
            id: r.get(0)?,
            status: r.get(1)?,
            process_after: r.get(2)?,
            recurrence: r.get(3)?,
            content: r.get(4)?,
        })
    })
    .optional()
    .map(|t| t.filter(|t| t.status == "pending" || t.status == "paused"))
}

/// Open task series (pending or paused).
pub fn open_task_count(conn: &Connection) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "SELECT COUNT(DISTINCT COALESCE(series_id, id)) FROM messages_in
         WHERE kind = 'task' AND status IN ('pending', 'paused')",
    )?
    .query_row([], |r| r.get(0))
}

/// Changes an open task row's time, schedule and content.
pub fn update_task(
    conn: &Connection,
    id: &str,
    process_after: Option<i64>,
    recurrence: Option<&str>,
    content: &str,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "UPDATE messages_in SET process_after = ?2, recurrence = ?3, content = ?4
         WHERE id = ?1 AND status IN ('pending', 'paused')",
    )?
    .execute(params![id, process_after, recurrence, content])?;
    Ok(())
}

/// Moves an open task row to `status` (`paused`, `pending` or `cancelled`; a cancelled task no
/// longer recurs).
pub fn set_task_status(conn: &Connection, id: &str, status: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE messages_in SET status = ?2, recurrence = CASE WHEN ?2 = 'cancelled' THEN NULL ELSE recurrence END
         WHERE id = ?1 AND status IN ('pending', 'paused')")?.execute(params![id, status],
    )?;
    Ok(())
}

/// A task run that has ended and whose series recurs.
#[derive(Debug, Clone, PartialEq)]
pub struct EndedRun {
    pub id: String,
    pub series_id: String,
    pub timestamp: i64,
    pub process_after: Option<i64>,
    pub recurrence: Option<String>,
    pub channel_type: Option<String>,
    pub platform_id: Option<String>,
    pub thread_id: Option<String>,
    pub content: String,
}

pub fn ended_recurring_tasks(conn: &Connection) -> rusqlite::Result<Vec<EndedRun>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, COALESCE(series_id, id), timestamp, process_after, recurrence, channel_type, platform_id,
                thread_id, content
         FROM messages_in
         WHERE kind = 'task' AND status IN ('completed', 'failed') AND recurrence IS NOT NULL AND recurrence != ''
         ORDER BY seq",
    )?;
    stmt.query_map([], |r| {
        Ok(EndedRun {
            id: r.get(0)?,
            series_id: r.get(1)?,
            timestamp: r.get(2)?,
            process_after: r.get(3)?,
            recurrence: r.get(4)?,
            channel_type: r.get(5)?,
            platform_id: r.get(6)?,
            thread_id: r.get(7)?,
            content: r.get(8)?,
        })
    })?
    .collect()
}

/// The row's run has been followed up: it no longer recurs itself.
pub fn stop_recurring(conn: &Connection, id: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE messages_in SET recurrence = NULL WHERE id = ?1")?.execute([id])?;
    Ok(())
}

/// Where a row came from, for answering it.
#[derive(Debug, Clone, PartialEq)]
pub struct RowMeta {
    pub channel_type: Option<String>,
    pub platform_id: Option<String>,
    pub content: String,
    pub source_session_id: Option<String>,
}

pub fn row_meta(conn: &Connection, id: &str) -> rusqlite::Result<Option<RowMeta>> {
    conn.prepare_cached(
        "SELECT channel_type, platform_id, content, source_session_id FROM messages_in WHERE id = ?1",
    )?
    .query_row([id], |r| {
        Ok(RowMeta {
            channel_type: r.get(0)?,
            platform_id: r.get(1)?,
            content: r.get(2)?,
            source_session_id: r.get(3)?,
        })
    })
    .optional()
}

/// The session the newest agent-to-agent message here came from.
pub fn latest_source_session(conn: &Connection) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT source_session_id FROM messages_in WHERE source_session_id IS NOT NULL ORDER BY seq DESC LIMIT 1")?.query_row([],
        |r| r.get(0),
    )
    .optional()
}

/// The id of the row with this seq.
pub fn id_by_seq(conn: &Connection, seq: i64) -> rusqlite::Result<Option<String>> {
    conn.prepare_cached("SELECT id FROM messages_in WHERE seq = ?1")?
        .query_row([seq], |r| r.get(0))
        .optional()
}

pub fn max_seq(conn: &Connection) -> rusqlite::Result<Option<i64>> {
    conn.prepare_cached("SELECT MAX(seq) FROM messages_in")?.query_row([], |r| r.get(0))
}

/// Where a message goes: a channel address (`channel_type` + `platform_id`, optional thread).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Address {
    pub channel_type: Option<String>,
    pub platform_id: Option<String>,
    pub thread_id: Option<String>,
}

/// The session's default reply address.
pub fn routing(conn: &Connection) -> rusqlite::Result<Option<Address>> {
    conn.prepare_cached("SELECT channel_type, platform_id, thread_id FROM session_routing WHERE id = 1")?
        .query_row([], |r| {
            Ok(Address { channel_type: r.get(0)?, platform_id: r.get(1)?, thread_id: r.get(2)? })
        })
        .optional()
}

/// The destination projection as the agent sees it.
pub fn destinations(conn: &Connection) -> rusqlite::Result<Vec<ResolvedDestination>> {
    let mut stmt = conn.prepare_cached(
        "SELECT name, display_name, type, channel_type, platform_id, agent_id FROM destinations ORDER BY name",
    )?;
    stmt.query_map([], |r| {
        let name: String = r.get(0)?;
        Ok(ResolvedDestination {
            display_name: r.get::<_, Option<String>>(1)?.unwrap_or_else(|| name.clone()),
            name,
            target_type: r.get(2)?,
            channel_type: r.get(3)?,
            platform_id: r.get(4)?,
            agent_id: r.get(5)?,
        })
    })?
    .collect()
}
