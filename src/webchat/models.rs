//! The models agents can use: the endpoints this host is configured with (`ANTHROPIC_*`,
//! `OPENAI_*`, and the built-in mock) and the ones the owner added in the app
//! ([`super::endpoints`]), each asked which models it serves (`GET /api/models`); an agent's
//! choice of provider and model (`PATCH /api/agents/:id`); and [`probe`], which finds out what
//! kind of server a URL is.
//!
//! Every request is made from the host (keys never leave it) through [`crate::egress`], within
//! [`DISCOVER_TIMEOUT`]. An endpoint that does not answer is listed with the reason.

use std::time::Duration;

use serde_json::{Value, json};

use super::Ctx;
use super::wire::{ApiError, ApiResult, Resp, User};
use crate::db::endpoints::{self, Endpoint};
use crate::host::proxy::ProxyConfig;

/// One discovery request.
pub const DISCOVER_TIMEOUT: Duration = Duration::from_secs(4);
/// Model ids listed per endpoint.
const MODELS_LISTED_MAX: usize = 500;
/// Longest model name an agent may be given.
pub const MODEL_CHARS_MAX: usize = 200;
/// Largest model list read from an endpoint.
const LIST_BYTES_MAX: u64 = 4 * 1024 * 1024;

/// The providers this host can serve: `mock` always; the configured protocols; the endpoints
/// added in the app (by id).
pub fn configured(ctx: &Ctx) -> Result<Vec<String>, ApiError> {
    let p = ProxyConfig::from_config(&ctx.cfg);
    let mut out = Vec::new();
    if p.anthropic.is_some() {
        out.push("anthropic".to_string());
    }
    if p.openai.is_some() {
        out.push("openai".to_string());
    }
    out.push("mock".to_string());
    out.extend(endpoints::list(&*ctx.store.conn()?)?.into_iter().map(|e| e.id));
    Ok(out)
}

/// Checks an agent's provider and model choice; `None` clears it (the host's default).
pub fn check_choice(ctx: &Ctx, provider: Option<&str>, model: Option<&str>) -> Result<(), ApiError> {
    if let Some(p) = provider
        && !configured(ctx)?.iter().any(|c| c == p)
    {
        let how = match p {
            "anthropic" => {
                "set ANTHROPIC_API_KEY (or ANTHROPIC_BASE_URL) and restart pincer, or add the endpoint on the Models page"
            }
            "openai" => {
                "set OPENAI_BASE_URL (and OPENAI_API_KEY if it needs one) and restart pincer, or add the endpoint on the Models page"
            }
            _ => "use anthropic, openai, mock or the id of an endpoint from GET /api/models",
        };
        return Err(ApiError(422, format!("the provider {p:?} is not configured on this host: {how}")));
    }
    if let Some(m) = model {
        check_model_name(m)?;
    }
    Ok(())
}

pub fn check_model_name(m: &str) -> Result<(), ApiError> {
    if m.trim().is_empty() || m.chars().count() > MODEL_CHARS_MAX || m.chars().any(char::is_control) {
        return Err(ApiError(
            422,
            format!("invalid model name: 1-{MODEL_CHARS_MAX} characters, no control characters"),
        ));
    }
    Ok(())
}

/// `GET /api/models` (the owner and admins): each configured provider and each endpoint added in
/// the app, its default model, and the models its endpoint lists (or why it could not be asked).
/// The endpoints are asked at the same time.
pub fn list(ctx: &Ctx, user: &User) -> ApiResult {
    if !user.admin {
        return Err(ApiError(403, "only the owner and admins see the model endpoints".into()));
    }
    let p = ProxyConfig::from_config(&ctx.cfg);
    let conn = ctx.store.conn()?;
    let own = endpoints::list(&conn)?;
    let mut using = Vec::new();
    for e in &own {
        using.push(endpoints::agents_using(&conn, &e.id)?);
    }
    drop(conn);
    let mut out: Vec<Value> = std::thread::scope(|scope| {
        let mut jobs = Vec::new();
        if let Some(up) = &p.anthropic {
            let key = up.key.as_ref().map(|k| k.expose().to_string());
            let base = up.base_url.clone();
            let default = ctx.cfg.anthropic.model.clone();
            jobs.push(scope.spawn(move || {
                let found =
                    discover(&format!("{base}/v1/models?limit=100"), &anthropic_headers(key.as_deref()));
                entry("anthropic", &base, default.as_deref(), found)
            }));
        }
        if let Some(up) = &p.openai {
            let key = up.key.as_ref().map(|k| k.expose().to_string());
            let base = up.base_url.clone();
            let default = ctx.cfg.openai.model.clone();
            jobs.push(scope.spawn(move || {
                let found = discover(&format!("{base}/models"), &openai_headers(key.as_deref()));
                entry("openai", &base, default.as_deref(), found)
            }));
        }
        for (e, agents) in own.iter().zip(&using) {
            jobs.push(scope.spawn(move || {
                let mut v = entry(&e.id, &e.base_url, e.default_model.as_deref(), list_models(e));
                let view = view(e, agents);
                if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), view) {
                    v.extend(extra);
                }
                v
            }));
        }
        jobs.into_iter().filter_map(|j| j.join().ok()).collect()
    });
    out.push(json!({ "provider": "mock", "endpoint": null, "default_model": null, "models": ["mock"] }));
    Ok(Resp::json(200, &json!({ "default_provider": ctx.cfg.provider.as_str(), "providers": out })))
}

/// An endpoint added in the app, as the API shows it: never its key.
pub fn view(e: &Endpoint, agents: &[String]) -> Value {
    json!({
        "id": e.id, "provider": e.id, "name": e.name, "kind": e.kind, "endpoint": e.base_url,
        "has_key": e.api_key.is_some(), "default_model": e.default_model, "agents": agents,
        "created_at": e.created_at,
    })
}

fn entry(provider: &str, endpoint: &str, default: Option<&str>, found: Result<Vec<String>, String>) -> Value {
    match found {
        Ok(models) => {
            json!({ "provider": provider, "endpoint": endpoint, "default_model": default, "models": models })
        }
        Err(e) => {
            json!({ "provider": provider, "endpoint": endpoint, "default_model": default, "models": [], "error": e })
        }
    }
}

fn anthropic_headers(key: Option<&str>) -> Vec<(&'static str, String)> {
    key.map(|k| ("x-api-key", k.to_string()))
        .into_iter()
        .chain(std::iter::once(("anthropic-version", "2023-06-01".to_string())))
        .collect()
}

fn openai_headers(key: Option<&str>) -> Vec<(&'static str, String)> {
    key.map(|k| ("authorization", format!("Bearer {k}"))).into_iter().collect()
}

/// The models an endpoint added in the app lists.
pub fn list_models(e: &Endpoint) -> Result<Vec<String>, String> {
    match e.kind.as_str() {
        "anthropic" => {
            discover(&format!("{}/v1/models?limit=100", e.base_url), &anthropic_headers(e.api_key.as_deref()))
        }
        _ => discover(&format!("{}/models", e.base_url), &openai_headers(e.api_key.as_deref())),
    }
}

/// One GET from the host: status, and the body as JSON (`Null` when it is not JSON).
fn get(url: &str, headers: &[(&str, String)]) -> Result<(u16, Value), String> {
    let config = ureq::Agent::config_builder()
        .timeout_global(Some(DISCOVER_TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(0)
        .build();
    let agent = crate::egress::agent(config);
    let mut req = agent.get(url);
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let mut resp = req.call().map_err(|e| format!("could not reach {url}: {e}"))?;
    let status = resp.status().as_u16();
    let body = resp.body_mut().with_config().limit(LIST_BYTES_MAX).read_to_string().unwrap_or_default();
    Ok((status, serde_json::from_str(&body).unwrap_or(Value::String(body.chars().take(500).collect()))))
}

/// The model ids an endpoint lists: `{"data": [{"id"}]}` (OpenAI, Anthropic, llama.cpp, vLLM)
/// or `{"models": [{"name"}]}` (Ollama's native list).
fn discover(url: &str, headers: &[(&str, String)]) -> Result<Vec<String>, String> {
    let (status, body) = get(url, headers)?;
    match status {
        200 if body.get("data").is_some() || body.get("models").is_some() => Ok(ids(&body)),
        200 => Err(format!("{url} answered without a model list")),
        401 | 403 => Err(format!("{url} answered {status}: the key is missing or wrong")),
        _ => Err(format!("{url} answered {status}")),
    }
}

fn ids(body: &Value) -> Vec<String> {
    let from = |list: &Value, key: &str| -> Vec<String> {
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.get(key).and_then(Value::as_str).map(str::to_string))
            .take(MODELS_LISTED_MAX)
            .collect()
    };
    match (body.get("data"), body.get("models")) {
        (Some(d), _) => from(d, "id"),
        (None, Some(m)) => from(m, "name"),
        _ => Vec::new(),
    }
}

/// What a URL turned out to be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probed {
    /// `anthropic` or `openai`.
    pub kind: String,
    /// The base the proxy appends its routes to.
    pub base_url: String,
    pub models: Vec<String>,
    /// The server refused to list its models without a (right) key.
    pub requires_credential: bool,
    /// What the server is, in words (`Ollama`, `OpenAI-compatible`, `Anthropic`).
    pub server: &'static str,
}

/// Finds out what a URL serves: `GET …/v1/models` (an Anthropic list or an OpenAI-compatible
/// one: llama.cpp, vLLM, OpenRouter, LM Studio), then `GET …/models` under the URL as given,
/// then Ollama's `GET /api/tags` (used through its OpenAI-compatible `/v1`). `kind` skips the
/// guessing. The key, if given, is sent as both protocols send it.
pub fn probe(url: &str, key: Option<&str>, kind: Option<&str>) -> Result<Probed, String> {
    let url = crate::egress::check_url(url)?;
    let root = url.strip_suffix("/v1").unwrap_or(&url).to_string();
    let v1 = format!("{root}/v1");
    let mut tried = Vec::new();
    if kind == Some("anthropic") {
        let target = format!("{root}/v1/models?limit=100");
        let (status, body) = get(&target, &anthropic_headers(key))?;
        return listed("anthropic", "Anthropic", &root, &target, status, &body);
    }
    let mut headers = anthropic_headers(key);
    if kind == Some("openai") {
        headers = openai_headers(key);
    } else {
        headers.extend(openai_headers(key));
    }
    let mut candidates = vec![v1.clone()];
    if url != v1 {
        candidates.push(url.clone());
    }
    for base in &candidates {
        let target = format!("{base}/models");
        let (status, body) = match get(&target, &headers) {
            Ok(r) => r,
            Err(e) => {
                tried.push(e);
                continue;
            }
        };
        let anthropic = kind.is_none() && looks_anthropic(status, &body);
        match status {
            200 | 401 | 403 if anthropic => {
                return listed("anthropic", "Anthropic", &root, &target, status, &body);
            }
            200 if body.get("data").is_some() => {
                return listed("openai", "OpenAI-compatible", base, &target, status, &body);
            }
            401 | 403 => return listed("openai", "OpenAI-compatible", base, &target, status, &body),
            _ => tried.push(format!("{target} answered {status}")),
        }
    }
    let target = format!("{root}/api/tags");
    match get(&target, &[]) {
        Ok((200, body)) if body.get("models").is_some() => {
            return listed("openai", "Ollama", &v1, &target, 200, &body);
        }
        Ok((status, _)) => tried.push(format!("{target} answered {status}")),
        Err(e) => tried.push(e),
    }
    Err(format!("no model server answered at {url}: {}", tried.join("; ")))
}

/// The answer of a model list, as a probe result.
fn listed(
    kind: &str,
    server: &'static str,
    base: &str,
    target: &str,
    status: u16,
    body: &Value,
) -> Result<Probed, String> {
    let probed = |models, requires_credential| Probed {
        kind: kind.into(),
        base_url: base.to_string(),
        models,
        requires_credential,
        server,
    };
    match status {
        200 => Ok(probed(ids(body), false)),
        401 | 403 => Ok(probed(Vec::new(), true)),
        _ => Err(format!("{target} answered {status}")),
    }
}

/// Anthropic's list has `has_more` and entries of `"type": "model"`; its refusals name the
/// `x-api-key` header or `authentication_error`.
fn looks_anthropic(status: u16, body: &Value) -> bool {
    match status {
        200 => {
            body.get("has_more").is_some()
                || body["data"].as_array().and_then(|d| d.first()).is_some_and(|m| m["type"] == "model")
        }
        401 | 403 => {
            let text = body.to_string().to_ascii_lowercase();
            ["x-api-key", "authentication_error", "anthropic"].iter().any(|w| text.contains(w))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_lists_in_each_servers_shape() {
        assert_eq!(
            ids(&json!({"object": "list", "data": [{"id": "qwen2.5-7b"}, {"id": "llama3"}]})),
            ["qwen2.5-7b", "llama3"]
        );
        assert_eq!(
            ids(&json!({"data": [{"id": "claude-sonnet-4-5", "type": "model"}], "has_more": false})),
            ["claude-sonnet-4-5"]
        );
        assert_eq!(ids(&json!({"models": [{"name": "llama3.1:8b"}]})), ["llama3.1:8b"]);
        assert!(ids(&json!({"error": "nope"})).is_empty());
    }

    #[test]
    fn anthropic_lists_and_refusals_are_told_apart() {
        assert!(looks_anthropic(200, &json!({"data": [{"id": "c", "type": "model"}], "has_more": false})));
        assert!(!looks_anthropic(200, &json!({"object": "list", "data": [{"id": "q", "object": "model"}]})));
        let refusal = json!({"type": "error", "error": {"type": "authentication_error", "message": "x-api-key header is required"}});
        assert!(looks_anthropic(401, &refusal));
        assert!(!looks_anthropic(401, &json!({"error": {"message": "Incorrect API key provided"}})));
        assert!(!looks_anthropic(404, &refusal));
    }
}
