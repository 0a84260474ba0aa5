//! The approvals API: pending requests of agents for the people who may decide them, and the
//! decision itself (the server checks who decides: the owner or an admin of that agent).

use serde::Deserialize;
use serde_json::json;

use super::Ctx;
use super::wire::{ApiError, ApiResult, Req, Resp, User, parse_body};
use crate::db::approvals;
use crate::host::approvals::{self as host, DecideError};
use crate::ids::now_ms;

/// `GET /api/approvals`: what the caller may decide, oldest first.
pub fn list(ctx: &Ctx, user: &User) -> ApiResult {
    let conn = ctx.store.conn()?;
    let mut out = Vec::new();
    for a in approvals::pending(&conn)? {
        if host::may_decide(&conn, &user.id, &a.agent_id)? {
            out.push(json!({
                "id": a.id, "kind": a.kind, "agent_id": a.agent_id, "room_id": a.room_id,
                "summary": a.summary, "requested_by": a.requested_by, "created_at": a.created_at,
            }));
        }
    }
    Ok(Resp::json(200, &json!(out)))
}

/// `POST /api/approvals/:id {"decision": "approve" | "deny"}`.
pub fn decide(ctx: &Ctx, user: &User, id: &str, req: &Req) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        decision: String,
    }
    let body: Body = parse_body(req, r#"{"decision": "approve" | "deny"}"#)?;
    let approve = match body.decision.as_str() {
        "approve" => true,
        "deny" => false,
        other => {
            return Err(ApiError(422, format!("invalid decision {other:?}: use \"approve\" or \"deny\"")));
        }
    };
    let conn = ctx.store.conn()?;
    let reroute = || ctx.router.post(crate::host::router::RouterMsg::Route);
    let env = host::Env {
        central: &conn,
        data_dir: &ctx.cfg.data_dir,
        groups_dir: &ctx.cfg.groups_dir,
        channels: &ctx.channels,
        containers: &ctx.containers,
        reroute: Some(&reroute),
    };
    match host::decide(&env, id, &user.id, &user.display_name, approve, now_ms()).map_err(ApiError::from)? {
        Ok(outcome) => Ok(Resp::json(200, &json!({ "ok": true, "outcome": outcome }))),
        Err(DecideError::NotFound) => Err(ApiError(404, format!("no approval {id:?}"))),
        Err(DecideError::Forbidden(why)) => Err(ApiError(403, why)),
        Err(DecideError::Decided(why)) => Err(ApiError(409, why)),
    }
}
