//! Resumable uploads, for large files over links that drop (a phone on the move):
//!
//! - `POST /api/rooms/:id/uploads {"name", "size", "caption"?, "client_id"?}` opens one:
//!   `{"upload_id", "received": 0, "chunk_max"}`;
//! - `PUT /api/uploads/:id?offset=N` appends a chunk (the raw bytes, at most [`CHUNK_BYTES_MAX`])
//!   exactly at what has arrived — another offset is a 409 saying `received`, from which the
//!   client goes on; a chunk cut short is taken back whole;
//! - `GET /api/uploads/:id` says how much has arrived (to resume after a drop);
//! - `POST /api/uploads/:id/finish` posts the whole file as the person's message (as
//!   `POST /api/rooms/:id/upload` does); `DELETE /api/uploads/:id` abandons it.
//!
//! The state is on disk beside the room files (`uploads/.resumable/<id>.json` and `.part`, not
//! servable), so an upload also survives a restart of pincer; one untouched for
//! [`STALE_AFTER`] is removed when the next one opens.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::upload::{ACTIVE_PER_USER_MAX, Partial, post_file};
use super::wire::{ApiError, ApiResult, Req, Resp, TEXT_BYTES_MAX, User, parse_body, validate_client_id};
use super::{Ctx, files};

/// Largest chunk.
pub const CHUNK_BYTES_MAX: usize = 8 * 1024 * 1024;
/// An upload nobody added to for this long is removed.
pub const STALE_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Uploads one person may have open at once.
pub const OPEN_PER_USER_MAX: usize = 8;

const DIR: &str = ".resumable";

#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    room_id: String,
    user_id: String,
    name: String,
    saved: String,
    size: u64,
    caption: String,
    client_id: Option<String>,
}

/// `PUT /api/uploads/<id>` (its body is streamed).
pub fn is_chunk_path(path: &str) -> bool {
    path.strip_prefix("/api/uploads/").is_some_and(valid_id)
}

fn valid_id(id: &str) -> bool {
    id.len() == 20 && id.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn dir(ctx: &Ctx) -> PathBuf {
    ctx.uploads.join(DIR)
}

fn paths(ctx: &Ctx, id: &str) -> (PathBuf, PathBuf) {
    let d = dir(ctx);
    (d.join(format!("{id}.json")), d.join(format!("{id}.part")))
}

/// The caller's open upload `id`.
fn open_upload(ctx: &Ctx, user: &User, id: &str) -> Result<(Meta, PathBuf, PathBuf), ApiError> {
    let missing = || ApiError(404, format!("no upload {id:?} (finished, abandoned, or older than a day)"));
    if !valid_id(id) {
        return Err(missing());
    }
    let (meta_path, part) = paths(ctx, id);
    let meta: Meta = std::fs::read(&meta_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|m: &Meta| m.user_id == user.id)
        .ok_or_else(missing)?;
    Ok((meta, meta_path, part))
}

fn received(part: &Path) -> u64 {
    std::fs::metadata(part).map(|m| m.len()).unwrap_or(0)
}

/// `POST /api/rooms/:id/uploads`.
pub fn open(ctx: &Ctx, user: &User, room_id: &str, req: &Req) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        name: String,
        size: u64,
        caption: Option<String>,
        client_id: Option<String>,
    }
    let room = ctx.room_for(user, room_id)?;
    let body: Body =
        parse_body(req, r#"{"name": string, "size": number, "caption"?: string, "client_id"?: string}"#)?;
    let max = ctx.cfg.webchat.upload_file_bytes_max;
    if body.size > max {
        return Err(ApiError(413, format!("the file is larger than {} MiB", max >> 20)));
    }
    let caption = body.caption.unwrap_or_default();
    if caption.len() > TEXT_BYTES_MAX || caption.contains('\0') {
        return Err(ApiError(422, "the caption is too long or holds a NUL character".into()));
    }
    if let Some(id) = &body.client_id {
        validate_client_id(id)?;
    }
    let d = dir(ctx);
    std::fs::create_dir_all(&d).map_err(|e| ApiError(507, format!("cannot store files: {e}")))?;
    let mine = sweep(&d, &user.id);
    if mine >= OPEN_PER_USER_MAX {
        return Err(ApiError(
            429,
            format!(
                "you have {OPEN_PER_USER_MAX} uploads open; finish or abandon one (DELETE /api/uploads/:id)"
            ),
        ));
    }
    let name = files::display_name(&body.name);
    let id = crate::ids::random_base36(20);
    let meta = Meta {
        room_id: room.id.clone(),
        user_id: user.id.clone(),
        saved: format!("{}-{}", crate::ids::random_base36(10), files::sanitize(&name)),
        name,
        size: body.size,
        caption,
        client_id: body.client_id,
    };
    let (meta_path, part) = paths(ctx, &id);
    std::fs::File::create(&part).map_err(|e| ApiError(507, format!("cannot store the file: {e}")))?;
    std::fs::write(&meta_path, serde_json::to_vec(&meta).unwrap_or_default())
        .map_err(|e| ApiError(507, format!("cannot store the file: {e}")))?;
    Ok(Resp::json(
        201,
        &json!({ "upload_id": id, "received": 0, "size": meta.size, "chunk_max": CHUNK_BYTES_MAX }),
    ))
}

/// Removes uploads untouched for [`STALE_AFTER`]; returns how many `user` has open.
fn sweep(d: &Path, user: &str) -> usize {
    let mut mine = 0;
    let Ok(entries) = std::fs::read_dir(d) else { return 0 };
    for e in entries.flatten() {
        let path = e.path();
        if path.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let part = path.with_extension("part");
        let touched =
            std::fs::metadata(&part).or_else(|_| std::fs::metadata(&path)).and_then(|m| m.modified());
        let stale =
            touched.is_ok_and(|t| SystemTime::now().duration_since(t).unwrap_or_default() > STALE_AFTER);
        if stale {
            let _ = std::fs::remove_file(&part);
            let _ = std::fs::remove_file(&path);
            continue;
        }
        let owner = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Meta>(&b).ok())
            .map(|m| m.user_id);
        if owner.as_deref() == Some(user) {
            mine += 1;
        }
    }
    mine
}

/// `GET /api/uploads/:id`.
pub fn status(ctx: &Ctx, user: &User, id: &str) -> ApiResult {
    let (meta, _, part) = open_upload(ctx, user, id)?;
    Ok(Resp::json(
        200,
        &json!({ "upload_id": id, "name": meta.name, "size": meta.size, "received": received(&part) }),
    ))
}

/// `PUT /api/uploads/:id?offset=N` with its body unread (the connection's streamed-body route).
pub fn receive(ctx: &Ctx, req: &Req, user: Option<&User>, body: &mut dyn Read) -> Resp {
    let Some(user) = user else { return Resp::error(401, "not authenticated") };
    let Some(_slot) = ctx.uploading.enter(&user.id) else {
        return Resp::error(
            429,
            &format!("you have {ACTIVE_PER_USER_MAX} uploads under way; wait for one to finish"),
        );
    };
    put_chunk(ctx, req, user, body).unwrap_or_else(|ApiError(status, msg)| Resp::error(status, &msg))
}

/// Appends the chunk that is the body, read as it arrives.
fn put_chunk(ctx: &Ctx, req: &Req, user: &User, body: &mut dyn Read) -> Result<Resp, ApiError> {
    let id = req.path.trim_start_matches("/api/uploads/");
    let (meta, _, part) = open_upload(ctx, user, id)?;
    let have = received(&part);
    let offset: Option<u64> = req.query("offset").and_then(|o| o.parse().ok());
    if offset != Some(have) {
        return Ok(Resp::json(
            409,
            &json!({ "error": format!("this upload has {have} bytes: send the chunk at offset={have}"), "received": have }),
        ));
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open(&part)
        .map_err(|e| ApiError(507, format!("cannot store the file: {e}")))?;
    file.seek(SeekFrom::Start(have)).map_err(|e| ApiError(507, format!("cannot store the file: {e}")))?;
    let room_left = meta.size - have;
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, &mut file);
    let copied = std::io::copy(&mut body.take(room_left + 1), &mut out);
    let flushed = out.flush();
    drop(out);
    let undo = |file: &std::fs::File| {
        let _ = file.set_len(have);
    };
    let n = match (copied, flushed) {
        (Ok(n), Ok(())) if n <= room_left => n,
        (Ok(_), Ok(())) => {
            undo(&file);
            return Err(ApiError(413, format!("the chunk goes past the file's size of {} bytes", meta.size)));
        }
        (Err(e), _) | (_, Err(e)) => {
            // Taken back whole: the client sends the chunk again from `received`.
            undo(&file);
            let (status, what) = match e.kind() {
                std::io::ErrorKind::FileTooLarge => {
                    (413, format!("a chunk is at most {CHUNK_BYTES_MAX} bytes"))
                }
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
                    (408, "the chunk arrived too slowly".to_string())
                }
                std::io::ErrorKind::StorageFull => (507, "the disk is full".to_string()),
                _ => (400, format!("the chunk did not arrive whole: {e}")),
            };
            return Err(ApiError(
                status,
                format!("{what}; it was not kept — send it again at offset={have}"),
            ));
        }
    };
    file.sync_data().map_err(|e| ApiError(507, format!("cannot store the file: {e}")))?;
    Ok(Resp::json(200, &json!({ "upload_id": id, "received": have + n, "size": meta.size })))
}

/// `POST /api/uploads/:id/finish`.
pub fn finish(ctx: &Ctx, user: &User, id: &str) -> ApiResult {
    let (meta, meta_path, part) = open_upload(ctx, user, id)?;
    let have = received(&part);
    if have != meta.size {
        return Ok(Resp::json(
            409,
            &json!({ "error": format!("{have} of {} bytes have arrived: send the rest first", meta.size), "received": have }),
        ));
    }
    let room = ctx.room_for(user, &meta.room_id)?;
    ctx.take_send(user).map_err(|e| match e {
        super::SendRefusal::Limited(wait) => {
            ApiError(429, format!("too many messages; retry in {} s", wait.as_secs() + 1))
        }
        super::SendRefusal::Refused(e) => e,
    })?;
    std::fs::create_dir_all(files::room_dir(&ctx.uploads, &room.id))
        .map_err(|e| ApiError(507, format!("cannot store files: {e}")))?;
    let mut partial = Partial { path: part, kept: false };
    let resp = post_file(
        ctx,
        user,
        &room,
        &mut partial,
        &meta.saved,
        &meta.name,
        meta.size,
        &meta.caption,
        meta.client_id.as_deref(),
    )?;
    let _ = std::fs::remove_file(&meta_path);
    Ok(resp)
}

/// `DELETE /api/uploads/:id`.
pub fn abandon(ctx: &Ctx, user: &User, id: &str) -> ApiResult {
    let (_, meta_path, part) = open_upload(ctx, user, id)?;
    let _ = std::fs::remove_file(part);
    let _ = std::fs::remove_file(meta_path);
    Ok(Resp::json(200, &json!({ "ok": true })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_paths() {
        assert!(is_chunk_path("/api/uploads/abcdefghij0123456789"));
        assert!(!is_chunk_path("/api/uploads/abcdefghij0123456789/finish"));
        assert!(!is_chunk_path("/api/uploads/../x"));
        assert!(!is_chunk_path("/api/uploads/short"));
    }
}
