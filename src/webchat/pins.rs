//! Messages pinned in a room (`message_pins`): anyone in the room pins or unpins a message; the
//! pins are the same for everyone there, and every page in the room is told at once with a
//! `pins` event.

use rusqlite::Connection;
use serde_json::{Value, json};

use super::Ctx;
use super::wire::{ApiError, ApiResult, Resp, User};
use crate::db::{central, pins as db};
use crate::ids::now_ms;

/// Pins one room keeps.
pub const PINS_PER_ROOM_MAX: i64 = 50;

/// The room's pins, newest first: `[{"message_id", "seq", "pinned_by", "pinned_by_name",
/// "pinned_at", "message"}]`.
fn pins(conn: &Connection, room_id: &str) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    for p in db::list(conn, room_id)? {
        if let Some(m) = central::message(conn, &p.message_id)? {
            out.push(json!({
                "message_id": p.message_id, "seq": m.seq, "pinned_by": p.pinned_by,
                "pinned_by_name": p.pinned_by_name, "pinned_at": p.pinned_at,
                "message": super::redact::message(&m),
            }));
        }
    }
    Ok(out)
}

/// `GET /api/rooms/:id/pins`.
pub fn list(ctx: &Ctx, user: &User, room_id: &str) -> ApiResult {
    let room = ctx.room_for(user, room_id)?;
    Ok(Resp::json(200, &json!({ "pins": pins(&*ctx.store.conn()?, &room.id)? })))
}

/// `PUT /api/rooms/:id/pins/:message` and `DELETE` (anyone in the room).
pub fn set(ctx: &Ctx, user: &User, room_id: &str, message_id: &str, pinned: bool) -> ApiResult {
    let room = ctx.room_for(user, room_id)?;
    let conn = ctx.store.conn()?;
    let m = central::message(&conn, message_id)?
        .filter(|m| m.room_id == room.id)
        .ok_or_else(|| ApiError(404, format!("no message {message_id:?} in {}", room.name)))?;
    if pinned {
        if m.deleted_at.is_some() {
            return Err(ApiError(409, "a deleted message cannot be pinned".into()));
        }
        if !db::pin(&conn, &room.id, &m.id, &user.id, now_ms(), PINS_PER_ROOM_MAX)? {
            return Err(ApiError(
                409,
                format!("a room keeps at most {PINS_PER_ROOM_MAX} pins: unpin one first"),
            ));
        }
    } else {
        db::unpin(&conn, &room.id, &m.id)?;
    }
    let list = announce(ctx, &conn, &room.id)?;
    Ok(Resp::json(200, &json!({ "ok": true, "pins": list })))
}

/// Tells every page in the room its pins as they are now; returns them.
pub fn announce(ctx: &Ctx, conn: &Connection, room_id: &str) -> Result<Vec<Value>, ApiError> {
    let list = pins(conn, room_id)?;
    ctx.hub.broadcast(
        room_id,
        &json!({ "type": "pins", "room_id": room_id, "pins": list }).to_string(),
        None,
    );
    Ok(list)
}
