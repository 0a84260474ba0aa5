//! `POST /api/rooms/:id/upload`: a file from a person, streamed from the request body to the
//! room's files (never held in memory), then posted as their message with an optional caption.
//!
//! The form: one `file` part (with a file name), an optional `caption` and `client_id`; other
//! fields are skipped. The file is written under a temporary name, flushed to disk, and renamed
//! before the message is stored, so an acknowledged upload is whole on disk, and a cut or
//! refused one leaves nothing behind. A person may have [`ACTIVE_PER_USER_MAX`] uploads under
//! way; each counts against their send rate like a message. The router copies the file into
//! each answering agent's `inbox/<message>/`.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::json;

use super::multipart::{self, Multipart};
use super::wire::{ApiError, Req, Resp, TEXT_BYTES_MAX, User, validate_client_id};
use super::{Ctx, SendRefusal, files};

/// Uploads one person may have under way at once.
pub const ACTIVE_PER_USER_MAX: usize = 3;

/// `/api/rooms/<id>/upload`.
pub fn is_upload_path(path: &str) -> bool {
    path.strip_prefix("/api/rooms/")
        .and_then(|rest| rest.strip_suffix("/upload"))
        .is_some_and(|id| !id.is_empty() && !id.contains('/'))
}

/// Uploads under way, per person.
#[derive(Default)]
pub struct Active(Mutex<HashMap<String, usize>>);

/// One upload under way; ends when dropped.
pub(crate) struct Slot<'a> {
    active: &'a Active,
    user: String,
}

impl Active {
    pub(crate) fn enter(&self, user: &str) -> Option<Slot<'_>> {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(user.to_string()).or_insert(0);
        if *n >= ACTIVE_PER_USER_MAX {
            return None;
        }
        *n += 1;
        Some(Slot { active: self, user: user.to_string() })
    }
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        let mut m = self.active.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = m.get_mut(&self.user) {
            *n -= 1;
            if *n == 0 {
                m.remove(&self.user);
            }
        }
    }
}

/// A file being written; removed unless kept.
pub(crate) struct Partial {
    pub(crate) path: PathBuf,
    pub(crate) kept: bool,
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Handles an upload whose body is `body` (unread).
pub fn receive(ctx: &Ctx, req: &Req, user: Option<&User>, body: &mut dyn Read) -> Resp {
    match receive_inner(ctx, req, user, body) {
        Ok(resp) => resp,
        Err(ApiError(status, msg)) => Resp::error(status, &msg),
    }
}

fn receive_inner(ctx: &Ctx, req: &Req, user: Option<&User>, body: &mut dyn Read) -> Result<Resp, ApiError> {
    let Some(user) = user else { return Err(ApiError(401, "not authenticated".into())) };

    let room_id = req.path.trim_start_matches("/api/rooms/").trim_end_matches("/upload");
    let room = ctx.room_for(user, room_id)?;
    let boundary = multipart::boundary(req.header("content-type").unwrap_or("")).map_err(|e| {
        ApiError(415, format!("{e}: send the file as a form (multipart/form-data) with a `file` field"))
    })?;
    let Some(_slot) = ctx.uploading.enter(&user.id) else {
        return Err(ApiError(
            429,
            format!("you have {ACTIVE_PER_USER_MAX} uploads under way; wait for one to finish"),
        ));
    };
    match ctx.take_send(user) {
        Ok(()) => {}
        Err(SendRefusal::Limited(wait)) => {
            let secs = wait.as_secs() + 1;
            let mut resp = Resp::error(429, &format!("too many messages; retry in {secs} s"));
            resp.headers.push(("Retry-After".into(), secs.to_string()));
            return Ok(resp);
        }
        Err(SendRefusal::Refused(e)) => return Err(e),
    }

    let max = ctx.cfg.webchat.upload_file_bytes_max;
    let dir = files::room_dir(&ctx.uploads, &room.id);
    std::fs::create_dir_all(&dir).map_err(|e| ApiError(500, format!("cannot store files: {e}")))?;
    let mut form = Multipart::new(body, &boundary);
    let mut caption = String::new();
    let mut client_id: Option<String> = None;
    let mut stored: Option<(Partial, String, String, u64)> = None;
    let bad = |e: multipart::Error| match e {
        multipart::Error::TooLarge => ApiError(413, format!("the file is larger than {} MiB", max >> 20)),
        multipart::Error::Io(e) if e.kind() == std::io::ErrorKind::FileTooLarge => {
            ApiError(413, format!("the upload is larger than {} MiB", max >> 20))
        }
        multipart::Error::Io(e)
            if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
        {
            ApiError(408, "the upload arrived too slowly".into())
        }
        multipart::Error::Io(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            ApiError(400, "the connection closed before the upload ended".into())
        }
        e => ApiError(400, e.to_string()),
    };
    while let Some(part) = form.next_part().map_err(bad)? {
        match part.name.as_str() {
            "file" => {
                if stored.is_some() {
                    return Err(ApiError(422, "one file per upload: send the others separately".into()));
                }
                let Some(original) = part.filename.as_deref() else {
                    return Err(ApiError(422, "the `file` field has no file name".into()));
                };
                let name = files::display_name(original);
                let saved = format!("{}-{}", crate::ids::random_base36(10), files::sanitize(&name));
                let partial = Partial { path: dir.join(format!(".{saved}.part")), kept: false };
                let size = write_part(&mut form, &partial.path, max).map_err(|e| match e {
                    Written::Form(e) => bad(e),
                    Written::Disk(e) => ApiError(507, format!("cannot store the file: {e}")),
                })?;
                stored = Some((partial, saved, name, size));
            }
            "caption" => {
                caption = small_field(&mut form, "caption", TEXT_BYTES_MAX).map_err(|e| e.or(bad))?
            }
            "client_id" => {
                client_id = Some(small_field(&mut form, "client_id", 1024).map_err(|e| e.or(bad))?);
            }
            _ => {}
        }
    }
    let Some((mut partial, saved, name, size)) = stored else {
        return Err(ApiError(422, "the form has no `file` field: attach a file".into()));
    };
    if caption.len() > TEXT_BYTES_MAX || caption.contains('\0') {
        return Err(ApiError(422, "the caption is too long or holds a NUL character".into()));
    }
    post_file(ctx, user, &room, &mut partial, &saved, &name, size, &caption, client_id.as_deref())
}

/// Posts a file written whole at `partial.path` as the person's message: the same `client_id`
/// again returns the first message (the new copy is dropped); else the file takes its stored
/// name and the message is stored and routed.
#[allow(clippy::too_many_arguments)]
pub(crate) fn post_file(
    ctx: &Ctx,
    user: &User,
    room: &crate::db::central::Room,
    partial: &mut Partial,
    saved: &str,
    name: &str,
    size: u64,
    caption: &str,
    client_id: Option<&str>,
) -> Result<Resp, ApiError> {
    if let Some(id) = client_id {
        validate_client_id(id)?;
        if let Some(m) = ctx.store.message_by_client_id(&room.id, &user.id, id)? {
            // Sent before (a retry after a lost answer): the first copy stands.
            return Ok(Resp::json(200, &json!({ "ok": true, "message": super::redact::message(&m) })));
        }
    }
    let final_path = files::room_dir(&ctx.uploads, &room.id).join(saved);
    std::fs::rename(&partial.path, &final_path)
        .map_err(|e| ApiError(507, format!("cannot store the file: {e}")))?;
    partial.kept = true;
    // A phone photo is too large for a model: its copy for the model is there before routing.
    if let Err(e) = crate::host::pictures::prepare(&final_path) {
        log::info!("{saved} is not given to the model as a picture: {e}");
    }
    let (mime, _) = files::mime_of(saved);
    let entry = json!({
        "name": name,
        "url": format!("/api/files/{}/{saved}", files::sanitize(&room.id)),
        "mime": mime,
        "size": size,
    });
    let stored = ctx.store_and_route(user, room, caption.trim_end(), client_id, &json!([entry]));
    let (message, _) = match stored {
        Ok(m) => m,
        Err(e) => {
            let _ = std::fs::remove_file(&final_path);
            let _ = std::fs::remove_file(crate::host::pictures::model_copy(&final_path));
            return Err(match e {
                SendRefusal::Refused(e) => e,
                SendRefusal::Limited(_) => ApiError(429, "too many messages".into()),
            });
        }
    };
    log::info!("{} uploaded {size} bytes to room {} as {saved}", user.id, room.id);
    Ok(Resp::json(200, &json!({ "ok": true, "message": super::redact::message(&message) })))
}

enum Written {
    Form(multipart::Error),
    Disk(std::io::Error),
}

/// Streams the current part into a new file at `path`, flushed to disk.
fn write_part<R: Read>(form: &mut Multipart<R>, path: &Path, max: u64) -> Result<u64, Written> {
    let file = std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(Written::Disk)?;
    let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
    let size = form.copy_part(&mut out, max).map_err(|e| match e {
        multipart::Error::Io(e) if e.kind() == std::io::ErrorKind::StorageFull => Written::Disk(e),
        e => Written::Form(e),
    })?;
    let file = out.into_inner().map_err(|e| Written::Disk(e.into_error()))?;
    file.sync_data().map_err(Written::Disk)?;
    Ok(size)
}

/// What went wrong reading a small field.
enum FieldError {
    Form(multipart::Error),
    Api(ApiError),
}

impl FieldError {
    fn or(self, bad: impl Fn(multipart::Error) -> ApiError) -> ApiError {
        match self {
            FieldError::Form(e) => bad(e),
            FieldError::Api(e) => e,
        }
    }
}

fn small_field<R: Read>(form: &mut Multipart<R>, what: &str, max: usize) -> Result<String, FieldError> {
    let mut buf = Vec::new();
    form.copy_part(&mut buf, max as u64).map_err(|e| match e {
        multipart::Error::TooLarge => {
            FieldError::Api(ApiError(413, format!("the {what} is longer than {max} bytes")))
        }
        e => FieldError::Form(e),
    })?;
    String::from_utf8(buf)
        .map_err(|_| FieldError::Api(ApiError(422, format!("the {what} is not UTF-8 text"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_paths_and_slots() {
        assert!(is_upload_path("/api/rooms/home/upload"));
        assert!(!is_upload_path("/api/rooms//upload"));
        assert!(!is_upload_path("/api/rooms/a/b/upload"));
        assert!(!is_upload_path("/api/rooms/home/messages"));
        let active = Active::default();
        let slots: Vec<_> = (0..ACTIVE_PER_USER_MAX).map(|_| active.enter("ann").unwrap()).collect();
        assert!(active.enter("ann").is_none(), "a fourth waits");
        assert!(active.enter("bob").is_some(), "others are not held up");
        drop(slots);
        assert!(active.enter("ann").is_some(), "slots come back");
    }
}
