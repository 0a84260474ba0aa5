//! The people of an install, over HTTP: signing in and out, invitations, users, roles,
//! memberships and signed-in devices (docs/API.md "People").
//!
//! Who may do what: anyone may sign in (rate limited per address) and manage their own
//! sessions; the owner and global admins see people and invite members; only the owner
//! invites or grants admins and owners, and removes people. Removing a person, revoking a
//! session or a role closes the affected sockets at once.

use serde::Deserialize;
use serde_json::{Value, json};

use super::wire::{ApiError, ApiResult, Req, Resp, User, parse_body};
use super::{Ctx, login};
use crate::db::{central, people};
use crate::ids::{new_id, now_ms};

fn forbidden(what: &str) -> ApiError {
    ApiError(403, what.to_string())
}

/// `POST /api/login {token}`: a session cookie for the token's owner identity.
pub fn login(ctx: &Ctx, req: &Req) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        token: String,
    }
    let ip = ctx.auth.client_ip(&req.peer, &|h| req.header(h).map(str::to_string));
    let now = std::time::Instant::now();
    if let Err(wait) = ctx.guard.check(ip, now) {
        let secs = wait.as_secs().max(1);
        let mut resp =
            Resp::error(429, &format!("too many failed sign-ins from your address; try again in {secs} s"));
        resp.headers.push(("Retry-After".into(), secs.to_string()));
        return Ok(resp);
    }
    let body: Body = parse_body(req, r#"{"token": string}"#)?;
    if !ctx.auth.has_token() {
        return Err(ApiError(
            400,
            "sign-in with a token is off: no WEBCHAT_TOKEN is configured (use an invitation link)".into(),
        ));
    }
    if !ctx.auth.token_matches(body.token.trim()) {
        let n = ctx.guard.failed(ip, now);
        log::warn!("failed sign-in from {ip} ({n} in a row)");
        return Err(ApiError(
            401,
            "wrong token: use the WEBCHAT_TOKEN from the server's configuration".into(),
        ));
    }
    ctx.guard.succeeded(ip);
    let id = super::auth::operator_identity();
    let conn = ctx.store.conn()?;
    ctx.register_identity(&conn, &id)?;
    let (cookie, session) = start_session(ctx, &conn, req, &id.user_id)?;
    log::info!("{} signed in from {ip} ({})", id.user_id, session.device);
    let mut resp = Resp::json(200, &json!({ "ok": true, "userId": id.user_id, "sessionId": session.id }));
    resp.headers.push(("Set-Cookie".into(), cookie));
    Ok(resp)
}

/// Creates a signed-in session for `user_id`; returns the `Set-Cookie` value and the session.
fn start_session(
    ctx: &Ctx,
    conn: &crate::db::Connection,
    req: &Req,
    user_id: &str,
) -> Result<(String, people::AuthSession), ApiError> {
    let now = now_ms();
    let secret = login::new_secret();
    let ip = ctx.auth.client_ip(&req.peer, &|h| req.header(h).map(str::to_string));
    let session = people::AuthSession {
        id: new_id("ses"),
        user_id: user_id.to_string(),
        device: login::device_label(req.header("user-agent")),
        ip: Some(ip.to_string()),
        created_at: now,
        last_seen: now,
        expires_at: now + login::SESSION_TTL_MS,
        revoked_at: None,
    };
    people::insert_session(conn, &session, &login::hash(&secret))?;
    let _ = people::prune_sessions(conn, now, login::SESSION_KEEP_MS);
    Ok((login::session_cookie(&ctx.cookie, &secret, is_https(ctx, req)), session))
}

/// `POST /api/logout`: ends this browser's session (the cookie stops working at once).
pub fn logout(ctx: &Ctx, req: &Req, user: &User) -> ApiResult {
    if let Some(sid) = &user.session {
        let conn = ctx.store.conn()?;
        people::revoke_session(&conn, sid, now_ms())?;
        people::delete_push_of_session(&conn, sid)?;
        ctx.hub.close_session(sid);
    }
    let mut resp = Resp::json(200, &json!({ "ok": true }));
    resp.headers.push(("Set-Cookie".into(), login::clear_cookie(&ctx.cookie, is_https(ctx, req))));
    Ok(resp)
}

/// `GET /api/sessions`: the caller's own signed-in devices.
pub fn my_sessions(ctx: &Ctx, user: &User) -> ApiResult {
    let conn = ctx.store.conn()?;
    let list = sessions_json(&conn, &user.id, user.session.as_deref())?;
    Ok(Resp::json(200, &list))
}

fn sessions_json(
    conn: &crate::db::Connection,
    user_id: &str,
    current: Option<&str>,
) -> Result<Value, ApiError> {
    let list: Vec<Value> = people::sessions_of(conn, user_id, now_ms())?
        .into_iter()
        .map(|s| {
            json!({
                "id": s.id, "device": s.device, "ip": s.ip, "created_at": s.created_at,
                "last_seen": s.last_seen, "expires_at": s.expires_at,
                "current": current == Some(s.id.as_str()),
            })
        })
        .collect();
    Ok(Value::Array(list))
}

/// `DELETE /api/sessions/:id`: one's own, or anyone's for the owner and admins.
pub fn revoke_session(ctx: &Ctx, user: &User, id: &str) -> ApiResult {
    let conn = ctx.store.conn()?;
    let Some(s) = people::session_by_id(&conn, id)? else {
        return Err(ApiError(404, format!("no session {id:?}")));
    };
    if s.user_id != user.id && !user.admin {
        return Err(ApiError(404, format!("no session {id:?}")));
    }
    if s.user_id != user.id && !user.owner && central::is_owner(&conn, &s.user_id)? {
        return Err(forbidden("only an owner can sign an owner out"));
    }
    people::revoke_session(&conn, id, now_ms())?;
    people::delete_push_of_session(&conn, id)?;
    ctx.hub.close_session(id);
    Ok(Resp::json(200, &json!({ "ok": true })))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewInvite {
    name: String,
    role: String,
    #[serde(default)]
    agents: Vec<String>,
    expires_in_hours: Option<u64>,
}

/// `POST /api/invites {name, role, agents?, expiresInHours?}`: a one-time link (and its QR code)
/// that signs the holder in as a new person.
pub fn create_invite(ctx: &Ctx, req: &Req, user: &User) -> ApiResult {
    if !user.admin {
        return Err(forbidden("only the owner or an admin can invite people"));
    }
    let body: NewInvite = parse_body(
        req,
        r#"{"name": string, "role": "admin" | "member", "agents"?: [agent id], "expiresInHours"?: number}"#,
    )?;
    if body.role != "admin" && body.role != "member" {
        return Err(ApiError(422, format!("invalid role {:?}: use \"admin\" or \"member\"", body.role)));
    }
    if body.role == "admin" && !user.owner {
        return Err(forbidden("only the owner can invite an admin"));
    }
    let name = crate::host::agents::validate_name("person's", &body.name)
        .map_err(|e| ApiError(422, format!("{e:#}")))?;
    let conn = ctx.store.conn()?;
    if let Some(taken) =
        people::display_names(&conn)?.into_iter().find(|n| crate::host::agents::same_name(n, &name))
    {
        return Err(ApiError(409, format!("someone is already called {taken:?}; choose another name")));
    }
    let known: Vec<String> = central::agents(&conn)?.into_iter().map(|a| a.id).collect();
    if let Some(bad) = body.agents.iter().find(|a| !known.contains(a)) {
        return Err(ApiError(422, format!("no agent {bad:?}")));
    }
    let ttl = match body.expires_in_hours {
        None => login::INVITE_TTL_MS,
        Some(h) if h >= 1 && (h as i64) * 3_600_000 <= login::INVITE_TTL_MAX_MS => h as i64 * 3_600_000,
        Some(h) => {
            let max = login::INVITE_TTL_MAX_MS / 3_600_000;
            return Err(ApiError(422, format!("expiresInHours={h}: use 1 to {max}")));
        }
    };
    let now = now_ms();
    let secret = login::new_secret();
    let invite = people::Invite {
        id: new_id("inv"),
        name,
        role: body.role,
        agents: body.agents,
        created_by: user.id.clone(),
        created_at: now,
        expires_at: now + ttl,
        used_at: None,
        used_by: None,
        revoked_at: None,
    };
    people::insert_invite(&conn, &invite, &login::hash(&secret))?;
    let url = format!("{}/invite/{secret}", shareable_origin(ctx, req));
    log::info!("{} invited {:?} as {}", user.id, invite.name, invite.role);
    Ok(Resp::json(
        201,
        &json!({
            "ok": true,
            "invite": {
                "id": invite.id, "url": url, "expires_at": invite.expires_at, "name": invite.name,
                "role": invite.role, "agents": invite.agents, "qr_svg": super::trust::qr_svg(&url),
            }
        }),
    ))
}

/// The caller reached this server over HTTPS (directly, or through a trusted proxy that says
/// so): then cookies are `Secure`.
fn is_https(ctx: &Ctx, req: &Req) -> bool {
    origin(ctx, req).starts_with("https://")
}

/// The origin to put in a link for someone else: as the caller reached this server, except that
/// a loopback name (useless on another device) becomes this machine's LAN address when pincer
/// listens beyond the loopback.
pub fn shareable_origin(ctx: &Ctx, req: &Req) -> String {
    let o = origin(ctx, req);
    let bind = ctx.cfg.webchat.host;
    let host = o.split_once("://").map_or("", |(_, h)| h);
    if bind.is_loopback() || !super::auth::is_loopback_host(host) {
        return o;
    }
    let ips = if bind.is_unspecified() { super::tls::reachable_order(&ctx.machine.ips) } else { vec![bind] };
    let port = ctx.port.get().copied().unwrap_or(ctx.cfg.webchat.port);
    let lan = super::trust::lan_url(None, port, &ips);
    if o.starts_with("https://") { lan.replacen("http://", "https://", 1) } else { lan }
}

/// `scheme://host[:port]` as the caller reached this server.
pub fn origin(ctx: &Ctx, req: &Req) -> String {
    let from_proxy = ctx.auth.is_trusted_proxy(req.peer.addr.ip());
    let scheme = match req.header("x-forwarded-proto") {
        Some(p) if from_proxy && (p == "https" || p == "http") => p,
        _ if req.peer.tls => "https",
        _ => "http",
    };
    let host = req
        .header("x-forwarded-host")
        .filter(|_| from_proxy)
        .or(req.header("host"))
        .unwrap_or("localhost")
        .trim();
    format!("{scheme}://{host}")
}

/// `GET /api/invites`: invitations still open.
pub fn list_invites(ctx: &Ctx, user: &User) -> ApiResult {
    if !user.admin {
        return Err(forbidden("only the owner or an admin can see invitations"));
    }
    let conn = ctx.store.conn()?;
    Ok(Resp::json(200, &serde_json::to_value(people::open_invites(&conn, now_ms())?).unwrap_or_default()))
}

/// `DELETE /api/invites/:id`.
pub fn revoke_invite(ctx: &Ctx, user: &User, id: &str) -> ApiResult {
    if !user.admin {
        return Err(forbidden("only the owner or an admin can withdraw invitations"));
    }
    let conn = ctx.store.conn()?;
    if !people::revoke_invite(&conn, id, now_ms())? {
        return Err(ApiError(404, format!("no open invitation {id:?}")));
    }
    Ok(Resp::json(200, &json!({ "ok": true })))
}

/// The invitation behind a link secret, counting a miss against the caller's address.
fn invite_of(ctx: &Ctx, req: &Req, secret: &str) -> Result<people::Invite, ApiError> {
    let ip = ctx.auth.client_ip(&req.peer, &|h| req.header(h).map(str::to_string));
    let now = std::time::Instant::now();
    if let Err(wait) = ctx.guard.check(ip, now) {
        return Err(ApiError(
            429,
            format!("too many failed attempts from your address; try again in {} s", wait.as_secs().max(1)),
        ));
    }
    let conn = ctx.store.conn()?;
    match people::invite_by_secret(&conn, &login::hash(secret))? {
        Some(inv) if inv.usable(now_ms()) => Ok(inv),
        Some(inv) if inv.used_at.is_some() => {
            Err(ApiError(410, "this invitation has been used already; ask for a new one".into()))
        }
        Some(_) => {
            Err(ApiError(410, "this invitation has expired or was withdrawn; ask for a new one".into()))
        }
        None => {
            ctx.guard.failed(ip, now);
            Err(ApiError(404, "no such invitation: check the link".into()))
        }
    }
}

/// `GET /api/invite/:secret`: what an invitation offers (for the accept page); consumes nothing.
pub fn preview_invite(ctx: &Ctx, req: &Req, secret: &str) -> ApiResult {
    let inv = invite_of(ctx, req, secret)?;
    let conn = ctx.store.conn()?;
    let inviter = people::user(&conn, &inv.created_by)?.map(|u| u.display_name).unwrap_or_default();
    Ok(Resp::json(
        200,
        &json!({ "ok": true, "name": inv.name, "role": inv.role, "invitedBy": inviter, "expires_at": inv.expires_at }),
    ))
}

/// `POST /invite/:secret`: the holder becomes a new person, signed in on this browser.
pub fn accept_invite(ctx: &Ctx, req: &Req, secret: &str) -> ApiResult {
    let inv = invite_of(ctx, req, secret)?;
    let mut conn = ctx.store.conn()?;
    let user_id = format!("webchat:u-{}", crate::ids::random_base36(12));
    let now = now_ms();
    let taken = crate::db::write_tx(&mut conn, |tx| {
        if !people::use_invite(tx, &inv.id, &user_id, now)? {
            return Ok(false);
        }
        people::insert_user(tx, &user_id, "webchat", &inv.name, now)?;
        if inv.role == "admin" {
            people::grant_role(tx, &user_id, "admin", None, &inv.created_by, now)?;
        }
        for agent in &inv.agents {
            if central::agent(tx, agent)?.is_some() {
                people::add_member(tx, &user_id, agent, &inv.created_by, now)?;
            }
        }
        Ok(true)
    })?;
    if !taken {
        return Err(ApiError(410, "this invitation has just been used; ask for a new one".into()));
    }
    let (cookie, session) = start_session(ctx, &conn, req, &user_id)?;
    log::info!("{:?} joined as {user_id} ({}) through invitation {}", inv.name, inv.role, inv.id);
    drop(conn);
    ctx.rooms_changed();
    let mut resp = Resp::json(
        200,
        &json!({ "ok": true, "userId": user_id, "displayName": inv.name, "sessionId": session.id }),
    );
    resp.headers.push(("Set-Cookie".into(), cookie));
    Ok(resp)
}

/// `GET /api/push/vapid-public`: the key browsers subscribe with.
pub fn vapid_public(ctx: &Ctx) -> ApiResult {
    Ok(Resp::json(200, &json!({ "key": ctx.notifier.vapid.public })))
}

#[derive(Deserialize)]
struct Subscription {
    endpoint: String,
    keys: SubscriptionKeys,
}

#[derive(Deserialize)]
struct SubscriptionKeys {
    p256dh: String,
    auth: String,
}

/// `POST /api/push/subscribe {endpoint, keys: {p256dh, auth}}`: this device gets notifications.
pub fn subscribe(ctx: &Ctx, req: &Req, user: &User) -> ApiResult {
    let body: Subscription = parse_body(
        req,
        r#"{"endpoint": string, "keys": {"p256dh": string, "auth": string}} (a PushSubscription)"#,
    )?;
    super::push::endpoint_allowed(&body.endpoint, &ctx.cfg.webchat.push_allow)
        .map_err(|e| ApiError(422, e))?;
    let b64 = |s: &str| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
    };
    if !b64(&body.keys.p256dh).is_some_and(|k| k.len() == 65 && k[0] == 4) {
        return Err(ApiError(
            422,
            "keys.p256dh must be an uncompressed P-256 public key (65 bytes, base64url)".into(),
        ));
    }
    if b64(&body.keys.auth).is_none_or(|k| k.len() != 16) {
        return Err(ApiError(422, "keys.auth must be 16 bytes, base64url".into()));
    }
    let conn = ctx.store.conn()?;
    people::upsert_push(
        &conn,
        &people::PushSub {
            endpoint: body.endpoint,
            user_id: user.id.clone(),
            session_id: user.session.clone(),
            p256dh: body.keys.p256dh,
            auth: body.keys.auth,
            created_at: now_ms(),
        },
        super::push::DEVICES_MAX,
    )?;
    Ok(Resp::json(200, &json!({ "ok": true })))
}

/// `POST /api/push/unsubscribe {endpoint}`.
pub fn unsubscribe(ctx: &Ctx, req: &Req, user: &User) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        endpoint: String,
    }
    let body: Body = parse_body(req, r#"{"endpoint": string}"#)?;
    let conn = ctx.store.conn()?;
    people::delete_push(&conn, &body.endpoint, Some(&user.id))?;
    Ok(Resp::json(200, &json!({ "ok": true })))
}

/// `GET /api/notify`: the caller's notification settings.
pub fn notify_prefs(ctx: &Ctx, user: &User) -> ApiResult {
    let conn = ctx.store.conn()?;
    Ok(Resp::json(
        200,
        &json!({
            "webhook": people::webhook_pref(&conn, &user.id)?,
            "webhookAvailable": ctx.notifier.webhook.is_some(),
            "pushDevices": people::push_subs_of(&conn, &user.id)?.len(),
        }),
    ))
}

/// `PUT /api/notify {webhook}`.
pub fn set_notify_prefs(ctx: &Ctx, req: &Req, user: &User) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        webhook: bool,
    }
    let body: Body = parse_body(req, r#"{"webhook": bool}"#)?;
    if body.webhook && ctx.notifier.webhook.is_none() {
        return Err(ApiError(409, "no notification webhook is configured (PINCER_NOTIFY_URL)".into()));
    }
    let conn = ctx.store.conn()?;
    people::set_webhook_pref(&conn, &user.id, body.webhook)?;
    notify_prefs(ctx, user)
}

/// `GET /api/users`: everyone, with roles, agents and signed-in devices.
pub fn list_users(ctx: &Ctx, user: &User) -> ApiResult {
    if !user.admin {
        return Err(forbidden("only the owner or an admin can see people"));
    }
    let conn = ctx.store.conn()?;
    let mut out = Vec::new();
    for u in people::users(&conn)? {
        let roles: Vec<String> = people::roles(&conn, &u.id)?
            .into_iter()
            .map(|r| match r.agent_id {
                Some(a) => format!("{}:{a}", r.role),
                None => r.role,
            })
            .collect();
        out.push(json!({
            "id": u.id,
            "displayName": u.display_name,
            "roles": roles,
            "agents": people::memberships(&conn, &u.id)?,
            "sessions": sessions_json(&conn, &u.id, user.session.as_deref())?,
            "online": ctx.hub.is_online(&u.id),
            "created_at": u.created_at,
        }));
    }
    Ok(Resp::json(200, &Value::Array(out)))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleChange {
    role: String,
    agent_id: Option<String>,
}

/// `POST /api/users/:id/grant` and `/revoke` `{role: owner|admin|member, agentId?}`: owner and
/// admin roles are the owner's to give; members (access to one agent) an admin's too.
pub fn change_role(ctx: &Ctx, req: &Req, user: &User, target: &str, grant: bool) -> ApiResult {
    let body: RoleChange = parse_body(req, r#"{"role": "owner" | "admin" | "member", "agentId"?: string}"#)?;
    let mut conn = ctx.store.conn()?;
    if people::user(&conn, target)?.is_none() {
        return Err(ApiError(404, format!("no person {target:?}")));
    }
    let agent = body.agent_id.as_deref();
    if let Some(a) = agent
        && central::agent(&conn, a)?.is_none()
    {
        return Err(ApiError(422, format!("no agent {a:?}")));
    }
    match (body.role.as_str(), agent) {
        ("owner", Some(_)) => {
            return Err(ApiError(422, "the owner role is for the whole install: leave out agentId".into()));
        }
        ("member", None) => return Err(ApiError(422, "a membership is of one agent: give agentId".into())),
        ("owner" | "admin", _) if !user.owner => {
            return Err(forbidden("only the owner can change owner and admin roles"));
        }
        ("member", _) if !user.admin => {
            return Err(forbidden("only the owner or an admin can change memberships"));
        }
        ("owner" | "admin" | "member", _) => {}
        (other, _) => {
            return Err(ApiError(422, format!("invalid role {other:?}: use owner, admin or member")));
        }
    }
    let now = now_ms();
    let changed = crate::db::write_tx(&mut conn, |tx| {
        let changed = match (body.role.as_str(), grant) {
            ("member", true) => people::add_member(tx, target, agent.unwrap_or_default(), &user.id, now)?,
            ("member", false) => people::remove_member(tx, target, agent.unwrap_or_default())?,
            (role, true) => people::grant_role(tx, target, role, agent, &user.id, now)?,
            (role, false) => {
                if role == "owner" && people::owner_count(tx)? <= 1 && central::is_owner(tx, target)? {
                    anyhow::bail!("the last owner cannot stop being one: make someone else an owner first");
                }
                people::revoke_role(tx, target, role, agent)?
            }
        };
        Ok(changed)
    })
    .map_err(|e| {
        if format!("{e:#}").contains("last owner") { ApiError(409, format!("{e:#}")) } else { e.into() }
    })?;
    if !grant && changed {
        // Access may have shrunk: sockets reconnect with what is left.
        ctx.hub.close_user(target);
    }
    ctx.rooms_changed();
    Ok(Resp::json(200, &json!({ "ok": true, "changed": changed })))
}

/// `DELETE /api/users/:id`: the person, their roles, memberships and sessions are gone, and
/// their sockets closed at once.
pub fn remove_user(ctx: &Ctx, user: &User, target: &str) -> ApiResult {
    if !user.owner {
        return Err(forbidden("only the owner can remove people"));
    }
    if target == user.id {
        return Err(ApiError(409, "you cannot remove yourself".into()));
    }
    let conn = ctx.store.conn()?;
    if central::is_owner(&conn, target)? && people::owner_count(&conn)? <= 1 {
        return Err(ApiError(409, "the last owner cannot be removed".into()));
    }
    if !people::delete_user(&conn, target)? {
        return Err(ApiError(404, format!("no person {target:?}")));
    }
    ctx.forget_user(target);
    ctx.hub.close_user(target);
    log::info!("{} removed {target}", user.id);
    Ok(Resp::json(200, &json!({ "ok": true })))
}
