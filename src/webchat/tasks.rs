//! The tasks API: an agent's scheduled tasks, for the people who may use the agent, and their
//! controls (pause, resume, cancel). The tasks themselves live in the sessions' `inbound.db`
//! ([`crate::host::tasks`]); the agent is told of a person's change on its next turn.

use serde_json::json;

use super::Ctx;
use super::wire::{ApiError, ApiResult, Resp, User};
use crate::db::central;
use crate::host::sweep::SweepMsg;
use crate::host::tasks;
use crate::ids::now_ms;

/// The agent, if the caller may use it (404 like a missing one otherwise).
fn agent_for(ctx: &Ctx, user: &User, agent_id: &str) -> Result<central::Agent, ApiError> {
    let conn = ctx.store.conn()?;
    match central::agent(&conn, agent_id)? {
        Some(a) if user.owner || central::can_access_agent(&conn, &user.id, &a.id)? => Ok(a),
        _ => Err(ApiError(404, format!("no agent {agent_id:?}"))),
    }
}

/// `GET /api/agents/:id/tasks`.
pub fn list(ctx: &Ctx, user: &User, agent_id: &str) -> ApiResult {
    let agent = agent_for(ctx, user, agent_id)?;
    let conn = ctx.store.conn()?;
    let list =
        tasks::of_agent(&conn, &ctx.cfg.data_dir, &agent.id).map_err(|e| ApiError(500, format!("{e:#}")))?;
    Ok(Resp::json(200, &json!(list)))
}

/// `POST /api/agents/:id/tasks/:series/(pause|resume|cancel)`.
pub fn control(ctx: &Ctx, user: &User, agent_id: &str, series: &str, action: &str) -> ApiResult {
    let agent = agent_for(ctx, user, agent_id)?;
    let conn = ctx.store.conn()?;
    let done =
        tasks::control(&conn, &ctx.cfg.data_dir, &agent.id, series, action, &user.display_name, now_ms())
            .map_err(|e| ApiError(500, format!("{e:#}")))?;
    match done {
        Ok((session, applied)) => {
            log::info!("{} {} task {series} of agent {}", user.id, tasks::done_word(action), agent.name);
            if applied.next_run.is_some() {
                ctx.sweep.post(SweepMsg::Check(session));
            }
            Ok(Resp::json(200, &json!({ "ok": true, "next_run": applied.next_run })))
        }
        Err(why) if why.starts_with("the agent has no task") => Err(ApiError(404, why)),
        Err(why) => Err(ApiError(409, why)),
    }
}
