//! The `openai` provider: Chat Completions, streamed — OpenAI itself and the many servers that
//! copy it (OpenRouter, vLLM, llama.cpp, Ollama, LM Studio…), through the host's credential proxy
//! (`POST /openai/chat/completions`; the proxy adds the key).
//!
//! Request: `{model, messages, stream: true, max_tokens?, tools?}` and nothing else (some servers
//! refuse fields they do not know, so no `stream_options`). The system prompt is the first
//! message; each tool result is its own `tool` message right after the assistant message that
//! called it; consecutive same-role messages are merged (some chat templates insist on
//! alternation).
//!
//! Response: `data:` lines of `chat.completion.chunk` objects up to `data: [DONE]` (a stream that
//! just ends after a `finish_reason` is accepted too). Servers differ in the details, all
//! tolerated: usage-only chunks with empty `choices`, empty or role-only deltas, `content: null`,
//! extra fields, comments. Tool calls arrive in fragments keyed by `index`; servers that send
//! every parallel call at index 0 (Ollama) are told apart by their ids. A whole (non-streamed)
//! completion from a server that ignores `stream: true` is understood too.
//!
//! Servers that cannot do tools (Ollama models without tool support, llama.cpp without
//! `--jinja`, vLLM without a tool parser) reject a request carrying them: the call is repeated
//! at once without tools, and this provider stops sending them, so the agent still answers in
//! text. Likewise, models that refuse `max_tokens` (they want `max_completion_tokens`) get the
//! other name from then on.

use std::io::BufRead;

use serde_json::{Map, Value, json};

use super::Provider;
use super::anthropic::{body_is_json, clip, read_body, read_error};
use super::http::ProxyHttp;
use super::sse::SseReader;
use crate::agent::model::{
    Block, Cancel, Message, ModelError, Request, Response, Role, Stop, StreamEvent, Usage,
};

/// The model asked for when neither the agent config nor the request names one.
pub const DEFAULT_MODEL: &str = "gpt-4o-mini";
/// The proxy route.
pub const PATH: &str = "/openai/chat/completions";

pub struct OpenAi {
    pub http: ProxyHttp,
    model: String,
    /// The server refused tools once: never send them again.
    tools_unsupported: bool,
    /// The server refused `max_tokens` once and asked for `max_completion_tokens`.
    max_completion_tokens: bool,
}

impl OpenAi {
    /// A provider asking for [`DEFAULT_MODEL`].
    pub fn new(http: ProxyHttp) -> OpenAi {
        OpenAi {
            http,
            model: DEFAULT_MODEL.to_string(),
            tools_unsupported: false,
            max_completion_tokens: false,
        }
    }

    /// The model to ask for when the request does not name one (`None` or blank: the default).
    pub fn model(mut self, model: Option<String>) -> OpenAi {
        if let Some(m) = model.map(|m| m.trim().to_string()).filter(|m| !m.is_empty()) {
            self.model = m;
        }
        self
    }

    /// Whether the server refused tools (and they are no longer sent).
    pub fn tools_unsupported(&self) -> bool {
        self.tools_unsupported
    }

    fn body(&self, req: &Request<'_>) -> Value {
        let model = if req.model.trim().is_empty() { self.model.as_str() } else { req.model };
        let tools = if self.tools_unsupported { &[][..] } else { req.tools };
        let max_tokens_field =
            if self.max_completion_tokens { "max_completion_tokens" } else { "max_tokens" };
        request_body(req, model, tools, max_tokens_field)
    }
}

impl Provider for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn call(
        &mut self,
        req: &Request<'_>,
        on_event: &mut dyn FnMut(StreamEvent),
        cancel: &Cancel,
    ) -> Result<Response, ModelError> {
        loop {
            if cancel.is_cancelled() {
                return Err(ModelError::Cancelled);
            }
            let body = self.body(req);
            let sent_tools = body.get("tools").is_some();
            let mut resp = self.http.post_json(PATH, &[("accept", "text/event-stream")], &body, cancel)?;
            if (200..300).contains(&resp.status) {
                // A server that ignores `stream: true` answers with the whole completion.
                return match body_is_json(&mut resp.body) {
                    Err(e) => Err(read_error(e, cancel)),
                    Ok(true) => read_completion(&mut resp.body, on_event, cancel),
                    Ok(false) => read_stream(&mut resp.body, on_event, cancel),
                };
            }
            let (status, retry_after_s) = (resp.status, resp.retry_after_s());
            let text = resp.error_text();
            if cancel.is_cancelled() {
                return Err(ModelError::Cancelled);
            }
            let message = error_message(&text);
            if sent_tools && matches!(status, 400 | 422 | 500) && refuses_tools(&message) {
                log::warn!(
                    "the model server does not support tools ({status} — {message}); \
                     continuing without tools: the agent can only answer in text"
                );
                self.tools_unsupported = true;
                continue;
            }
            if status == 400 && !self.max_completion_tokens && message.contains("max_completion_tokens") {
                log::info!("the model wants max_completion_tokens instead of max_tokens ({message})");
                self.max_completion_tokens = true;
                continue;
            }
            return Err(ModelError::Status { status, message, retry_after_s });
        }
    }
}

/// An error message saying the server or model cannot do tools (Ollama: "… does not support
/// tools"; llama.cpp: "tools param requires --jinja flag"; vLLM: "\"auto\" tool choice requires
/// --enable-auto-tool-choice …"; others: "tools are not supported").
fn refuses_tools(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("tool")
        && ["support", "requires", "--jinja", "enable-auto-tool-choice"].iter().any(|w| m.contains(w))
}

/// The request JSON, asking for `model` with `tools` (the request's, unless the server refused
/// them) and the token limit under `max_tokens_field`.
pub fn request_body(
    req: &Request<'_>,
    model: &str,
    tools: &[crate::agent::model::ToolSpec],
    max_tokens_field: &str,
) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert("messages".into(), Value::Array(messages_json(req.system, req.messages)));
    body.insert("stream".into(), json!(true));
    if req.max_tokens > 0 {
        body.insert(max_tokens_field.into(), json!(req.max_tokens));
    }
    if !tools.is_empty() {
        let tools: Vec<Value> = tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {
                    "name": t.name, "description": t.description, "parameters": t.input_schema,
                }})
            })
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    Value::Object(body)
}

/// The conversation as Chat Completions messages.
fn messages_json(system: &str, messages: &[Message]) -> Vec<Value> {
    let mut out = Vec::new();
    if !system.trim().is_empty() {
        out.push(json!({"role": "system", "content": system}));
    }
    // Merge consecutive same-role messages first (blocks in order).
    let mut merged: Vec<(Role, Vec<&Block>)> = Vec::new();
    for m in messages {
        match merged.last_mut() {
            Some((role, blocks)) if *role == m.role => blocks.extend(&m.content),
            _ => merged.push((m.role, m.content.iter().collect())),
        }
    }
    for (role, blocks) in merged {
        let text = blocks
            .iter()
            .filter_map(|b| match b {
                Block::Text { text } if !text.trim().is_empty() => Some(text.as_str()),
                _ => None,
            })
            .collect::<Vec<_>>()
            .join("\n\n");
        match role {
            Role::User => {
                // Tool results answer the assistant message just before: they come first.
                for b in &blocks {
                    if let Block::ToolResult { tool_use_id, content, is_error } = b {
                        let content = if *is_error { format!("Error: {content}") } else { content.clone() };
                        out.push(json!({"role": "tool", "tool_call_id": tool_use_id, "content": content}));
                    }
                }
                let images: Vec<Value> = blocks
                    .iter()
                    .filter_map(|b| match b {
                        Block::Image { path, media_type } => crate::agent::images::base64_of(path).map(|d| {
                            json!({"type": "image_url", "image_url": {"url": format!("data:{media_type};base64,{d}")}})
                        }),
                        Block::Pdf { path, name } => crate::agent::images::pdf_base64_of(path).map(|d| {
                            json!({"type": "file", "file": {"filename": name, "file_data": format!("data:application/pdf;base64,{d}")}})
                        }),
                        _ => None,
                    })
                    .collect();
                if !images.is_empty() {
                    let mut parts = Vec::with_capacity(images.len() + 1);
                    if !text.is_empty() {
                        parts.push(json!({"type": "text", "text": text}));
                    }
                    parts.extend(images);
                    out.push(json!({"role": "user", "content": parts}));
                } else if !text.is_empty() {
                    out.push(json!({"role": "user", "content": text}));
                }
            }
            Role::Assistant => {
                let calls: Vec<Value> = blocks
                    .iter()
                    .filter_map(|b| match b {
                        Block::ToolUse { id, name, input } => Some(json!({
                            "id": id, "type": "function",
                            "function": {"name": name, "arguments": input.to_string()},
                        })),
                        _ => None,
                    })
                    .collect();
                if text.is_empty() && calls.is_empty() {
                    continue;
                }
                let mut m = Map::new();
                m.insert("role".into(), json!("assistant"));
                m.insert("content".into(), if text.is_empty() { Value::Null } else { json!(text) });
                if !calls.is_empty() {
                    m.insert("tool_calls".into(), Value::Array(calls));
                }
                out.push(Value::Object(m));
            }
        }
    }
    out
}

/// The message of an error body: `{"error":{"message","type","code"}}` (OpenAI, vLLM,
/// llama.cpp) as `"<code or type>: <message>"`, `{"error":"…"}` (Ollama), `{"message"}` or
/// `{"detail"}`, else the body itself, clipped.
fn error_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        if let Some(m) = describe_error(v.get("error").unwrap_or(&v)) {
            return m;
        }
        if let Some(d) = v.get("detail").and_then(Value::as_str) {
            return d.to_string();
        }
    }
    match clip(body) {
        s if s.is_empty() => "empty response body".to_string(),
        s => s,
    }
}

/// `"<code or type>: <message>"` from an error object, or the error string itself.
fn describe_error(err: &Value) -> Option<String> {
    if let Some(s) = err.as_str() {
        return Some(s.to_string());
    }
    let message = err.get("message").and_then(Value::as_str)?;
    let kind = match (err.get("code"), err.get("type")) {
        (Some(Value::String(c)), _) if !c.is_empty() => Some(c.clone()),
        (Some(Value::Number(n)), _) => Some(n.to_string()),
        (_, Some(Value::String(t))) if !t.is_empty() => Some(t.clone()),
        _ => None,
    };
    Some(match kind {
        Some(k) if !message.starts_with(&k) => format!("{k}: {message}"),
        _ => message.to_string(),
    })
}

/// A whole completion (`{"choices":[{"message":…,"finish_reason"}],"usage"}`) or error as JSON.
fn read_completion(
    r: &mut impl BufRead,
    on_event: &mut dyn FnMut(StreamEvent),
    cancel: &Cancel,
) -> Result<Response, ModelError> {
    let text = read_body(r, cancel)?;
    let mut st = StreamState::default();
    st.handle(&text, on_event)?;
    if st.text.is_empty() && st.calls.is_empty() && st.finish_reason.is_none() {
        return Err(ModelError::Protocol(format!("a JSON answer without a message: {}", clip(&text))));
    }
    Ok(st.finish())
}

/// Reads the stream to `[DONE]` (or its end after a finish reason).
pub(crate) fn read_stream(
    r: impl BufRead,
    on_event: &mut dyn FnMut(StreamEvent),
    cancel: &Cancel,
) -> Result<Response, ModelError> {
    let mut sse = SseReader::new(r);
    let mut st = StreamState::default();
    loop {
        if cancel.is_cancelled() {
            return Err(ModelError::Cancelled);
        }
        match sse.next_event() {
            Ok(Some(ev)) => {
                if st.handle(&ev.data, on_event)? {
                    return Ok(st.finish());
                }
            }
            // A stop shuts the socket down, which reads as the end of the stream.
            Ok(None) if cancel.is_cancelled() => return Err(ModelError::Cancelled),
            Ok(None) if st.finish_reason.is_some() => return Ok(st.finish()),
            Ok(None) => {
                return Err(ModelError::Transport(
                    "the model stream ended before a finish reason or [DONE] (truncated)".into(),
                ));
            }
            Err(e) => return Err(read_error(e, cancel)),
        }
    }
}

/// A tool call being reassembled.
struct Call {
    index: u64,
    id: Option<String>,
    name: String,
    arguments: String,
    announced: bool,
}

#[derive(Default)]
struct StreamState {
    text: String,
    calls: Vec<Call>,
    finish_reason: Option<String>,
    usage: Option<Usage>,
}

impl StreamState {
    /// Handles one event's data; true at `[DONE]`.
    fn handle(&mut self, data: &str, on_event: &mut dyn FnMut(StreamEvent)) -> Result<bool, ModelError> {
        let data = data.trim();
        if data == "[DONE]" {
            return Ok(true);
        }
        if data.is_empty() {
            return Ok(false);
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| ModelError::Protocol(format!("bad chunk ({e}): {}", clip(data))))?;
        if let Some(err) = v.get("error").filter(|e| !e.is_null()) {
            let m = describe_error(err).unwrap_or_else(|| clip(&err.to_string()));
            return Err(ModelError::Protocol(format!("the model server reported an error: {m}")));
        }
        if let Some(u) = v.get("usage").filter(|u| u.is_object()) {
            let n = |k: &str| u.get(k).and_then(Value::as_u64).unwrap_or(0);
            self.usage =
                Some(Usage { input_tokens: n("prompt_tokens"), output_tokens: n("completion_tokens") });
        }
        let choices = v.get("choices").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
        // We ask for one choice; its index is 0 (or absent).
        let Some(choice) = choices.iter().find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
        else {
            return Ok(false);
        };
        // `message` in a whole (non-streamed) completion.
        let delta = choice.get("delta").or_else(|| choice.get("message"));
        if let Some(delta) = delta.filter(|d| d.is_object()) {
            if let Some(text) = delta.get("content").and_then(Value::as_str).filter(|t| !t.is_empty()) {
                self.text.push_str(text);
                on_event(StreamEvent::TextDelta(text.to_string()));
            }
            if let Some(calls) = delta.get("tool_calls").and_then(Value::as_array) {
                for (pos, tc) in calls.iter().enumerate() {
                    self.tool_call_delta(pos as u64, tc, on_event);
                }
            }
            // The legacy single function call.
            if let Some(fc) = delta.get("function_call").filter(|f| f.is_object()) {
                self.tool_call_delta(0, &json!({"index": 0, "function": fc}), on_event);
            }
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish_reason = Some(f.to_string());
        }
        Ok(false)
    }

    /// Adds one tool-call fragment. A fragment joins the latest call at its `index` unless it
    /// carries a different id (servers that put every parallel call at index 0).
    fn tool_call_delta(&mut self, pos: u64, tc: &Value, on_event: &mut dyn FnMut(StreamEvent)) {
        let index = tc.get("index").and_then(Value::as_u64).unwrap_or(pos);
        let id = tc.get("id").and_then(Value::as_str).filter(|s| !s.is_empty());
        let function = tc.get("function").unwrap_or(&Value::Null);
        let name = function.get("name").and_then(Value::as_str).unwrap_or("");
        let existing = self.calls.iter().rposition(|c| c.index == index);
        let slot = match existing {
            Some(i) if matches!((&self.calls[i].id, id), (Some(have), Some(new)) if have != new) => None,
            other => other,
        };
        let i = slot.unwrap_or_else(|| {
            self.calls.push(Call {
                index,
                id: None,
                name: String::new(),
                arguments: String::new(),
                announced: false,
            });
            self.calls.len() - 1
        });
        let call = &mut self.calls[i];
        if call.id.is_none() {
            call.id = id.map(str::to_string);
        }
        // A name comes once (or repeated whole by some servers, or in pieces by others).
        if !name.is_empty() && call.name != name {
            call.name.push_str(name);
        }
        match function.get("arguments") {
            Some(Value::String(s)) => call.arguments.push_str(s),
            Some(v @ Value::Object(_)) if call.arguments.is_empty() => call.arguments = v.to_string(),
            _ => {}
        }
        if !call.announced && !call.name.is_empty() {
            call.announced = true;
            on_event(StreamEvent::ToolCallStart { name: call.name.clone() });
        }
    }

    fn finish(self) -> Response {
        let mut content = Vec::new();
        if !self.text.is_empty() {
            content.push(Block::Text { text: self.text });
        }
        for call in self.calls {
            if call.name.is_empty() && call.arguments.trim().is_empty() {
                continue;
            }
            let id = call.id.unwrap_or_else(|| format!("call_{}", crate::ids::random_base36(12)));
            content.push(Block::ToolUse { id, name: call.name, input: tool_input(&call.arguments) });
        }
        let has_tools = content.iter().any(|b| matches!(b, Block::ToolUse { .. }));
        let stop = match self.finish_reason.as_deref() {
            Some("length") => Stop::MaxTokens,
            _ if has_tools => Stop::ToolUse,
            Some("stop") | None => Stop::EndTurn,
            Some(other @ ("tool_calls" | "function_call")) => {
                Stop::Other(format!("{other} without a tool call"))
            }
            Some(other) => Stop::Other(other.to_string()),
        };
        Response { message: Message { role: Role::Assistant, content }, stop, usage: self.usage }
    }
}

/// A tool call's arguments: empty is `{}`; a JSON object; a string holding one (double-encoded
/// by some servers); anything else is kept as `{"_invalid_json": <raw>}` so the tool can tell
/// the model.
fn tool_input(arguments: &str) -> Value {
    let raw = arguments.trim();
    if raw.is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(v @ Value::Object(_)) => v,
        Ok(Value::String(inner)) => match serde_json::from_str::<Value>(&inner) {
            Ok(v @ Value::Object(_)) => v,
            _ => json!({"_invalid_json": arguments}),
        },
        _ => json!({"_invalid_json": arguments}),
    }
}

/// The tests use the fake model server, which is built with the host.
#[cfg(all(test, feature = "host"))]
mod tests {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::agent::model::ToolSpec;
    use crate::testing::{FakeModel, Gate, Recorded, Reply, openai as wire};

    const T: Duration = Duration::from_secs(10);

    struct Setup {
        fake: FakeModel,
        _dir: tempfile::TempDir,
        provider: OpenAi,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeModel::start_with_socket(dir.path().join("model.sock"));
        // A stall watchdog well under the test's patience: a broken cancel fails, never hangs.
        let provider = OpenAi::new(fake.http().with_stall(Duration::from_secs(20)));
        Setup { _dir: dir, fake, provider }
    }

    fn tools() -> Vec<ToolSpec> {
        vec![ToolSpec {
            name: "read_file".into(),
            description: "Read a file".into(),
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        }]
    }

    fn call(
        p: &mut OpenAi,
        msgs: &[Message],
        tools: &[ToolSpec],
    ) -> (Result<Response, ModelError>, Vec<StreamEvent>) {
        let req = Request { model: "", system: "You are terse.", messages: msgs, tools, max_tokens: 1000 };
        let mut events = Vec::new();
        let res = p.call(&req, &mut |e| events.push(e), &Cancel::default());
        (res, events)
    }

    fn request(fake: &FakeModel) -> Recorded {
        fake.next_request(T).expect("the provider sent a request")
    }

    fn hi() -> [Message; 1] {
        [Message::user_text("hi")]
    }

    fn calls(resp: &Response) -> Vec<(String, String, Value)> {
        resp.message.tool_uses().map(|(id, n, i)| (id.to_string(), n.to_string(), i.clone())).collect()
    }

    #[test]
    fn streams_text_in_order() {
        let mut s = setup();
        s.fake.reply(wire::text(&["Hel", "lo", " there"], "stop"));
        let (res, events) = call(&mut s.provider, &hi(), &[]);
        let resp = res.unwrap();
        assert_eq!(events, ["Hel", "lo", " there"].map(|t| StreamEvent::TextDelta(t.into())));
        assert_eq!(resp.message, Message::assistant_text("Hello there"));
        assert_eq!(resp.stop, Stop::EndTurn);
        assert_eq!(resp.usage, None, "no usage sent");
        let req = request(&s.fake);
        assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/openai/chat/completions"));
        assert_eq!(req.header("authorization"), None, "the proxy adds the key");
        assert_eq!(
            req.body,
            json!({
                "model": "gpt-4o-mini", "stream": true, "max_tokens": 1000,
                "messages": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "hi"}],
            }),
            "no tools, no stream_options"
        );
    }

    #[test]
    fn the_model_comes_from_the_request_then_the_config_then_the_default() {
        let mut s = setup();
        s.provider = OpenAi::new(s.fake.http()).model(Some("qwen3:8b".into()));
        s.fake.reply(wire::text(&["a"], "stop"));
        s.fake.reply(wire::text(&["b"], "stop"));
        call(&mut s.provider, &hi(), &[]).0.unwrap();
        assert_eq!(request(&s.fake).body["model"], "qwen3:8b");
        let msgs = hi();
        let req = Request { model: "gpt-4.1", system: "", messages: &msgs, tools: &[], max_tokens: 0 };
        s.provider.call(&req, &mut |_| {}, &Cancel::default()).unwrap();
        let body = request(&s.fake).body;
        assert_eq!(
            body,
            json!({"model": "gpt-4.1", "stream": true, "messages": [{"role": "user", "content": "hi"}]})
        );
    }

    #[test]
    fn a_tool_round_trip_sends_the_result_back_in_wire_shape() {
        let mut s = setup();
        s.fake.reply(wire::tool_calls(&[("call_DdmO9", "read_file", &["{\"pa", "th\": \"a.", "txt\"}"])]));
        let mut conv = vec![Message::user_text("what is in a.txt?")];
        let (res, events) = call(&mut s.provider, &conv, &tools());
        let resp = res.unwrap();
        assert_eq!(events, vec![StreamEvent::ToolCallStart { name: "read_file".into() }]);
        assert_eq!(resp.stop, Stop::ToolUse);
        assert_eq!(calls(&resp), vec![("call_DdmO9".into(), "read_file".into(), json!({"path": "a.txt"}))]);
        assert_eq!(
            request(&s.fake).body["tools"],
            json!([{"type": "function", "function": {"name": "read_file", "description": "Read a file",
                    "parameters": {"type": "object", "properties": {"path": {"type": "string"}}}}}])
        );

        conv.push(resp.message);
        conv.push(Message {
            role: Role::User,
            content: vec![Block::ToolResult {
                tool_use_id: "call_DdmO9".into(),
                content: "hello".into(),
                is_error: false,
            }],
        });
        s.fake.reply(wire::text(&["It says hello."], "stop"));
        let resp = call(&mut s.provider, &conv, &tools()).0.unwrap();
        assert_eq!(resp.message.text(), "It says hello.");
        assert_eq!(
            request(&s.fake).body["messages"],
            json!([
                {"role": "system", "content": "You are terse."},
                {"role": "user", "content": "what is in a.txt?"},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_DdmO9", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"a.txt\"}"}},
                ]},
                {"role": "tool", "tool_call_id": "call_DdmO9", "content": "hello"},
            ])
        );
    }

    #[test]
    fn parallel_tool_calls_are_reassembled_by_index() {
        let mut s = setup();
        // Interleaved fragments of two calls, as OpenAI may send them.
        s.fake.reply(Reply::sse(vec![
            wire::tool_call_start(0, "call_a", "read_file"),
            wire::tool_call_start(1, "call_b", "read_file"),
            wire::tool_call_arguments(1, "{\"path\":"),
            wire::tool_call_arguments(0, "{\"path\":"),
            wire::tool_call_arguments(0, "\"a\"}"),
            wire::tool_call_arguments(1, "\"b\"}"),
            wire::finish_chunk("tool_calls"),
            wire::done(),
        ]));
        let resp = call(&mut s.provider, &hi(), &tools()).0.unwrap();
        assert_eq!(
            calls(&resp),
            vec![
                ("call_a".into(), "read_file".into(), json!({"path": "a"})),
                ("call_b".into(), "read_file".into(), json!({"path": "b"})),
            ]
        );
        // The builder's sequential layout, three calls, one without arguments.
        s.fake.reply(wire::tool_calls(&[
            ("c1", "read_file", &["{\"path\":\"x\"}"]),
            ("c2", "list", &[]),
            ("c3", "read_file", &["{", "}"]),
        ]));
        let (res, events) = call(&mut s.provider, &hi(), &tools());
        let resp = res.unwrap();
        assert_eq!(events.len(), 3);
        assert_eq!(
            calls(&resp),
            vec![
                ("c1".into(), "read_file".into(), json!({"path": "x"})),
                ("c2".into(), "list".into(), json!({})),
                ("c3".into(), "read_file".into(), json!({})),
            ]
        );
    }

    #[test]
    fn ollama_style_parallel_calls_all_at_index_0_are_told_apart_by_id() {
        let mut s = setup();
        let tc = |id: &str, args: &str| {
            wire::chunk(
                &format!(
                    r#"{{"role":"assistant","content":"","tool_calls":[{{"id":"{id}","index":0,"type":"function","function":{{"name":"read_file","arguments":{}}}}}]}}"#,
                    serde_json::to_string(args).unwrap()
                ),
                None,
            )
        };
        s.fake.reply(Reply::sse(vec![
            tc("call_1", r#"{"path":"a"}"#),
            tc("call_2", r#"{"path":"b"}"#),
            wire::chunk(r#"{"role":"assistant","content":""}"#, Some("stop")),
            wire::done(),
        ]));
        let resp = call(&mut s.provider, &hi(), &tools()).0.unwrap();
        assert_eq!(
            calls(&resp),
            vec![
                ("call_1".into(), "read_file".into(), json!({"path": "a"})),
                ("call_2".into(), "read_file".into(), json!({"path": "b"})),
            ]
        );
        assert_eq!(resp.stop, Stop::ToolUse, "tool calls with finish_reason stop");
    }

    #[test]
    fn finish_reasons_map() {
        let mut s = setup();
        for (finish, stop) in [
            ("length", Stop::MaxTokens),
            ("stop", Stop::EndTurn),
            ("content_filter", Stop::Other("content_filter".into())),
        ] {
            s.fake.reply(wire::text(&["partial"], finish));
            let resp = call(&mut s.provider, &hi(), &[]).0.unwrap();
            assert_eq!((resp.stop, resp.message.text().as_str()), (stop, "partial"), "{finish}");
        }
    }

    #[test]
    fn error_statuses_carry_the_message_and_retry_after() {
        let mut s = setup();
        s.fake.reply(wire::error_status(
            401,
            "Incorrect API key provided: sk-abc. You can find your API key at https://platform.openai.com/account/api-keys.",
            "invalid_request_error",
            Some("invalid_api_key"),
            None,
        ));
        s.fake.reply(wire::error_status(
            429,
            "Rate limit reached for gpt-4o-mini",
            "requests",
            Some("rate_limit_exceeded"),
            Some(7),
        ));
        s.fake.reply(Reply::json(404, r#"{"error":"model \"llama9\" not found, try pulling it first"}"#));
        s.fake.reply(Reply::new(503, &[], "upstream connect error"));
        s.fake.reply(Reply::json(422, r#"{"detail":"Field required: messages"}"#));
        let err = call(&mut s.provider, &hi(), &[]).0.unwrap_err();
        assert!(
            matches!(&err, ModelError::Status { status: 401, retry_after_s: None, message }
                if message.starts_with("invalid_api_key: Incorrect API key provided")),
            "{err:?}"
        );
        let err = call(&mut s.provider, &hi(), &[]).0.unwrap_err();
        assert_eq!(
            err,
            ModelError::Status {
                status: 429,
                message: "rate_limit_exceeded: Rate limit reached for gpt-4o-mini".into(),
                retry_after_s: Some(7)
            }
        );
        let err = call(&mut s.provider, &hi(), &[]).0.unwrap_err();
        assert!(
            matches!(&err, ModelError::Status { status: 404, message, .. } if message == "model \"llama9\" not found, try pulling it first")
        );
        let err = call(&mut s.provider, &hi(), &[]).0.unwrap_err();
        assert!(
            matches!(&err, ModelError::Status { status: 503, message, .. } if message == "upstream connect error")
        );
        let err = call(&mut s.provider, &hi(), &[]).0.unwrap_err();
        assert!(
            matches!(&err, ModelError::Status { status: 422, message, .. } if message == "Field required: messages")
        );
    }

    #[test]
    fn an_error_chunk_mid_stream_is_a_protocol_error() {
        let mut s = setup();
        s.fake.reply(Reply::sse(vec![
            wire::role_chunk(),
            wire::content_chunk("Hel"),
            wire::error_chunk("The server had an error while processing your request.", "server_error"),
        ]));
        let (res, events) = call(&mut s.provider, &hi(), &[]);
        let err = res.unwrap_err();
        assert!(
            matches!(&err, ModelError::Protocol(m) if m.contains("server_error: The server had an error")),
            "{err:?}"
        );
        assert_eq!(events, vec![StreamEvent::TextDelta("Hel".into())]);
        // OpenRouter's shape: the error inside a normal chunk.
        s.fake.reply(Reply::sse(vec![
            r#"data: {"id":"gen-1","object":"chat.completion.chunk","error":{"code":502,"message":"Provider returned error"},"choices":[{"index":0,"delta":{"content":""},"finish_reason":"error"}]}"#.to_string() + "\n\n",
        ]));
        let err = call(&mut s.provider, &hi(), &[]).0.unwrap_err();
        assert!(
            matches!(&err, ModelError::Protocol(m) if m.contains("502: Provider returned error")),
            "{err:?}"
        );
    }

    #[test]
    fn a_truncated_stream_is_a_transport_error_but_a_missing_done_is_fine() {
        let mut s = setup();
        let full = wire::text(&["Hel", "lo"], "stop");
        let n = full.parts.len() - 2; // no finish chunk, no [DONE]
        s.fake.reply(full.truncated(n));
        let err = call(&mut s.provider, &hi(), &[]).0.unwrap_err();
        assert!(matches!(&err, ModelError::Transport(m) if m.contains("truncated")), "{err:?}");
        assert!(err.retryable());
        // Finish reason seen, then the connection closes without [DONE].
        let full = wire::text(&["Hel", "lo"], "stop");
        let n = full.parts.len() - 1;
        s.fake.reply(full.truncated(n));
        let resp = call(&mut s.provider, &hi(), &[]).0.unwrap();
        assert_eq!((resp.message.text().as_str(), resp.stop), ("Hello", Stop::EndTurn));
    }

    #[test]
    fn a_whole_json_completion_from_a_server_ignoring_stream_is_used() {
        let mut s = setup();
        s.fake.reply(Reply::json(
            200,
            r#"{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"Looking.","tool_calls":[{"id":"call_1","type":"function","function":{"name":"read_file","arguments":"{\"path\":\"a\"}"}}]},"logprobs":null,"finish_reason":"tool_calls"}],"usage":{"prompt_tokens":9,"completion_tokens":12,"total_tokens":21}}"#,
        ));
        let (res, events) = call(&mut s.provider, &hi(), &tools());
        let resp = res.unwrap();
        assert_eq!(
            events,
            vec![
                StreamEvent::TextDelta("Looking.".into()),
                StreamEvent::ToolCallStart { name: "read_file".into() }
            ]
        );
        assert_eq!(calls(&resp), vec![("call_1".into(), "read_file".into(), json!({"path": "a"}))]);
        assert_eq!(
            (resp.stop, resp.usage),
            (Stop::ToolUse, Some(Usage { input_tokens: 9, output_tokens: 12 }))
        );
        // A 200 carrying an error document is an error; one without a message too.
        s.fake.reply(Reply::json(200, r#"{"error":{"message":"upstream timed out","type":"server_error"}}"#));
        let err = call(&mut s.provider, &hi(), &[]).0.unwrap_err();
        assert!(
            matches!(&err, ModelError::Protocol(m) if m.contains("server_error: upstream timed out")),
            "{err:?}"
        );
        s.fake.reply(Reply::json(200, r#"{"object":"chat.completion","choices":[]}"#));
        let err = call(&mut s.provider, &hi(), &[]).0.unwrap_err();
        assert!(matches!(&err, ModelError::Protocol(m) if m.contains("without a message")), "{err:?}");
    }

    #[test]
    fn cancel_while_the_server_holds_the_stream_ends_the_call_and_the_connection() {
        let s = setup();
        let gate = Gate::new();
        s.fake.reply(wire::text(&["Hel", "lo"], "stop").hold_at(2, &gate));
        let cancel = Cancel::default();
        let (tx, rx) = mpsc::channel();
        let mut provider = s.provider;
        let c2 = cancel.clone();
        let t = std::thread::spawn(move || {
            let msgs = hi();
            let req = Request { model: "", system: "", messages: &msgs, tools: &[], max_tokens: 10 };
            let res = provider.call(&req, &mut |e| tx.send(e).unwrap(), &c2);
            (res, Instant::now())
        });
        assert_eq!(rx.recv_timeout(T).unwrap(), StreamEvent::TextDelta("Hel".into()));
        assert!(s.fake.wait_holding(T));
        let cancelled_at = Instant::now();
        cancel.cancel();
        let (res, ended_at) = t.join().unwrap();
        assert_eq!(res.unwrap_err(), ModelError::Cancelled);
        assert!(ended_at.duration_since(cancelled_at) < Duration::from_secs(5), "prompt");
        assert!(s.fake.wait_disconnect(T), "the fake saw the connection close");
        assert_eq!(s.fake.disconnects(), 1);
    }

    #[test]
    fn the_request_has_tool_messages_null_content_and_merged_roles() {
        let conv = vec![
            Message::user_text("first"),
            Message::user_text("second"),
            Message {
                role: Role::Assistant,
                content: vec![
                    Block::Text { text: "Looking.".into() },
                    Block::ToolUse { id: "c1".into(), name: "read_file".into(), input: json!({"path": "x"}) },
                    Block::ToolUse { id: "c2".into(), name: "list".into(), input: json!({}) },
                ],
            },
            Message {
                role: Role::User,
                content: vec![
                    Block::ToolResult {
                        tool_use_id: "c1".into(),
                        content: "no such file".into(),
                        is_error: true,
                    },
                    Block::ToolResult { tool_use_id: "c2".into(), content: "a b".into(), is_error: false },
                ],
            },
            Message::user_text("(a new message arrived)"),
            Message { role: Role::Assistant, content: vec![Block::Text { text: " ".into() }] },
            Message::assistant_text("Done."),
        ];
        let req = Request { model: "m", system: "sys", messages: &conv, tools: &[], max_tokens: 5 };
        assert_eq!(
            request_body(&req, "m", &[], "max_tokens")["messages"],
            json!([
                {"role": "system", "content": "sys"},
                {"role": "user", "content": "first\n\nsecond"},
                {"role": "assistant", "content": "Looking.", "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"x\"}"}},
                    {"id": "c2", "type": "function", "function": {"name": "list", "arguments": "{}"}},
                ]},
                {"role": "tool", "tool_call_id": "c1", "content": "Error: no such file"},
                {"role": "tool", "tool_call_id": "c2", "content": "a b"},
                {"role": "user", "content": "(a new message arrived)"},
                {"role": "assistant", "content": "Done."},
            ])
        );
    }

    /// What real servers send beyond the reference stream.
    #[test]
    fn tolerates_server_variations() {
        let mut s = setup();
        s.fake.reply(Reply::sse(vec![
            ": OPENROUTER PROCESSING\n\n".into(),
            // No space after `data:`, llama.cpp extras, content null, role-only and empty deltas.
            r#"data:{"choices":[{"finish_reason":null,"index":0,"delta":{"role":"assistant","content":null}}],"created":1,"id":"chatcmpl-x","model":"qwen","system_fingerprint":"b1-abc","object":"chat.completion.chunk"}"#.to_string() + "\n\n",
            r#"data:{"choices":[{"finish_reason":null,"index":0,"delta":{}}],"object":"chat.completion.chunk"}"#.to_string() + "\r\n\r\n",
            wire::content_chunk("Hi"),
            r#"data: {"choices":[{"index":0,"delta":{"content":" you"},"logprobs":{"content":[]},"finish_reason":null}],"timings":{"predicted_ms":12.5}}"#.to_string() + "\n\n",
            wire::finish_chunk("stop"),
            wire::usage_chunk(12, 3),
            wire::done(),
        ]));
        let (res, events) = call(&mut s.provider, &hi(), &[]);
        let resp = res.unwrap();
        assert_eq!(events, ["Hi", " you"].map(|t| StreamEvent::TextDelta(t.into())));
        assert_eq!(resp.message, Message::assistant_text("Hi you"));
        assert_eq!(resp.usage, Some(Usage { input_tokens: 12, output_tokens: 3 }), "usage-only chunk");
        assert_eq!(resp.stop, Stop::EndTurn);

        // No id on the tool call, the name split, arguments given as an object, a legacy
        // function_call finish, and invalid JSON arguments kept for the model to see.
        s.fake.reply(Reply::sse(vec![
            wire::chunk(r#"{"tool_calls":[{"index":0,"function":{"name":"read_","arguments":""}}]}"#, None),
            wire::chunk(r#"{"tool_calls":[{"index":0,"function":{"name":"file"}}]}"#, None),
            wire::chunk(r#"{"tool_calls":[{"index":0,"function":{"arguments":"{\"path\": "}}]}"#, None),
            wire::chunk(r#"{"tool_calls":[{"index":1,"id":"c2","function":{"name":"list","arguments":{"dir":"/"}}}]}"#, None),
            wire::finish_chunk("function_call"),
        ]));
        let resp = call(&mut s.provider, &hi(), &tools()).0.unwrap();
        let got = calls(&resp);
        assert!(got[0].0.starts_with("call_") && got[0].0.len() > 5, "generated id {}", got[0].0);
        assert_eq!((got[0].1.as_str(), &got[0].2), ("read_file", &json!({"_invalid_json": "{\"path\": "})));
        assert_eq!(got[1], ("c2".into(), "list".into(), json!({"dir": "/"})));
        assert_eq!(resp.stop, Stop::ToolUse);
    }

    #[test]
    fn a_server_without_tool_support_is_asked_again_without_tools_and_remembered() {
        let mut s = setup();
        s.fake.reply(Reply::json(
            400,
            r#"{"error":"registry.ollama.ai/library/gemma:2b does not support tools"}"#,
        ));
        s.fake.reply(wire::text(&["Hello"], "stop"));
        s.fake.reply(wire::text(&["Again"], "stop"));
        let resp = call(&mut s.provider, &hi(), &tools()).0.unwrap();
        assert_eq!(resp.message.text(), "Hello");
        assert!(request(&s.fake).body.get("tools").is_some(), "first try with tools");
        assert!(request(&s.fake).body.get("tools").is_none(), "retried without");
        assert!(s.provider.tools_unsupported());
        let resp = call(&mut s.provider, &hi(), &tools()).0.unwrap();
        assert_eq!(resp.message.text(), "Again");
        assert!(request(&s.fake).body.get("tools").is_none(), "remembered");
        assert_eq!(s.fake.pending_replies(), 0);

        // llama.cpp's wording on a 500.
        let mut s = setup();
        s.fake.reply(wire::error_status(
            500,
            "tools param requires --jinja flag",
            "server_error",
            None,
            None,
        ));
        s.fake.reply(wire::text(&["ok"], "stop"));
        assert_eq!(call(&mut s.provider, &hi(), &tools()).0.unwrap().message.text(), "ok");
        assert!(s.provider.tools_unsupported());

        // Other 400s are errors, and a request without tools is not retried.
        let mut s = setup();
        s.fake.reply(wire::error_status(
            400,
            "Invalid schema for function 'read_file'",
            "invalid_request_error",
            None,
            None,
        ));
        s.fake.reply(Reply::json(400, r#"{"error":"does not support tools"}"#));
        let err = call(&mut s.provider, &hi(), &tools()).0.unwrap_err();
        assert!(matches!(err, ModelError::Status { status: 400, .. }));
        let err = call(&mut s.provider, &hi(), &[]).0.unwrap_err();
        assert!(matches!(err, ModelError::Status { status: 400, .. }));
        assert!(!s.provider.tools_unsupported());
        assert_eq!(s.fake.pending_replies(), 0);
    }

    #[test]
    fn a_model_wanting_max_completion_tokens_gets_it() {
        let mut s = setup();
        s.fake.reply(wire::error_status(
            400,
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.",
            "invalid_request_error",
            Some("unsupported_parameter"),
            None,
        ));
        s.fake.reply(wire::text(&["ok"], "stop"));
        s.fake.reply(wire::text(&["ok"], "stop"));
        call(&mut s.provider, &hi(), &[]).0.unwrap();
        assert_eq!(request(&s.fake).body["max_tokens"], 1000);
        let second = request(&s.fake).body;
        assert_eq!((second.get("max_tokens"), &second["max_completion_tokens"]), (None, &json!(1000)));
        call(&mut s.provider, &hi(), &[]).0.unwrap();
        assert_eq!(request(&s.fake).body["max_completion_tokens"], 1000, "remembered");
    }
}
