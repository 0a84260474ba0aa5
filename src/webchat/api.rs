//! The HTTP API as plain functions: [`admit`] decides from the head alone whether a request may
//! go on (and how large a body it may bring), [`handle`] maps the whole [`Req`] to a [`Resp`].
//! No sockets are involved; `http.rs` converts both ways.
//!
//! Static files and `/health` are public; everything under `/api/` needs an identity, and every
//! state-changing method there needs the `X-Webchat-CSRF: 1` header, both checked before any body
//! is read. Errors are `{"error": "<what was wrong and how to fix it>"}` with a 4xx/5xx status.

use serde::Deserialize;
use serde_json::json;

use super::Ctx;
use super::assets;
use super::files;
use super::people;
pub use super::wire::{
    ApiError, ApiResult, CLIENT_ID_CHARS_MAX, JSON_BODY_BYTES_MAX, Req, Resp, TEXT_BYTES_MAX, User,
    parse_body, validate_client_id,
};
use crate::db::central::{self, RoomMessage};
use crate::host::agents;
use crate::ids::now_ms;

/// Largest body of a request made before signing in.
pub const LOGIN_BODY_BYTES_MAX: usize = 4 * 1024;
/// Default and largest page of `GET /api/rooms/:id/messages`.
pub const PAGE_DEFAULT: i64 = 100;
pub const PAGE_MAX: i64 = 1000;

/// A request that may go on: who is asking, and the largest body it may bring.
#[derive(Debug)]
pub struct Admitted {
    pub user: Option<User>,
    pub body_max: usize,
    /// The body is streamed to [`super::upload::receive`] instead of read whole.
    pub upload: bool,
}

fn is_api(path: &str) -> bool {
    path == "/api" || path.starts_with("/api/")
}

/// Decides from the head alone: the route exists for the method, the CSRF header is there, the
/// caller is known. The body is read only after this.
pub fn admit(ctx: &Ctx, req: &Req) -> Result<Admitted, Resp> {
    let method = req.method.as_str();
    let changes = matches!(method, "POST" | "PUT" | "PATCH" | "DELETE");
    let csrf = || {
        if changes && req.header("x-webchat-csrf") != Some("1") {
            return Err(Resp::error(
                403,
                "missing header X-Webchat-CSRF: 1 (required on every state-changing request)",
            ));
        }
        Ok(())
    };
    if !is_api(&req.path) {
        return match method {
            "GET" | "HEAD" => Ok(Admitted { user: None, body_max: 0, upload: false }),
            // Accepting an invitation: the link's secret is the credential.
            "POST" if req.path.starts_with("/invite/") => {
                csrf()?;
                Ok(Admitted { user: None, body_max: 0, upload: false })
            }
            _ => Err(Resp::error(404, &format!("no route for {method} {}", req.path))),
        };
    }
    csrf()?;
    // Signing in, and looking at an invitation, need no identity yet.
    let open = (method == "POST" && req.path == "/api/login")
        || (method == "GET" && req.path.starts_with("/api/invite/"));
    if open {
        return Ok(Admitted {
            user: None,
            body_max: if changes { LOGIN_BODY_BYTES_MAX } else { 0 },
            upload: false,
        });
    }
    let user = ctx
        .authenticate(&req.peer, &|h| req.header(h).map(str::to_string), &[])
        .map_err(|ApiError(status, msg)| Resp::error(status, &msg))?;
    if method == "POST" && super::upload::is_upload_path(&req.path) {
        return Ok(Admitted { user: Some(user), body_max: ctx.cfg.webchat.upload_bytes_max, upload: true });
    }
    if method == "PUT" && super::resumable::is_chunk_path(&req.path) {
        return Ok(Admitted { user: Some(user), body_max: super::resumable::CHUNK_BYTES_MAX, upload: true });
    }
    Ok(Admitted { user: Some(user), body_max: if changes { JSON_BODY_BYTES_MAX } else { 0 }, upload: false })
}

/// Answers an admitted request.
pub fn handle(ctx: &Ctx, req: &Req, user: Option<User>) -> Resp {
    match route(ctx, req, user) {
        Ok(resp) => resp,
        Err(ApiError(status, msg)) => Resp::error(status, &msg),
    }
}

fn route(ctx: &Ctx, req: &Req, user: Option<User>) -> ApiResult {
    let method = req.method.as_str();
    let segs: Vec<&str> = req.path.trim_start_matches('/').split('/').collect();
    if !is_api(&req.path) {
        return match (method, &segs[..]) {
            ("GET", ["health"]) => Ok(health(ctx)),
            ("GET" | "HEAD", ["trust", rest @ ..]) => trust(ctx, req, rest),
            ("POST", ["invite", secret]) => people::accept_invite(ctx, req, secret),
            // The app shows the invitation and asks before accepting it.
            ("GET" | "HEAD", ["invite", _]) => Ok(asset(req, "/")),
            ("GET" | "HEAD", _) => Ok(asset(req, &req.path)),
            _ => Err(ApiError(404, format!("no route for {method} {}", req.path))),
        };
    }
    match (method, &segs[1..]) {
        ("POST", ["login"]) => return people::login(ctx, req),
        ("GET", ["invite", secret]) => return people::preview_invite(ctx, req, secret),
        _ => {}
    }
    let Some(user) = user else {
        return Err(ApiError(401, "not authenticated".into()));
    };
    match (method, &segs[1..]) {
        ("GET", ["auth", "check"]) => Ok(auth_check(ctx, &user)),
        ("POST", ["logout"]) => people::logout(ctx, req, &user),
        ("GET", ["sessions"]) => people::my_sessions(ctx, &user),
        ("DELETE", ["sessions", id]) => people::revoke_session(ctx, &user, id),
        ("POST", ["invites"]) => people::create_invite(ctx, req, &user),
        ("GET", ["invites"]) => people::list_invites(ctx, &user),
        ("DELETE", ["invites", id]) => people::revoke_invite(ctx, &user, id),
        ("GET", ["users"]) => people::list_users(ctx, &user),
        ("GET", ["push", "vapid-public"]) => people::vapid_public(ctx),
        ("POST", ["push", "subscribe"]) => people::subscribe(ctx, req, &user),
        ("POST", ["push", "unsubscribe"]) => people::unsubscribe(ctx, req, &user),
        ("GET", ["notify"]) => people::notify_prefs(ctx, &user),
        ("PUT", ["notify"]) => people::set_notify_prefs(ctx, req, &user),
        ("POST", ["users", id, "grant"]) => people::change_role(ctx, req, &user, id, true),
        ("POST", ["users", id, "revoke"]) => people::change_role(ctx, req, &user, id, false),
        ("DELETE", ["users", id]) => people::remove_user(ctx, &user, id),
        ("GET", ["agents"]) => super::agents::list(ctx, &user),
        ("POST", ["agents"]) => create_agent(ctx, &user, req),
        ("GET", ["agents", id]) => super::agents::get(ctx, &user, id),
        ("GET", ["models"]) => super::models::list(ctx, &user),
        ("POST", ["models"]) => super::endpoints::create(ctx, &user, req),
        ("POST", ["models", "probe"]) => super::endpoints::probe(&user, req),
        ("PATCH", ["models", id]) => super::endpoints::update(ctx, &user, id, req),
        ("DELETE", ["models", id]) => super::endpoints::delete(ctx, &user, id, req),
        ("POST", ["agents", "draft"]) => super::drafter::draft(ctx, &user, req),
        ("PATCH", ["agents", id]) => super::agents::update(ctx, &user, id, req),
        ("DELETE", ["agents", id]) => super::agents::delete(ctx, &user, id),
        ("GET", ["agents", id, "tasks"]) => super::tasks::list(ctx, &user, id),
        ("GET", ["approvals"]) => super::approvals::list(ctx, &user),
        ("GET", ["search"]) => super::search::search(ctx, &user, req),
        ("POST", ["approvals", id]) => super::approvals::decide(ctx, &user, id, req),
        ("GET", ["agents", id, "destinations"]) => super::destinations::list(ctx, &user, id),
        ("POST", ["agents", id, "destinations"]) => super::destinations::add(ctx, &user, id, req),
        ("DELETE", ["agents", id, "destinations", name]) => super::destinations::remove(ctx, &user, id, name),
        ("POST", ["agents", id, "tasks", series, action @ ("pause" | "resume" | "cancel")]) => {
            super::tasks::control(ctx, &user, id, series, action)
        }
        ("GET", ["rooms"]) => Ok(Resp::json(
            200,
            &serde_json::to_value(ctx.store.rooms_for(&user.id, user.owner)?).unwrap_or_default(),
        )),
        ("GET", ["rooms", room, "messages"]) => room_messages(ctx, &user, room, req),
        ("PUT", ["rooms", room, "policy"]) => super::rooms::set_policy(ctx, &user, room, req),
        ("POST", ["rooms"]) => super::rooms::create(ctx, &user, req),
        ("PATCH", ["rooms", room]) => super::rooms::update(ctx, &user, room, req),
        ("DELETE", ["rooms", room]) => super::rooms::delete(ctx, &user, room),
        ("POST", ["rooms", room, "agents"]) => super::rooms::add_agent(ctx, &user, room, req),
        ("DELETE", ["rooms", room, "agents", agent]) => super::rooms::remove_agent(ctx, &user, room, agent),
        ("PUT", ["rooms", room, "agents", agent]) => super::rooms::set_wiring(ctx, &user, room, agent, req),
        ("PUT", ["rooms", room, "prime"]) => super::rooms::set_prime(ctx, &user, room, req),
        ("DELETE", ["rooms", room, "prime"]) => super::rooms::clear_prime(ctx, &user, room),
        ("GET", ["rooms", room, "dropped"]) => super::rooms::dropped(ctx, &user, room),
        ("POST", ["rooms", room, "messages"]) => post_message(ctx, &user, room, req),
        ("DELETE", ["rooms", room, "messages", id]) => super::history::delete(ctx, &user, room, id),
        ("GET", ["rooms", room, "export"]) => super::history::export(ctx, &user, room, req),
        ("GET", ["rooms", room, "pins"]) => super::pins::list(ctx, &user, room),
        ("PUT", ["rooms", room, "pins", id]) => super::pins::set(ctx, &user, room, id, true),
        ("DELETE", ["rooms", room, "pins", id]) => super::pins::set(ctx, &user, room, id, false),
        ("GET", ["files", room, name]) => file(ctx, &user, room, name),
        ("POST", ["rooms", room, "uploads"]) => super::resumable::open(ctx, &user, room, req),
        ("GET", ["uploads", id]) => super::resumable::status(ctx, &user, id),
        ("POST", ["uploads", id, "finish"]) => super::resumable::finish(ctx, &user, id),
        ("DELETE", ["uploads", id]) => super::resumable::abandon(ctx, &user, id),
        (
            _,
            ["auth", "check"] | ["agents"] | ["rooms"] | ["rooms", _, "messages"] | ["invites"] | ["users"],
        ) => Err(ApiError(405, format!("{method} is not allowed on {}", req.path))),
        _ => Err(ApiError(404, format!("no API route {method} {}", req.path))),
    }
}

/// The enrolment pages of pincer's own CA (`WEBCHAT_TLS=auto`).
fn trust(ctx: &Ctx, req: &Req, rest: &[&str]) -> ApiResult {
    let Some(ca) = ctx.tls.as_ref().and_then(|t| t.ca()) else {
        return Err(ApiError(404, "no local CA: this pincer does not run with WEBCHAT_TLS=auto".into()));
    };
    let port = ctx.port.get().copied().unwrap_or(ctx.cfg.webchat.port);
    match rest {
        [] | [""] => Ok(super::trust::page(
            ca,
            &super::trust::lan_url(req.header("host"), port, &super::tls::reachable_order(&ctx.machine.ips)),
        )),
        ["ca.crt"] => Ok(super::trust::certificate(ca, false)),
        ["ca.der"] => Ok(super::trust::certificate(ca, true)),
        _ => Err(ApiError(404, format!("no such page {}", req.path))),
    }
}

/// `GET /health`: `ready`, or `degraded` with the reasons (the container engine does not answer,
/// the disk is nearly full, the HTTPS certificate expires soon). Always 200 while pincer serves.
fn health(ctx: &Ctx) -> Resp {
    let mut reasons = Vec::new();
    if let Err(e) = ctx.containers.engine_status() {
        reasons.push(format!("docker: {e}"));
    }
    if let Some(space) = crate::disk::space(&ctx.cfg.data_dir)
        && space.nearly_full()
    {
        reasons.push(format!(
            "disk: {} MiB free of {} MiB where the data is",
            space.free >> 20,
            space.total >> 20
        ));
    }
    if let Some(tls) = &ctx.tls {
        let days = tls.leaf().days_left(now_ms() / 1000);
        if days < super::tls::WARN_DAYS {
            reasons.push(format!("tls: the certificate expires in {days} days"));
        }
    }
    Resp::json(
        200,
        &json!({
            "ok": true,
            "status": if reasons.is_empty() { "ready" } else { "degraded" },
            "reasons": reasons,
            "uptime_s": ctx.started.elapsed().as_secs(),
            "version": env!("CARGO_PKG_VERSION"),
        }),
    )
}

fn asset(req: &Req, path: &str) -> Resp {
    let Some((asset, etag)) = assets::get(path) else {
        return Resp::error(404, &format!("no such page {path}"));
    };
    let mut headers = vec![
        ("Content-Type".to_string(), asset.mime.to_string()),
        ("Cache-Control".to_string(), "no-cache".to_string()),
        ("ETag".to_string(), etag.to_string()),
    ];
    if asset.mime.starts_with("text/html") {
        headers.push((
            "Content-Security-Policy".into(),
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; \
             connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
                .into(),
        ));
    }
    if req.header("if-none-match") == Some(etag) {
        return Resp { status: 304, headers, body: Vec::new(), file: None };
    }
    let body = if req.method == "HEAD" { Vec::new() } else { assets::body(asset).to_vec() };
    Resp { status: 200, headers, body, file: None }
}

fn auth_check(ctx: &Ctx, user: &User) -> Resp {
    Resp::json(
        200,
        &json!({
            "ok": true,
            "userId": user.id,
            "displayName": user.display_name,
            "owner": user.owner,
            "admin": user.admin,
            "via": user.via,
            "sessionId": user.session,
            "provider": ctx.cfg.provider.as_str(),
            "modelConfigured": ctx.cfg.provider != crate::config::Provider::Mock,
        }),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateAgent {
    name: String,
    instructions: Option<String>,
    #[serde(default)]
    with_room: bool,
}

fn create_agent(ctx: &Ctx, user: &User, req: &Req) -> ApiResult {
    if !user.owner {
        return Err(ApiError(403, "only the owner can create agents".into()));
    }
    let body: CreateAgent =
        parse_body(req, r#"{"name": string, "instructions"?: string, "withRoom"?: bool}"#)?;
    let mut conn = ctx.store.conn()?;
    let created = agents::create(
        &mut conn,
        &ctx.cfg.groups_dir,
        &body.name,
        body.instructions.as_deref(),
        body.with_room,
        now_ms(),
    )
    .map_err(|e| ApiError::bad(format!("{e:#}")))?;
    drop(conn);
    if created.room.is_some() {
        ctx.rooms_changed();
    }
    Ok(Resp::json(
        201,
        &json!({
            "ok": true,
            "agentGroup": { "id": created.agent.id, "name": created.agent.name, "folder": created.agent.folder },
            "roomId": created.room.as_ref().map(|r| r.id.clone()),
        }),
    ))
}

fn room_messages(ctx: &Ctx, user: &User, room_id: &str, req: &Req) -> ApiResult {
    let room = ctx.room_for(user, room_id)?;
    let limit = match req.query("limit") {
        None => PAGE_DEFAULT,
        Some(s) => s.parse::<i64>().ok().filter(|n| (1..=PAGE_MAX).contains(n)).ok_or_else(|| {
            ApiError::bad(format!("invalid limit={s:?}: expected a whole number from 1 to {PAGE_MAX}"))
        })?,
    };
    let conn = ctx.store.conn()?;
    let seq_param = |name: &str, s: &str, min: i64| {
        s.parse::<i64>().ok().filter(|n| *n >= min).ok_or_else(|| {
            ApiError::bad(format!("invalid {name}={s:?}: expected a message seq (a whole number from {min})"))
        })
    };
    let after = req.query("after").or(req.query("after_seq"));
    let before = req.query("before");
    if after.is_some() && before.is_some() {
        return Err(ApiError::bad("give `after` or `before`, not both"));
    }
    if let Some(s) = before {
        let before = seq_param("before", s, 1)?;
        let messages = central::messages_before(&conn, &room.id, before, limit)?;
        return Ok(Resp::json(200, &json!({ "messages": super::redact::messages(&messages) })));
    }
    let messages: Vec<RoomMessage> = match after {
        None => central::latest_messages(&conn, &room.id, limit)?,
        Some(s) => {
            let after = s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                ApiError::bad(format!(
                    "invalid after={s:?}: expected the seq of the last message you have (0 for all)"
                ))
            })?;
            central::messages_after(&conn, &room.id, after, limit)?
        }
    };
    Ok(Resp::json(200, &json!({ "messages": super::redact::messages(&messages) })))
}

#[derive(Deserialize)]
struct PostMessage {
    text: String,
    client_id: Option<String>,
}

fn post_message(ctx: &Ctx, user: &User, room_id: &str, req: &Req) -> ApiResult {
    let room = ctx.room_for(user, room_id)?;
    let body: PostMessage = parse_body(req, r#"{"text": string, "client_id": string}"#)?;
    match ctx.send(user, &room, &body.text, body.client_id.as_deref()) {
        Ok((message, _)) => {
            Ok(Resp::json(200, &json!({ "ok": true, "message": super::redact::message(&message) })))
        }
        Err(super::SendRefusal::Refused(e)) => Err(e),
        Err(super::SendRefusal::Limited(wait)) => {
            let secs = wait.as_secs() + 1;
            let mut resp = Resp::error(429, &format!("too many messages; retry in {secs} s"));
            resp.headers.push(("Retry-After".into(), secs.to_string()));
            Ok(resp)
        }
    }
}

/// A file of a room, with headers that keep hostile content inert.
fn file(ctx: &Ctx, user: &User, room_id: &str, name: &str) -> ApiResult {
    let room = ctx.room_for(user, room_id)?;
    if !files::safe_name(name) {
        return Err(ApiError(404, "no such file".into()));
    }
    let path = files::room_dir(&ctx.uploads, &room.id).join(name);
    let meta = std::fs::symlink_metadata(&path)
        .map_err(|_| ApiError(404, format!("no file {name:?} in this room")))?;
    if !meta.is_file() {
        return Err(ApiError(404, format!("no file {name:?} in this room")));
    }
    let (mime, inline) = files::mime_of(name);
    let disposition = if inline { "inline" } else { "attachment" };
    let headers = vec![
        ("Content-Type".to_string(), mime.to_string()),
        ("Content-Disposition".to_string(), format!("{disposition}; filename=\"{}\"", files::sanitize(name))),
        (
            "Content-Security-Policy".to_string(),
            "sandbox; default-src 'none'; img-src 'self'; media-src 'self'".to_string(),
        ),
        ("Cache-Control".to_string(), "private, max-age=86400".to_string()),
    ];
    Ok(Resp { status: 200, headers, body: Vec::new(), file: Some(path) })
}

/// Checks a message's text.
pub fn validate_text(text: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::bad("text is empty: type a message"));
    }
    if text.len() > TEXT_BYTES_MAX {
        return Err(ApiError(413, format!("text is {} bytes; the limit is {TEXT_BYTES_MAX}", text.len())));
    }
    if text.contains('\0') {
        return Err(ApiError::bad("text contains a NUL character"));
    }
    Ok(())
}
