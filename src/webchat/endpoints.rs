//! The model endpoints the owner adds in the app (the Models page): probe a URL, add, change and
//! remove an endpoint. Every save checks the endpoint first (it answers, with its model list,
//! and accepts the key); keys are kept on the host and never shown again.
//!
//! Agents pick an endpoint by its id as their `provider` (`PATCH /api/agents/:id`); the
//! credential proxy sends their calls there ([`crate::host::proxy`]).

use serde::Deserialize;
use serde_json::{Value, json};

use super::Ctx;
use super::models::{self, Probed};
use super::wire::{ApiError, ApiResult, Req, Resp, User, parse_body};
use crate::db::endpoints::{self, Endpoint};
use crate::ids::{new_id, now_ms};

/// Longest endpoint name.
pub const NAME_CHARS_MAX: usize = 64;
/// Longest key.
pub const KEY_CHARS_MAX: usize = 512;
/// Endpoints one host keeps.
pub const ENDPOINTS_MAX: usize = 50;

fn owner_only(user: &User) -> Result<(), ApiError> {
    if !user.owner {
        return Err(ApiError(403, "only the owner manages model endpoints (they hold keys)".into()));
    }
    Ok(())
}

fn check_kind(kind: Option<&str>) -> Result<(), ApiError> {
    match kind {
        None | Some("anthropic" | "openai") => Ok(()),
        Some(k) => Err(ApiError(
            422,
            format!(
                "kind {k:?} is not known: use anthropic or openai (OpenAI-compatible: llama.cpp, vLLM, Ollama, OpenRouter), or leave it out to detect it"
            ),
        )),
    }
}

fn check_key(key: Option<&str>) -> Result<(), ApiError> {
    if let Some(k) = key
        && (k.is_empty() || k.len() > KEY_CHARS_MAX || k.chars().any(|c| c.is_control() || c.is_whitespace()))
    {
        return Err(ApiError(422, format!("the key must be 1-{KEY_CHARS_MAX} characters without spaces")));
    }
    Ok(())
}

/// Probes a URL and refuses what cannot serve agents: unreachable, not a model server, or
/// refusing the key.
fn checked(url: &str, key: Option<&str>, kind: Option<&str>) -> Result<Probed, ApiError> {
    let p = models::probe(url, key, kind).map_err(|e| ApiError(422, e))?;
    if p.requires_credential {
        let why = if key.is_some() { "refused the key given" } else { "needs a key" };
        return Err(ApiError(
            422,
            format!("{} ({}) {why}: paste the endpoint's API key", p.base_url, p.server),
        ));
    }
    Ok(p)
}

fn probed_json(p: &Probed) -> Value {
    json!({
        "kind": p.kind, "endpoint": p.base_url, "server": p.server, "models": p.models,
        "requires_credential": p.requires_credential,
    })
}

/// `POST /api/models/probe` `{"url", "api_key"?, "kind"?}`: what the URL serves, nothing saved.
pub fn probe(user: &User, req: &Req) -> ApiResult {
    owner_only(user)?;
    #[derive(Deserialize)]
    struct Body {
        url: String,
        api_key: Option<String>,
        kind: Option<String>,
    }
    let b: Body = parse_body(req, r#"{"url": string, "api_key"?: string, "kind"?: "anthropic" | "openai"}"#)?;
    check_kind(b.kind.as_deref())?;
    check_key(b.api_key.as_deref())?;
    let p = models::probe(&b.url, b.api_key.as_deref(), b.kind.as_deref()).map_err(|e| ApiError(422, e))?;
    Ok(Resp::json(200, &probed_json(&p)))
}

fn check_name(ctx: &Ctx, name: &str, except: Option<&str>) -> Result<String, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > NAME_CHARS_MAX || name.chars().any(char::is_control) {
        return Err(ApiError(422, format!("the name must be 1-{NAME_CHARS_MAX} characters")));
    }
    if ["anthropic", "openai", "mock"].contains(&name.to_ascii_lowercase().as_str()) {
        return Err(ApiError(422, format!("{name:?} is the name of a built-in provider: choose another")));
    }
    if endpoints::name_taken(&*ctx.store.conn()?, name, except)? {
        return Err(ApiError(409, format!("an endpoint named {name:?} exists already")));
    }
    Ok(name.to_string())
}

/// The default model: the one asked for (which the endpoint must list, when it lists any), else
/// the first it lists.
fn pick_default(p: &Probed, asked: Option<&str>) -> Result<Option<String>, ApiError> {
    match asked {
        Some(m) => {
            models::check_model_name(m)?;
            if !p.models.is_empty() && !p.models.iter().any(|x| x == m) {
                let some: Vec<&str> = p.models.iter().take(10).map(String::as_str).collect();
                return Err(ApiError(
                    422,
                    format!("{} does not list the model {m:?}; it lists: {}", p.base_url, some.join(", ")),
                ));
            }
            Ok(Some(m.to_string()))
        }
        None => Ok(p.models.first().cloned()),
    }
}

/// `POST /api/models` `{"name", "url", "kind"?, "api_key"?, "default_model"?}` (the owner).
pub fn create(ctx: &Ctx, user: &User, req: &Req) -> ApiResult {
    owner_only(user)?;
    #[derive(Deserialize)]
    struct Body {
        name: String,
        url: String,
        kind: Option<String>,
        api_key: Option<String>,
        default_model: Option<String>,
    }
    let b: Body = parse_body(
        req,
        r#"{"name": string, "url": string, "kind"?: "anthropic" | "openai", "api_key"?: string, "default_model"?: string}"#,
    )?;
    check_kind(b.kind.as_deref())?;
    check_key(b.api_key.as_deref())?;
    let name = check_name(ctx, &b.name, None)?;
    if endpoints::list(&*ctx.store.conn()?)?.len() >= ENDPOINTS_MAX {
        return Err(ApiError(
            409,
            format!("this host keeps at most {ENDPOINTS_MAX} endpoints: remove one first"),
        ));
    }
    let p = checked(&b.url, b.api_key.as_deref(), b.kind.as_deref())?;
    let e = Endpoint {
        id: new_id("ep"),
        name,
        kind: p.kind.clone(),
        base_url: p.base_url.clone(),
        api_key: b.api_key,
        default_model: pick_default(&p, b.default_model.as_deref())?,
        created_at: now_ms(),
    };
    let conn = ctx.store.conn()?;
    // Checked again under the write: two saves of one name at once keep one.
    if endpoints::name_taken(&conn, &e.name, None)? {
        return Err(ApiError(409, format!("an endpoint named {:?} exists already", e.name)));
    }
    endpoints::insert(&conn, &e)?;
    log::info!("{} added the model endpoint {} ({}, {})", user.id, e.id, e.kind, e.base_url);
    let mut v = models::view(&e, &[]);
    v["models"] = json!(p.models);
    Ok(Resp::json(200, &json!({ "ok": true, "endpoint": v })))
}

/// `PATCH /api/models/:id` `{"name"?, "url"?, "kind"?, "api_key"?: string | null,
/// "default_model"?}` (the owner): checked again before it is saved; the agents using it start
/// fresh containers at their next message.
pub fn update(ctx: &Ctx, user: &User, id: &str, req: &Req) -> ApiResult {
    owner_only(user)?;
    #[derive(Deserialize)]
    struct Body {
        name: Option<String>,
        url: Option<String>,
        kind: Option<String>,
        #[serde(default, deserialize_with = "some")]
        api_key: Option<Option<String>>,
        default_model: Option<String>,
    }
    fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
    let b: Body = parse_body(
        req,
        r#"{"name"?: string, "url"?: string, "kind"?: "anthropic" | "openai", "api_key"?: string | null, "default_model"?: string}"#,
    )?;
    let mut e = endpoints::get(&*ctx.store.conn()?, id)?
        .ok_or_else(|| ApiError(404, format!("no model endpoint {id}")))?;
    check_kind(b.kind.as_deref())?;
    if let Some(k) = &b.api_key {
        check_key(k.as_deref())?;
        e.api_key = k.clone();
    }
    if let Some(n) = &b.name {
        e.name = check_name(ctx, n, Some(&e.id))?;
    }
    let url = b.url.clone().unwrap_or_else(|| e.base_url.clone());
    let kind = b.kind.clone().unwrap_or_else(|| e.kind.clone());
    let p = checked(&url, e.api_key.as_deref(), Some(&kind))?;
    (e.kind, e.base_url) = (p.kind.clone(), p.base_url.clone());
    e.default_model = match b.default_model.as_deref() {
        Some(m) => pick_default(&p, Some(m))?,
        None => e.default_model.clone(),
    };
    let conn = ctx.store.conn()?;
    endpoints::update(&conn, &e)?;
    let agents = endpoints::agents_using(&conn, &e.id)?;
    stop_agents(ctx, &conn, &agents, "its model endpoint changed")?;
    drop(conn);
    log::info!("{} changed the model endpoint {}", user.id, e.id);
    let mut v = models::view(&e, &agents);
    v["models"] = json!(p.models);
    Ok(Resp::json(200, &json!({ "ok": true, "endpoint": v })))
}

/// `DELETE /api/models/:id[?force=1]` (the owner): refused while agents use it unless forced;
/// then they go back to the host's default model.
pub fn delete(ctx: &Ctx, user: &User, id: &str, req: &Req) -> ApiResult {
    owner_only(user)?;
    let mut conn = ctx.store.conn()?;
    let e = endpoints::get(&conn, id)?.ok_or_else(|| ApiError(404, format!("no model endpoint {id}")))?;
    let agents = endpoints::agents_using(&conn, id)?;
    if !agents.is_empty() && req.query("force") != Some("1") {
        return Ok(Resp::json(
            409,
            &json!({
                "error": format!("{} agent(s) use {:?}: give them another model first, or delete with ?force=1 (they go back to the host's default)", agents.len(), e.name),
                "agents": agents,
            }),
        ));
    }
    stop_agents(ctx, &conn, &agents, "its model endpoint was removed")?;
    let moved = endpoints::delete(&mut conn, id)?;
    log::info!("{} removed the model endpoint {id} ({moved} agent(s) back to the default)", user.id);
    Ok(Resp::json(200, &json!({ "ok": true, "unassigned": moved })))
}

/// The model is chosen when a container starts: running ones stop, the next message starts
/// fresh ones.
fn stop_agents(ctx: &Ctx, conn: &rusqlite::Connection, agents: &[String], why: &str) -> Result<(), ApiError> {
    for a in agents {
        for s in crate::db::central::sessions_of_agent(conn, a)? {
            if ctx.containers.is_running(&s.id) {
                ctx.containers.stop(&s.id, why);
            }
        }
    }
    Ok(())
}
