//! MCP (Model Context Protocol) client: the MCP servers approved for an agent, as tools.
//!
//! The host passes the approved servers as a JSON object (`PINCER_MCP_SERVERS`, see
//! [`parse_config`]). [`start_all`] starts each one as a child process (argv, never a shell) and
//! speaks newline-delimited JSON-RPC 2.0 over its stdin/stdout: `initialize`, the
//! `notifications/initialized` notification, then `tools/list` (paginated). Every tool found
//! becomes an [`McpTool`] named `mcp__<server>__<tool>`.
//!
//! Threads per server: one writes requests to stdin (so a server that stops reading never
//! blocks a call past its timeout), one reads stdout and hands responses to the waiting request
//! by `id`, one drains stderr into the debug log. A request waits on a channel that its
//! response, a broken connection, the user's cancel hook or its timeout end; a cancelled or
//! timed-out call sends `notifications/cancelled`.
//!
//! A server that fails to start is reported and skipped. A server that dies later fails the
//! call in flight; the next call restarts it once, after that its tools answer with an error.
//! Dropping the last tool of a server kills its process.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::Deserialize;
use serde_json::{Value, json};

use super::model::{Cancel, ToolSpec};
use super::tools::{Tool, ToolCtx, ToolOutput, cap_middle};

/// The protocol revision this client speaks.
pub const PROTOCOL_VERSION: &str = "2025-06-18";

const MAX_SERVERS: usize = 16;
const MAX_NAME: usize = 32;
const MAX_LINE: usize = 8 * 1024 * 1024;
const MAX_PAGES: usize = 20;
const MAX_TOOLS_PER_SERVER: usize = 500;
const MAX_TOOL_NAME: usize = 64;
const MAX_DESCRIPTION: usize = 4096;
const MAX_SCHEMA: usize = 64 * 1024;
const MAX_OUTPUT: usize = 100_000;
const MAX_RESTARTS: u32 = 1;
const STDERR_TAIL_LINES: usize = 5;
const STDERR_LINE: usize = 4096;
/// Inherited from the runner's environment; everything else the child gets comes from its config.
const INHERITED_ENV: &[&str] = &[
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
];

/// How to start one MCP server.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// The program (a path, or a name looked up in `PATH`). Never run through a shell.
    pub command: String,
    #[serde(default)]
    pub args: Vec<String>,
    /// Added to a minimal environment inherited from the runner (`PATH`, `HOME`, locale...).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// Parses and validates the host's JSON object of servers (`{"name": {"command": ...}}`). An
/// empty string is no servers.
pub fn parse_config(json: &str) -> Result<BTreeMap<String, McpServerConfig>, String> {
    if json.trim().is_empty() {
        return Ok(BTreeMap::new());
    }
    let servers: BTreeMap<String, McpServerConfig> =
        serde_json::from_str(json).map_err(|e| format!("invalid MCP server configuration: {e}"))?;
    if servers.len() > MAX_SERVERS {
        return Err(format!("too many MCP servers: {} (at most {MAX_SERVERS})", servers.len()));
    }
    for (name, cfg) in &servers {
        let name_ok = !name.is_empty()
            && name.len() <= MAX_NAME
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(format!(
                "invalid MCP server name {name:?}: use 1 to {MAX_NAME} letters, digits, `_` or `-`"
            ));
        }
        if cfg.command.trim().is_empty() {
            return Err(format!("MCP server `{name}` has an empty command"));
        }
        if cfg.command.contains('\0') || cfg.args.iter().any(|a| a.contains('\0')) {
            return Err(format!("MCP server `{name}`: command and arguments must not contain NUL"));
        }
        for (key, value) in &cfg.env {
            if key.is_empty() || key.contains('=') || key.contains('\0') || value.contains('\0') {
                return Err(format!("MCP server `{name}`: invalid environment variable {key:?}"));
            }
        }
    }
    Ok(servers)
}

/// Timeouts and hooks of the client (the defaults suit production; tests shorten them).
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// Bounds a server's whole start: `initialize` plus every `tools/list` page.
    pub init_timeout: Duration,
    /// Bounds one `tools/call`.
    pub call_timeout: Duration,
    /// Receives every notification the servers send (`notifications/message`, progress...).
    pub notifications: Option<Sender<Value>>,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            init_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(120),
            notifications: None,
        }
    }
}

/// Starts every server in parallel and returns their tools plus one error line per server that
/// could not be started (those are skipped). Takes at most about the initialize timeout (30 s).
pub fn start_all(configs: &BTreeMap<String, McpServerConfig>) -> (Vec<Box<dyn Tool>>, Vec<String>) {
    start_all_with(configs, &ClientOptions::default())
}

/// [`start_all`] with explicit options.
pub fn start_all_with(
    configs: &BTreeMap<String, McpServerConfig>,
    opts: &ClientOptions,
) -> (Vec<Box<dyn Tool>>, Vec<String>) {
    let (tools, errors) = start_servers(configs, opts);
    (tools.into_iter().map(|t| Box::new(t) as Box<dyn Tool>).collect(), errors)
}

fn start_servers(
    configs: &BTreeMap<String, McpServerConfig>,
    opts: &ClientOptions,
) -> (Vec<McpTool>, Vec<String>) {
    let (tx, rx) = mpsc::channel();
    let mut results: BTreeMap<String, Started> = BTreeMap::new();
    let mut waiting = BTreeSet::new();
    for (name, cfg) in configs {
        let (tx, name2, cfg, opts) = (tx.clone(), name.clone(), cfg.clone(), opts.clone());
        let spawned = std::thread::Builder::new().name(format!("mcp-start-{name}")).spawn(move || {
            let res = McpServer::start(&name2, cfg, opts);
            let _ = tx.send((name2, res));
        });
        match spawned {
            Ok(_) => {
                waiting.insert(name.clone());
            }
            Err(e) => {
                results.insert(name.clone(), Err(format!("MCP server `{name}`: cannot start a thread: {e}")));
            }
        }
    }
    drop(tx);
    // Each start bounds itself by the init timeout; the grace covers spawning and killing.
    let deadline = Instant::now() + opts.init_timeout + Duration::from_secs(5);
    while !waiting.is_empty() {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((name, res)) => {
                waiting.remove(&name);
                results.insert(name, res);
            }
            Err(_) => break,
        }
    }
    for name in waiting {
        let secs = opts.init_timeout.as_secs_f64();
        results.insert(name.clone(), Err(format!("MCP server `{name}` did not start within {secs:.0} s")));
    }

    let mut tools = Vec::new();
    let mut errors = Vec::new();
    let mut used = BTreeSet::new();
    for (name, res) in results {
        match res {
            Ok((server, remote)) => {
                log::info!("MCP server `{name}` started with {} tools", remote.len());
                for rt in remote {
                    let tool_name = unique_name(&tool_name(&name, &rt.name), &mut used);
                    let spec = ToolSpec {
                        name: tool_name,
                        description: describe(&name, &rt.description),
                        input_schema: rt.input_schema,
                    };
                    tools.push(McpTool { server: server.clone(), tool: rt.name, spec });
                }
            }
            Err(e) => {
                log::warn!("{e}");
                errors.push(e);
            }
        }
    }
    (tools, errors)
}

/// One tool of an MCP server, as the model sees it.
pub struct McpTool {
    server: Arc<McpServer>,
    /// The tool's name on the server.
    tool: String,
    spec: ToolSpec,
}

impl McpTool {
    /// Calls the tool; what [`Tool::run`] does with the turn's cancel signal.
    pub fn call(&self, input: &Value, cancel: &Cancel) -> ToolOutput {
        let arguments = match input {
            Value::Null => json!({}),
            Value::Object(_) => input.clone(),
            _ => return ToolOutput::error("the arguments must be a JSON object"),
        };
        self.server.call_tool(&self.tool, arguments, cancel)
    }
}

impl Tool for McpTool {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    fn summary(&self, _input: &Value) -> String {
        cap_chars(&format!("{}.{}", self.server.name, self.tool), 120)
    }

    /// The call timeout, plus the start timeout in case the call restarts a dead server.
    fn declared_timeout_ms(&self, _input: &Value) -> Option<i64> {
        let worst = self.server.opts.call_timeout + self.server.opts.init_timeout;
        Some(i64::try_from(worst.as_millis()).unwrap_or(i64::MAX))
    }

    fn run(&self, input: &Value, ctx: &mut ToolCtx<'_>) -> ToolOutput {
        self.call(input, ctx.cancel)
    }
}

/// A tool as a server listed it.
#[derive(Debug, Clone)]
struct RemoteTool {
    name: String,
    description: String,
    input_schema: Value,
}

/// A started server and the tools it listed, or why it could not start.
type Started = Result<(Arc<McpServer>, Vec<RemoteTool>), String>;

/// One configured server: its live connection, restarted once if it dies.
struct McpServer {
    name: String,
    config: McpServerConfig,
    opts: ClientOptions,
    state: Mutex<ServerState>,
}

struct ServerState {
    conn: Option<Arc<Conn>>,
    restarts: u32,
    /// Why the server is given up on (no more restarts).
    down: Option<String>,
}

impl McpServer {
    fn start(name: &str, config: McpServerConfig, opts: ClientOptions) -> Started {
        let (conn, tools) = Conn::start(name, &config, &opts, None)?;
        let state = ServerState { conn: Some(Arc::new(conn)), restarts: 0, down: None };
        let server = McpServer { name: name.to_string(), config, opts, state: Mutex::new(state) };
        Ok((Arc::new(server), tools))
    }

    /// The live connection, restarting a dead server if it has not been restarted yet.
    fn connection(&self, cancel: &Cancel) -> Result<Arc<Conn>, ToolOutput> {
        let name = &self.name;
        let mut st = lock(&self.state);
        if let Some(down) = &st.down {
            return Err(ToolOutput::error(format!("MCP server `{name}` is not available: {down}")));
        }
        let why = match &st.conn {
            Some(conn) if !conn.is_closed() => return Ok(conn.clone()),
            Some(conn) => conn.death(),
            None => "it is not running".to_string(),
        };
        if st.restarts >= MAX_RESTARTS {
            let down = format!("it stopped ({why}) and was already restarted once");
            st.down = Some(down.clone());
            st.conn = None;
            return Err(ToolOutput::error(format!("MCP server `{name}` is not available: {down}")));
        }
        st.restarts += 1;
        st.conn = None; // kills what is left of the old process
        log::warn!("MCP server `{name}` stopped ({why}); restarting it");
        match Conn::start(name, &self.config, &self.opts, Some(cancel)) {
            Ok((conn, tools)) => {
                log::info!("MCP server `{name}` restarted with {} tools", tools.len());
                let conn = Arc::new(conn);
                st.conn = Some(conn.clone());
                Ok(conn)
            }
            Err(_) if cancel.is_cancelled() => {
                st.restarts -= 1;
                Err(ToolOutput::error("stopped by the user"))
            }
            Err(e) => {
                log::warn!("{e}");
                let down = format!("it stopped ({why}) and could not be restarted: {e}");
                st.down = Some(down.clone());
                Err(ToolOutput::error(format!("MCP server `{name}` is not available: {down}")))
            }
        }
    }

    fn call_tool(&self, tool: &str, arguments: Value, cancel: &Cancel) -> ToolOutput {
        if cancel.is_cancelled() {
            return ToolOutput::error("stopped by the user");
        }
        let conn = match self.connection(cancel) {
            Ok(conn) => conn,
            Err(out) => return out,
        };
        let name = &self.name;
        let params = json!({"name": tool, "arguments": arguments});
        match conn.request("tools/call", params, self.opts.call_timeout, Some(cancel)) {
            Ok(result) => render_result(&result),
            Err(ReqError::Cancelled) => ToolOutput::error("stopped by the user"),
            Err(ReqError::Timeout(d)) => ToolOutput::error(format!(
                "MCP server `{name}` did not answer `{tool}` within {:.0} s; the call was abandoned",
                d.as_secs_f64()
            )),
            Err(ReqError::Rpc(m)) => ToolOutput::error(format!("MCP server `{name}` rejected the call: {m}")),
            Err(ReqError::Broken(m)) => ToolOutput::error(m),
            Err(ReqError::Closed(_)) => {
                let then = if lock(&self.state).restarts < MAX_RESTARTS {
                    "It will be restarted on the next call."
                } else {
                    "It will not be restarted again."
                };
                ToolOutput::error(format!(
                    "MCP server `{name}` stopped during the call ({}). {then}",
                    conn.death()
                ))
            }
        }
    }
}

/// Renders a `tools/call` result for the model.
fn render_result(result: &Value) -> ToolOutput {
    let mut parts = Vec::new();
    for item in result.get("content").and_then(Value::as_array).into_iter().flatten() {
        parts.push(render_item(item));
    }
    if parts.is_empty()
        && let Some(structured) = result.get("structuredContent")
    {
        parts.push(structured.to_string());
    }
    let mut text = parts.join("\n");
    if text.is_empty() {
        text = "(no output)".to_string();
    }
    let text = cap_middle(&text, MAX_OUTPUT);
    if result.get("isError").and_then(Value::as_bool) == Some(true) {
        ToolOutput::error(text)
    } else {
        ToolOutput::ok(text)
    }
}

fn render_item(item: &Value) -> String {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let kind = s(item, "type");
    match kind.as_str() {
        "text" => s(item, "text"),
        "image" | "audio" => {
            let mime = item.get("mimeType").and_then(Value::as_str).unwrap_or("unknown type");
            format!("[{kind}: {mime}, {} bytes]", base64_len(&s(item, "data")))
        }
        "resource" => {
            let res = item.get("resource").unwrap_or(&Value::Null);
            match res.get("text").and_then(Value::as_str) {
                Some(t) => format!("[resource: {}]\n{t}", s(res, "uri")),
                None => format!("[resource: {}]", s(res, "uri")),
            }
        }
        "resource_link" => format!("[resource: {}]", s(item, "uri")),
        "" => "[content without a type]".to_string(),
        other => format!("[{} content]", cap_chars(other, 40)),
    }
}

/// Decoded length of base64 text.
fn base64_len(data: &str) -> usize {
    let n = data.bytes().filter(|b| !b.is_ascii_whitespace()).count();
    let pad = data.trim_end().bytes().rev().take_while(|&b| b == b'=').count().min(2);
    (n / 4 * 3 + (n % 4) * 3 / 4).saturating_sub(pad)
}

/// `mcp__<server>__<tool>`, with characters outside `[a-zA-Z0-9_-]` as `_`, at most 64 chars.
fn tool_name(server: &str, tool: &str) -> String {
    let clean: String = format!("mcp__{server}__{tool}")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect();
    clean.chars().take(MAX_TOOL_NAME).collect()
}

/// `name`, or `name` with a `_2`, `_3`... suffix if taken (cut to stay within 64 chars).
fn unique_name(name: &str, used: &mut BTreeSet<String>) -> String {
    let mut candidate = name.to_string();
    let mut n = 1;
    while used.contains(&candidate) {
        n += 1;
        let suffix = format!("_{n}");
        candidate = format!("{}{suffix}", &name[..name.len().min(MAX_TOOL_NAME - suffix.len())]);
    }
    used.insert(candidate.clone());
    candidate
}

fn describe(server: &str, description: &str) -> String {
    let description = description.trim();
    let text = if description.is_empty() {
        format!("[MCP server `{server}`]")
    } else {
        format!("[MCP server `{server}`] {description}")
    };
    cap_chars(&text, MAX_DESCRIPTION)
}

fn cap_chars(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max.saturating_sub(3);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &s[..end])
}

/// A tool's `inputSchema` as the model's `input_schema`: an object schema, else `{"type":"object"}`.
fn input_schema(schema: Option<&Value>) -> Value {
    match schema {
        Some(Value::Object(map))
            if map.get("type").is_none_or(|t| t == "object")
                && schema.is_some_and(|s| s.to_string().len() <= MAX_SCHEMA) =>
        {
            let mut map = map.clone();
            map.insert("type".into(), json!("object"));
            Value::Object(map)
        }
        _ => json!({"type": "object"}),
    }
}

/// Why a server's handshake failed.
enum HandshakeError {
    Request(&'static str, ReqError),
    Other(String),
}

impl From<String> for HandshakeError {
    fn from(e: String) -> HandshakeError {
        HandshakeError::Other(e)
    }
}

impl From<&str> for HandshakeError {
    fn from(e: &str) -> HandshakeError {
        HandshakeError::Other(e.to_string())
    }
}

/// Why a request got no result.
#[derive(Debug, Clone, PartialEq)]
enum ReqError {
    /// The server answered with a JSON-RPC error.
    Rpc(String),
    /// The answer was lost (a line too long, invalid JSON); the connection is still up.
    Broken(String),
    /// The server is gone (its output closed, its input broke).
    Closed(String),
    Timeout(Duration),
    Cancelled,
}

impl std::fmt::Display for ReqError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReqError::Rpc(m) => write!(f, "the server answered with an error: {m}"),
            ReqError::Broken(m) => write!(f, "{m}"),
            ReqError::Closed(m) => write!(f, "the server stopped ({m})"),
            ReqError::Timeout(d) => write!(f, "no answer within {:.0} s", d.as_secs_f64()),
            ReqError::Cancelled => write!(f, "stopped by the user"),
        }
    }
}

/// What a waiting request receives.
enum Event {
    Reply(Result<Value, ReqError>),
    Cancelled,
}

/// State shared by a connection and its threads.
struct Shared {
    name: String,
    state: Mutex<ConnState>,
    /// Lines for the writer thread; `None` once the client shuts the connection.
    writer: Mutex<Option<Sender<Vec<u8>>>>,
    notifications: Option<Sender<Value>>,
}

#[derive(Default)]
struct ConnState {
    pending: HashMap<u64, Sender<Event>>,
    /// Set once the connection is dead: why.
    closed: Option<String>,
}

impl Shared {
    fn register(&self, id: u64, tx: Sender<Event>) -> Result<(), ReqError> {
        let mut st = lock(&self.state);
        if let Some(reason) = &st.closed {
            return Err(ReqError::Closed(reason.clone()));
        }
        st.pending.insert(id, tx);
        Ok(())
    }

    fn unregister(&self, id: u64) {
        lock(&self.state).pending.remove(&id);
    }

    fn resolve(&self, id: u64, res: Result<Value, ReqError>) {
        let tx = lock(&self.state).pending.remove(&id);
        match tx {
            Some(tx) => {
                let _ = tx.send(Event::Reply(res));
            }
            None => log::debug!("MCP server `{}`: answer to unknown or abandoned request {id}", self.name),
        }
    }

    /// Fails every pending request (their answers are lost) without closing the connection.
    fn fail_pending(&self, err: ReqError) {
        let pending: Vec<_> = lock(&self.state).pending.drain().collect();
        for (_, tx) in pending {
            let _ = tx.send(Event::Reply(Err(err.clone())));
        }
    }

    /// Marks the connection dead and fails every pending request.
    fn close(&self, reason: String) {
        let pending: Vec<_> = {
            let mut st = lock(&self.state);
            if st.closed.is_none() {
                log::debug!("MCP server `{}` connection closed: {reason}", self.name);
                st.closed = Some(reason);
            }
            st.pending.drain().collect()
        };
        let reason = lock(&self.state).closed.clone().unwrap_or_default();
        for (_, tx) in pending {
            let _ = tx.send(Event::Reply(Err(ReqError::Closed(reason.clone()))));
        }
    }

    fn closed_reason(&self) -> Option<String> {
        lock(&self.state).closed.clone()
    }

    fn send(&self, msg: &Value) -> Result<(), ReqError> {
        let mut line =
            serde_json::to_vec(msg).map_err(|e| ReqError::Broken(format!("cannot encode: {e}")))?;
        line.push(b'\n');
        let writer = lock(&self.writer);
        let sent = writer.as_ref().is_some_and(|w| w.send(line).is_ok());
        if sent {
            Ok(())
        } else {
            Err(ReqError::Closed(self.closed_reason().unwrap_or_else(|| "its input is closed".into())))
        }
    }
}

/// One running server process and its threads.
struct Conn {
    shared: Arc<Shared>,
    child: Mutex<Child>,
    next_id: AtomicU64,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
    stderr_done: Mutex<mpsc::Receiver<()>>,
}

impl Drop for Conn {
    fn drop(&mut self) {
        lock(&self.shared.writer).take(); // the writer thread ends and closes stdin
        let mut child = lock(&self.child);
        let _ = child.kill();
        let _ = child.wait();
        self.shared.close("the client shut it down".into());
    }
}

impl Conn {
    /// Spawns the server and runs the handshake, all within the init timeout.
    fn start(
        name: &str,
        cfg: &McpServerConfig,
        opts: &ClientOptions,
        cancel: Option<&Cancel>,
    ) -> Result<(Conn, Vec<RemoteTool>), String> {
        let conn = Conn::spawn(name, cfg, opts).map_err(|e| format!("MCP server `{name}`: {e}"))?;
        match conn.handshake(opts.init_timeout, cancel) {
            Ok(tools) => Ok((conn, tools)),
            Err(e) => {
                {
                    let mut child = lock(&conn.child);
                    let _ = child.kill();
                    let _ = child.wait();
                }
                // Explained after the wait, so a server that exited shows its exit status.
                let e = match e {
                    HandshakeError::Request(step, e) => format!("`{step}`: {}", conn.explain(e)),
                    HandshakeError::Other(e) => e,
                };
                // Let the stderr thread catch up so its last lines can explain the failure.
                let _ = lock(&conn.stderr_done).recv_timeout(Duration::from_millis(500));
                let tail: Vec<String> = lock(&conn.stderr_tail).iter().cloned().collect();
                let mut msg = format!("MCP server `{name}` failed to start: {e}");
                if !tail.is_empty() {
                    msg.push_str(&format!(" — its last output: {}", cap_chars(&tail.join(" | "), 1000)));
                }
                Err(msg)
            }
        }
    }

    fn spawn(name: &str, cfg: &McpServerConfig, opts: &ClientOptions) -> Result<Conn, String> {
        let mut cmd = Command::new(&cfg.command);
        cmd.args(&cfg.args).env_clear();
        for key in INHERITED_ENV {
            if let Some(v) = std::env::var_os(key) {
                cmd.env(key, v);
            }
        }
        cmd.envs(&cfg.env).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("cannot run `{}`: {e}", cfg.command))?;
        let (stdin, stdout, stderr) = match (child.stdin.take(), child.stdout.take(), child.stderr.take()) {
            (Some(i), Some(o), Some(e)) => (i, o, e),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err("cannot open the server's pipes".into());
            }
        };
        let (wtx, wrx) = mpsc::channel::<Vec<u8>>();
        let shared = Arc::new(Shared {
            name: name.to_string(),
            state: Mutex::new(ConnState::default()),
            writer: Mutex::new(Some(wtx)),
            notifications: opts.notifications.clone(),
        });
        let (done_tx, done_rx) = mpsc::channel();
        let conn = Conn {
            shared: shared.clone(),
            child: Mutex::new(child),
            next_id: AtomicU64::new(1),
            stderr_tail: Arc::new(Mutex::new(VecDeque::new())),
            stderr_done: Mutex::new(done_rx),
        };
        // On an error below, dropping `conn` kills the child, which ends the threads started.
        let thread = |what: &str| std::thread::Builder::new().name(format!("mcp-{name}-{what}"));
        let sh = shared.clone();
        thread("in")
            .spawn(move || write_loop(stdin, wrx, &sh))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        let sh = shared.clone();
        thread("out")
            .spawn(move || read_loop(stdout, &sh))
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        let (tail, server) = (conn.stderr_tail.clone(), name.to_string());
        thread("err")
            .spawn(move || {
                drain_stderr(stderr, &server, &tail);
                let _ = done_tx.send(());
            })
            .map_err(|e| format!("cannot start a thread: {e}"))?;
        Ok(conn)
    }

    /// `initialize`, `notifications/initialized`, then every page of `tools/list`.
    fn handshake(
        &self,
        timeout: Duration,
        cancel: Option<&Cancel>,
    ) -> Result<Vec<RemoteTool>, HandshakeError> {
        let deadline = Instant::now() + timeout;
        let left = |what: &str| {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(format!("{what}: no answer within {:.0} s", timeout.as_secs_f64()))
            } else {
                Ok(left)
            }
        };
        let params = json!({
            "protocolVersion": PROTOCOL_VERSION,
            "capabilities": {},
            "clientInfo": {"name": "pincer", "version": env!("CARGO_PKG_VERSION")},
        });
        let init = self
            .request("initialize", params, left("initialize")?, cancel)
            .map_err(|e| HandshakeError::Request("initialize", e))?;
        if !init.is_object() {
            return Err("`initialize` answered with something other than an object".into());
        }
        let info = init.get("serverInfo").unwrap_or(&Value::Null);
        log::debug!(
            "MCP server `{}` is {} {} (protocol {})",
            self.shared.name,
            info.get("name").and_then(Value::as_str).unwrap_or("?"),
            info.get("version").and_then(Value::as_str).unwrap_or("?"),
            init.get("protocolVersion").and_then(Value::as_str).unwrap_or("?"),
        );
        self.shared
            .send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .map_err(|e| HandshakeError::Request("notifications/initialized", e))?;

        let mut tools = Vec::new();
        let mut cursor: Option<String> = None;
        for page in 1..=MAX_PAGES {
            let params = match &cursor {
                Some(c) => json!({"cursor": c}),
                None => json!({}),
            };
            let res = self
                .request("tools/list", params, left("tools/list")?, cancel)
                .map_err(|e| HandshakeError::Request("tools/list", e))?;
            let list = res.get("tools").and_then(Value::as_array).ok_or("`tools/list`: no `tools` array")?;
            for t in list {
                let Some(name) = t.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
                    log::warn!("MCP server `{}` listed a tool without a name", self.shared.name);
                    continue;
                };
                if tools.len() >= MAX_TOOLS_PER_SERVER {
                    log::warn!(
                        "MCP server `{}` has too many tools; using the first {MAX_TOOLS_PER_SERVER}",
                        self.shared.name
                    );
                    return Ok(tools);
                }
                tools.push(RemoteTool {
                    name: name.to_string(),
                    description: t.get("description").and_then(Value::as_str).unwrap_or("").to_string(),
                    input_schema: input_schema(t.get("inputSchema")),
                });
            }
            cursor =
                res.get("nextCursor").and_then(Value::as_str).filter(|c| !c.is_empty()).map(String::from);
            if cursor.is_none() {
                break;
            }
            if page == MAX_PAGES {
                log::warn!(
                    "MCP server `{}` lists more than {MAX_PAGES} pages of tools; using those",
                    self.shared.name
                );
            }
        }
        Ok(tools)
    }

    /// A request error as text, with the exit status if the process is gone.
    fn explain(&self, e: ReqError) -> String {
        match e {
            ReqError::Closed(_) => format!("the server stopped ({})", self.death()),
            e => e.to_string(),
        }
    }

    fn is_closed(&self) -> bool {
        lock(&self.shared.state).closed.is_some()
    }

    /// Why the connection is dead, with the exit status when known.
    fn death(&self) -> String {
        let reason = self.shared.closed_reason().unwrap_or_else(|| "it stopped".into());
        match lock(&self.child).try_wait() {
            Ok(Some(status)) => format!("{reason}; {status}"),
            _ => reason,
        }
    }

    /// Sends a request and waits for its answer, the timeout, or the user's cancel.
    fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
        cancel: Option<&Cancel>,
    ) -> Result<Value, ReqError> {
        if cancel.is_some_and(Cancel::is_cancelled) {
            return Err(ReqError::Cancelled);
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel();
        self.shared.register(id, tx.clone())?;
        let _guard = cancel.map(|c| {
            let tx = tx.clone();
            c.on_cancel(move || {
                let _ = tx.send(Event::Cancelled);
            })
        });
        drop(tx);
        let msg = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        if let Err(e) = self.shared.send(&msg) {
            self.shared.unregister(id);
            return Err(e);
        }
        let (err, reason) = match rx.recv_timeout(timeout) {
            Ok(Event::Reply(res)) => return res,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(ReqError::Closed(self.shared.closed_reason().unwrap_or_else(|| "gone".into())));
            }
            Ok(Event::Cancelled) => (ReqError::Cancelled, "The user stopped the request."),
            Err(RecvTimeoutError::Timeout) => (ReqError::Timeout(timeout), "The request timed out."),
        };
        self.shared.unregister(id);
        if method != "initialize" {
            let note = json!({
                "jsonrpc": "2.0",
                "method": "notifications/cancelled",
                "params": {"requestId": id, "reason": reason},
            });
            let _ = self.shared.send(&note);
        }
        Err(err)
    }
}

fn write_loop(mut stdin: ChildStdin, lines: mpsc::Receiver<Vec<u8>>, shared: &Shared) {
    for line in lines {
        if let Err(e) = stdin.write_all(&line).and_then(|()| stdin.flush()) {
            shared.close(format!("it stopped reading its input: {e}"));
            return;
        }
    }
}

fn read_loop(stdout: impl Read, shared: &Shared) {
    let mut reader = BufReader::with_capacity(64 * 1024, stdout);
    let reason = loop {
        match read_line_bounded(&mut reader, MAX_LINE) {
            Ok(Line::Eof) => break "it closed its output".to_string(),
            Err(e) => break format!("its output could not be read: {e}"),
            Ok(Line::TooLong) => {
                shared.fail_pending(ReqError::Broken(format!(
                    "MCP server `{}` sent a message longer than {} MiB; it was dropped",
                    shared.name,
                    MAX_LINE / (1024 * 1024)
                )));
                match skip_line(&mut reader) {
                    Ok(true) => continue,
                    Ok(false) => break "it closed its output".to_string(),
                    Err(e) => break format!("its output could not be read: {e}"),
                }
            }
            Ok(Line::Data(bytes)) => handle_line(&bytes, shared),
        }
    };
    shared.close(reason);
}

fn handle_line(bytes: &[u8], shared: &Shared) {
    let name = &shared.name;
    let text = String::from_utf8_lossy(bytes);
    let text = text.trim();
    if text.is_empty() {
        return;
    }
    if !text.starts_with('{') {
        // Not a message: servers that print logs to stdout are common.
        log::debug!("MCP server `{name}` printed a non-JSON line: {}", cap_chars(text, 200));
        return;
    }
    let msg: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            shared.fail_pending(ReqError::Broken(format!("MCP server `{name}` sent invalid JSON: {e}")));
            return;
        }
    };
    let id = msg.get("id").filter(|id| !id.is_null());
    match (msg.get("method").and_then(Value::as_str), id) {
        (Some(method), Some(id)) => {
            let answer = if method == "ping" {
                json!({"jsonrpc": "2.0", "id": id, "result": {}})
            } else {
                log::debug!(
                    "MCP server `{name}` asked for `{}`, which pincer does not offer",
                    cap_chars(method, 100)
                );
                json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32601, "message": "Method not found"}})
            };
            let _ = shared.send(&answer);
        }
        (Some(method), None) => {
            log::debug!("MCP server `{name}` notification `{}`", cap_chars(method, 100));
            if let Some(tx) = &shared.notifications {
                let _ = tx.send(msg.clone());
            }
        }
        (None, Some(id)) => {
            let Some(id) = id.as_u64() else {
                log::debug!("MCP server `{name}` answered an id pincer never used: {id}");
                return;
            };
            let res = match (msg.get("error"), msg.get("result")) {
                (Some(err), _) => Err(ReqError::Rpc(rpc_error(err))),
                (None, Some(result)) => Ok(result.clone()),
                (None, None) => {
                    Err(ReqError::Broken(format!("MCP server `{name}` sent an answer without a result")))
                }
            };
            shared.resolve(id, res);
        }
        (None, None) => match msg.get("error") {
            // An error without an id: the server could not read one of our requests.
            Some(err) => shared.fail_pending(ReqError::Rpc(rpc_error(err))),
            None => log::debug!("MCP server `{name}` sent a message that is neither request nor answer"),
        },
    }
}

fn rpc_error(err: &Value) -> String {
    let message = err.get("message").and_then(Value::as_str).unwrap_or("unknown error");
    let mut text = match err.get("code").and_then(Value::as_i64) {
        Some(code) => format!("{message} (code {code})"),
        None => message.to_string(),
    };
    match err.get("data") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) => text.push_str(&format!(": {s}")),
        Some(other) => text.push_str(&format!(": {other}")),
    }
    cap_chars(&text, 4000)
}

fn drain_stderr(stderr: impl Read, name: &str, tail: &Mutex<VecDeque<String>>) {
    let mut reader = BufReader::new(stderr);
    loop {
        let line = match read_line_bounded(&mut reader, STDERR_LINE) {
            Ok(Line::Data(bytes)) => String::from_utf8_lossy(&bytes).trim_end().to_string(),
            Ok(Line::TooLong) => match skip_line(&mut reader) {
                Ok(true) => "[a very long line]".to_string(),
                _ => return,
            },
            Ok(Line::Eof) | Err(_) => return,
        };
        if line.is_empty() {
            continue;
        }
        log::debug!("MCP server `{name}` stderr: {line}");
        let mut tail = lock(tail);
        if tail.len() == STDERR_TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line);
    }
}

#[derive(Debug, PartialEq)]
enum Line {
    Data(Vec<u8>),
    /// Longer than the limit: the rest of it is still unread (see [`skip_line`]).
    TooLong,
    Eof,
}

/// Reads one `\n`-terminated line (without the `\n`) of at most `max` bytes. A last line without
/// `\n` counts as a line.
fn read_line_bounded(r: &mut impl BufRead, max: usize) -> io::Result<Line> {
    let mut buf = Vec::new();
    loop {
        let avail = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(if buf.is_empty() { Line::Eof } else { Line::Data(buf) });
        }
        let (chunk, used, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (&avail[..i], i + 1, true),
            None => (avail, avail.len(), false),
        };
        if buf.len() + chunk.len() > max {
            return Ok(Line::TooLong);
        }
        buf.extend_from_slice(chunk);
        r.consume(used);
        if done {
            return Ok(Line::Data(buf));
        }
    }
}

/// Discards up to and including the next `\n`; false if the input ended first.
fn skip_line(r: &mut impl BufRead) -> io::Result<bool> {
    loop {
        let avail = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if avail.is_empty() {
            return Ok(false);
        }
        match avail.iter().position(|&b| b == b'\n') {
            Some(i) => {
                r.consume(i + 1);
                return Ok(true);
            }
            None => {
                let n = avail.len();
                r.consume(n);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake(args: &[&str]) -> McpServerConfig {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fake_mcp_server.py");
        let mut all = vec![script.to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        McpServerConfig { command: "python3".into(), args: all, env: BTreeMap::new() }
    }

    fn opts() -> ClientOptions {
        ClientOptions {
            init_timeout: Duration::from_secs(10),
            call_timeout: Duration::from_secs(10),
            notifications: None,
        }
    }

    fn start(servers: Vec<(&str, McpServerConfig)>, opts: &ClientOptions) -> (Vec<McpTool>, Vec<String>) {
        let configs = servers.into_iter().map(|(n, c)| (n.to_string(), c)).collect();
        start_servers(&configs, opts)
    }

    fn find<'a>(tools: &'a [McpTool], name: &str) -> &'a McpTool {
        tools.iter().find(|t| t.spec().name == name).unwrap_or_else(|| panic!("no {name}"))
    }

    fn call_with(tool: &McpTool, input: Value, cancel: &Cancel) -> ToolOutput {
        tool.call(&input, cancel)
    }

    fn call(tool: &McpTool, input: Value) -> ToolOutput {
        call_with(tool, input, &Cancel::default())
    }

    fn log_entries(path: &std::path::Path) -> Vec<Value> {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    fn count_method(entries: &[Value], method: &str) -> usize {
        entries.iter().filter(|e| e["method"] == method).count()
    }

    #[test]
    fn config_is_parsed_and_validated() {
        let cfg =
            parse_config(r#"{"github": {"command": "github-mcp", "args": ["--x"], "env": {"K": "V"}}}"#)
                .unwrap();
        assert_eq!(cfg["github"].command, "github-mcp");
        assert_eq!(cfg["github"].args, vec!["--x"]);
        assert_eq!(cfg["github"].env["K"], "V");
        let minimal = parse_config(r#"{"a_b-1": {"command": "x"}}"#).unwrap();
        assert!(minimal["a_b-1"].args.is_empty() && minimal["a_b-1"].env.is_empty());
        assert!(parse_config("  ").unwrap().is_empty());
        assert!(parse_config("{}").unwrap().is_empty());

        let err = |json: &str| parse_config(json).unwrap_err();
        assert!(err("[1]").contains("invalid MCP server configuration"));
        assert!(err(r#"{"a": {"args": []}}"#).contains("command"));
        assert!(err(r#"{"a": {"command": "x", "cwd": "/"}}"#).contains("unknown field"));
        assert!(err(r#"{"a": {"command": "  "}}"#).contains("empty command"));
        assert!(err(r#"{"bad name": {"command": "x"}}"#).contains("invalid MCP server name"));
        assert!(err(r#"{"a.b": {"command": "x"}}"#).contains("invalid MCP server name"));
        assert!(err(r#"{"": {"command": "x"}}"#).contains("invalid MCP server name"));
        let long = format!(r#"{{"{}": {{"command": "x"}}}}"#, "a".repeat(33));
        assert!(err(&long).contains("invalid MCP server name"));
        let ok32 = format!(r#"{{"{}": {{"command": "x"}}}}"#, "a".repeat(32));
        assert!(parse_config(&ok32).is_ok());
        let many: Vec<String> = (0..17).map(|i| format!(r#""s{i}": {{"command": "x"}}"#)).collect();
        assert!(err(&format!("{{{}}}", many.join(","))).contains("too many"));
        let sixteen: Vec<String> = (0..16).map(|i| format!(r#""s{i}": {{"command": "x"}}"#)).collect();
        assert_eq!(parse_config(&format!("{{{}}}", sixteen.join(","))).unwrap().len(), 16);
        assert!(err(r#"{"a": {"command": "x", "env": {"A=B": "v"}}}"#).contains("environment"));
        assert!(err(r#"{"a": {"command": "x", "args": ["a\u0000b"]}}"#).contains("NUL"));
    }

    #[test]
    fn names_schemas_and_content_are_translated() {
        assert_eq!(tool_name("gh", "create_issue"), "mcp__gh__create_issue");
        assert_eq!(tool_name("gh", "a.b/c d"), "mcp__gh__a_b_c_d");
        assert_eq!(tool_name("gh", "é"), "mcp__gh___");
        let long = tool_name("server", &"x".repeat(100));
        assert_eq!(long.len(), 64);
        let mut used = BTreeSet::new();
        assert_eq!(unique_name(&long, &mut used), long);
        let second = unique_name(&long, &mut used);
        assert!(second.ends_with("_2") && second.len() == 64, "{second}");
        assert_eq!(unique_name("a", &mut used), "a");
        assert_eq!(unique_name("a", &mut used), "a_2");
        assert_eq!(unique_name("a", &mut used), "a_3");

        assert_eq!(input_schema(None), json!({"type": "object"}));
        assert_eq!(input_schema(Some(&json!("x"))), json!({"type": "object"}));
        assert_eq!(input_schema(Some(&json!({"type": "string"}))), json!({"type": "object"}));
        assert_eq!(
            input_schema(Some(&json!({"properties": {}}))),
            json!({"type": "object", "properties": {}})
        );
        let huge = json!({"type": "object", "description": "x".repeat(MAX_SCHEMA)});
        assert_eq!(input_schema(Some(&huge)), json!({"type": "object"}));

        assert_eq!(base64_len(""), 0);
        assert_eq!(base64_len("YQ=="), 1);
        assert_eq!(base64_len("YWI="), 2);
        assert_eq!(base64_len("YWJj"), 3);
        assert_eq!(base64_len("YWJjZA"), 4);

        let out = render_result(&json!({"content": [], "structuredContent": {"n": 1}}));
        assert_eq!(out, ToolOutput::ok(r#"{"n":1}"#));
        assert_eq!(render_result(&json!({})), ToolOutput::ok("(no output)"));
        let big = render_result(&json!({"content": [{"type": "text", "text": "y".repeat(300_000)}]}));
        assert!(big.content.len() < 101_000 && big.content.contains("left out"));
        assert_eq!(render_item(&json!({"type": "video"})), "[video content]");
        assert!(describe("gh", "Does things.").starts_with("[MCP server `gh`] Does things."));
    }

    #[test]
    fn lines_are_bounded() {
        let mut r = BufReader::with_capacity(4, &b"ab\n\ntoolong\nok\nlast"[..]);
        assert_eq!(read_line_bounded(&mut r, 5).unwrap(), Line::Data(b"ab".to_vec()));
        assert_eq!(read_line_bounded(&mut r, 5).unwrap(), Line::Data(Vec::new()));
        assert_eq!(read_line_bounded(&mut r, 5).unwrap(), Line::TooLong);
        assert!(skip_line(&mut r).unwrap());
        assert_eq!(read_line_bounded(&mut r, 5).unwrap(), Line::Data(b"ok".to_vec()));
        assert_eq!(read_line_bounded(&mut r, 5).unwrap(), Line::Data(b"last".to_vec()));
        assert_eq!(read_line_bounded(&mut r, 5).unwrap(), Line::Eof);
    }

    #[test]
    fn tools_are_discovered_across_pages_and_called() {
        let (tools, errors) = start(vec![("fake", fake(&[]))], &opts());
        assert!(errors.is_empty(), "{errors:?}");
        let names: Vec<String> = tools.iter().map(|t| t.spec().name).collect();
        assert_eq!(names.len(), 10, "{names:?}");
        for expected in
            ["mcp__fake__echo", "mcp__fake__env", "mcp__fake__ask_client", "mcp__fake__weird_name_tool"]
        {
            assert!(names.iter().any(|n| n == expected), "{expected} missing from {names:?}");
        }
        let echo = find(&tools, "mcp__fake__echo");
        let spec = echo.spec();
        assert_eq!(spec.description, "[MCP server `fake`] Returns the text.");
        assert_eq!(spec.input_schema["properties"]["text"]["type"], "string");
        assert_eq!(echo.summary(&json!({"text": "x"})), "fake.echo");
        assert_eq!(echo.declared_timeout_ms(&json!({})), Some(20_000));
        assert_eq!(find(&tools, "mcp__fake__weird_name_tool").spec().input_schema, json!({"type": "object"}));

        assert_eq!(call(echo, json!({"text": "hello"})), ToolOutput::ok("hello"));
        assert_eq!(call(find(&tools, "mcp__fake__add"), json!({"a": 2, "b": 40})), ToolOutput::ok("42"));
        assert_eq!(
            call(find(&tools, "mcp__fake__fail"), json!({})),
            ToolOutput::error("it failed on purpose")
        );
        assert_eq!(
            call(find(&tools, "mcp__fake__image"), Value::Null),
            ToolOutput::ok("a picture:\n[image: image/png, 1234 bytes]")
        );
        assert_eq!(
            call(find(&tools, "mcp__fake__mixed"), json!({})).content,
            "[audio: audio/wav, 10 bytes]\n[resource: file:///notes.txt]\ninside the resource\n\
             [resource: file:///other.txt]"
        );
        let bad_args = call(echo, json!([1]));
        assert!(bad_args.is_error && bad_args.content.contains("JSON object"));

        // The server's own requests: ping is answered, anything else refused.
        let asked = call(find(&tools, "mcp__fake__ask_client"), json!({}));
        assert_eq!(asked, ToolOutput::ok("ping: {}; roots/list error: -32601"));
    }

    #[test]
    fn env_is_configured_and_minimal() {
        let mut cfg = fake(&[]);
        cfg.env.insert("MCP_TEST_VALUE".into(), "from config".into());
        let (tools, errors) = start(vec![("envy", cfg)], &opts());
        assert!(errors.is_empty(), "{errors:?}");
        let env = find(&tools, "mcp__envy__env");
        assert_eq!(call(env, json!({"name": "MCP_TEST_VALUE"})), ToolOutput::ok("from config"));
        // The runner's other variables (under cargo: CARGO_PKG_NAME...) are not passed on.
        // (Skipping what a shell or a pyenv shim in front of python3 sets again.)
        let shell_set = |k: &str| k.starts_with("PYENV") || ["PWD", "OLDPWD", "SHLVL", "_"].contains(&k);
        let private = std::env::vars()
            .map(|(k, _)| k)
            .find(|k| !INHERITED_ENV.contains(&k.as_str()) && !shell_set(k) && !k.starts_with("MCP_TEST"));
        if let Some(key) = private {
            assert_eq!(call(env, json!({"name": key})), ToolOutput::ok("(unset)"), "{key}");
        }
        assert_ne!(call(env, json!({"name": "PATH"})), ToolOutput::ok("(unset)"));
    }

    #[test]
    fn garbage_lines_are_skipped_and_invalid_json_fails_the_call() {
        let (tools, errors) = start(vec![("noisy", fake(&["--garbage"]))], &opts());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(tools.len(), 10);
        let echo = find(&tools, "mcp__noisy__echo");
        assert_eq!(call(echo, json!({"text": "still fine"})), ToolOutput::ok("still fine"));
        let broken = call(find(&tools, "mcp__noisy__broken"), json!({}));
        assert!(broken.is_error && broken.content.contains("invalid JSON"), "{broken:?}");
        assert_eq!(call(echo, json!({"text": "after"})), ToolOutput::ok("after"));
    }

    #[test]
    fn unknown_tool_is_the_servers_error() {
        let (server, remote) = McpServer::start("fake", fake(&[]), opts()).unwrap();
        assert_eq!(remote.len(), 10);
        let out = server.call_tool("ghost", json!({}), &Cancel::default());
        assert!(out.is_error && out.content.contains("rejected the call"), "{out:?}");
        assert!(out.content.contains("unknown tool: ghost (code -32602)"), "{out:?}");
    }

    #[test]
    fn a_server_that_never_initializes_is_skipped_within_the_timeout() {
        let quick = ClientOptions { init_timeout: Duration::from_secs(2), ..opts() };
        let cmd = |command: &str, args: &[&str]| McpServerConfig {
            command: command.into(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: BTreeMap::new(),
        };
        let exits = "import sys; sys.stderr.write('no token configured\\n'); sys.exit(2)";
        let configs = BTreeMap::from([
            ("good".to_string(), fake(&[])),
            ("stuck".to_string(), fake(&["--no-init"])),
            ("missing".to_string(), cmd("/nonexistent/mcp-server", &[])),
            ("exits".to_string(), cmd("python3", &["-c", exits])),
        ]);
        let started = Instant::now();
        let (tools, errors) = start_all_with(&configs, &quick);
        assert!(started.elapsed() < Duration::from_secs(6), "{:?}", started.elapsed());
        assert_eq!(tools.len(), 10);
        assert!(tools.iter().all(|t| t.spec().name.starts_with("mcp__good__")));
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(errors[0].contains("`exits` failed to start"), "{errors:?}");
        assert!(
            errors[0].contains("exit status: 2") && errors[0].contains("no token configured"),
            "{errors:?}"
        );
        assert!(errors[1].contains("`missing`") && errors[1].contains("cannot run"), "{errors:?}");
        assert!(
            errors[2].contains("`stuck` failed to start") && errors[2].contains("initialize"),
            "{errors:?}"
        );
    }

    #[test]
    fn a_crashed_server_is_restarted_once() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let (tools, errors) =
            start(vec![("crashy", fake(&["--crash-after-init", "--log", log.to_str().unwrap()]))], &opts());
        assert!(errors.is_empty(), "{errors:?}");
        let echo = find(&tools, "mcp__crashy__echo");
        let first = call(echo, json!({"text": "a"}));
        assert!(first.is_error && first.content.contains("stopped during the call"), "{first:?}");
        assert!(first.content.contains("restarted on the next call"), "{first:?}");
        assert_eq!(count_method(&log_entries(&log), "initialize"), 1);
        // The restart works, then the server crashes again: no more restarts.
        let second = call(echo, json!({"text": "b"}));
        assert!(second.is_error && second.content.contains("will not be restarted again"), "{second:?}");
        assert_eq!(count_method(&log_entries(&log), "initialize"), 2);
        let third = call(echo, json!({"text": "c"}));
        assert!(third.is_error && third.content.contains("not available"), "{third:?}");
        assert!(third.content.contains("already restarted once"), "{third:?}");
        assert_eq!(count_method(&log_entries(&log), "initialize"), 2);
    }

    #[test]
    fn a_restarted_server_serves_the_next_call() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("crashed");
        let (tools, errors) =
            start(vec![("once", fake(&["--crash-once", marker.to_str().unwrap()]))], &opts());
        assert!(errors.is_empty(), "{errors:?}");
        let echo = find(&tools, "mcp__once__echo");
        assert!(call(echo, json!({"text": "a"})).is_error);
        assert_eq!(call(echo, json!({"text": "b"})), ToolOutput::ok("b"));
        assert_eq!(call(echo, json!({"text": "c"})), ToolOutput::ok("c"));
    }

    #[test]
    fn cancel_stops_a_slow_call_and_tells_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let (ntx, nrx) = mpsc::channel();
        let opts = ClientOptions { notifications: Some(ntx), ..opts() };
        let (tools, errors) = start(vec![("fake", fake(&["--log", log.to_str().unwrap()]))], &opts);
        assert!(errors.is_empty(), "{errors:?}");
        let tools = Arc::new(tools);
        let cancel = Cancel::default();
        let (rtx, rrx) = mpsc::channel();
        let (t2, c2) = (tools.clone(), cancel.clone());
        let worker = std::thread::spawn(move || {
            let out = call_with(find(&t2, "mcp__fake__slow"), json!({"seconds": 60}), &c2);
            let _ = rtx.send(out);
        });
        // The server tells us when the slow call has begun.
        let note = nrx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(note["method"], "notifications/message");
        let cancelled_at = Instant::now();
        cancel.cancel();
        let out = rrx.recv_timeout(Duration::from_secs(5)).unwrap();
        assert!(cancelled_at.elapsed() < Duration::from_secs(2), "{:?}", cancelled_at.elapsed());
        assert_eq!(out, ToolOutput::error("stopped by the user"));
        worker.join().unwrap();

        // The server reads its input in order: once this answer is back, it has seen the cancel.
        assert_eq!(call(find(&tools, "mcp__fake__echo"), json!({"text": "next"})), ToolOutput::ok("next"));
        let entries = log_entries(&log);
        let slow = entries.iter().find(|e| e["params"]["name"] == "slow").unwrap();
        let note = entries.iter().find(|e| e["method"] == "notifications/cancelled").unwrap();
        assert_eq!(note["params"]["requestId"], slow["id"]);
        assert_eq!(note["params"]["reason"], "The user stopped the request.");

        // Already cancelled: nothing is sent.
        let out = call_with(find(&tools, "mcp__fake__echo"), json!({"text": "x"}), &cancel);
        assert_eq!(out, ToolOutput::error("stopped by the user"));
    }

    #[test]
    fn a_call_times_out() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let quick = ClientOptions { call_timeout: Duration::from_secs(1), ..opts() };
        let (tools, _) = start(vec![("fake", fake(&["--log", log.to_str().unwrap()]))], &quick);
        let started = Instant::now();
        let out = call(find(&tools, "mcp__fake__slow"), json!({"seconds": 60}));
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(out.is_error && out.content.contains("did not answer `slow` within 1 s"), "{out:?}");
        assert_eq!(call(find(&tools, "mcp__fake__echo"), json!({"text": "ok"})), ToolOutput::ok("ok"));
        let entries = log_entries(&log);
        let note = entries.iter().find(|e| e["method"] == "notifications/cancelled").unwrap();
        assert_eq!(note["params"]["reason"], "The request timed out.");
    }

    #[test]
    fn an_oversized_line_fails_the_call() {
        let (tools, errors) = start(vec![("big", fake(&["--big"]))], &opts());
        assert!(errors.is_empty(), "{errors:?}");
        let out = call(find(&tools, "mcp__big__echo"), json!({"text": "x"}));
        assert!(out.is_error && out.content.contains("longer than 8 MiB"), "{out:?}");
        // The connection survives the dropped line.
        let again = call(find(&tools, "mcp__big__echo"), json!({"text": "x"}));
        assert!(again.content.contains("longer than 8 MiB"), "{again:?}");
    }

    #[test]
    fn dropping_the_tools_kills_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let (tools, errors) = start(vec![("fake", fake(&["--log", log.to_str().unwrap()]))], &opts());
        assert!(errors.is_empty(), "{errors:?}");
        let pid = log_entries(&log)[0]["start"].as_u64().unwrap();
        let proc_dir = std::path::PathBuf::from(format!("/proc/{pid}"));
        assert!(proc_dir.exists());
        drop(tools);
        assert!(!proc_dir.exists(), "server {pid} still running");
    }
}
