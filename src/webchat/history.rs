//! What people do with a room's history besides reading it: take back a message they sent
//! (`DELETE /api/rooms/:id/messages/:message`) and export the room
//! (`GET /api/rooms/:id/export?format=md|json`).
//!
//! A deleted message keeps its row and seq (seqs stay gap-free) with its text and files gone;
//! every page is told with an `update`. An export is the whole room, secrets masked, as a
//! download.

use serde_json::json;

use super::Ctx;
use super::adapter::update_event;
use super::wire::{ApiError, ApiResult, Req, Resp, User};
use crate::db::central::{self, RoomMessage};
use crate::ids::now_ms;

/// Largest export; a room with more messages is exported up to this many, newest last.
pub const EXPORT_MESSAGES_MAX: i64 = 200_000;
const EXPORT_PAGE: i64 = 1000;

/// `DELETE /api/rooms/:id/messages/:message`: the sender takes their message back (the owner may
/// take any person's message down). Its files leave the room too.
pub fn delete(ctx: &Ctx, user: &User, room_id: &str, message_id: &str) -> ApiResult {
    let room = ctx.room_for(user, room_id)?;
    let conn = ctx.store.conn()?;
    let m = central::message(&conn, message_id)?
        .filter(|m| m.room_id == room.id)
        .ok_or_else(|| ApiError(404, format!("no message {message_id:?} in {}", room.name)))?;
    let own = m.sender_type == "user" && m.sender_id.as_deref() == Some(user.id.as_str());
    let owner_takes_down = user.owner && m.sender_type == "user";
    if !(own || owner_takes_down) {
        return Err(ApiError(403, "you can delete only messages you sent".into()));
    }
    if m.deleted_at.is_some() {
        return Err(ApiError(409, "that message is deleted already".into()));
    }
    if !central::delete_message(&conn, &m.id, now_ms())? {
        return Err(ApiError(409, "that message is deleted already".into()));
    }
    for f in m.files.as_array().into_iter().flatten() {
        let stored = f.get("url").and_then(|u| u.as_str()).and_then(|u| u.rsplit_once('/')).map(|(_, n)| n);
        if let Some(name) = stored.filter(|n| super::files::safe_name(n)) {
            let path = super::files::room_dir(&ctx.uploads, &room.id).join(name);
            let _ = std::fs::remove_file(crate::host::pictures::model_copy(&path));
            let _ = std::fs::remove_file(path);
        }
    }
    let gone = central::message(&conn, &m.id)?.ok_or_else(|| ApiError(404, "no such message".into()))?;
    ctx.hub.broadcast(&room.id, &update_event(&gone), None);
    if crate::db::pins::forget(&conn, &m.id)? > 0 {
        super::pins::announce(ctx, &conn, &room.id)?;
    }
    log::info!("{} deleted message {} in room {}", user.id, m.id, room.id);
    Ok(Resp::json(200, &json!({ "ok": true, "message": super::redact::message(&gone) })))
}

/// `GET /api/rooms/:id/export?format=md|json` (default `md`), as a download.
pub fn export(ctx: &Ctx, user: &User, room_id: &str, req: &Req) -> ApiResult {
    let room = ctx.room_for(user, room_id)?;
    let format = req.query("format").unwrap_or("md");
    if !matches!(format, "md" | "json") {
        return Err(ApiError(400, format!("unknown format {format:?}: use md or json")));
    }
    let conn = ctx.store.conn()?;
    let mut all: Vec<RoomMessage> = Vec::new();
    let mut after = 0;
    while (all.len() as i64) < EXPORT_MESSAGES_MAX {
        let page = central::messages_after(&conn, &room.id, after, EXPORT_PAGE)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        all.extend(page);
    }
    let masked = super::redact::messages(&all);
    let day = jiff::Timestamp::from_millisecond(now_ms())
        .map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default();
    let tz = jiff::tz::TimeZone::get(&ctx.cfg.tz).unwrap_or(jiff::tz::TimeZone::UTC);
    let (body, mime, ext) = if format == "json" {
        let doc = json!({
            "room": { "id": room.id, "name": room.name },
            "exported_at": now_ms(),
            "messages": masked,
        });
        (serde_json::to_vec_pretty(&doc).unwrap_or_default(), "application/json", "json")
    } else {
        (markdown(&room.name, &masked, &tz).into_bytes(), "text/markdown; charset=utf-8", "md")
    };
    let name = format!("{}-{day}.{ext}", super::files::sanitize(&room.id));
    let mut resp = Resp { status: 200, headers: Vec::new(), body, file: None };
    resp.headers.push(("Content-Type".into(), mime.into()));
    resp.headers.push(("Content-Disposition".into(), format!("attachment; filename=\"{name}\"")));
    resp.headers.push(("Cache-Control".into(), "no-store".into()));
    Ok(resp)
}

/// The room as Markdown: a heading per day, each message with its sender, time and files.
fn markdown(room: &str, messages: &[std::borrow::Cow<'_, RoomMessage>], tz: &jiff::tz::TimeZone) -> String {
    let mut out = format!("# {room}\n");
    let mut day = String::new();
    for m in messages {
        let at = jiff::Timestamp::from_millisecond(m.created_at).map(|t| t.to_zoned(tz.clone())).ok();
        let d = at.as_ref().map(|z| z.strftime("%Y-%m-%d").to_string()).unwrap_or_default();
        if d != day {
            out.push_str(&format!("\n## {d}\n"));
            day = d;
        }
        let time = at.map(|z| z.strftime("%H:%M").to_string()).unwrap_or_default();
        out.push_str(&format!("\n**{}** · {time} · #{}\n\n", m.sender.replace('*', "\\*"), m.seq));
        if m.deleted_at.is_some() {
            out.push_str("_(deleted)_\n");
            continue;
        }
        if !m.text.is_empty() {
            out.push_str(m.text.trim_end());
            out.push('\n');
        }
        for t in m.tools.as_ref().and_then(|t| t.as_array()).into_iter().flatten() {
            let name = t.get("name").and_then(|v| v.as_str()).unwrap_or("tool");
            let summary = t.get("summary").and_then(|v| v.as_str()).unwrap_or("");
            out.push_str(&format!(
                "\n- tool: {name}{}{summary}\n",
                if summary.is_empty() { "" } else { " — " }
            ));
        }
        for f in m.files.as_array().into_iter().flatten() {
            let name = f.get("name").and_then(|v| v.as_str()).unwrap_or("file");
            let url = f.get("url").and_then(|v| v.as_str()).unwrap_or("");
            out.push_str(&format!("\n- file: [{}]({url})\n", name.replace(['[', ']'], "_")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_has_days_senders_files_and_deletions() {
        let msg = |seq: i64, sender: &str, text: &str, at: i64| RoomMessage {
            id: format!("m{seq}"),
            seq,
            room_id: "r".into(),
            sender: sender.into(),
            sender_id: None,
            sender_type: "user".into(),
            text: text.into(),
            html: String::new(),
            files: json!([]),
            created_at: at,
            client_id: None,
            card: None,
            reactions: json!([]),
            edited_at: None,
            deleted_at: None,
            tools: None,
        };
        let mut with_file = msg(2, "Assistant", "here", 1_796_000_060_000);
        with_file.files = json!([{ "name": "a[1].pdf", "url": "/api/files/r/x-a_1_.pdf" }]);
        let mut gone = msg(3, "Ann", "", 1_796_100_000_000);
        gone.deleted_at = Some(1);
        let list = [msg(1, "Ann *x*", "hello", 1_796_000_000_000), with_file, gone];
        let cows: Vec<_> = list.iter().map(std::borrow::Cow::Borrowed).collect();
        let md = markdown("Home", &cows, &jiff::tz::TimeZone::UTC);
        assert_eq!(
            md,
            "# Home\n\n## 2026-11-30\n\n**Ann \\*x\\*** · 00:53 · #1\n\nhello\n\n**Assistant** · 00:54 · #2\n\nhere\n\n- file: [a_1_.pdf](/api/files/r/x-a_1_.pdf)\n\n## 2026-12-01\n\n**Ann** · 04:40 · #3\n\n_(deleted)_\n"
        );
    }
}
