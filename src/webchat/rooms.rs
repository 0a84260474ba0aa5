//! Rooms as people shape them: creating a room with existing or new agents, renaming,
//! archiving (per person), deleting; adding and removing agents, the prime agent, how each agent
//! engages; who a room's agents answer (`unknown_sender_policy`), and the record of messages an
//! agent did not get.

use serde::Deserialize;
use serde_json::json;

use super::Ctx;
use super::wire::{ApiError, ApiResult, Req, Resp, User, parse_body};
use crate::db::{central, people};
use crate::host::rooms::{self, AgentSpec};
use crate::ids::now_ms;

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

fn internal(e: anyhow::Error) -> ApiError {
    ApiError(422, format!("{e:#}"))
}

/// The caller may change the room: the owner, or an admin of one of its agents.
fn may_change(ctx: &Ctx, user: &User, room: &central::Room) -> Result<(), ApiError> {
    if user.admin {
        return Ok(());
    }
    let conn = ctx.store.conn()?;
    for a in central::agents_of_room(&conn, &room.id)? {
        if people::is_admin_of(&conn, &user.id, Some(&a.id))? {
            return Ok(());
        }
    }
    Err(ApiError(403, "only the owner or an admin of one of its agents can change this room".into()))
}

/// The room changed: every page gets the new list.
fn changed(ctx: &Ctx) -> ApiResult {
    ctx.rooms_changed();
    Ok(Resp::json(200, &json!({ "ok": true })))
}

/// A room only the owner may change this way; `refusal` tells anyone else why not.
fn owners_room(ctx: &Ctx, user: &User, room_id: &str, refusal: &str) -> Result<central::Room, ApiError> {
    let room = room_of(ctx, user, room_id)?;
    if !user.owner {
        return Err(ApiError(403, refusal.into()));
    }
    Ok(room)
}

fn room_of(ctx: &Ctx, user: &User, room_id: &str) -> Result<central::Room, ApiError> {
    ctx.store
        .accessible_room(room_id, &user.id, user.owner)?
        .ok_or_else(|| ApiError(404, format!("no room {room_id:?}")))
}

/// `POST /api/rooms {"name", "agents": [{"kind": "existing", "id"} | {"kind": "new", "name", "instructions"?}]}`.
pub fn create(ctx: &Ctx, user: &User, req: &Req) -> ApiResult {
    #[derive(Deserialize)]
    #[serde(tag = "kind", rename_all = "lowercase")]
    enum Spec {
        Existing { id: String },
        New { name: String, instructions: Option<String> },
    }
    #[derive(Deserialize)]
    struct Body {
        name: String,
        #[serde(default)]
        agents: Vec<Spec>,
    }
    if !user.owner {
        return Err(ApiError(403, "only the owner can create rooms".into()));
    }
    let body: Body = parse_body(
        req,
        r#"{"name": string, "agents": [{"kind": "existing", "id": string} | {"kind": "new", "name": string, "instructions"?: string}]}"#,
    )?;
    let specs: Vec<AgentSpec> = body
        .agents
        .into_iter()
        .map(|s| match s {
            Spec::Existing { id } => AgentSpec::Existing(id),
            Spec::New { name, instructions } => AgentSpec::New { name, instructions },
        })
        .collect();
    let mut conn = ctx.store.conn()?;
    let (room, agents) =
        rooms::create(&mut conn, &ctx.cfg.data_dir, &ctx.cfg.groups_dir, &body.name, &specs, now_ms())
            .map_err(internal)?;
    log::info!("{} created room {} with {} agent(s)", user.id, room.id, agents.len());
    ctx.rooms_changed();
    Ok(Resp::json(
        201,
        &json!({ "ok": true, "room": { "id": room.id, "name": room.name }, "agents": agents }),
    ))
}

/// `PATCH /api/rooms/:id {"name"?, "engageDefault"?, "archived"?, "pinned"?}`: `archived` and
/// `pinned` are the caller's own; the others change the room for everyone.
pub fn update(ctx: &Ctx, user: &User, room_id: &str, req: &Req) -> ApiResult {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        name: Option<String>,
        engage_default: Option<String>,
        archived: Option<bool>,
        pinned: Option<bool>,
    }
    let room = room_of(ctx, user, room_id)?;
    let body: Body = parse_body(
        req,
        r#"{"name"?: string, "engageDefault"?: "broadcast" | "mention-only", "archived"?: bool, "pinned"?: bool}"#,
    )?;
    if body.name.is_some() || body.engage_default.is_some() {
        may_change(ctx, user, &room)?;
    }
    let name = body
        .name
        .as_deref()
        .map(|n| crate::host::agents::validate_name("room", n))
        .transpose()
        .map_err(internal)?;
    if let Some(d) = &body.engage_default
        && !matches!(d.as_str(), "broadcast" | "mention-only")
    {
        return Err(ApiError(422, format!("invalid engageDefault {d:?}: use broadcast or mention-only")));
    }
    let conn = ctx.store.conn()?;
    if let Some(n) = &name {
        central::rename_room(&conn, &room.id, n)?;
    }
    if let Some(d) = &body.engage_default {
        central::set_engage_default(&conn, &room.id, d)?;
    }
    if let Some(a) = body.archived {
        central::set_archived(&conn, &room.id, &user.id, a, now_ms())?;
    }
    if let Some(p) = body.pinned {
        central::set_pinned(&conn, &room.id, &user.id, p, now_ms())?;
    }
    changed(ctx)
}

/// `DELETE /api/rooms/:id` (the owner): the room and its messages go; agents stay.
pub fn delete(ctx: &Ctx, user: &User, room_id: &str) -> ApiResult {
    let room = owners_room(ctx, user, room_id, "only the owner can delete rooms")?;
    let conn = ctx.store.conn()?;
    let agents = central::agents_of_room(&conn, &room.id)?;
    central::delete_room(&conn, &room.id)?;
    for a in agents {
        crate::host::agents::reproject(&conn, &ctx.cfg.data_dir, &a.id);
    }
    log::info!("{} deleted room {}", user.id, room.id);
    changed(ctx)
}

/// `POST /api/rooms/:id/agents {"agentId"}`.
pub fn add_agent(ctx: &Ctx, user: &User, room_id: &str, req: &Req) -> ApiResult {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        agent_id: String,
    }
    let room = room_of(ctx, user, room_id)?;
    may_change(ctx, user, &room)?;
    let body: Body = parse_body(req, r#"{"agentId": string}"#)?;
    let mut conn = ctx.store.conn()?;
    let agent = match central::agent(&conn, &body.agent_id)? {
        Some(a) if user.owner || central::can_access_agent(&conn, &user.id, &a.id)? => a,
        _ => return Err(ApiError(422, format!("no agent {:?}", body.agent_id))),
    };
    rooms::add_agent(&mut conn, &ctx.cfg.data_dir, &room, &agent, now_ms()).map_err(internal)?;
    changed(ctx)
}

/// `DELETE /api/rooms/:id/agents/:agentId`.
pub fn remove_agent(ctx: &Ctx, user: &User, room_id: &str, agent_id: &str) -> ApiResult {
    let room = room_of(ctx, user, room_id)?;
    may_change(ctx, user, &room)?;
    let mut conn = ctx.store.conn()?;
    if !rooms::remove_agent(&mut conn, &ctx.cfg.data_dir, &room, agent_id).map_err(internal)? {
        return Err(ApiError(404, format!("agent {agent_id:?} is not in {}", room.name)));
    }
    changed(ctx)
}

/// `PUT /api/rooms/:id/agents/:agentId {"engageMode", "pattern"?, "ignored"?, "sessionMode"?}`.
pub fn set_wiring(ctx: &Ctx, user: &User, room_id: &str, agent_id: &str, req: &Req) -> ApiResult {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        engage_mode: String,
        pattern: Option<String>,
        ignored: Option<String>,
        session_mode: Option<String>,
    }
    let room = room_of(ctx, user, room_id)?;
    may_change(ctx, user, &room)?;
    let body: Body = parse_body(
        req,
        r#"{"engageMode": "pattern" | "mention" | "mention-sticky", "pattern"?: string, "ignored"?: "drop" | "accumulate", "sessionMode"?: "shared" | "agent-shared"}"#,
    )?;
    if !matches!(body.engage_mode.as_str(), "pattern" | "mention" | "mention-sticky") {
        return Err(ApiError(
            422,
            format!("invalid engageMode {:?}: use pattern, mention or mention-sticky", body.engage_mode),
        ));
    }
    let pattern = body.pattern.unwrap_or_else(|| ".".into());
    if let Err(e) = crate::host::router::compile_pattern(&pattern) {
        return Err(ApiError(422, format!("invalid pattern {pattern:?}: {e}")));
    }
    let ignored = body.ignored.unwrap_or_else(|| "drop".into());
    if !matches!(ignored.as_str(), "drop" | "accumulate") {
        return Err(ApiError(422, format!("invalid ignored {ignored:?}: use drop or accumulate")));
    }
    let session_mode = body.session_mode.unwrap_or_else(|| "shared".into());
    if !matches!(session_mode.as_str(), "shared" | "agent-shared") {
        return Err(ApiError(
            422,
            format!("invalid sessionMode {session_mode:?}: use shared or agent-shared"),
        ));
    }
    let conn = ctx.store.conn()?;
    if !central::update_wiring(
        &conn,
        &room.id,
        agent_id,
        &body.engage_mode,
        Some(&pattern),
        &ignored,
        &session_mode,
    )? {
        return Err(ApiError(404, format!("agent {agent_id:?} is not in {}", room.name)));
    }
    changed(ctx)
}

/// `DELETE /api/rooms/:id/prime` (the owner).
pub fn clear_prime(ctx: &Ctx, user: &User, room_id: &str) -> ApiResult {
    let room = owners_room(ctx, user, room_id, "only the owner can choose a room's prime agent")?;
    central::set_prime(&*ctx.store.conn()?, &room.id, None)?;
    changed(ctx)
}

/// `PUT /api/rooms/:id/prime {"agentId": id | null}` (the owner).
pub fn set_prime(ctx: &Ctx, user: &User, room_id: &str, req: &Req) -> ApiResult {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        agent_id: Option<String>,
    }
    let room = owners_room(ctx, user, room_id, "only the owner can choose a room's prime agent")?;
    let body: Body = parse_body(req, r#"{"agentId": string | null}"#)?;
    let conn = ctx.store.conn()?;
    if let Some(id) = &body.agent_id
        && !central::wirings_of_room(&conn, &room.id)?.iter().any(|w| &w.agent_id == id)
    {
        return Err(ApiError(422, format!("agent {id:?} is not in {}: add it to the room first", room.name)));
    }
    central::set_prime(&conn, &room.id, body.agent_id.as_deref())?;
    changed(ctx)
}
