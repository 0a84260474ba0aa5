//! Messages pinned in a room (table `message_pins`).

use rusqlite::{Connection, params};

/// One pin: the message, who pinned it (id and name) and when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pin {
    pub message_id: String,
    pub pinned_by: String,
    pub pinned_by_name: String,
    pub pinned_at: i64,
}

/// A room's pins, newest first.
pub fn list(conn: &Connection, room_id: &str) -> rusqlite::Result<Vec<Pin>> {
    let mut stmt = conn.prepare(
        "SELECT p.message_id, p.pinned_by, COALESCE(u.display_name, p.pinned_by), p.pinned_at
         FROM message_pins p LEFT JOIN users u ON u.id = p.pinned_by
         WHERE p.room_id = ?1 ORDER BY p.pinned_at DESC, p.message_id",
    )?;
    stmt.query_map([room_id], |r| {
        Ok(Pin {
            message_id: r.get(0)?,
            pinned_by: r.get(1)?,
            pinned_by_name: r.get(2)?,
            pinned_at: r.get(3)?,
        })
    })?
    .collect()
}

/// Pins a message unless the room has `max` pins already (a pin that exists stays, not counted
/// twice); whether it is pinned now.
pub fn pin(
    conn: &Connection,
    room_id: &str,
    message_id: &str,
    by: &str,
    at: i64,
    max: i64,
) -> rusqlite::Result<bool> {
    conn.execute(
        "INSERT OR IGNORE INTO message_pins (room_id, message_id, pinned_by, pinned_at)
         SELECT ?1, ?2, ?3, ?4 WHERE (SELECT COUNT(*) FROM message_pins WHERE room_id = ?1) < ?5",
        params![room_id, message_id, by, at, max],
    )?;
    conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM message_pins WHERE room_id = ?1 AND message_id = ?2)",
        [room_id, message_id],
        |r| r.get(0),
    )
}

pub fn unpin(conn: &Connection, room_id: &str, message_id: &str) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM message_pins WHERE room_id = ?1 AND message_id = ?2", [room_id, message_id])
}

/// A deleted message leaves every pin.
pub fn forget(conn: &Connection, message_id: &str) -> rusqlite::Result<usize> {
    conn.execute("DELETE FROM message_pins WHERE message_id = ?1", [message_id])
}
