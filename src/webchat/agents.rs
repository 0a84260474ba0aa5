//! One agent for the people who use it: `GET /api/agents/:id` (with its instructions),
//! `PATCH /api/agents/:id` (rename, new instructions) for the owner or the agent's admins, and
//! `DELETE /api/agents/:id` for the owner (its folder and conversations kept in an archive).

use serde::Deserialize;
use serde_json::json;

use super::Ctx;
use super::wire::{ApiError, ApiResult, Req, Resp, User, parse_body};
use crate::db::central::{self, Agent};
use crate::db::people;
use crate::host::agents;

fn visible(ctx: &Ctx, user: &User, id: &str) -> Result<Agent, ApiError> {
    let conn = ctx.store.conn()?;
    match central::agent(&conn, id)? {
        Some(a) if user.owner || central::can_access_agent(&conn, &user.id, &a.id)? => Ok(a),
        _ => Err(ApiError(404, format!("no agent {id:?}"))),
    }
}

/// An agent as listed: its provider is the host's default when it has none of its own.
fn summary(ctx: &Ctx, a: &Agent) -> serde_json::Value {
    json!({
        "id": a.id,
        "name": a.name,
        "folder": a.folder,
        "provider": a.provider.as_deref().unwrap_or(ctx.cfg.provider.as_str()),
        "model": a.model,
        "created_at": a.created_at,
    })
}

/// One agent: as listed, with its instructions.
fn view(ctx: &Ctx, a: &Agent) -> serde_json::Value {
    let mut v = summary(ctx, a);
    v["instructions"] = json!(agents::instructions(&ctx.cfg.groups_dir, a));
    v
}

/// `GET /api/agents`: the agents the caller may use.
pub fn list(ctx: &Ctx, user: &User) -> ApiResult {
    let conn = ctx.store.conn()?;
    let mut out = Vec::new();
    for a in central::agents(&conn)? {
        if user.owner || central::can_access_agent(&conn, &user.id, &a.id)? {
            out.push(summary(ctx, &a));
        }
    }
    Ok(Resp::json(200, &serde_json::Value::Array(out)))
}

/// `GET /api/agents/:id`.
pub fn get(ctx: &Ctx, user: &User, id: &str) -> ApiResult {
    let a = visible(ctx, user, id)?;
    Ok(Resp::json(200, &view(ctx, &a)))
}

/// `PATCH /api/agents/:id {"name"?, "instructions"?}`.
pub fn update(ctx: &Ctx, user: &User, id: &str, req: &Req) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        name: Option<String>,
        instructions: Option<String>,
        /// Present (even `null`): the agent's provider changes; `null` is the host's default.
        #[serde(default, deserialize_with = "some")]
        provider: Option<Option<String>>,
        #[serde(default, deserialize_with = "some")]
        model: Option<Option<String>>,
    }
    fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
    let a = visible(ctx, user, id)?;
    if !user.owner && !people::is_admin_of(&*ctx.store.conn()?, &user.id, Some(&a.id))? {
        return Err(ApiError(403, format!("only the owner or an admin of {} can change it", a.name)));
    }
    let body: Body = parse_body(
        req,
        r#"{"name"?: string, "instructions"?: string, "provider"?: "anthropic" | "openai" | "mock" | endpoint id | null, "model"?: string | null}"#,
    )?;
    let model_change = body.provider.is_some() || body.model.is_some();
    let provider = body.provider.clone().unwrap_or(a.provider.clone());
    let model = body.model.clone().unwrap_or(a.model.clone());
    if model_change {
        super::models::check_choice(ctx, provider.as_deref(), model.as_deref())?;
    }
    let mut conn = ctx.store.conn()?;
    let mut updated = agents::update(
        &mut conn,
        &ctx.cfg.groups_dir,
        &a.id,
        body.name.as_deref(),
        body.instructions.as_deref(),
    )
    .map_err(|e| ApiError(422, format!("{e:#}")))?;
    if model_change {
        central::set_agent_model(&conn, &a.id, provider.as_deref(), model.as_deref())?;
        (updated.provider, updated.model) = (provider, model);
        // The model is chosen when a container starts: the next message starts a fresh one.
        for s in central::sessions_of_agent(&conn, &a.id)? {
            if ctx.containers.is_running(&s.id) {
                ctx.containers.stop(&s.id, "its model changed");
            }
        }
    }
    drop(conn);
    log::info!("{} changed agent {}", user.id, a.id);
    if body.name.is_some() {
        ctx.rooms_changed();
    }
    Ok(Resp::json(200, &json!({ "ok": true, "agent": view(ctx, &updated) })))
}

/// `DELETE /api/agents/:id` (the owner): its containers stop, its rooms lose it, its folder and
/// conversations are archived.
pub fn delete(ctx: &Ctx, user: &User, id: &str) -> ApiResult {
    let a = visible(ctx, user, id)?;
    if !user.owner {
        return Err(ApiError(403, "only the owner can delete an agent".into()));
    }
    let mut conn = ctx.store.conn()?;
    for s in central::sessions_of_agent(&conn, &a.id)? {
        if ctx.containers.is_running(&s.id) {
            ctx.containers.stop(&s.id, "its agent was deleted");
        }
    }
    let rooms: Vec<String> = central::rooms_of_agent(&conn, &a.id)?;
    let kept = agents::delete(&mut conn, &ctx.cfg.data_dir, &ctx.cfg.groups_dir, &a, crate::ids::now_ms())
        .map_err(|e| ApiError(500, format!("{e:#}")))?;
    drop(conn);
    log::info!("{} deleted agent {} (folder kept at {})", user.id, a.id, kept.display());
    if !rooms.is_empty() {
        ctx.rooms_changed();
    }
    let rel = kept.strip_prefix(&ctx.cfg.groups_dir).unwrap_or(&kept).display().to_string();
    Ok(Resp::json(200, &json!({ "ok": true, "archived": format!("groups/{rel}") })))
}
