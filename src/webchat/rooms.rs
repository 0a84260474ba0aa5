//! Room settings: who a room's agents answer (`unknown_sender_policy`), and the record of
//! messages an agent did not get, with the reason.

use serde::Deserialize;
use serde_json::json;

use super::Ctx;
use super::wire::{ApiError, ApiResult, Req, Resp, User, parse_body};
use crate::db::central;

/// Drops listed at most.
pub const DROPPED_LIST_MAX: i64 = 200;

fn admin_room(ctx: &Ctx, user: &User, room_id: &str) -> Result<central::Room, ApiError> {
    let room = ctx
        .store
        .accessible_room(room_id, &user.id, user.owner)?
        .ok_or_else(|| ApiError(404, format!("no room {room_id:?}")))?;
    if !user.admin {
        return Err(ApiError(403, "only the owner or an admin can change or audit a room".into()));
    }
    Ok(room)
}

/// `PUT /api/rooms/:id/policy {"unknownSenders": "strict" | "request_approval" | "public"}`.
pub fn set_policy(ctx: &Ctx, user: &User, room_id: &str, req: &Req) -> ApiResult {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        unknown_senders: String,
    }
    let room = admin_room(ctx, user, room_id)?;
    let body: Body = parse_body(req, r#"{"unknownSenders": "strict" | "request_approval" | "public"}"#)?;
    if !matches!(body.unknown_senders.as_str(), "strict" | "request_approval" | "public") {
        return Err(ApiError(
            422,
            format!(
                "invalid unknownSenders {:?}: use strict, request_approval or public",
                body.unknown_senders
            ),
        ));
    }
    let conn = ctx.store.conn()?;
    central::set_room_policy(&conn, &room.id, &body.unknown_senders)?;
    log::info!("{} set room {} to answer {}", user.id, room.id, body.unknown_senders);
    // Who may see the room changed: everyone gets their room list again.
    ctx.rooms_changed();
    Ok(Resp::json(200, &json!({ "ok": true, "unknown_sender_policy": body.unknown_senders })))
}

/// `GET /api/rooms/:id/dropped`: the newest messages an agent of the room did not get.
pub fn dropped(ctx: &Ctx, user: &User, room_id: &str) -> ApiResult {
    let room = admin_room(ctx, user, room_id)?;
    let conn = ctx.store.conn()?;
    Ok(Resp::json(200, &json!(central::dropped_in_room(&conn, &room.id, DROPPED_LIST_MAX)?)))
}
