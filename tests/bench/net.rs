//! Minimal clients for the bench: HTTP/1.1 over a `TcpStream` for the few JSON calls, and a
//! blocking tungstenite WebSocket client whose every read is bounded by a deadline.

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde_json::Value;
use tungstenite::client::IntoClientRequest;
use tungstenite::{Error, Message, WebSocket};

/// One HTTP request to the host; returns the status and the body parsed as JSON.
pub(crate) fn http_json(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> anyhow::Result<(u16, Value)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nX-Webchat-CSRF: 1\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).with_context(|| format!("reading the response to {method} {path}"))?;
    let raw = String::from_utf8(raw).context("response is not UTF-8")?;
    let (head, body) = raw.split_once("\r\n\r\n").context("response without a header end")?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).context("bad status line")?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked { dechunk(body)? } else { body.to_string() };
    let json = if body.trim().is_empty() { Value::Null } else { serde_json::from_str(&body)? };
    Ok((status, json))
}

fn dechunk(mut s: &str) -> anyhow::Result<String> {
    let mut out = String::new();
    loop {
        let (size, rest) = s.split_once("\r\n").context("truncated chunk")?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)?;
        if size == 0 {
            return Ok(out);
        }
        out.push_str(rest.get(..size).context("truncated chunk")?);
        s = rest.get(size + 2..).context("truncated chunk")?;
    }
}

/// A TCP connection from the loopback address `source` (the host counts connections per
/// address) to `port` on 127.0.0.1, Nagle off, reads bounded by `timeout`.
pub(crate) fn tcp_from(source: &str, port: u16, timeout: Duration) -> anyhow::Result<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    sock.bind(&format!("{source}:0").parse::<std::net::SocketAddr>()?.into())?;
    sock.connect(&format!("127.0.0.1:{port}").parse::<std::net::SocketAddr>()?.into())?;
    let tcp: TcpStream = sock.into();
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(timeout))?;
    Ok(tcp)
}

/// A WebSocket client over a plain `TcpStream` (Nagle off).
pub(crate) struct Ws(WebSocket<TcpStream>);

impl Ws {
    /// Connects to `ws://127.0.0.1:{port}{path}`, with a same-origin `Origin` header.
    pub(crate) fn connect(port: u16, path: &str) -> anyhow::Result<Ws> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let mut req = format!("ws://127.0.0.1:{port}{path}").into_client_request()?;
        req.headers_mut().insert("Origin", format!("http://127.0.0.1:{port}").parse()?);
        let (ws, _) = tungstenite::client(req, stream).map_err(|e| anyhow!("WebSocket handshake: {e}"))?;
        Ok(Ws(ws))
    }

    pub(crate) fn send_text(&mut self, text: String) -> anyhow::Result<()> {
        Ok(self.0.send(Message::text(text))?)
    }

    pub(crate) fn send_json(&mut self, v: &Value) -> anyhow::Result<()> {
        self.send_text(v.to_string())
    }

    /// The next text frame, or an error once `deadline` passes.
    pub(crate) fn read_text(&mut self, deadline: Instant) -> anyhow::Result<String> {
        loop {
            let left = deadline.checked_duration_since(Instant::now()).filter(|d| !d.is_zero());
            let Some(left) = left else { bail!("deadline passed waiting for a WebSocket frame") };
            self.0.get_ref().set_read_timeout(Some(left))?;
            match self.0.read() {
                Ok(Message::Text(t)) => return Ok(t.to_string()),
                Ok(Message::Close(c)) => bail!("WebSocket closed by the peer: {c:?}"),
                Ok(_) => {}
                Err(Error::Io(e)) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Reads frames until one matches `pred` (others are dropped); `what` names it in the error.
    pub(crate) fn wait_for(
        &mut self,
        deadline: Instant,
        what: &str,
        mut pred: impl FnMut(&Value) -> bool,
    ) -> anyhow::Result<Value> {
        loop {
            let text = self.read_text(deadline).with_context(|| format!("waiting for {what}"))?;
            let v: Value =
                serde_json::from_str(&text).with_context(|| format!("frame is not JSON: {text}"))?;
            if v["type"] == "error" {
                bail!("server error while waiting for {what}: {v}");
            }
            if pred(&v) {
                return Ok(v);
            }
        }
    }
}

/// Echo server for the loopback baseline: accepts one WebSocket connection and echoes its frames.
pub(crate) fn spawn_echo_server() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || -> anyhow::Result<()> {
        let (stream, _) = listener.accept()?;
        stream.set_nodelay(true)?;
        let mut ws = tungstenite::accept(stream).map_err(|e| anyhow!("echo handshake: {e}"))?;
        loop {
            match ws.read()? {
                m @ (Message::Text(_) | Message::Binary(_)) => ws.send(m)?,
                Message::Close(_) => return Ok(()),
                _ => {}
            }
        }
    });
    Ok(port)
}
