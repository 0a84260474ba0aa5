//! The models agents can use: the endpoints this host is configured with (`ANTHROPIC_*`,
//! `OPENAI_*`, and the built-in mock), each asked which models it serves (`GET /api/models`),
//! and an agent's choice of provider and model (`PATCH /api/agents/:id`).
//!
//! Discovery asks the endpoint from the host (keys never leave it): Anthropic's and the
//! OpenAI-compatible `GET …/models` (llama.cpp, vLLM, Ollama's `/v1`, OpenRouter, OpenAI), each
//! within [`DISCOVER_TIMEOUT`]. An endpoint that does not answer is listed with the reason.

use std::time::Duration;

use serde_json::{Value, json};

use super::Ctx;
use super::wire::{ApiError, ApiResult, Resp, User};
use crate::host::proxy::ProxyConfig;

/// One discovery request.
pub const DISCOVER_TIMEOUT: Duration = Duration::from_secs(4);
/// Model ids listed per endpoint.
const MODELS_LISTED_MAX: usize = 500;
/// Longest model name an agent may be given.
pub const MODEL_CHARS_MAX: usize = 200;

/// The providers this host can serve: `mock` always; the others when configured.
pub fn configured(ctx: &Ctx) -> Vec<&'static str> {
    let p = ProxyConfig::from_config(&ctx.cfg);
    let mut out = Vec::new();
    if p.anthropic.is_some() {
        out.push("anthropic");
    }
    if p.openai.is_some() {
        out.push("openai");
    }
    out.push("mock");
    out
}

/// Checks an agent's provider and model choice; `None` clears it (the host's default).
pub fn check_choice(ctx: &Ctx, provider: Option<&str>, model: Option<&str>) -> Result<(), ApiError> {
    if let Some(p) = provider
        && !configured(ctx).contains(&p)
    {
        let how = match p {
            "anthropic" => "set ANTHROPIC_API_KEY (or ANTHROPIC_BASE_URL) and restart pincer",
            "openai" => "set OPENAI_BASE_URL (and OPENAI_API_KEY if it needs one) and restart pincer",
            _ => "use anthropic, openai or mock",
        };
        return Err(ApiError(422, format!("the provider {p:?} is not configured on this host: {how}")));
    }
    if let Some(m) = model
        && (m.trim().is_empty() || m.chars().count() > MODEL_CHARS_MAX || m.chars().any(char::is_control))
    {
        return Err(ApiError(
            422,
            format!("invalid model name: 1-{MODEL_CHARS_MAX} characters, no control characters"),
        ));
    }
    Ok(())
}

/// `GET /api/models` (the owner and admins): each configured provider, its default model, and
/// the models its endpoint lists (or why it could not be asked).
pub fn list(ctx: &Ctx, user: &User) -> ApiResult {
    if !user.admin {
        return Err(ApiError(403, "only the owner and admins see the model endpoints".into()));
    }
    let p = ProxyConfig::from_config(&ctx.cfg);
    let mut out = Vec::new();
    if let Some(up) = &p.anthropic {
        let url = format!("{}/v1/models?limit=100", up.base_url);
        let key = up.key.as_ref().map(|k| k.expose().to_string());
        let headers: Vec<(&str, String)> = key
            .iter()
            .map(|k| ("x-api-key", k.clone()))
            .chain(std::iter::once(("anthropic-version", "2023-06-01".to_string())))
            .collect();
        out.push(entry(
            "anthropic",
            &up.base_url,
            ctx.cfg.anthropic.model.as_deref(),
            discover(&url, &headers),
        ));
    }
    if let Some(up) = &p.openai {
        let url = format!("{}/models", up.base_url);
        let headers: Vec<(&str, String)> =
            up.key.iter().map(|k| ("authorization", format!("Bearer {}", k.expose()))).collect();
        out.push(entry("openai", &up.base_url, ctx.cfg.openai.model.as_deref(), discover(&url, &headers)));
    }
    out.push(json!({ "provider": "mock", "endpoint": null, "default_model": null, "models": ["mock"] }));
    Ok(Resp::json(200, &json!({ "default_provider": ctx.cfg.provider.as_str(), "providers": out })))
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

/// The model ids an endpoint lists: `{"data": [{"id"}]}` (OpenAI, Anthropic, llama.cpp, vLLM)
/// or `{"models": [{"name"}]}` (Ollama's native list).
fn discover(url: &str, headers: &[(&str, String)]) -> Result<Vec<String>, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(DISCOVER_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(url);
    for (k, v) in headers {
        req = req.header(*k, v.as_str());
    }
    let mut resp = req.call().map_err(|e| format!("could not reach {url}: {e}"))?;
    let status = resp.status().as_u16();
    let body: Value = resp
        .body_mut()
        .with_config()
        .limit(4 * 1024 * 1024)
        .read_json()
        .map_err(|e| format!("{url} answered {status} without a model list: {e}"))?;
    if status != 200 {
        return Err(format!("{url} answered {status}"));
    }
    Ok(ids(&body))
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
}
