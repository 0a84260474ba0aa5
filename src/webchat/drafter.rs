//! ✨ The drafter: `POST /api/agents/draft {"prompt"}` (the owner) asks the host's default model
//! for a new agent's name and instructions from a one-line description. The host calls the
//! endpoint itself with the key it holds (no container, no key elsewhere); the mock provider
//! drafts from the words given.

use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use super::Ctx;
use super::wire::{ApiError, ApiResult, Req, Resp, User, parse_body};
use crate::host::proxy::ProxyConfig;

/// Longest description.
pub const PROMPT_CHARS_MAX: usize = 500;
/// The whole call to the model.
pub const DRAFT_TIMEOUT: Duration = Duration::from_secs(45);
const DRAFT_TOKENS_MAX: u32 = 800;

const SYSTEM: &str = "You design assistants for a personal AI host. Given a one-line description, \
answer with only a JSON object {\"name\": string, \"instructions\": string}: a short, friendly name \
(at most 40 characters, no emoji) and instructions in the second person (\"You are…\"), 3 to 8 \
sentences: what it does, how it answers, and what it does not do. No other text.";

/// `POST /api/agents/draft {"prompt"}` → `{"name", "instructions"}`.
pub fn draft(ctx: &Ctx, user: &User, req: &Req) -> ApiResult {
    #[derive(Deserialize)]
    struct Body {
        prompt: String,
    }
    if !user.owner {
        return Err(ApiError(403, "only the owner can create agents".into()));
    }
    let body: Body = parse_body(req, r#"{"prompt": string}"#)?;
    let prompt = body.prompt.trim();
    if prompt.is_empty() || prompt.chars().count() > PROMPT_CHARS_MAX {
        return Err(ApiError(422, format!("describe the agent in 1-{PROMPT_CHARS_MAX} characters")));
    }
    let text = match ctx.cfg.provider.as_str() {
        "mock" => return Ok(Resp::json(200, &mock(prompt))),
        provider => call(ctx, provider, prompt)?,
    };
    let v = parse(&text).ok_or_else(|| {
        ApiError(502, "the model did not answer with a draft; try again, or write the agent yourself".into())
    })?;
    Ok(Resp::json(200, &v))
}

fn call(ctx: &Ctx, provider: &str, prompt: &str) -> Result<String, ApiError> {
    let p = ProxyConfig::from_config(&ctx.cfg);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(DRAFT_TIMEOUT))
        .http_status_as_error(false)
        .build()
        .into();
    let unreachable = |e: ureq::Error| ApiError(502, format!("could not reach the model: {e}"));
    let (status, body): (u16, Value) = match provider {
        "anthropic" => {
            let up =
                p.anthropic.ok_or_else(|| ApiError(422, "no Anthropic endpoint is configured".into()))?;
            let model = ctx.cfg.anthropic.model.clone().unwrap_or_else(|| "claude-sonnet-4-5".into());
            let mut r =
                agent.post(&format!("{}/v1/messages", up.base_url)).header("anthropic-version", "2023-06-01");
            if let Some(k) = &up.key {
                r = r.header("x-api-key", k.expose());
            }
            let mut resp = r
                .send_json(json!({
                    "model": model, "max_tokens": DRAFT_TOKENS_MAX, "system": SYSTEM,
                    "messages": [{ "role": "user", "content": prompt }],
                }))
                .map_err(unreachable)?;
            (resp.status().as_u16(), resp.body_mut().read_json().unwrap_or(Value::Null))
        }
        _ => {
            let up = p
                .openai
                .ok_or_else(|| ApiError(422, "no OpenAI-compatible endpoint is configured".into()))?;
            let mut r = agent.post(&format!("{}/chat/completions", up.base_url));
            if let Some(k) = &up.key {
                r = r.header("authorization", &format!("Bearer {}", k.expose()));
            }
            let mut payload = json!({
                "max_tokens": DRAFT_TOKENS_MAX,
                "messages": [{ "role": "system", "content": SYSTEM }, { "role": "user", "content": prompt }],
            });
            if let Some(m) = &ctx.cfg.openai.model {
                payload["model"] = json!(m);
            }
            let mut resp = r.send_json(payload).map_err(unreachable)?;
            (resp.status().as_u16(), resp.body_mut().read_json().unwrap_or(Value::Null))
        }
    };
    if status != 200 {
        let why = body["error"]["message"].as_str().or(body["error"].as_str()).unwrap_or("no reason given");
        return Err(ApiError(502, format!("the model answered {status}: {}", super::redact::redact(why))));
    }
    let text = body["content"][0]["text"].as_str().or(body["choices"][0]["message"]["content"].as_str());
    text.map(str::to_string).ok_or_else(|| ApiError(502, "the model's answer held no text".into()))
}

/// The draft in the model's text: the first JSON object holding a usable name.
fn parse(text: &str) -> Option<Value> {
    let start = text.find('{')?;
    let end = text.rfind('}')?;
    let v: Value = serde_json::from_str(text.get(start..=end)?).ok()?;
    let name = v["name"].as_str()?;
    let name =
        crate::host::agents::validate_name("agent", &name.chars().take(64).collect::<String>()).ok()?;
    let instructions = v["instructions"].as_str().unwrap_or_default();
    let instructions: String = instructions.chars().take(8000).collect();
    Some(json!({ "name": name, "instructions": instructions }))
}

/// Without a model: a name from the description's first words and plain instructions.
fn mock(prompt: &str) -> Value {
    let words: Vec<&str> = prompt.split_whitespace().filter(|w| w.len() > 2).take(3).collect();
    let mut name: String = words
        .iter()
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ");
    name.retain(|c| c.is_alphanumeric() || c == ' ' || c == '-');
    if name.trim().is_empty() {
        name = "Helper".into();
    }
    json!({
        "name": name.chars().take(40).collect::<String>().trim(),
        "instructions": format!("You are an assistant for this: {prompt}\nAnswer clearly and briefly, use your tools when they help, and say when you are unsure."),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drafts_are_read_from_what_models_write() {
        let v = parse("Sure! {\"name\": \"Garden Helper\", \"instructions\": \"You help.\"} Enjoy").unwrap();
        assert_eq!(v, json!({ "name": "Garden Helper", "instructions": "You help." }));
        assert!(parse("no json here").is_none());
        assert!(parse("{\"name\": \"\\u202Eevil\"}").is_none(), "names that pass for others are refused");
        assert_eq!(mock("plan my weekly meals")["name"], "Plan Weekly Meals");
    }
}
