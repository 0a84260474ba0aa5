//! One WebSocket connection (CONTRACT.md §4), on its own thread.
//!
//! The handshake checks the path, the `Origin` (same origin only) and the caller's identity.
//! Then the socket is non-blocking in a mio loop with a waker: frames from the browser are read
//! as they come, events queued in the connection's [`Outbox`] by other threads are written at
//! once, and a ping goes out when the line is quiet (a peer silent for two intervals is dropped).

use std::collections::HashSet;
use std::net::TcpStream;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token, Waker};
use serde::Deserialize;
use serde_json::{Value, json};
use tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use super::Ctx;
use super::api::{ApiError, User};
use super::auth::Peer;
use super::front::Prefixed;
use super::hub::Outbox;
use crate::db::central;

/// Largest frame or message from a client.
pub const MESSAGE_BYTES_MAX: usize = 1024 * 1024;
/// A ping goes out after this long without traffic.
pub const PING_INTERVAL: Duration = Duration::from_secs(25);
/// Messages in `history` on a join without `after_seq`.
pub const HISTORY_DEFAULT: i64 = 50;
/// Messages per `history` frame when catching up with `after_seq`.
pub const HISTORY_CHUNK: i64 = 500;
/// Rooms one socket may join.
pub const ROOMS_JOINED_MAX: usize = 256;

const WAKE: Token = Token(0);
const SOCK: Token = Token(1);

type Ws = WebSocket<Prefixed<TcpStream>>;

/// Handshake, then the connection loop until either side closes.
#[allow(clippy::result_large_err, reason = "the handshake callback's error type is tungstenite's")]
pub fn serve(ctx: &Arc<Ctx>, stream: Prefixed<TcpStream>, peer: Peer) -> anyhow::Result<()> {
    let mut user: Option<User> = None;
    let callback = |req: &Request, mut resp: Response| -> Result<Response, ErrorResponse> {
        let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
        if let Some(origin) = header("origin")
            && !same_origin(&origin, header("host").as_deref())
        {
            return Err(refuse(403, "cross-origin WebSocket connections are refused"));
        }
        let protocols: Vec<String> = header("sec-websocket-protocol")
            .map(|v| v.split(',').map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect())
            .unwrap_or_default();
        match ctx.authenticate(&peer, &header, &protocols) {
            Ok(u) => user = Some(u),
            Err(ApiError(status, msg)) => return Err(refuse(status, &msg)),
        }
        // A browser that offered subprotocols requires the server to pick one.
        let chosen = protocols.iter().find(|p| p.starts_with("bearer.")).or(protocols.first());
        if let Some(p) = chosen.and_then(|p| p.parse().ok()) {
            resp.headers_mut().insert("Sec-WebSocket-Protocol", p);
        }
        Ok(resp)
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MESSAGE_BYTES_MAX))
        .max_frame_size(Some(MESSAGE_BYTES_MAX));
    let ws = tungstenite::accept_hdr_with_config(stream, callback, Some(config))
        .map_err(|e| anyhow::anyhow!("websocket handshake: {e}"))?;
    let user = user.context("handshake finished without an identity")?;
    let mut conn = Conn::new(ctx.clone(), ws, user)?;
    let res = conn.run();
    conn.ctx.hub.unregister(conn.client);
    res
}

fn refuse(status: u16, msg: &str) -> ErrorResponse {
    let mut r = ErrorResponse::new(Some(json!({ "error": msg }).to_string()));
    *r.status_mut() =
        tungstenite::http::StatusCode::from_u16(status).unwrap_or(tungstenite::http::StatusCode::FORBIDDEN);
    r
}

/// `Origin: http://host:port` must name the same host and port as `Host`.
pub fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let rest = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")).unwrap_or("");
    !rest.is_empty() && rest.trim_end_matches('/').eq_ignore_ascii_case(host.trim())
}

struct Conn {
    ctx: Arc<Ctx>,
    ws: Ws,
    user: User,
    client: u64,
    outbox: Arc<Outbox>,
    poll: Poll,
    joined: HashSet<String>,
    writable_wanted: bool,
    last_heard: Instant,
    last_sent: Instant,
}

impl Conn {
    fn new(ctx: Arc<Ctx>, ws: Ws, user: User) -> anyhow::Result<Conn> {
        let stream = &ws.get_ref().inner;
        stream.set_nonblocking(true)?;
        stream.set_read_timeout(None)?;
        let poll = Poll::new()?;
        poll.registry().register(&mut SourceFd(&stream.as_raw_fd()), SOCK, Interest::READABLE)?;
        let outbox = Arc::new(Outbox::new(Waker::new(poll.registry(), WAKE)?));
        let client = ctx.hub.register(&user.id, outbox.clone());
        let now = Instant::now();
        Ok(Conn {
            ctx,
            ws,
            user,
            client,
            outbox,
            poll,
            joined: HashSet::new(),
            writable_wanted: false,
            last_heard: now,
            last_sent: now,
        })
    }

    fn run(&mut self) -> anyhow::Result<()> {
        let rooms = self.ctx.store.rooms_for(&self.user.id, self.user.owner)?;
        self.send(&json!({
            "type": "ready",
            "user": { "id": self.user.id, "displayName": self.user.display_name, "owner": self.user.owner },
            "rooms": rooms,
            "provider": self.ctx.cfg.provider.as_str(),
            "modelConfigured": self.ctx.cfg.provider != crate::config::Provider::Mock,
        }))?;
        let mut events = Events::with_capacity(8);
        loop {
            self.flush()?;
            crate::host::kick::poll(&mut self.poll, &mut events, Some(PING_INTERVAL))?;
            if !self.read_frames()? {
                return Ok(());
            }
            for frame in self.outbox.take() {
                self.write(Message::text(frame.to_string()))?;
            }
            if self.outbox.overflowed() {
                let _ = self.ws.close(None);
                let _ = self.ws.flush();
                anyhow::bail!("client too slow or server shutting down; closed");
            }
            let quiet = self.last_heard.elapsed().min(self.last_sent.elapsed());
            if self.last_heard.elapsed() > 2 * PING_INTERVAL + Duration::from_secs(5) {
                anyhow::bail!("client silent for {:?}; closed", self.last_heard.elapsed());
            }
            if quiet >= PING_INTERVAL {
                self.write(Message::Ping(Vec::new().into()))?;
            }
        }
    }

    /// Reads every frame available; false when the connection is over.
    fn read_frames(&mut self) -> anyhow::Result<bool> {
        loop {
            match self.ws.read() {
                Ok(msg) => {
                    self.last_heard = Instant::now();
                    match msg {
                        Message::Text(t) => self.on_text(t.as_str())?,
                        Message::Binary(_) => self.error(
                            "bad_request",
                            "binary frames are not supported; send JSON text",
                            None,
                        )?,
                        Message::Close(_) => return Ok(false),
                        Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                    }
                }
                Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return Ok(true);
                }
                Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {
                    return Ok(false);
                }
                Err(tungstenite::Error::Capacity(e)) => {
                    let _ = self.error(
                        "too_large",
                        &format!("frame too large ({e}); the limit is {MESSAGE_BYTES_MAX} bytes"),
                        None,
                    );
                    let _ = self.ws.flush();
                    return Ok(false);
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn write(&mut self, msg: Message) -> anyhow::Result<()> {
        self.last_sent = Instant::now();
        match self.ws.write(msg) {
            Ok(()) => Ok(()),
            // Buffered; flushed when the socket is writable.
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        let pending = match self.ws.flush() {
            Ok(()) => false,
            Err(tungstenite::Error::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => true,
            Err(e) => return Err(e.into()),
        };
        if pending != self.writable_wanted {
            let interest = if pending { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            let fd = self.ws.get_ref().inner.as_raw_fd();
            self.poll.registry().reregister(&mut SourceFd(&fd), SOCK, interest)?;
            self.writable_wanted = pending;
        }
        Ok(())
    }

    fn send(&mut self, v: &Value) -> anyhow::Result<()> {
        self.write(Message::text(v.to_string()))
    }

    fn error(&mut self, code: &str, message: &str, client_id: Option<&str>) -> anyhow::Result<()> {
        let mut ev = json!({ "type": "error", "code": code, "message": message });
        if let Some(id) = client_id {
            ev["client_id"] = json!(id);
        }
        self.send(&ev)
    }

    fn on_text(&mut self, text: &str) -> anyhow::Result<()> {
        let frame: ClientFrame = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(e) => {
                let hint = "expected {\"type\": \"join\" | \"send\" | \"stop\" | \"typing\", ...}";
                return self.error("bad_request", &format!("invalid frame ({e}); {hint}"), None);
            }
        };
        let res = match frame {
            ClientFrame::Join { room_id, after_seq } => self.join(&room_id, after_seq),
            ClientFrame::Send { room_id, client_id, text } => {
                let client_id = client_id.unwrap_or_default();
                match self.on_send(&room_id, &client_id, &text) {
                    Ok(()) => Ok(()),
                    Err(ApiError(_, msg)) => {
                        return self.error("send_failed", &msg, Some(&client_id));
                    }
                }
            }
            ClientFrame::Stop { room_id } => self.on_stop(&room_id),
            ClientFrame::Typing { room_id, is_typing } => self.on_typing(&room_id, is_typing),
        };
        match res {
            Ok(()) => Ok(()),
            Err(ApiError(status, msg)) => {
                let code = match status {
                    404 => "not_found",
                    403 => "forbidden",
                    500 => "internal",
                    _ => "bad_request",
                };
                self.error(code, &msg, None)
            }
        }
    }

    fn join(&mut self, room_id: &str, after_seq: Option<i64>) -> Result<(), ApiError> {
        let room = self.ctx.room_for(&self.user, room_id)?;
        if !self.joined.contains(&room.id) && self.joined.len() >= ROOMS_JOINED_MAX {
            return Err(ApiError::bad(format!("a socket may join at most {ROOMS_JOINED_MAX} rooms")));
        }
        // Join first, then read history: a message stored in between arrives twice (clients
        // de-duplicate by id) rather than not at all.
        self.ctx.hub.join(self.client, &room.id);
        self.joined.insert(room.id.clone());
        let ctx = self.ctx.clone();
        let conn = ctx.store.conn()?;
        match after_seq {
            None => {
                let messages = central::latest_messages(&conn, &room.id, HISTORY_DEFAULT)?;
                self.history(&room.id, &messages, true)?;
            }
            Some(after) => {
                let mut after = after.max(0);
                loop {
                    let messages = central::messages_after(&conn, &room.id, after, HISTORY_CHUNK)?;
                    let complete = (messages.len() as i64) < HISTORY_CHUNK;
                    self.history(&room.id, &messages, complete)?;
                    match messages.last() {
                        Some(last) if !complete => after = last.seq,
                        _ => break,
                    }
                }
            }
        }
        Ok(())
    }

    fn history(
        &mut self,
        room_id: &str,
        messages: &[central::RoomMessage],
        complete: bool,
    ) -> Result<(), ApiError> {
        self.send(
            &json!({ "type": "history", "room_id": room_id, "messages": messages, "complete": complete }),
        )
        .map_err(ApiError::from)
    }

    fn on_send(&mut self, room_id: &str, client_id: &str, text: &str) -> Result<(), ApiError> {
        if client_id.is_empty() {
            return Err(ApiError::bad(
                "send needs a client_id (any unique string, e.g. a UUID) so a resend is not stored twice",
            ));
        }
        let room = self.ctx.room_for(&self.user, room_id)?;
        let (message, _) = self.ctx.send(&self.user, &room, text, Some(client_id))?;
        self.send(&json!({ "type": "ack", "client_id": client_id, "message": message }))
            .map_err(ApiError::from)
    }

    fn on_stop(&mut self, room_id: &str) -> Result<(), ApiError> {
        let room = self.ctx.room_for(&self.user, room_id)?;
        let n = self.ctx.stop_room(&room)?;
        log::info!("{} asked to stop {n} running turn(s) in room {}", self.user.id, room.id);
        Ok(())
    }

    fn on_typing(&mut self, room_id: &str, is_typing: bool) -> Result<(), ApiError> {
        let room = self.ctx.room_for(&self.user, room_id)?;
        let ev = json!({
            "type": "typing",
            "room_id": room.id,
            "user": { "id": self.user.id, "displayName": self.user.display_name },
            "is_typing": is_typing,
        });
        self.ctx.hub.broadcast(&room.id, &ev.to_string(), Some(self.client));
        Ok(())
    }
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientFrame {
    Join { room_id: String, after_seq: Option<i64> },
    Send { room_id: String, client_id: Option<String>, text: String },
    Stop { room_id: String },
    Typing { room_id: String, is_typing: bool },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origin_must_match_host() {
        assert!(same_origin("http://127.0.0.1:3100", Some("127.0.0.1:3100")));
        assert!(same_origin("https://chat.example:443/", Some("chat.example:443")));
        assert!(!same_origin("http://evil.example", Some("127.0.0.1:3100")));
        assert!(!same_origin("null", Some("127.0.0.1:3100")));
        assert!(!same_origin("http://127.0.0.1:3100", None));
    }
}
