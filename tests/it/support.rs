//! Test harness: the real `pincer` binary on a temp data dir and a free port, a minimal HTTP/1.1
//! client, a WebSocket client with bounded waits, and docker helpers.
//!
//! Nothing here sleeps to wait: readiness is the host's "listening" log line, replies are frames
//! on the socket, and every wait has a deadline whose failure message includes the host log.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Generous bound for a reply that needs a container start.
pub const COLD: Duration = Duration::from_secs(60);
/// Bound for a reply from a running container.
pub const WARM: Duration = Duration::from_secs(20);

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_pincer")
}

/// A fresh directory with `data/` and `groups/` for one host.
pub struct Dirs {
    pub tmp: tempfile::TempDir,
}

impl Dirs {
    pub fn new() -> Dirs {
        Dirs { tmp: tempfile::tempdir().expect("temp dir") }
    }

    pub fn root(&self) -> &Path {
        self.tmp.path()
    }

    pub fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    pub fn groups(&self) -> PathBuf {
        self.tmp.path().join("groups")
    }

    /// The docker label value identifying this data dir's containers.
    pub fn install(&self) -> String {
        std::fs::create_dir_all(self.data()).unwrap();
        pincer::host::containers::RunnerConfig::install_id(&self.data())
    }

    /// A command for the `pincer` binary with a clean environment pointing at these dirs.
    /// Runs a pincer command to its end: its exit code and what it wrote (stdout, then stderr).
    pub fn cli(&self, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
        let mut cmd = self.command(args);
        cmd.envs(env.iter().copied());
        let out = cmd.output().unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .current_dir(self.root())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.root())
            .env("PINCER_DATA_DIR", self.data())
            .env("PINCER_GROUPS_DIR", self.groups())
            .env("PINCER_IMAGE", image())
            .env("WEBCHAT_PORT", "0")
            .env("TZ", "UTC");
        // A developer may ask for the host's debug log (printed when a test fails).
        if let Ok(level) = std::env::var("PINCER_TEST_LOG") {
            cmd.env("PINCER_LOG", level);
        }
        cmd
    }
}

impl Drop for Dirs {
    fn drop(&mut self) {
        // Never leave containers behind, whatever the test did.
        if self.data().exists() {
            docker_rm_labelled(&self.install());
        }
    }
}

/// The agent image the Makefile built for this checkout.
pub fn image() -> String {
    let cfg_image = pincer::config::default_image(Path::new(env!("CARGO_MANIFEST_DIR")));
    let out = docker(&["image", "inspect", "--format", "{{.Id}}", &cfg_image]);
    assert!(out.status.success(), "agent image {cfg_image} is missing: run `make image` first");
    cfg_image
}

/// A running host.
pub struct Host {
    child: Option<Child>,
    /// Reads stderr until EOF; joined on exit so the log is complete.
    reader: Option<std::thread::JoinHandle<()>>,
    pub port: u16,
    log: Arc<Mutex<Vec<String>>>,
    lines: Receiver<String>,
}

impl Host {
    /// Starts `pincer run` and waits for it to listen.
    pub fn start(dirs: &Dirs) -> Host {
        Host::start_with(dirs, &[])
    }

    pub fn start_with(dirs: &Dirs, env: &[(&str, &str)]) -> Host {
        let mut cmd = dirs.command(&["run"]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut host = Host::spawn(cmd);
        let line = host
            .wait_for_line(|l| l.contains("webchat listening on http"), COLD)
            .unwrap_or_else(|| panic!("host did not start:\n{}", host.log_tail()));
        let port = line.rsplit(':').next().unwrap().trim_end_matches('/').parse().expect("port in log line");
        host.port = port;
        host
    }

    /// Spawns without waiting for readiness (for hosts expected to fail).
    pub fn spawn(mut cmd: Command) -> Host {
        use std::os::unix::process::CommandExt;
        // Its own process group, so a test can kill it with everything it started.
        let mut child = cmd
            .process_group(0)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pincer");
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let log2 = log.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().unwrap().push(line.clone());
                let _ = tx.send(line);
            }
        });
        Host { child: Some(child), reader: Some(reader), port: 0, log, lines: rx }
    }

    /// Waits for a log line matching `pred` (lines already seen are skipped).
    pub fn wait_for_line(&mut self, pred: impl Fn(&str) -> bool, timeout: Duration) -> Option<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return Some(line),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
    }

    pub fn log_tail(&self) -> String {
        let log = self.log.lock().unwrap();
        let start = log.len().saturating_sub(60);
        log[start..].join("\n")
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// SIGTERM and wait for the exit.
    pub fn stop(&mut self) -> ExitStatus {
        let status = Command::new("kill").args(["-TERM", &self.pid().to_string()]).status().unwrap();
        assert!(status.success());
        self.wait_exit(Duration::from_secs(60))
    }

    /// SIGKILL to the host's whole process group (a crash, or a power cut as far as the host
    /// can tell), then wait for it.
    pub fn kill_group(&mut self) {
        let group = format!("-{}", self.pid());
        let status = Command::new("kill").args(["-KILL", "--", &group]).status().unwrap();
        assert!(status.success(), "kill -KILL {group}");
        self.wait_exit(Duration::from_secs(30));
    }

    /// Waits (bounded) for the process to exit on its own.
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let mut child = self.child.take().expect("host already stopped");
        let (tx, rx) = mpsc::channel();
        let waiter = std::thread::spawn(move || {
            let status = child.wait().unwrap();
            let _ = tx.send(());
            status
        });
        if rx.recv_timeout(timeout).is_err() {
            panic!("host did not exit within {timeout:?}:\n{}", self.log_tail());
        }
        if let Some(reader) = self.reader.take() {
            reader.join().unwrap();
        }
        waiter.join().unwrap()
    }

    pub fn base(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        http(self.port, "GET", path, None, &[])
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        http(self.port, "POST", path, Some(&body.to_string()), &[("X-Webchat-CSRF", "1")])
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        http(self.port, "DELETE", path, None, &[("X-Webchat-CSRF", "1")])
    }

    pub fn put(&self, path: &str, body: Value) -> (u16, Value) {
        http(self.port, "PUT", path, Some(&body.to_string()), &[("X-Webchat-CSRF", "1")])
    }

    pub fn ws(&self) -> Ws {
        Ws::connect(self.port, &[])
    }

    /// Creates an agent with its own room; returns the room id.
    pub fn agent_with_room(&self, name: &str) -> String {
        let (status, body) = self.post("/api/agents", json!({ "name": name, "withRoom": true }));
        assert_eq!(status, 201, "{body}");
        body["roomId"].as_str().unwrap().to_string()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status();
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("---- host log ----\n{}\n------------------", self.log_tail());
        }
    }
}

/// One HTTP/1.1 request with `Connection: close`; returns status and the JSON body (or the body
/// as a JSON string when it is not JSON).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
    headers: &[(&str, &str)],
) -> (u16, Value) {
    let (status, _, bytes) = http_raw(port, method, path, body.map(str::as_bytes), headers);
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// Like [`http`] but with full control: returns status, headers (lowercased names) and body.
pub fn http_raw(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(WARM)).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if let Some(b) = body {
        if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type")) {
            req.push_str("Content-Type: application/json\r\n");
        }
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    if let Some(b) = body {
        s.write_all(b).unwrap();
    }
    let mut r = BufReader::new(s);
    let head = pincer::http1::read_head(&mut r, 64 * 1024).expect("response head");
    let status = pincer::http1::parse_status_line(&head.start).expect("status line");
    let mut body = Vec::new();
    r.read_to_end(&mut body).unwrap();
    (status, head.fields, body)
}

/// Checks `probe` until it yields a value, for at most `timeout` (a state the host reaches on
/// its own, observed through the API: checked every 20 ms).
pub fn eventually<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A WebSocket client whose reads are bounded.
pub struct Ws {
    ws: tungstenite::WebSocket<TcpStream>,
    /// Frames received but not yet consumed by a wait.
    pub pending: Vec<Value>,
    pub ready: Value,
}

impl Ws {
    pub fn connect(port: u16, headers: &[(&str, &str)]) -> Ws {
        Ws::try_connect(port, headers).unwrap_or_else(|e| panic!("websocket connect failed: {e}"))
    }

    pub fn try_connect(port: u16, headers: &[(&str, &str)]) -> Result<Ws, String> {
        Ws::try_connect_from("127.0.0.1", port, headers)
    }

    /// Connects from a given loopback address (127.0.0.2, ...), acting as another client.
    pub fn try_connect_from(source: &str, port: u16, headers: &[(&str, &str)]) -> Result<Ws, String> {
        use tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://127.0.0.1:{port}/ws").into_client_request().unwrap();
        for (k, v) in headers {
            req.headers_mut()
                .insert(tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
        }
        let stream = connect_from(source, port);
        stream.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let (ws, _) = tungstenite::client(req, stream).map_err(|e| e.to_string())?;
        let mut ws = Ws { ws, pending: Vec::new(), ready: Value::Null };
        ws.ready = ws.wait(|f| f["type"] == "ready", WARM);
        Ok(ws)
    }

    /// True if the server pings within `timeout` (text frames before that are kept).
    pub fn pinged_within(&mut self, timeout: Duration) -> bool {
        self.watch(timeout, |m| matches!(m, tungstenite::Message::Ping(_)))
            .unwrap_or_else(|e| panic!("websocket read failed: {e}"))
    }

    /// True if the server closes the socket within `timeout` (frames before that are kept).
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        self.watch(timeout, |m| matches!(m, tungstenite::Message::Close(_))).unwrap_or(true)
    }

    /// Reads until a frame that `stop` picks (true), `timeout` (false) or a read error; text
    /// frames on the way are kept for later waits.
    fn watch(
        &mut self,
        timeout: Duration,
        stop: impl Fn(&tungstenite::Message) -> bool,
    ) -> Result<bool, tungstenite::Error> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(m) if stop(&m) => return Ok(true),
                Ok(tungstenite::Message::Text(t)) => {
                    if let Ok(v) = serde_json::from_str(t.as_str()) {
                        self.pending.push(v);
                    }
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    pub fn send(&mut self, frame: Value) {
        self.ws.send(tungstenite::Message::text(frame.to_string())).unwrap();
    }

    /// Sends a chat message with a fresh client id; returns the client id.
    pub fn say(&mut self, room: &str, text: &str) -> String {
        let client_id = pincer::ids::new_id("c");
        self.send(json!({ "type": "send", "room_id": room, "client_id": client_id, "text": text }));
        client_id
    }

    pub fn join(&mut self, room: &str, after_seq: Option<i64>) -> Vec<Value> {
        let mut frame = json!({ "type": "join", "room_id": room });
        if let Some(s) = after_seq {
            frame["after_seq"] = json!(s);
        }
        self.send(frame);
        let mut messages = Vec::new();
        loop {
            let h = self.wait(|f| f["type"] == "history" && f["room_id"] == room, WARM);
            messages.extend(h["messages"].as_array().unwrap().iter().cloned());
            if h["complete"] == true {
                return messages;
            }
        }
    }

    /// Returns the first frame (received now or earlier and not consumed) matching `pred`.
    pub fn wait(&mut self, pred: impl Fn(&Value) -> bool, timeout: Duration) -> Value {
        self.try_wait(&pred, timeout).unwrap_or_else(|| {
            panic!("no matching frame within {timeout:?}; unconsumed frames: {:#?}", self.pending)
        })
    }

    pub fn try_wait(&mut self, pred: &impl Fn(&Value) -> bool, timeout: Duration) -> Option<Value> {
        if let Some(i) = self.pending.iter().position(pred) {
            return Some(self.pending.remove(i));
        }
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            match self.ws.read() {
                Ok(tungstenite::Message::Text(t)) => {
                    let v: Value = serde_json::from_str(t.as_str()).expect("server frames are JSON");
                    if pred(&v) {
                        return Some(v);
                    }
                    self.pending.push(v);
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e))
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) => panic!("websocket read failed: {e}"),
            }
        }
        None
    }

    /// Waits for the agent's message in `room` whose text contains `needle`.
    pub fn agent_reply(&mut self, room: &str, needle: &str, timeout: Duration) -> Value {
        let f = self.wait(
            |f| {
                f["type"] == "message"
                    && f["room_id"] == room
                    && f["message"]["sender_type"] == "agent"
                    && f["message"]["text"].as_str().is_some_and(|t| t.contains(needle))
            },
            timeout,
        );
        f["message"].clone()
    }

    /// Waits for a system notice in `room` containing `needle`.
    pub fn notice(&mut self, room: &str, needle: &str, timeout: Duration) -> Value {
        let f = self.wait(
            |f| {
                f["type"] == "message"
                    && f["room_id"] == room
                    && f["message"]["sender_type"] == "system"
                    && f["message"]["text"].as_str().is_some_and(|t| t.contains(needle))
            },
            timeout,
        );
        f["message"].clone()
    }
}

/// A TCP connection to the host's port from `source` (any 127.x.y.z address works on Linux).
pub fn connect_from(source: &str, port: u16) -> TcpStream {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    let local: std::net::SocketAddr = format!("{source}:0").parse().unwrap();
    sock.bind(&local.into()).unwrap();
    let remote: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    sock.connect(&remote.into()).unwrap();
    let stream: TcpStream = sock.into();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Writes raw bytes and reads one response head; `None` if the server closed without one.
pub fn raw_exchange(
    stream: &mut TcpStream,
    bytes: &[u8],
    timeout: Duration,
) -> Option<(u16, pincer::http1::Head)> {
    stream.write_all(bytes).ok()?;
    read_response_head(stream, timeout)
}

/// Reads one response head (the body is left unread).
pub fn read_response_head(stream: &mut TcpStream, timeout: Duration) -> Option<(u16, pincer::http1::Head)> {
    stream.set_read_timeout(Some(timeout)).unwrap();
    // Byte by byte, so nothing after the head is consumed.
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut b) {
            Ok(1) => head.push(b[0]),
            _ => return None,
        }
    }
    let parsed = pincer::http1::read_head(&mut &head[..], 64 * 1024).ok()?;
    Some((pincer::http1::parse_status_line(&parsed.start).ok()?, parsed))
}

/// Resident anonymous memory of a process in KiB: heap and stacks, without the pages of the
/// binary itself (which grow as more of its code runs, and are shared and reclaimable).
pub fn anon_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("RssAnon:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc/<pid>/status")
}

pub fn docker(args: &[&str]) -> std::process::Output {
    Command::new("docker").args(args).output().expect("docker CLI")
}

/// Names of running containers with `pincer.install=<install>`.
pub fn containers_of(install: &str) -> Vec<String> {
    let filter = format!("label=pincer.install={install}");
    let out = docker(&["ps", "--filter", &filter, "--format", "{{.Names}}"]);
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect()
}

pub fn docker_rm_labelled(install: &str) {
    let filter = format!("label=pincer.install={install}");
    let out = docker(&["ps", "-aq", "--filter", &filter]);
    let ids: Vec<String> =
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect();
    if !ids.is_empty() {
        let mut args = vec!["rm", "-f"];
        args.extend(ids.iter().map(String::as_str));
        docker(&args);
    }
}

/// Message texts of a list of `Message` values, in order.
pub fn texts(messages: &[Value]) -> Vec<String> {
    messages.iter().map(|m| m["text"].as_str().unwrap_or_default().to_string()).collect()
}

/// The `seq` values of a list of `Message` values.
pub fn seqs(messages: &[Value]) -> Vec<i64> {
    messages.iter().map(|m| m["seq"].as_i64().unwrap()).collect()
}
