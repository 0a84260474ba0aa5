//! An agent's destinations: the rooms and other agents it may send messages to, by the names it
//! uses for them. People who may use the agent see them; its owner and admins change them.

use serde::Deserialize;
use serde_json::json;

use super::Ctx;
use super::wire::{ApiError, ApiResult, Req, Resp, User, parse_body};
use crate::db::{central, people};
use crate::host::agents;
use crate::ids::now_ms;

fn agent_for(ctx: &Ctx, user: &User, agent_id: &str, change: bool) -> Result<central::Agent, ApiError> {
    let conn = ctx.store.conn()?;
    let agent = match central::agent(&conn, agent_id)? {
        Some(a) if user.owner || central::can_access_agent(&conn, &user.id, &a.id)? => a,
        _ => return Err(ApiError(404, format!("no agent {agent_id:?}"))),
    };
    if change && !user.owner && !people::is_admin_of(&conn, &user.id, Some(&agent.id))? {
        return Err(ApiError(
            403,
            format!("only the owner or an admin of {} can change its destinations", agent.name),
        ));
    }
    Ok(agent)
}

/// `GET /api/agents/:id/destinations`.
pub fn list(ctx: &Ctx, user: &User, agent_id: &str) -> ApiResult {
    let agent = agent_for(ctx, user, agent_id, false)?;
    let conn = ctx.store.conn()?;
    let out: Vec<_> = central::resolved_destinations(&conn, &agent.id)?
        .into_iter()
        .map(|d| {
            json!({
                "name": d.name, "type": d.target_type, "target_name": d.display_name,
                "agent_id": d.agent_id, "room_id": if d.target_type == "channel" { d.platform_id } else { None },
            })
        })
        .collect();
    Ok(Resp::json(200, &json!(out)))
}

/// `POST /api/agents/:id/destinations {"agentId", "name"?, "both"?}`: lets the agent message
/// another agent (and with `both`, the other agent answer it by name too).
pub fn add(ctx: &Ctx, user: &User, agent_id: &str, req: &Req) -> ApiResult {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Body {
        agent_id: String,
        name: Option<String>,
        #[serde(default)]
        both: bool,
    }
    let agent = agent_for(ctx, user, agent_id, true)?;
    let body: Body = parse_body(req, r#"{"agentId": string, "name"?: string, "both"?: bool}"#)?;
    let target = agent_for(ctx, user, &body.agent_id, body.both)?;
    let conn = ctx.store.conn()?;
    let now = now_ms();
    let name = agents::link(&conn, &ctx.cfg.data_dir, &agent.id, &target.id, body.name.as_deref(), now)
        .map_err(|e| ApiError(422, format!("{e:#}")))?;
    let back = if body.both {
        Some(
            agents::link(&conn, &ctx.cfg.data_dir, &target.id, &agent.id, None, now)
                .map_err(|e| ApiError(422, format!("{e:#}")))?,
        )
    } else {
        None
    };
    log::info!("{} let {} message {} as {name:?}", user.id, agent.name, target.name);
    Ok(Resp::json(201, &json!({ "ok": true, "name": name, "back": back })))
}

/// `DELETE /api/agents/:id/destinations/:name`.
pub fn remove(ctx: &Ctx, user: &User, agent_id: &str, name: &str) -> ApiResult {
    let agent = agent_for(ctx, user, agent_id, true)?;
    let conn = ctx.store.conn()?;
    if !agents::unlink(&conn, &ctx.cfg.data_dir, &agent.id, name)
        .map_err(|e| ApiError(500, format!("{e:#}")))?
    {
        return Err(ApiError(404, format!("{} has no destination {name:?}", agent.name)));
    }
    Ok(Resp::json(200, &json!({ "ok": true })))
}
