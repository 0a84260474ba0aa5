//! The `anthropic` provider: Anthropic's Messages API, streamed — and any server speaking it
//! (Ollama's `/v1/messages`), through the host's credential proxy (`POST /anthropic/v1/messages`;
//! the proxy adds the key).
//!
//! Request: `{model, max_tokens, system?, messages, tools?, stream: true}`. The API wants roles to
//! alternate and refuses empty text, so consecutive same-role messages are merged, blank text
//! blocks dropped (and messages left empty with them), and in a user message the `tool_result`
//! blocks go first, as the API requires.
//!
//! Response: the documented event stream — `message_start`, per block `content_block_start` /
//! `content_block_delta` (`text_delta`, `input_json_delta`) / `content_block_stop`,
//! `message_delta` (stop reason, usage), `message_stop`, `ping`, and `error` mid-stream. Optional
//! fields may be absent (compatible servers leave out usage, pings, block fields); block types we
//! do not use (thinking, server tools) are skipped. A stream that ends before `message_stop` was
//! cut off: a [`ModelError::Transport`], so the call is retried if nothing was shown yet. A
//! server that ignores `stream: true` and answers with the whole message as JSON is understood
//! too.
//!
//! The body helpers at the end ([`body_is_json`], [`read_body`], [`read_error`], [`clip`]) are
//! shared with the `openai` provider.

use std::collections::BTreeMap;
use std::io::{BufRead, Read};

use serde_json::{Map, Value, json};

use super::Provider;
use super::http::ProxyHttp;
use super::sse::{Event, SseReader};
use crate::agent::model::{
    Block, Cancel, Message, ModelError, Request, Response, Role, Stop, StreamEvent, Usage,
};

/// The model asked for when neither the agent config nor the request names one.
pub const DEFAULT_MODEL: &str = "claude-sonnet-4-5";
/// The `anthropic-version` header sent with every call.
pub const API_VERSION: &str = "2023-06-01";
/// The proxy route.
pub const PATH: &str = "/anthropic/v1/messages";
/// `max_tokens` when the request leaves it at 0 (the API requires one).
const DEFAULT_MAX_TOKENS: u32 = 8192;
/// How much of an unparseable error body goes into the message.
const ERROR_CHARS_MAX: usize = 300;
/// Largest non-streamed answer read.
const BODY_BYTES_MAX: u64 = 16 * 1024 * 1024;

pub struct Anthropic {
    pub http: ProxyHttp,
    model: String,
}

impl Anthropic {
    /// A provider asking for [`DEFAULT_MODEL`].
    pub fn new(http: ProxyHttp) -> Anthropic {
        Anthropic { http, model: DEFAULT_MODEL.to_string() }
    }

    /// The model to ask for when the request does not name one (`None` or blank: the default).
    pub fn model(mut self, model: Option<String>) -> Anthropic {
        if let Some(m) = model.map(|m| m.trim().to_string()).filter(|m| !m.is_empty()) {
            self.model = m;
        }
        self
    }
}

impl Provider for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn call(
        &mut self,
        req: &Request<'_>,
        on_event: &mut dyn FnMut(StreamEvent),
        cancel: &Cancel,
    ) -> Result<Response, ModelError> {
        if cancel.is_cancelled() {
            return Err(ModelError::Cancelled);
        }
        let model = if req.model.trim().is_empty() { self.model.as_str() } else { req.model };
        let body = request_body(req, model);
        let headers = [("anthropic-version", API_VERSION), ("accept", "text/event-stream")];
        let mut resp = self.http.post_json(PATH, &headers, &body, cancel)?;
        if !(200..300).contains(&resp.status) {
            let (status, retry_after_s) = (resp.status, resp.retry_after_s());
            let text = resp.error_text();
            if cancel.is_cancelled() {
                return Err(ModelError::Cancelled);
            }
            return Err(ModelError::Status { status, message: error_message(&text), retry_after_s });
        }
        // A server that ignores `stream: true` answers with the whole message as JSON.
        match body_is_json(&mut resp.body) {
            Err(e) => Err(read_error(e, cancel)),
            Ok(true) => read_message(&mut resp.body, on_event, cancel),
            Ok(false) => read_stream(&mut resp.body, on_event, cancel),
        }
    }
}

/// The request JSON for `req`, asking for `model`.
pub fn request_body(req: &Request<'_>, model: &str) -> Value {
    let mut body = Map::new();
    body.insert("model".into(), json!(model));
    body.insert(
        "max_tokens".into(),
        json!(if req.max_tokens == 0 { DEFAULT_MAX_TOKENS } else { req.max_tokens }),
    );
    if !req.system.trim().is_empty() {
        body.insert("system".into(), json!(req.system));
    }
    body.insert("messages".into(), messages_json(req.messages));
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.input_schema}))
            .collect();
        body.insert("tools".into(), Value::Array(tools));
    }
    body.insert("stream".into(), json!(true));
    Value::Object(body)
}

/// The conversation in the API's shape: alternating roles, no blank text, tool results first.
fn messages_json(messages: &[Message]) -> Value {
    let mut out: Vec<(Role, Vec<Value>)> = Vec::new();
    for m in messages {
        let blocks: Vec<Value> = m.content.iter().filter_map(block_json).collect();
        if blocks.is_empty() {
            continue;
        }
        match out.last_mut() {
            Some((role, content)) if *role == m.role => content.extend(blocks),
            _ => out.push((m.role, blocks)),
        }
    }
    Value::Array(
        out.into_iter()
            .map(|(role, mut content)| {
                if role == Role::User {
                    // Stable: tool results keep their order, text keeps its order, after them.
                    content.sort_by_key(|b| b["type"] != "tool_result");
                }
                json!({"role": role, "content": content})
            })
            .collect(),
    )
}

fn block_json(b: &Block) -> Option<Value> {
    match b {
        Block::Text { text } if text.trim().is_empty() => None,
        Block::Text { text } => Some(json!({"type": "text", "text": text})),
        Block::ToolUse { id, name, input } => {
            Some(json!({"type": "tool_use", "id": id, "name": name, "input": input}))
        }
        Block::ToolResult { tool_use_id, content, is_error } => Some(
            json!({"type": "tool_result", "tool_use_id": tool_use_id, "content": content, "is_error": is_error}),
        ),
        Block::Image { path, media_type } => crate::agent::images::base64_of(path).map(|data| {
            json!({"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}})
        }),
        Block::Pdf { path, name } => crate::agent::images::pdf_base64_of(path).map(|data| {
            json!({"type": "document", "title": name, "source": {"type": "base64", "media_type": "application/pdf", "data": data}})
        }),
    }
}

/// `"<type>: <message>"` from the API's error body, else the body itself, clipped.
fn error_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        let err = v.get("error").unwrap_or(&v);
        if let Some(s) = err.as_str() {
            return s.to_string();
        }
        let message = err.get("message").and_then(Value::as_str);
        let kind = err.get("type").and_then(Value::as_str);
        match (kind, message) {
            (Some(k), Some(m)) => return format!("{k}: {m}"),
            (None, Some(m)) => return m.to_string(),
            _ => {}
        }
    }
    match clip(body) {
        s if s.is_empty() => "empty response body".to_string(),
        s => s,
    }
}

/// `s` trimmed, at most [`ERROR_CHARS_MAX`] characters.
pub(crate) fn clip(s: &str) -> String {
    let s = s.trim();
    match s.char_indices().nth(ERROR_CHARS_MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}

/// A failed read: a stop, or a broken/stalled connection.
pub(crate) fn read_error(e: std::io::Error, cancel: &Cancel) -> ModelError {
    if cancel.is_cancelled() {
        return ModelError::Cancelled;
    }
    match e.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => {
            ModelError::Timeout("the model stream stalled (no data within the model timeout)".into())
        }
        _ => ModelError::Transport(format!("reading the model stream: {e}")),
    }
}

/// Whether the body is a JSON document rather than an event stream (whose lines never start with
/// `{`). Skips leading whitespace; waits for the first byte.
pub(crate) fn body_is_json(r: &mut impl BufRead) -> std::io::Result<bool> {
    loop {
        let buf = r.fill_buf()?;
        if buf.is_empty() {
            return Ok(false);
        }
        let ws = buf.iter().take_while(|b| b.is_ascii_whitespace()).count();
        if ws < buf.len() {
            let json = buf[ws] == b'{';
            r.consume(ws);
            return Ok(json);
        }
        r.consume(ws);
    }
}

/// The whole body (bounded), or why it could not be read.
pub(crate) fn read_body(r: &mut impl BufRead, cancel: &Cancel) -> Result<String, ModelError> {
    let mut buf = Vec::new();
    r.take(BODY_BYTES_MAX).read_to_end(&mut buf).map_err(|e| read_error(e, cancel))?;
    if cancel.is_cancelled() {
        return Err(ModelError::Cancelled);
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// A whole message (`{"type":"message","content":[…],"stop_reason",…}`) or error as JSON.
fn read_message(
    r: &mut impl BufRead,
    on_event: &mut dyn FnMut(StreamEvent),
    cancel: &Cancel,
) -> Result<Response, ModelError> {
    let text = read_body(r, cancel)?;
    let v: Value = serde_json::from_str(&text)
        .map_err(|e| ModelError::Protocol(format!("bad JSON answer ({e}): {}", clip(&text))))?;
    if v.get("type").and_then(Value::as_str) == Some("error") || v.get("error").is_some() {
        return Err(ModelError::Protocol(error_message(&text)));
    }
    let Some(content) = v.get("content").and_then(Value::as_array) else {
        return Err(ModelError::Protocol(format!("a JSON answer without content: {}", clip(&text))));
    };
    let mut st = StreamState::default();
    for (index, block) in content.iter().enumerate() {
        st.block_start(&json!({"index": index, "content_block": block}), on_event);
    }
    st.stop_reason = v.get("stop_reason").and_then(Value::as_str).map(str::to_string);
    if let Some(u) = v.get("usage") {
        st.add_usage(u);
    }
    Ok(st.finish())
}

/// Reads the event stream to `message_stop`.
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
                if st.handle(&ev, on_event)? {
                    return Ok(st.finish());
                }
            }
            // A stop shuts the socket down, which reads as the end of the stream.
            Ok(None) if cancel.is_cancelled() => return Err(ModelError::Cancelled),
            Ok(None) => {
                return Err(ModelError::Transport(
                    "the model stream ended before message_stop (truncated)".into(),
                ));
            }
            Err(e) => return Err(read_error(e, cancel)),
        }
    }
}

/// A content block being streamed.
enum Part {
    Text(String),
    Tool {
        id: String,
        name: String,
        json: String,
        start_input: Option<Value>,
        input: Option<Value>,
    },
    /// A block type we do not use (thinking, redacted_thinking, server tools…).
    Skip,
}

#[derive(Default)]
struct StreamState {
    blocks: BTreeMap<u64, Part>,
    stop_reason: Option<String>,
    usage: Option<Usage>,
}

impl StreamState {
    /// Handles one event; true at `message_stop`.
    fn handle(&mut self, ev: &Event, on_event: &mut dyn FnMut(StreamEvent)) -> Result<bool, ModelError> {
        let data = ev.data.trim();
        if data.is_empty() {
            return Ok(false);
        }
        let v: Value = serde_json::from_str(data)
            .map_err(|e| ModelError::Protocol(format!("bad event data ({e}): {}", clip(data))))?;
        let kind = v.get("type").and_then(Value::as_str).or(ev.event.as_deref()).unwrap_or("");
        match kind {
            "message_start" => {
                if let Some(u) = v.pointer("/message/usage") {
                    self.add_usage(u);
                }
            }
            "content_block_start" => self.block_start(&v, on_event),
            "content_block_delta" => self.block_delta(&v, on_event)?,
            "content_block_stop" => {
                let index = self.index_of(&v);
                if let Some(Part::Tool { json, start_input, input, .. }) = self.blocks.get_mut(&index) {
                    *input = Some(tool_input(json, start_input.take()));
                }
            }
            "message_delta" => {
                if let Some(r) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.stop_reason = Some(r.to_string());
                }
                if let Some(u) = v.get("usage") {
                    self.add_usage(u);
                }
            }
            "message_stop" => return Ok(true),
            "ping" => {}
            "error" => {
                let err = v.get("error").unwrap_or(&Value::Null);
                let kind = err.get("type").and_then(Value::as_str).unwrap_or("error");
                let message = err.get("message").and_then(Value::as_str).unwrap_or("(no message)");
                return Err(ModelError::Protocol(format!("{kind}: {message}")));
            }
            other => log::debug!("anthropic: ignoring stream event {other:?}"),
        }
        Ok(false)
    }

    /// The block index an event refers to (compatible servers may leave it out: the latest).
    fn index_of(&self, v: &Value) -> u64 {
        v.get("index")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| self.blocks.keys().next_back().copied().unwrap_or(0))
    }

    fn block_start(&mut self, v: &Value, on_event: &mut dyn FnMut(StreamEvent)) {
        let index = v
            .get("index")
            .and_then(Value::as_u64)
            .unwrap_or_else(|| self.blocks.keys().next_back().map_or(0, |k| k + 1));
        let block = v.get("content_block").unwrap_or(&Value::Null);
        let str_field = |k: &str| block.get(k).and_then(Value::as_str).unwrap_or("");
        let part = match block.get("type").and_then(Value::as_str) {
            Some("tool_use") => {
                let name = str_field("name").to_string();
                on_event(StreamEvent::ToolCallStart { name: name.clone() });
                let id = match str_field("id") {
                    "" => format!("toolu_{}", crate::ids::random_base36(12)),
                    id => id.to_string(),
                };
                let start_input = block.get("input").filter(|i| i.as_object().is_some_and(|o| !o.is_empty()));
                Part::Tool { id, name, json: String::new(), start_input: start_input.cloned(), input: None }
            }
            Some("text") | None => {
                let text = str_field("text").to_string();
                if !text.is_empty() {
                    on_event(StreamEvent::TextDelta(text.clone()));
                }
                Part::Text(text)
            }
            Some(other) => {
                log::debug!("anthropic: skipping a {other:?} block");
                Part::Skip
            }
        };
        self.blocks.insert(index, part);
    }

    fn block_delta(&mut self, v: &Value, on_event: &mut dyn FnMut(StreamEvent)) -> Result<(), ModelError> {
        let index = self.index_of(v);
        let delta = v.get("delta").unwrap_or(&Value::Null);
        match delta.get("type").and_then(Value::as_str) {
            Some("text_delta") => {
                let text = delta.get("text").and_then(Value::as_str).unwrap_or("");
                match self.blocks.entry(index).or_insert_with(|| Part::Text(String::new())) {
                    Part::Text(t) => t.push_str(text),
                    _ => {
                        log::debug!("anthropic: text_delta for non-text block {index} ignored");
                        return Ok(());
                    }
                }
                if !text.is_empty() {
                    on_event(StreamEvent::TextDelta(text.to_string()));
                }
            }
            Some("input_json_delta") => {
                let partial = delta.get("partial_json").and_then(Value::as_str).unwrap_or("");
                match self.blocks.get_mut(&index) {
                    Some(Part::Tool { json, .. }) => json.push_str(partial),
                    Some(Part::Skip) => {}
                    _ => {
                        return Err(ModelError::Protocol(format!(
                            "input_json_delta for block {index}, which did not start as tool_use"
                        )));
                    }
                }
            }
            // thinking_delta, signature_delta, citations_delta…
            _ => {}
        }
        Ok(())
    }

    /// Usage fields present in `u` (input counts cached prompt tokens too).
    fn add_usage(&mut self, u: &Value) {
        let n = |k: &str| u.get(k).and_then(Value::as_u64);
        let input = [n("input_tokens"), n("cache_creation_input_tokens"), n("cache_read_input_tokens")];
        let output = n("output_tokens");
        if input.iter().all(Option::is_none) && output.is_none() {
            return;
        }
        let usage = self.usage.get_or_insert_with(Usage::default);
        let input_sum: u64 = input.iter().flatten().sum();
        if input_sum > 0 {
            usage.input_tokens = input_sum;
        }
        if let Some(o) = output {
            usage.output_tokens = o;
        }
    }

    fn finish(self) -> Response {
        let mut content = Vec::new();
        for part in self.blocks.into_values() {
            match part {
                Part::Text(text) if text.is_empty() => {}
                Part::Text(text) => content.push(Block::Text { text }),
                Part::Tool { id, name, json, start_input, input } => {
                    let input = input.unwrap_or_else(|| tool_input(&json, start_input));
                    content.push(Block::ToolUse { id, name, input });
                }
                Part::Skip => {}
            }
        }
        let has_tools = content.iter().any(|b| matches!(b, Block::ToolUse { .. }));
        let stop = match self.stop_reason.as_deref() {
            Some("max_tokens") => Stop::MaxTokens,
            Some("end_turn") | None if has_tools => Stop::ToolUse,
            Some("tool_use") if has_tools => Stop::ToolUse,
            Some("tool_use") => Stop::Other("tool_use without a tool call".into()),
            Some("end_turn") | None => Stop::EndTurn,
            Some(other) => Stop::Other(other.to_string()),
        };
        Response { message: Message { role: Role::Assistant, content }, stop, usage: self.usage }
    }
}

/// A tool call's arguments from its streamed JSON (empty: the start block's input, or `{}`);
/// JSON that does not parse to an object is kept as `{"_invalid_json": <raw>}` so the tool can
/// tell the model.
fn tool_input(json: &str, start_input: Option<Value>) -> Value {
    let raw = json.trim();
    if raw.is_empty() {
        return start_input.unwrap_or_else(|| json!({}));
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(v @ Value::Object(_)) => v,
        _ => json!({"_invalid_json": json}),
    }
}

/// The tests use the fake model server, which is built with the host.
#[cfg(all(test, feature = "host"))]
mod tests {
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    use super::*;
    use crate::agent::model::ToolSpec;
    use crate::testing::{FakeModel, Gate, Recorded, Reply, anthropic as wire};

    const T: Duration = Duration::from_secs(10);

    struct Setup {
        fake: FakeModel,
        _dir: tempfile::TempDir,
        provider: Anthropic,
    }

    fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeModel::start_with_socket(dir.path().join("model.sock"));
        // A stall watchdog well under the test's patience: a broken cancel fails, never hangs.
        let provider = Anthropic::new(fake.http().with_stall(Duration::from_secs(20)));
        Setup { _dir: dir, fake, provider }
    }

    fn tools() -> Vec<ToolSpec> {
        vec![ToolSpec {
            name: "read_file".into(),
            description: "Read a file".into(),
            input_schema: json!({"type": "object", "properties": {"path": {"type": "string"}}}),
        }]
    }

    /// Calls the provider and returns the result with the streamed events.
    fn call(
        p: &mut Anthropic,
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

    #[test]
    fn streams_text_in_order_with_usage() {
        let mut s = setup();
        s.fake.reply(wire::text(&["Hel", "lo", " there"]));
        let (res, events) = call(&mut s.provider, &[Message::user_text("hi")], &[]);
        let resp = res.unwrap();
        assert_eq!(
            events,
            ["Hel", "lo", " there"].map(|t| StreamEvent::TextDelta(t.into())),
            "deltas in order as they arrive"
        );
        assert_eq!(resp.message, Message::assistant_text("Hello there"));
        assert_eq!(resp.stop, Stop::EndTurn);
        assert_eq!(resp.usage, Some(Usage { input_tokens: 25, output_tokens: 15 }));

        let req = request(&s.fake);
        assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/anthropic/v1/messages"));
        assert_eq!(req.header("anthropic-version"), Some("2023-06-01"));
        assert_eq!(req.header("x-api-key"), None, "the proxy adds the key");
        assert_eq!(
            req.body,
            json!({
                "model": "claude-sonnet-4-5", "max_tokens": 1000, "system": "You are terse.", "stream": true,
                "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
            })
        );
    }

    #[test]
    fn the_model_comes_from_the_request_then_the_config_then_the_default() {
        let mut s = setup();
        s.provider = Anthropic::new(s.fake.http()).model(Some("claude-haiku-4-5".into()));
        s.fake.reply(wire::text(&["a"]));
        s.fake.reply(wire::text(&["b"]));
        call(&mut s.provider, &[Message::user_text("hi")], &[]).0.unwrap();
        assert_eq!(request(&s.fake).body["model"], "claude-haiku-4-5");
        let msgs = [Message::user_text("hi")];
        let req =
            Request { model: "claude-opus-4-1", system: "", messages: &msgs, tools: &[], max_tokens: 10 };
        s.provider.call(&req, &mut |_| {}, &Cancel::default()).unwrap();
        let body = request(&s.fake).body;
        assert_eq!(body["model"], "claude-opus-4-1");
        assert!(body.get("system").is_none(), "empty system left out: {body}");
        assert!(body.get("tools").is_none(), "no tools left out: {body}");
        assert_eq!(Anthropic::new(s.fake.http()).model(Some("  ".into())).model, DEFAULT_MODEL);
    }

    #[test]
    fn a_tool_round_trip_sends_the_result_back_in_wire_shape() {
        let mut s = setup();
        s.fake.reply(wire::tool_use(
            "Let me look.",
            "toolu_01A",
            "read_file",
            &["{\"pa", "th\": \"a.", "txt\"}"],
        ));
        let mut conv = vec![Message::user_text("what is in a.txt?")];
        let (res, events) = call(&mut s.provider, &conv, &tools());
        let resp = res.unwrap();
        assert_eq!(
            events,
            vec![
                StreamEvent::TextDelta("Let me look.".into()),
                StreamEvent::ToolCallStart { name: "read_file".into() }
            ]
        );
        assert_eq!(resp.stop, Stop::ToolUse);
        assert_eq!(
            resp.message.content,
            vec![
                Block::Text { text: "Let me look.".into() },
                Block::ToolUse {
                    id: "toolu_01A".into(),
                    name: "read_file".into(),
                    input: json!({"path": "a.txt"})
                },
            ]
        );
        let first = request(&s.fake);
        assert_eq!(
            first.body["tools"],
            json!([{"name": "read_file", "description": "Read a file",
                    "input_schema": {"type": "object", "properties": {"path": {"type": "string"}}}}])
        );

        conv.push(resp.message);
        conv.push(Message {
            role: Role::User,
            content: vec![Block::ToolResult {
                tool_use_id: "toolu_01A".into(),
                content: "hello".into(),
                is_error: false,
            }],
        });
        s.fake.reply(wire::text(&["It says hello."]));
        let resp = call(&mut s.provider, &conv, &tools()).0.unwrap();
        assert_eq!(resp.message.text(), "It says hello.");
        let second = request(&s.fake);
        assert_eq!(
            second.body["messages"],
            json!([
                {"role": "user", "content": [{"type": "text", "text": "what is in a.txt?"}]},
                {"role": "assistant", "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "toolu_01A", "name": "read_file", "input": {"path": "a.txt"}},
                ]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "hello", "is_error": false},
                ]},
            ])
        );
    }

    #[test]
    fn parallel_tool_calls_keep_their_order_and_inputs() {
        let mut s = setup();
        s.fake.reply(wire::tool_uses(
            "",
            &[
                ("toolu_1", "read_file", &["{\"path\":", "\"a\"}"]),
                ("toolu_2", "list", &[]),
                ("toolu_3", "read_file", &["{\"path\":\"b\"}"]),
            ],
        ));
        let (res, events) = call(&mut s.provider, &[Message::user_text("go")], &tools());
        let resp = res.unwrap();
        assert_eq!(events.len(), 3, "one ToolCallStart each: {events:?}");
        assert_eq!(resp.stop, Stop::ToolUse);
        let calls: Vec<_> =
            resp.message.tool_uses().map(|(id, n, i)| (id.to_string(), n.to_string(), i.clone())).collect();
        assert_eq!(
            calls,
            vec![
                ("toolu_1".into(), "read_file".into(), json!({"path": "a"})),
                ("toolu_2".into(), "list".into(), json!({}),),
                ("toolu_3".into(), "read_file".into(), json!({"path": "b"})),
            ]
        );
        assert_eq!(resp.message.text(), "");
    }

    #[test]
    fn stop_reasons_map() {
        let mut s = setup();
        for (reason, stop) in [
            ("max_tokens", Stop::MaxTokens),
            ("stop_sequence", Stop::Other("stop_sequence".into())),
            ("refusal", Stop::Other("refusal".into())),
            ("pause_turn", Stop::Other("pause_turn".into())),
        ] {
            s.fake.reply(wire::text_with_stop(&["partial"], reason));
            let resp = call(&mut s.provider, &[Message::user_text("hi")], &[]).0.unwrap();
            assert_eq!((resp.stop, resp.message.text().as_str()), (stop, "partial"), "{reason}");
        }
    }

    #[test]
    fn error_statuses_carry_the_message_and_retry_after() {
        let mut s = setup();
        s.fake.reply(wire::error_status(401, "authentication_error", "invalid x-api-key", None));
        s.fake.reply(wire::error_status(
            429,
            "rate_limit_error",
            "Number of requests has exceeded your rate limit",
            Some(7),
        ));
        s.fake.reply(wire::error_status(529, "overloaded_error", "Overloaded", None));
        s.fake.reply(Reply::new(
            502,
            &[("content-type", "text/html")],
            format!("<html>{}</html>", "x".repeat(1000)),
        ));
        let err = call(&mut s.provider, &[Message::user_text("hi")], &[]).0.unwrap_err();
        assert_eq!(
            err,
            ModelError::Status {
                status: 401,
                message: "authentication_error: invalid x-api-key".into(),
                retry_after_s: None
            }
        );
        assert!(!err.retryable());
        let err = call(&mut s.provider, &[Message::user_text("hi")], &[]).0.unwrap_err();
        assert!(
            matches!(&err, ModelError::Status { status: 429, retry_after_s: Some(7), message } if message.contains("rate limit")),
            "{err:?}"
        );
        let err = call(&mut s.provider, &[Message::user_text("hi")], &[]).0.unwrap_err();
        assert!(err.retryable(), "{err:?}");
        let err = call(&mut s.provider, &[Message::user_text("hi")], &[]).0.unwrap_err();
        match err {
            ModelError::Status { status: 502, message, .. } => {
                assert!(message.starts_with("<html>xxx") && message.chars().count() <= 301, "{message}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn an_error_event_mid_stream_is_a_retryable_protocol_error() {
        let mut s = setup();
        let mut ev = vec![wire::message_start(10)];
        ev.extend(wire::text_block(0, &["Hel"])[..3].iter().cloned());
        ev.push(wire::error_event("overloaded_error", "Overloaded"));
        s.fake.reply(Reply::sse(ev));
        let (res, events) = call(&mut s.provider, &[Message::user_text("hi")], &[]);
        let err = res.unwrap_err();
        assert_eq!(err, ModelError::Protocol("overloaded_error: Overloaded".into()));
        assert!(err.retryable());
        assert_eq!(events, vec![StreamEvent::TextDelta("Hel".into())]);
    }

    #[test]
    fn a_truncated_stream_is_a_transport_error() {
        let mut s = setup();
        // Everything up to (not including) message_delta and message_stop.
        let full = wire::text(&["Hel", "lo"]);
        let n = full.parts.len() - 2;
        s.fake.reply(full.truncated(n));
        let err = call(&mut s.provider, &[Message::user_text("hi")], &[]).0.unwrap_err();
        assert!(matches!(&err, ModelError::Transport(m) if m.contains("truncated")), "{err:?}");
        // An empty 200 body too.
        s.fake.reply(Reply::sse(vec![]));
        let err = call(&mut s.provider, &[Message::user_text("hi")], &[]).0.unwrap_err();
        assert!(matches!(err, ModelError::Transport(_)), "{err:?}");
    }

    #[test]
    fn a_whole_json_message_from_a_server_ignoring_stream_is_used() {
        let mut s = setup();
        s.fake.reply(Reply::json(
            200,
            r#"{"id":"msg_1","type":"message","role":"assistant","model":"m","content":[{"type":"text","text":"Let me look."},{"type":"tool_use","id":"toolu_9","name":"read_file","input":{"path":"a"}}],"stop_reason":"tool_use","stop_sequence":null,"usage":{"input_tokens":7,"output_tokens":9}}"#,
        ));
        let (res, events) = call(&mut s.provider, &[Message::user_text("hi")], &tools());
        let resp = res.unwrap();
        assert_eq!(
            events,
            vec![
                StreamEvent::TextDelta("Let me look.".into()),
                StreamEvent::ToolCallStart { name: "read_file".into() }
            ]
        );
        assert_eq!(
            resp.message.content,
            vec![
                Block::Text { text: "Let me look.".into() },
                Block::ToolUse {
                    id: "toolu_9".into(),
                    name: "read_file".into(),
                    input: json!({"path": "a"})
                },
            ]
        );
        assert_eq!(
            (resp.stop, resp.usage),
            (Stop::ToolUse, Some(Usage { input_tokens: 7, output_tokens: 9 }))
        );
        // A 200 carrying an error document (some gateways) is an error, whatever its content type.
        s.fake.reply(Reply::new(
            200,
            &[("content-type", "text/event-stream")],
            r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        ));
        let err = call(&mut s.provider, &[Message::user_text("hi")], &[]).0.unwrap_err();
        assert_eq!(err, ModelError::Protocol("overloaded_error: Overloaded".into()));
        assert!(err.retryable());
    }

    #[test]
    fn cancel_while_the_server_holds_the_stream_ends_the_call_and_the_connection() {
        let s = setup();
        let gate = Gate::new();
        // Hold after the first text delta (message_start, block start, ping, delta).
        s.fake.reply(wire::text(&["Hel", "lo"]).hold_at(4, &gate));
        let cancel = Cancel::default();
        let (tx, rx) = mpsc::channel();
        let mut provider = s.provider;
        let c2 = cancel.clone();
        let t = std::thread::spawn(move || {
            let msgs = [Message::user_text("hi")];
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
        drop(gate);
    }

    #[test]
    fn a_call_after_cancel_does_not_reach_the_server() {
        let mut s = setup();
        let cancel = Cancel::default();
        cancel.cancel();
        let msgs = [Message::user_text("hi")];
        let req = Request { model: "", system: "", messages: &msgs, tools: &[], max_tokens: 10 };
        assert_eq!(s.provider.call(&req, &mut |_| {}, &cancel).unwrap_err(), ModelError::Cancelled);
        assert!(s.fake.next_request(Duration::from_millis(200)).is_none());
    }

    #[test]
    fn the_request_merges_roles_drops_blank_text_and_puts_tool_results_first() {
        let conv = vec![
            Message::user_text("first"),
            Message::user_text("   "),
            Message::user_text("second"),
            Message {
                role: Role::Assistant,
                content: vec![
                    Block::Text { text: String::new() },
                    Block::ToolUse { id: "t1".into(), name: "read_file".into(), input: json!({"path": "x"}) },
                ],
            },
            Message { role: Role::Assistant, content: vec![Block::Text { text: "".into() }] },
            Message::user_text("(a new message arrived)"),
            Message {
                role: Role::User,
                content: vec![Block::ToolResult {
                    tool_use_id: "t1".into(),
                    content: "no such file".into(),
                    is_error: true,
                }],
            },
        ];
        let req = Request { model: "m", system: "  ", messages: &conv, tools: &[], max_tokens: 0 };
        let body = request_body(&req, "m");
        assert_eq!(
            body,
            json!({
                "model": "m", "max_tokens": DEFAULT_MAX_TOKENS, "stream": true,
                "messages": [
                    {"role": "user", "content": [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]},
                    {"role": "assistant", "content": [
                        {"type": "tool_use", "id": "t1", "name": "read_file", "input": {"path": "x"}},
                    ]},
                    {"role": "user", "content": [
                        {"type": "tool_result", "tool_use_id": "t1", "content": "no such file", "is_error": true},
                        {"type": "text", "text": "(a new message arrived)"},
                    ]},
                ],
            })
        );
    }

    /// Ollama's and other compatible servers' streams: compact JSON, no pings, no usage, no
    /// `stop_sequence`, text block starts without `text`, a tool input given whole at the start.
    #[test]
    fn tolerates_compatible_servers_leaving_fields_out() {
        let mut s = setup();
        let ev = |d: &str| {
            format!(
                "event: {}\ndata: {d}\n\n",
                serde_json::from_str::<Value>(d).unwrap()["type"].as_str().unwrap()
            )
        };
        s.fake.reply(Reply::sse(vec![
            ev(r#"{"type":"message_start","message":{"id":"msg_1","type":"message","role":"assistant","model":"qwen3","content":[]}}"#),
            ev(r#"{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}"#),
            ev(r#"{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}"#),
            ev(r#"{"type":"content_block_stop","index":0}"#),
            ev(r#"{"type":"content_block_start","index":1,"content_block":{"type":"text"}}"#),
            ev(r#"{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"ok"}}"#),
            ev(r#"{"type":"content_block_stop","index":1}"#),
            ev(r#"{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"call_x","name":"list","input":{"dir":"/"}}}"#),
            ev(r#"{"type":"content_block_stop","index":2}"#),
            ev(r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"}}"#),
            ev(r#"{"type":"message_stop"}"#),
        ]));
        let (res, events) = call(&mut s.provider, &[Message::user_text("hi")], &tools());
        let resp = res.unwrap();
        assert_eq!(
            resp.message.content,
            vec![
                Block::Text { text: "ok".into() },
                Block::ToolUse { id: "call_x".into(), name: "list".into(), input: json!({"dir": "/"}) },
            ]
        );
        assert_eq!(resp.stop, Stop::ToolUse);
        assert_eq!(resp.usage, None);
        assert_eq!(
            events,
            vec![StreamEvent::TextDelta("ok".into()), StreamEvent::ToolCallStart { name: "list".into() }]
        );

        // No stop_reason at all, a tool with empty and one with invalid JSON, no event names.
        s.fake.reply(Reply::sse(vec![
            "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"name\":\"a\",\"input\":{}}}\n\n".into(),
            "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n".into(),
            "data: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t2\",\"name\":\"b\",\"input\":{}}}\n\n".into(),
            "data: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"x\\\": \"}}\n\n".into(),
            "data: {\"type\":\"message_stop\"}\n\n".into(),
        ]));
        let resp = call(&mut s.provider, &[Message::user_text("hi")], &tools()).0.unwrap();
        let calls: Vec<_> =
            resp.message.tool_uses().map(|(id, n, i)| (id.to_string(), n.to_string(), i.clone())).collect();
        assert!(calls[0].0.starts_with("toolu_") && calls[0].0.len() > 6, "generated id {}", calls[0].0);
        assert_eq!((calls[0].1.as_str(), &calls[0].2), ("a", &json!({})));
        assert_eq!(calls[1], ("t2".into(), "b".into(), json!({"_invalid_json": "{\"x\": "})));
        assert_eq!(resp.stop, Stop::ToolUse, "tool calls without a stop reason");
    }

    #[test]
    fn usage_counts_cached_prompt_tokens_and_the_final_output_count() {
        let mut st = StreamState::default();
        let mut sink = |_| {};
        let ev = |d: &str| Event { event: None, data: d.into() };
        st.handle(&ev(r#"{"type":"message_start","message":{"usage":{"input_tokens":3,"cache_read_input_tokens":100,"cache_creation_input_tokens":20,"output_tokens":1}}}"#), &mut sink).unwrap();
        st.handle(
            &ev(
                r#"{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":42}}"#,
            ),
            &mut sink,
        )
        .unwrap();
        assert!(st.handle(&ev(r#"{"type":"message_stop"}"#), &mut sink).unwrap());
        assert_eq!(st.finish().usage, Some(Usage { input_tokens: 123, output_tokens: 42 }));
        let mut st = StreamState::default();
        let err = st.handle(&ev("not json"), &mut sink).unwrap_err();
        assert!(matches!(err, ModelError::Protocol(m) if m.contains("not json")));
    }
}
