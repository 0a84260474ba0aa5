//! Test support: [`FakeModel`], a scripted model server speaking both providers' wire formats.
//!
//! It listens on a TCP port on 127.0.0.1 (an upstream the host's credential proxy forwards to)
//! and, optionally, on a Unix socket path (standing in for the proxy itself in provider unit tests,
//! where the agent's [`ProxyHttp`] connects). Both answer the same way: every request, whatever its
//! path (`/anthropic/v1/messages` and `/openai/chat/completions` from the agent side, `/v1/messages`
//! and `/chat/completions` or `/v1/chat/completions` from the proxy), is recorded and answered with
//! the next scripted [`Reply`] the test queued with [`FakeModel::reply`], in order. With nothing
//! queued the answer is a 500 whose JSON body says so (in a shape both providers decode).
//!
//! A reply is a status, headers and body parts written in order with a flush after each; the body
//! runs until the connection closes (`Connection: close`, no chunked encoding), which is how a real
//! server's event stream looks to the agent after the proxy. A [`Part::Hold`] blocks the reply until
//! the test opens its [`Gate`] or the client disconnects: that is how tests stop or cancel in the
//! middle of a stream and how the benchmark measures first-token latency. The server notices a
//! client that goes away at any point and counts it ([`FakeModel::disconnects`],
//! [`FakeModel::wait_disconnect`]). Nothing here sleeps: holds wait on channels.
//!
//! The wire-format builders in [`anthropic`] and [`openai`] produce the streams as the providers
//! publish them: Anthropic's Messages API streaming events (`event:` + `data:` lines, `ping`
//! after the first block start, the documented field order and spacing) and OpenAI's Chat
//! Completions `chat.completion.chunk` objects on `data:` lines ending with `data: [DONE]`. Tests
//! needing a variation build it from the event functions or write raw bytes.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::Value;

use crate::agent::provider::http::ProxyHttp;

/// Largest request the fake accepts (head plus body).
const REQUEST_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Largest request head the fake accepts.
const HEAD_BYTES_MAX: usize = 64 * 1024;

/// A piece of a reply body.
#[derive(Clone)]
pub enum Part {
    /// Bytes written (and flushed) as one piece.
    Bytes(Vec<u8>),
    /// Wait here until the gate opens or the client disconnects.
    Hold(Gate),
}

/// A scripted answer.
#[derive(Clone)]
pub struct Reply {
    pub status: u16,
    /// Sent as given; `connection: close` is added.
    pub headers: Vec<(String, String)>,
    pub parts: Vec<Part>,
}

impl Reply {
    /// A reply with one body part.
    pub fn new(status: u16, headers: &[(&str, &str)], body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status,
            headers: headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            parts: vec![Part::Bytes(body.into())],
        }
    }

    /// A JSON reply (with `content-type` and `content-length`, as real servers send errors).
    pub fn json(status: u16, body: &str) -> Reply {
        Reply::new(
            status,
            &[("content-type", "application/json"), ("content-length", &body.len().to_string())],
            body,
        )
    }

    /// A 200 event stream, one part (one write and flush) per event.
    pub fn sse(events: Vec<String>) -> Reply {
        Reply {
            status: 200,
            headers: vec![
                ("content-type".into(), "text/event-stream; charset=utf-8".into()),
                ("cache-control".into(), "no-cache".into()),
            ],
            parts: events.into_iter().map(|e| Part::Bytes(e.into_bytes())).collect(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// Holds before part `index` (so `index` parts are sent first) until `gate` opens.
    pub fn hold_at(mut self, index: usize, gate: &Gate) -> Reply {
        self.parts.insert(index.min(self.parts.len()), Part::Hold(gate.clone()));
        self
    }

    /// Keeps only the first `n` parts: the stream then just ends (connection closed).
    pub fn truncated(mut self, n: usize) -> Reply {
        self.parts.truncate(n);
        self
    }

    /// Appends raw bytes as one more part.
    pub fn then(mut self, bytes: impl Into<Vec<u8>>) -> Reply {
        self.parts.push(Part::Bytes(bytes.into()));
        self
    }
}

/// Releases [`Part::Hold`]s: every hold on it waits until [`Gate::open`] (and a hold reached after
/// that passes at once).
#[derive(Clone, Default)]
pub struct Gate {
    inner: Arc<Mutex<GateState>>,
}

#[derive(Default)]
struct GateState {
    open: bool,
    waiters: Vec<Sender<Wake>>,
}

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    pub fn open(&self) {
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        st.open = true;
        for w in st.waiters.drain(..) {
            let _ = w.send(Wake::Released);
        }
    }

    /// Registers `tx` to be woken; false if already open.
    fn wait_with(&self, tx: &Sender<Wake>) -> bool {
        let mut st = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if st.open {
            return false;
        }
        st.waiters.push(tx.clone());
        true
    }
}

/// What ends a hold.
enum Wake {
    Released,
    Disconnected,
    Shutdown,
}

/// One request as the fake received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Names lowercased, in order.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON (`Null` when it is not JSON).
    pub body: Value,
    pub raw_body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }
}

struct Shared {
    replies: Mutex<VecDeque<Reply>>,
    requests: Mutex<Sender<Recorded>>,
    disconnects: AtomicUsize,
    disconnect_tx: Mutex<Sender<()>>,
    holding_tx: Mutex<Sender<()>>,
    /// Active connections, woken on shutdown.
    conns: Mutex<HashMap<u64, Sender<Wake>>>,
    next_conn: AtomicU64,
    stopping: AtomicBool,
}

/// A scripted model server; see the module docs.
pub struct FakeModel {
    addr: SocketAddr,
    socket: Option<PathBuf>,
    shared: Arc<Shared>,
    requests: Mutex<Receiver<Recorded>>,
    disconnect_rx: Mutex<Receiver<()>>,
    holding_rx: Mutex<Receiver<()>>,
    accept_threads: Vec<JoinHandle<()>>,
}

impl FakeModel {
    /// Listens on a free TCP port on 127.0.0.1.
    pub fn start() -> FakeModel {
        FakeModel::launch(None)
    }

    /// Listens on a free TCP port and on the Unix socket `path` (replaced if it exists).
    pub fn start_with_socket(path: impl Into<PathBuf>) -> FakeModel {
        FakeModel::launch(Some(path.into()))
    }

    fn launch(socket: Option<PathBuf>) -> FakeModel {
        let (req_tx, req_rx) = channel();
        let (disc_tx, disc_rx) = channel();
        let (hold_tx, hold_rx) = channel();
        let shared = Arc::new(Shared {
            replies: Mutex::new(VecDeque::new()),
            requests: Mutex::new(req_tx),
            disconnects: AtomicUsize::new(0),
            disconnect_tx: Mutex::new(disc_tx),
            holding_tx: Mutex::new(hold_tx),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        });
        let tcp = TcpListener::bind("127.0.0.1:0").expect("fake model: binding 127.0.0.1:0");
        let addr = tcp.local_addr().expect("fake model: local address");
        let mut accept_threads = Vec::new();
        let sh = shared.clone();
        accept_threads.push(std::thread::spawn(move || {
            for conn in tcp.incoming() {
                if sh.stopping.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(conn) = conn {
                    let _ = conn.set_nodelay(true);
                    let sh = sh.clone();
                    std::thread::spawn(move || serve(conn, &sh));
                }
            }
        }));
        if let Some(path) = &socket {
            let _ = std::fs::remove_file(path);
            let unix = UnixListener::bind(path)
                .unwrap_or_else(|e| panic!("fake model: binding {}: {e}", path.display()));
            let sh = shared.clone();
            accept_threads.push(std::thread::spawn(move || {
                for conn in unix.incoming() {
                    if sh.stopping.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(conn) = conn {
                        let sh = sh.clone();
                        std::thread::spawn(move || serve(conn, &sh));
                    }
                }
            }));
        }
        FakeModel {
            addr,
            socket,
            shared,
            requests: Mutex::new(req_rx),
            disconnect_rx: Mutex::new(disc_rx),
            holding_rx: Mutex::new(hold_rx),
            accept_threads,
        }
    }

    /// The TCP address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The Unix socket, if it listens on one.
    pub fn socket(&self) -> Option<&Path> {
        self.socket.as_deref()
    }

    /// A client for the Unix socket, as the agent's providers use the proxy.
    ///
    /// # Panics
    /// When started without a socket.
    pub fn http(&self) -> ProxyHttp {
        ProxyHttp::new(self.socket.clone().expect("FakeModel started without a Unix socket"))
    }

    /// Queues the answer to a later request (answers go out in queue order).
    pub fn reply(&self, reply: Reply) {
        self.shared.replies.lock().unwrap_or_else(|e| e.into_inner()).push_back(reply);
    }

    /// Replies queued and not yet used.
    pub fn pending_replies(&self) -> usize {
        self.shared.replies.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Drops the replies queued and not yet used; returns how many there were.
    pub fn clear_replies(&self) -> usize {
        let mut q = self.shared.replies.lock().unwrap_or_else(|e| e.into_inner());
        std::mem::take(&mut *q).len()
    }

    /// The next request received, in arrival order.
    pub fn next_request(&self, timeout: Duration) -> Option<Recorded> {
        self.requests.lock().unwrap_or_else(|e| e.into_inner()).recv_timeout(timeout).ok()
    }

    /// How many clients went away before their reply was complete.
    pub fn disconnects(&self) -> usize {
        self.shared.disconnects.load(Ordering::SeqCst)
    }

    /// Waits for the next client that goes away before its reply is complete.
    pub fn wait_disconnect(&self, timeout: Duration) -> bool {
        self.disconnect_rx.lock().unwrap_or_else(|e| e.into_inner()).recv_timeout(timeout).is_ok()
    }

    /// Waits until a reply reaches its next [`Part::Hold`] (everything before it flushed).
    pub fn wait_holding(&self, timeout: Duration) -> bool {
        self.holding_rx.lock().unwrap_or_else(|e| e.into_inner()).recv_timeout(timeout).is_ok()
    }
}

impl Drop for FakeModel {
    fn drop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        for (_, tx) in self.shared.conns.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            let _ = tx.send(Wake::Shutdown);
        }
        // Wake the accept loops so they see the flag. A socket file already removed (its
        // directory deleted first) cannot be reached: that loop is left blocked, not joined.
        let mut woken = TcpStream::connect(self.addr).is_ok();
        if let Some(path) = &self.socket {
            woken &= UnixStream::connect(path).is_ok();
        }
        if woken {
            for t in self.accept_threads.drain(..) {
                let _ = t.join();
            }
        }
        if let Some(path) = &self.socket {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// The two kinds of connection the fake serves.
trait Conn: Read + Write + Send + Sized + 'static {
    fn duplicate(&self) -> std::io::Result<Self>;
    fn close(&self);
}

impl Conn for TcpStream {
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn close(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

impl Conn for UnixStream {
    fn duplicate(&self) -> std::io::Result<Self> {
        self.try_clone()
    }
    fn close(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

/// One connection: read one request, record it, answer with the next reply, close.
fn serve<C: Conn>(conn: C, sh: &Arc<Shared>) {
    if sh.stopping.load(Ordering::SeqCst) {
        return;
    }
    let Ok(reader) = conn.duplicate() else { return };
    let mut reader = BufReader::new(reader);
    let mut conn = conn;
    let Ok(req) = read_request(&mut reader, &mut conn) else { return };
    let what = format!("{} {}", req.method, req.path);
    let _ = sh.requests.lock().unwrap_or_else(|e| e.into_inner()).send(req);
    let reply = sh.replies.lock().unwrap_or_else(|e| e.into_inner()).pop_front().unwrap_or_else(|| {
        let msg = serde_json::to_string(&format!("fake model: no reply queued for {what}")).expect("string");
        Reply::json(500, &format!(r#"{{"type":"error","error":{{"type":"api_error","message":{msg}}}}}"#))
    });

    let id = sh.next_conn.fetch_add(1, Ordering::SeqCst);
    let (wake_tx, wake_rx) = channel();
    sh.conns.lock().unwrap_or_else(|e| e.into_inner()).insert(id, wake_tx.clone());
    // Watch for the client going away: it sends nothing after its request, so a read that ends
    // means it left (or the server closed the socket itself after the reply, when nobody waits).
    {
        let wake_tx = wake_tx.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while matches!(reader.read(&mut buf), Ok(n) if n > 0) {}
            let _ = wake_tx.send(Wake::Disconnected);
        });
    }

    if !write_reply(&mut conn, reply, &wake_tx, &wake_rx, sh) && !sh.stopping.load(Ordering::SeqCst) {
        sh.disconnects.fetch_add(1, Ordering::SeqCst);
        let _ = sh.disconnect_tx.lock().unwrap_or_else(|e| e.into_inner()).send(());
    }
    conn.close();
    sh.conns.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
}

/// Writes the reply; false if the client went away (or the fake shut down) before the end.
fn write_reply(
    conn: &mut impl Write,
    reply: Reply,
    wake_tx: &Sender<Wake>,
    wake_rx: &Receiver<Wake>,
    sh: &Shared,
) -> bool {
    let mut head = format!("HTTP/1.1 {} {}\r\n", reply.status, crate::http1::reason(reply.status));
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !reply.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("connection")) {
        head.push_str("connection: close\r\n");
    }
    head.push_str("\r\n");
    if conn.write_all(head.as_bytes()).and_then(|()| conn.flush()).is_err() {
        return false;
    }
    for part in reply.parts {
        match part {
            Part::Bytes(b) => {
                if conn.write_all(&b).and_then(|()| conn.flush()).is_err() {
                    return false;
                }
            }
            Part::Hold(gate) => {
                if !gate.wait_with(wake_tx) {
                    continue;
                }
                let _ = sh.holding_tx.lock().unwrap_or_else(|e| e.into_inner()).send(());
                match wake_rx.recv() {
                    Ok(Wake::Released) => {}
                    Ok(Wake::Disconnected | Wake::Shutdown) | Err(_) => return false,
                }
            }
        }
    }
    true
}

/// Reads one request (answering `Expect: 100-continue` on `w`).
fn read_request(r: &mut impl BufRead, w: &mut impl Write) -> std::io::Result<Recorded> {
    use crate::http1::{self, Framing};
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let head = http1::read_head(r, HEAD_BYTES_MAX).map_err(|e| bad(e.to_string()))?;
    let line = http1::parse_request_line(&head.start).map_err(|e| bad(e.to_string()))?;
    if head.field("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let mut body = Vec::new();
    match http1::request_framing(&head).map_err(|e| bad(e.to_string()))? {
        Framing::None => {}
        Framing::Length(n) if n > REQUEST_BYTES_MAX as u64 => return Err(bad("request too large".into())),
        Framing::Length(n) => {
            body.resize(n as usize, 0);
            r.read_exact(&mut body)?;
        }
        Framing::Chunked => {
            http1::Chunked::new(r).take(REQUEST_BYTES_MAX as u64 + 1).read_to_end(&mut body)?;
            if body.len() > REQUEST_BYTES_MAX {
                return Err(bad("request too large".into()));
            }
        }
    }
    let raw_body = String::from_utf8_lossy(&body).into_owned();
    let body = serde_json::from_str(&raw_body).unwrap_or(Value::Null);
    Ok(Recorded { method: line.method, path: line.target, headers: head.fields, body, raw_body })
}

/// A JSON string literal.
fn q(s: &str) -> String {
    serde_json::to_string(s).expect("strings serialise")
}

/// Anthropic Messages API streams, as in Anthropic's streaming documentation: every event is
/// `event: <type>\ndata: <json>\n\n`, the JSON written with `", "` and `": "` separators.
pub mod anthropic {
    use super::{Reply, q};

    pub const MODEL: &str = "claude-sonnet-4-5-20250929";
    pub const MESSAGE_ID: &str = "msg_01XFDUDYJgAACzvnptvVoYEL";
    pub const INPUT_TOKENS: u64 = 25;

    pub fn event(name: &str, data: &str) -> String {
        format!("event: {name}\ndata: {data}\n\n")
    }

    pub fn message_start(input_tokens: u64) -> String {
        event(
            "message_start",
            &format!(
                r#"{{"type": "message_start", "message": {{"id": {}, "type": "message", "role": "assistant", "content": [], "model": {}, "stop_reason": null, "stop_sequence": null, "usage": {{"input_tokens": {input_tokens}, "output_tokens": 1}}}}}}"#,
                q(MESSAGE_ID),
                q(MODEL)
            ),
        )
    }

    pub fn ping() -> String {
        event("ping", r#"{"type": "ping"}"#)
    }

    pub fn text_block_start(index: usize) -> String {
        event(
            "content_block_start",
            &format!(
                r#"{{"type": "content_block_start", "index": {index}, "content_block": {{"type": "text", "text": ""}}}}"#
            ),
        )
    }

    pub fn text_delta(index: usize, text: &str) -> String {
        event(
            "content_block_delta",
            &format!(
                r#"{{"type": "content_block_delta", "index": {index}, "delta": {{"type": "text_delta", "text": {}}}}}"#,
                q(text)
            ),
        )
    }

    pub fn tool_use_start(index: usize, id: &str, name: &str) -> String {
        event(
            "content_block_start",
            &format!(
                r#"{{"type": "content_block_start", "index": {index}, "content_block": {{"type": "tool_use", "id": {}, "name": {}, "input": {{}}}}}}"#,
                q(id),
                q(name)
            ),
        )
    }

    pub fn input_json_delta(index: usize, partial_json: &str) -> String {
        event(
            "content_block_delta",
            &format!(
                r#"{{"type": "content_block_delta", "index": {index}, "delta": {{"type": "input_json_delta", "partial_json": {}}}}}"#,
                q(partial_json)
            ),
        )
    }

    pub fn block_stop(index: usize) -> String {
        event("content_block_stop", &format!(r#"{{"type": "content_block_stop", "index": {index}}}"#))
    }

    /// `stop_reason` as sent (`end_turn`, `tool_use`, `max_tokens`, `stop_sequence`, …).
    pub fn message_delta(stop_reason: &str, output_tokens: u64) -> String {
        event(
            "message_delta",
            &format!(
                r#"{{"type": "message_delta", "delta": {{"stop_reason": {}, "stop_sequence":null}}, "usage": {{"output_tokens": {output_tokens}}}}}"#,
                q(stop_reason)
            ),
        )
    }

    pub fn message_stop() -> String {
        event("message_stop", r#"{"type": "message_stop"}"#)
    }

    /// A mid-stream error event (e.g. `overloaded_error`, `Overloaded`).
    pub fn error_event(kind: &str, message: &str) -> String {
        event(
            "error",
            &format!(r#"{{"type": "error", "error": {{"type": {}, "message": {}}}}}"#, q(kind), q(message)),
        )
    }

    /// The events of one text block at `index` (with the `ping` the API sends after the first
    /// block start).
    pub fn text_block(index: usize, deltas: &[&str]) -> Vec<String> {
        let mut ev = vec![text_block_start(index)];
        if index == 0 {
            ev.push(ping());
        }
        ev.extend(deltas.iter().map(|d| text_delta(index, d)));
        ev.push(block_stop(index));
        ev
    }

    /// The events of one tool_use block at `index`: the start with `input: {}`, an empty
    /// `partial_json` first (as the API sends), then each fragment.
    pub fn tool_use_block(index: usize, id: &str, name: &str, fragments: &[&str]) -> Vec<String> {
        let mut ev = vec![tool_use_start(index, id, name)];
        if index == 0 {
            ev.push(ping());
        }
        ev.push(input_json_delta(index, ""));
        ev.extend(fragments.iter().map(|f| input_json_delta(index, f)));
        ev.push(block_stop(index));
        ev
    }

    /// A whole text answer ending with `stop_reason`.
    pub fn text_with_stop(deltas: &[&str], stop_reason: &str) -> Reply {
        let mut ev = vec![message_start(INPUT_TOKENS)];
        ev.extend(text_block(0, deltas));
        ev.push(message_delta(stop_reason, 15));
        ev.push(message_stop());
        Reply::sse(ev)
    }

    /// A whole text answer (`end_turn`, 25 input and 15 output tokens).
    pub fn text(deltas: &[&str]) -> Reply {
        text_with_stop(deltas, "end_turn")
    }

    /// Text (skipped when empty), then one tool call whose input JSON arrives in `fragments`.
    pub fn tool_use(text_before: &str, id: &str, name: &str, fragments: &[&str]) -> Reply {
        tool_uses(text_before, &[(id, name, fragments)])
    }

    /// Text (skipped when empty), then several tool calls `(id, name, input fragments)`.
    pub fn tool_uses(text_before: &str, calls: &[(&str, &str, &[&str])]) -> Reply {
        let mut ev = vec![message_start(INPUT_TOKENS)];
        let mut index = 0;
        if !text_before.is_empty() {
            ev.extend(text_block(0, &[text_before]));
            index = 1;
        }
        for (id, name, fragments) in calls {
            ev.extend(tool_use_block(index, id, name, fragments));
            index += 1;
        }
        ev.push(message_delta("tool_use", 89));
        ev.push(message_stop());
        Reply::sse(ev)
    }

    /// An error answer: `{"type":"error","error":{…},"request_id":…}` with `retry-after` if given.
    pub fn error_status(status: u16, kind: &str, message: &str, retry_after: Option<u64>) -> Reply {
        let body = format!(
            r#"{{"type":"error","error":{{"type":{},"message":{}}},"request_id":"req_011CSHoEeqs5C35K2UUqR7Fy"}}"#,
            q(kind),
            q(message)
        );
        let reply = Reply::json(status, &body);
        match retry_after {
            Some(s) => reply.header("retry-after", &s.to_string()),
            None => reply,
        }
    }
}

/// OpenAI Chat Completions streams, as in OpenAI's API reference (`chat.completion.chunk`
/// objects, compact JSON on `data: ` lines, ending with `data: [DONE]`).
pub mod openai {
    use super::{Reply, q};

    pub const MODEL: &str = "gpt-4o-mini-2024-07-18";
    pub const ID: &str = "chatcmpl-AdzaJNvXqTzDcVNdcTQrlCL2wRxWB";
    pub const CREATED: u64 = 1_734_077_211;

    /// One `data:` line with a chunk of choice 0: `delta` is raw JSON, `finish` the finish reason.
    pub fn chunk(delta: &str, finish: Option<&str>) -> String {
        let finish = finish.map_or("null".to_string(), q);
        format!(
            r#"data: {{"id":{},"object":"chat.completion.chunk","created":{CREATED},"model":{},"system_fingerprint":"fp_bba3c8e70b","choices":[{{"index":0,"delta":{delta},"logprobs":null,"finish_reason":{finish}}}]}}"#,
            q(ID),
            q(MODEL)
        ) + "\n\n"
    }

    /// The first chunk: the role, empty content.
    pub fn role_chunk() -> String {
        chunk(r#"{"role":"assistant","content":"","refusal":null}"#, None)
    }

    pub fn content_chunk(text: &str) -> String {
        chunk(&format!(r#"{{"content":{}}}"#, q(text)), None)
    }

    /// The last chunk of a choice: empty delta and the finish reason.
    pub fn finish_chunk(finish: &str) -> String {
        chunk("{}", Some(finish))
    }

    /// The usage chunk sent with `stream_options.include_usage` (empty `choices`).
    pub fn usage_chunk(prompt_tokens: u64, completion_tokens: u64) -> String {
        format!(
            r#"data: {{"id":{},"object":"chat.completion.chunk","created":{CREATED},"model":{},"system_fingerprint":"fp_bba3c8e70b","choices":[],"usage":{{"prompt_tokens":{prompt_tokens},"completion_tokens":{completion_tokens},"total_tokens":{}}}}}"#,
            q(ID),
            q(MODEL),
            prompt_tokens + completion_tokens
        ) + "\n\n"
    }

    /// The first fragment of tool call `index`: id, type and name, empty arguments.
    pub fn tool_call_start(index: usize, id: &str, name: &str) -> String {
        chunk(
            &format!(
                r#"{{"role":"assistant","content":null,"tool_calls":[{{"index":{index},"id":{},"type":"function","function":{{"name":{},"arguments":""}}}}],"refusal":null}}"#,
                q(id),
                q(name)
            ),
            None,
        )
    }

    /// A later fragment of tool call `index`: only arguments.
    pub fn tool_call_arguments(index: usize, fragment: &str) -> String {
        chunk(
            &format!(r#"{{"tool_calls":[{{"index":{index},"function":{{"arguments":{}}}}}]}}"#, q(fragment)),
            None,
        )
    }

    pub fn done() -> String {
        "data: [DONE]\n\n".to_string()
    }

    /// A mid-stream error object.
    pub fn error_chunk(message: &str, kind: &str) -> String {
        format!(
            r#"data: {{"error":{{"message":{},"type":{},"param":null,"code":null}}}}"#,
            q(message),
            q(kind)
        ) + "\n\n"
    }

    /// A whole text answer: role chunk, one chunk per delta, the finish chunk and `[DONE]`.
    pub fn text(deltas: &[&str], finish: &str) -> Reply {
        let mut ev = vec![role_chunk()];
        ev.extend(deltas.iter().map(|d| content_chunk(d)));
        ev.push(finish_chunk(finish));
        ev.push(done());
        Reply::sse(ev)
    }

    /// Tool calls `(id, name, argument fragments)`, one after the other with indexes 0, 1, …,
    /// finishing with `tool_calls`.
    pub fn tool_calls(calls: &[(&str, &str, &[&str])]) -> Reply {
        let mut ev = Vec::new();
        for (i, (id, name, fragments)) in calls.iter().enumerate() {
            ev.push(tool_call_start(i, id, name));
            ev.extend(fragments.iter().map(|f| tool_call_arguments(i, f)));
        }
        ev.push(finish_chunk("tool_calls"));
        ev.push(done());
        Reply::sse(ev)
    }

    /// An error answer `{"error":{"message","type","param","code"}}` with `retry-after` if given.
    pub fn error_status(
        status: u16,
        message: &str,
        kind: &str,
        code: Option<&str>,
        retry_after: Option<u64>,
    ) -> Reply {
        let code = code.map_or("null".to_string(), q);
        let body = format!(
            "{{\n  \"error\": {{\n    \"message\": {},\n    \"type\": {},\n    \"param\": null,\n    \"code\": {code}\n  }}\n}}\n",
            q(message),
            q(kind)
        );
        let reply = Reply::json(status, &body);
        match retry_after {
            Some(s) => reply.header("retry-after", &s.to_string()),
            None => reply,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::model::Cancel;

    fn fake() -> (tempfile::TempDir, FakeModel) {
        let dir = tempfile::tempdir().unwrap();
        let fake = FakeModel::start_with_socket(dir.path().join("model.sock"));
        (dir, fake)
    }

    const T: Duration = Duration::from_secs(10);

    #[test]
    fn answers_in_queue_order_and_records_requests() {
        let (_d, fake) = fake();
        fake.reply(Reply::json(201, "{\"n\":1}").header("x-test", "yes"));
        fake.reply(Reply::json(202, "{\"n\":2}"));
        let http = fake.http();
        let r1 = http
            .post_json("/a", &[("X-Key", "v")], &serde_json::json!({"q": 1}), &Cancel::default())
            .unwrap();
        assert_eq!((r1.status, r1.header("x-test")), (201, Some("yes")));
        assert_eq!(r1.error_text(), "{\"n\":1}");
        let r2 = http.post_json("/b", &[], &serde_json::json!({"q": 2}), &Cancel::default()).unwrap();
        assert_eq!(r2.status, 202);
        let req = fake.next_request(T).unwrap();
        assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/a"));
        assert_eq!(req.header("X-Key"), Some("v"));
        assert_eq!(req.body, serde_json::json!({"q": 1}));
        assert_eq!(fake.next_request(T).unwrap().path, "/b");
        // Nothing queued: a clear 500.
        let r3 = http.post_json("/c", &[], &serde_json::json!({}), &Cancel::default()).unwrap();
        assert_eq!(r3.status, 500);
        assert!(r3.error_text().contains("no reply queued for POST /c"));
    }

    #[test]
    fn serves_tcp_with_chunked_requests_and_reads_until_close() {
        let fake = FakeModel::start();
        fake.reply(Reply::sse(vec!["data: a\n\n".into(), "data: b\n\n".into()]));
        let mut s = TcpStream::connect(fake.addr()).unwrap();
        s.write_all(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        assert!(out.starts_with("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"), "{out}");
        assert!(
            out.contains("connection: close\r\n") && out.ends_with("\r\n\r\ndata: a\n\ndata: b\n\n"),
            "{out}"
        );
        let req = fake.next_request(T).unwrap();
        assert_eq!(req.path, "/v1/chat/completions");
        assert_eq!(req.body, serde_json::json!({"a": 1}));
        assert_eq!(fake.disconnects(), 0);
    }

    #[test]
    fn a_hold_waits_for_its_gate_and_notices_a_disconnect() {
        let fake = FakeModel::start();
        let gate = Gate::new();
        fake.reply(Reply::sse(vec!["data: 1\n\n".into(), "data: 2\n\n".into()]).hold_at(1, &gate));
        let mut s = TcpStream::connect(fake.addr()).unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert!(fake.wait_holding(T));
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut line = String::new();
        while line != "data: 1\n" {
            line.clear();
            r.read_line(&mut line).unwrap();
        }
        gate.open();
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "\ndata: 2\n\n");
        assert_eq!(fake.disconnects(), 0);

        // Second reply: the client leaves during the hold.
        fake.reply(Reply::sse(vec!["data: 1\n\n".into()]).hold_at(1, &Gate::new()));
        let mut s = TcpStream::connect(fake.addr()).unwrap();
        s.write_all(b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert!(fake.wait_holding(T));
        drop(s);
        assert!(fake.wait_disconnect(T));
        assert_eq!(fake.disconnects(), 1);
    }

    /// What the host proxy (ureq) sees as the upstream: each part as soon as it is written.
    #[test]
    fn an_http_client_reads_each_part_as_it_is_written() {
        let fake = FakeModel::start();
        let gate = Gate::new();
        // Hold after message_start, the text block start, the ping and the first delta.
        fake.reply(anthropic::text(&["Hel", "lo"]).hold_at(4, &gate));
        let mut resp = ureq::post(format!("{}/v1/messages", fake.url()))
            .header("content-type", "application/json")
            .send("{\"stream\":true}")
            .unwrap();
        assert_eq!(resp.status(), 200);
        let mut r = BufReader::new(resp.body_mut().as_reader());
        let mut seen = String::new();
        while !seen.contains("\"Hel\"") {
            let mut l = String::new();
            assert!(r.read_line(&mut l).unwrap() > 0, "ended early: {seen}");
            seen.push_str(&l);
        }
        assert!(!seen.contains("\"lo\""));
        gate.open();
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert!(rest.contains("\"lo\"") && rest.ends_with(&anthropic::message_stop()), "{rest}");
        let req = fake.next_request(T).unwrap();
        assert_eq!((req.path.as_str(), &req.body), ("/v1/messages", &serde_json::json!({"stream": true})));
    }

    #[test]
    fn builders_follow_the_documented_layout() {
        assert_eq!(anthropic::ping(), "event: ping\ndata: {\"type\": \"ping\"}\n\n");
        assert_eq!(
            anthropic::text_delta(0, "Hel\"lo"),
            "event: content_block_delta\ndata: {\"type\": \"content_block_delta\", \"index\": 0, \"delta\": {\"type\": \"text_delta\", \"text\": \"Hel\\\"lo\"}}\n\n"
        );
        let start = anthropic::message_start(25);
        let data: Value =
            serde_json::from_str(start.strip_prefix("event: message_start\ndata: ").unwrap().trim()).unwrap();
        assert_eq!(data["message"]["usage"]["input_tokens"], 25);
        let c = openai::content_chunk("hi");
        assert!(
            c.starts_with("data: {\"id\":\"chatcmpl-")
                && c.ends_with("\"logprobs\":null,\"finish_reason\":null}]}\n\n"),
            "{c}"
        );
        let v: Value = serde_json::from_str(c.strip_prefix("data: ").unwrap().trim()).unwrap();
        assert_eq!(v["choices"][0]["delta"]["content"], "hi");
        assert_eq!(v["object"], "chat.completion.chunk");
    }
}
