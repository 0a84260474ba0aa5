//! One WebSocket connection (CONTRACT.md §4), served by a loop ([`super::wsloop`]).
//!
//! [`upgrade`] checks the handshake (400 for a malformed one, 426 for a missing upgrade or an
//! unsupported version), the `Origin` (same origin only) and the caller's identity, then answers
//! 101 itself. The socket then runs non-blocking in one of the WebSocket loops: frames from the
//! browser are read as they come, and events queued in the connection's [`Outbox`] by other
//! threads are written while the socket keeps up. [`Conn`] holds one socket's state; the loop
//! calls [`Conn::step`] when the socket or its outbox has news and [`Conn::tick`] every second.
//!
//! Back-pressure: frames leave the outbox only when what was written before has been taken by
//! the socket, so unsent data is bounded by the outbox limits plus [`WRITE_BATCH_BYTES`]; a
//! join's history goes out a frame at a time, and once more than [`UNSENT_BYTES_MAX`] of
//! replies waits for the client, its next frames are not read until it has taken them (for at
//! most [`DRAIN_TIMEOUT`]). A client over either bound is disconnected
//! with a close reason and resumes with `after_seq`. Frames from the client are rate limited per
//! socket ([`FRAME_RATE`]) and sends per user (`WEBCHAT_SEND_RATE`), answered with a
//! `rate_limited` error naming when to retry.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Deserialize;
use serde_json::{Value, json};
use tungstenite::protocol::frame::CloseFrame;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use super::Ctx;
use super::auth::Peer;
use super::hub::{Bell, Closed, Outbox};
use super::rate::{Bucket, Rate};
use super::transport::Transport;
use super::wire::{ApiError, Resp, User};
use crate::db::central;
use crate::http1::{Framing, Head, RequestLine};

/// Largest frame or message from a client.
pub const MESSAGE_BYTES_MAX: usize = 1024 * 1024;
/// A ping goes out after this long without a frame from the client.
pub const PING_INTERVAL: Duration = Duration::from_secs(25);
/// Messages in `history` on a join without `after_seq`.
pub const HISTORY_DEFAULT: i64 = 50;
/// Messages read from the DB per query when catching up with `after_seq` (and no more than a
/// frame's worth of text and HTML: a socket holds one frame of history at a time).
pub const HISTORY_PAGE: i64 = 500;
/// A `history` frame holds messages up to about this many bytes of JSON.
pub const HISTORY_FRAME_BYTES_MAX: usize = 256 * 1024;
/// Rooms one socket may join.
pub const ROOMS_JOINED_MAX: usize = 256;
/// Bytes taken from the outbox at once, written only after the previous batch left.
pub const WRITE_BATCH_BYTES: usize = 256 * 1024;
/// Bytes written but not yet taken by the socket before a direct reply waits for the client.
pub const UNSENT_BYTES_MAX: usize = 1024 * 1024;
/// A client that takes nothing for this long while a reply waits is disconnected.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);
/// Frames one socket may send: a burst, then a steady rate.
pub const FRAME_RATE: Rate = Rate { per_s: 20.0, burst: 100.0 };
/// Frames over the rate before the socket is closed.
pub const RATE_STRIKES_MAX: u32 = 200;
/// The socket's own read buffer.
const READ_BUFFER_BYTES: usize = 8 * 1024;
/// Bytes of frames waiting for a slow client before it is dropped (a reply past
/// [`UNSENT_BYTES_MAX`] already holds its requests back; this bounds the events that keep coming).
const OUT_BYTES_MAX: usize = 4 * UNSENT_BYTES_MAX + MESSAGE_BYTES_MAX;
/// The frame buffer's memory a socket keeps between writes; a larger one is freed once sent.
const OUT_KEPT_BYTES: usize = 1024;
/// RFC 6455 opcodes of the frames the server writes itself.
const OP_TEXT: u8 = 0x1;
const OP_PING: u8 = 0x9;

/// What a valid handshake asked for.
#[derive(Debug, PartialEq)]
pub struct Handshake {
    pub key: String,
    pub protocols: Vec<String>,
}

/// Checks a WebSocket upgrade request (RFC 6455 §4.2.1); the error is the response to send.
pub fn check_handshake(head: &Head, line: &RequestLine, framing: Framing) -> Result<Handshake, Resp> {
    let upgrade_required = |msg: &str| {
        let mut r = Resp::error(426, msg);
        r.headers.push(("Upgrade".into(), "websocket".into()));
        r.headers.push(("Connection".into(), "Upgrade".into()));
        r.headers.push(("Sec-WebSocket-Version".into(), "13".into()));
        r
    };
    if line.method != "GET" {
        let mut r = Resp::error(405, "a WebSocket upgrade is a GET request");
        r.headers.push(("Allow".into(), "GET".into()));
        return Err(r);
    }
    if !head.has_token("upgrade", "websocket") || !head.has_token("connection", "upgrade") {
        return Err(upgrade_required("/ws is a WebSocket: send Upgrade: websocket and Connection: Upgrade"));
    }
    if line.minor != 1 {
        return Err(Resp::error(400, "a WebSocket upgrade needs HTTP/1.1"));
    }
    if head.field("sec-websocket-version") != Some("13") {
        return Err(upgrade_required("unsupported Sec-WebSocket-Version: this server speaks version 13"));
    }
    let key = head.field("sec-websocket-key").unwrap_or("");
    let valid_key = key.len() == 24
        && key.ends_with("==")
        && key[..22].bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/');
    if !valid_key {
        return Err(Resp::error(400, "missing or invalid Sec-WebSocket-Key (16 random bytes, base64)"));
    }
    if framing != Framing::None {
        return Err(Resp::error(400, "a WebSocket upgrade request has no body"));
    }
    let protocols = head.tokens("sec-websocket-protocol").map(str::to_string).collect();
    Ok(Handshake { key: key.to_string(), protocols })
}

/// An upgraded socket on its way to a loop ([`super::wsloop`]).
pub(crate) struct Upgraded {
    ctx: Arc<Ctx>,
    ws: WebSocket<Transport>,
    user: User,
}

/// Completes the upgrade of a request for `/ws` (or refuses it); a loop serves the socket next.
pub(crate) fn upgrade(
    ctx: &Arc<Ctx>,
    mut transport: Transport,
    leftover: Vec<u8>,
    head: &Head,
    line: &RequestLine,
    framing: Framing,
    peer: Peer,
) -> anyhow::Result<Box<Upgraded>> {
    let refuse = |t: &mut Transport, resp: Resp| -> anyhow::Result<Box<Upgraded>> {
        let _ = super::transport::write_response(t, &resp, false, true);
        anyhow::bail!("websocket upgrade refused: {}", resp.status)
    };
    let hs = match check_handshake(head, line, framing) {
        Ok(h) => h,
        Err(resp) => return refuse(&mut transport, resp),
    };
    if let Some(origin) = head.field("origin")
        && !same_origin(origin, head.field("host"))
    {
        return refuse(&mut transport, Resp::error(403, "cross-origin WebSocket connections are refused"));
    }
    let lookup = |name: &str| head.field(name).map(str::to_string);
    let user = match ctx.authenticate(&peer, &lookup, &hs.protocols) {
        Ok(u) => u,
        Err(ApiError(status, msg)) => return refuse(&mut transport, Resp::error(status, &msg)),
    };
    // A browser that offered subprotocols requires the server to pick one of them.
    let chosen = hs.protocols.iter().find(|p| p.starts_with("bearer.")).or(hs.protocols.first());
    let mut resp = format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {}\r\n",
        tungstenite::handshake::derive_accept_key(hs.key.as_bytes())
    );
    if let Some(p) = chosen {
        resp.push_str(&format!("Sec-WebSocket-Protocol: {p}\r\n"));
    }
    resp.push_str("\r\n");
    io::Write::write_all(&mut transport, resp.as_bytes()).context("writing the 101 response")?;
    transport.set_deadline(None);
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(OUT_BYTES_MAX)
        .max_message_size(Some(MESSAGE_BYTES_MAX))
        .max_frame_size(Some(MESSAGE_BYTES_MAX));
    let ws = WebSocket::from_partially_read(transport, leftover, Role::Server, Some(config));
    Ok(Box::new(Upgraded { ctx: ctx.clone(), ws, user }))
}

/// Appends a server frame: final, not masked (RFC 6455 §5.2).
fn encode_frame(buf: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    buf.reserve(payload.len() + 10);
    buf.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => buf.push(n as u8),
        n if n <= 0xFFFF => {
            buf.push(126);
            buf.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            buf.push(127);
            buf.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    buf.extend_from_slice(payload);
}

/// `Origin: http://host:port` must name the same host and port as `Host`.
pub fn same_origin(origin: &str, host: Option<&str>) -> bool {
    let Some(host) = host else { return false };
    let (rest, default_port) = match (origin.strip_prefix("http://"), origin.strip_prefix("https://")) {
        (Some(r), _) => (r, ":80"),
        (_, Some(r)) => (r, ":443"),
        _ => return false,
    };
    // The default port may be written or left out on either side.
    let bare = |a: &str| {
        let a = a.trim().trim_end_matches('/');
        a.strip_suffix(default_port).unwrap_or(a).to_ascii_lowercase()
    };
    !rest.is_empty() && bare(rest) == bare(host)
}

/// The connection ends: say why in the close frame.
#[derive(Debug)]
struct Hangup(CloseCode, String);

/// One socket's state, served by a loop.
pub(crate) struct Conn {
    ctx: Arc<Ctx>,
    ws: WebSocket<Transport>,
    user: User,
    client: u64,
    outbox: Arc<Outbox>,
    joined: HashSet<String>,
    /// The socket holds unsent bytes: its loop also wakes it when it can take more.
    pub(crate) writable_wanted: bool,
    /// The socket may have something to read (it said so, and has not run dry since); a turn
    /// for outbox news alone does not try to read.
    pub(crate) readable: bool,
    /// Bytes handed to the socket layer since it last reported everything written.
    unflushed: usize,
    /// Frames encoded here and written as the socket takes them. Tungstenite writes only its own
    /// control replies (a pong, the close): its write buffer would keep the capacity of the
    /// largest frame it ever held (a join's 256 KiB history frame, a long room list) for the
    /// socket's whole life, and this one is freed once sent. Nothing is read while these bytes
    /// wait: a read may write a pong, which must not land inside a half-written frame.
    out: Vec<u8>,
    /// How much of `out` the socket took.
    out_sent: usize,
    /// Since when more than [`UNSENT_BYTES_MAX`] has been waiting for the client (its requests
    /// wait meanwhile).
    blocked_since: Option<Instant>,
    /// History still to send for a join, a frame per turn while the socket keeps up.
    catch_up: Option<CatchUp>,
    last_heard: Instant,
    /// The last ping sent (a client that keeps receiving is pinged too: only its answers show it
    /// is there).
    last_ping: Instant,
    frames: Bucket,
    strikes: u32,
}

/// Where a join's history continues.
struct CatchUp {
    room_id: String,
    /// The last message read from the DB.
    after: i64,
    /// Read and not sent yet (about one frame's worth).
    page: std::collections::VecDeque<central::RoomMessage>,
    /// No messages after `page`.
    last_page: bool,
}

impl CatchUp {
    fn new(room_id: String, after: i64) -> CatchUp {
        CatchUp { room_id, after, page: Default::default(), last_page: false }
    }
}

impl Conn {
    /// Takes an upgraded socket into a loop: `key` is its token there, `bell` the loop's.
    pub(crate) fn open(up: Box<Upgraded>, bell: Arc<Bell>, key: usize) -> anyhow::Result<Conn> {
        let stream = up.ws.get_ref().tcp();
        stream.set_nonblocking(true)?;
        stream.set_read_timeout(None)?;
        let outbox = Arc::new(Outbox::new(bell, key));
        let up = *up;
        let client = up.ctx.hub.register(&up.user.id, up.user.session.as_deref(), outbox.clone());
        let now = Instant::now();
        Ok(Conn {
            ctx: up.ctx,
            ws: up.ws,
            user: up.user,
            client,
            outbox,
            joined: HashSet::new(),
            writable_wanted: false,
            readable: true,
            unflushed: 0,
            out: Vec::new(),
            out_sent: 0,
            blocked_since: None,
            catch_up: None,
            last_heard: now,
            last_ping: now,
            frames: Bucket::full(FRAME_RATE, now),
            strikes: 0,
        })
    }

    pub(crate) fn fd(&self) -> RawFd {
        self.ws.get_ref().as_raw_fd()
    }

    /// Ends the socket: unregistered from the hub; a hangup is told in a close frame (best
    /// effort: the socket is not waited for).
    pub(crate) fn end(&mut self, res: anyhow::Result<()>) {
        self.ctx.hub.unregister(self.client);
        let Err(e) = res else { return };
        match e.downcast::<Hangup>() {
            Ok(Hangup(code, reason)) => {
                log::info!("closing the WebSocket of {}: {reason}", self.user.id);
                if self.out_sent > 0 {
                    // Half a frame went out: a close frame now would land inside it.
                    return;
                }
                let frame = CloseFrame { code, reason: reason.chars().take(120).collect::<String>().into() };
                let _ = self.ws.close(Some(frame));
                let _ = self.ws.flush();
            }
            Err(e) => log::debug!("the WebSocket of {}: {e:#}", self.user.id),
        }
    }

    /// The first frame: who the client is and its rooms.
    pub(crate) fn start(&mut self) -> anyhow::Result<()> {
        let rooms = self.ctx.store.rooms_for(&self.user.id, self.user.owner)?;
        self.send(&json!({
            "type": "ready",
            "user": {
                "id": self.user.id, "displayName": self.user.display_name, "owner": self.user.owner,
                "admin": self.user.admin, "via": self.user.via,
            },
            "rooms": rooms,
            "provider": self.ctx.cfg.provider.as_str(),
            "modelConfigured": self.ctx.cfg.provider != crate::config::Provider::Mock,
        }))
    }

    /// Does what the socket allows now: writes what is buffered, goes on with a join's history,
    /// answers the client's frames in order, then passes on queued events. A client that has
    /// more than [`UNSENT_BYTES_MAX`] waiting is not read from until it takes it. False when
    /// the client closed.
    pub(crate) fn step(&mut self) -> anyhow::Result<bool> {
        self.outbox.answered();
        loop {
            if !self.flush()? && self.unflushed > UNSENT_BYTES_MAX {
                self.blocked_since.get_or_insert_with(Instant::now);
                self.check_closed()?;
                return Ok(true);
            }
            self.blocked_since = None;
            if let Some(c) = self.catch_up.take() {
                self.catch_up_frame(c)?;
                continue;
            }
            if !self.readable || !self.out.is_empty() {
                break;
            }
            match self.read_frame()? {
                Read::Handled => continue,
                Read::Closed => return Ok(false),
                Read::Nothing => {
                    self.readable = false;
                    break;
                }
            }
        }
        self.pump()?;
        self.check_closed()?;
        Ok(true)
    }

    /// The loop's timer: pings a client not heard from for [`PING_INTERVAL`], drops one silent for
    /// two pings and one that took nothing of
    /// what waits for it for [`DRAIN_TIMEOUT`].
    pub(crate) fn tick(&mut self) -> anyhow::Result<()> {
        if self.last_heard.elapsed() > 2 * PING_INTERVAL + Duration::from_secs(5) {
            anyhow::bail!("client silent for {:?}; closed", self.last_heard.elapsed());
        }
        if self.blocked_since.is_some_and(|t| t.elapsed() >= DRAIN_TIMEOUT) {
            return Err(hangup(
                CloseCode::Again,
                "too slow: the client took nothing for 30 s; reconnect and join with after_seq",
            ));
        }
        if self.last_heard.elapsed() >= PING_INTERVAL && self.last_ping.elapsed() >= PING_INTERVAL {
            self.last_ping = Instant::now();
            self.write_frame(OP_PING, &[])?;
            self.flush()?;
        }
        Ok(())
    }

    fn check_closed(&self) -> anyhow::Result<()> {
        match self.outbox.closed() {
            Some(Closed::TooSlow) => Err(hangup(
                CloseCode::Again,
                "too slow: events queued past the limit; reconnect and join with after_seq",
            )),
            Some(Closed::Shutdown) => Err(hangup(CloseCode::Away, "server shutting down")),
            Some(Closed::Revoked) => {
                Err(hangup(CloseCode::Policy, "signed out, removed, or access changed; sign in again"))
            }
            None => Ok(()),
        }
    }

    /// Moves queued events to the socket while it keeps up.
    fn pump(&mut self) -> anyhow::Result<()> {
        loop {
            if !self.flush()? {
                return Ok(());
            }
            let frames = self.outbox.take(WRITE_BATCH_BYTES);
            if frames.is_empty() {
                return Ok(());
            }
            for f in frames {
                self.write_frame(OP_TEXT, f.as_bytes())?;
            }
        }
    }

    /// Reads and answers one frame, if one is there.
    fn read_frame(&mut self) -> anyhow::Result<Read> {
        match self.ws.read() {
            Ok(msg) => {
                self.last_heard = Instant::now();
                match msg {
                    Message::Text(t) => {
                        if self.admit_frame()? {
                            self.on_text(t.as_str())?;
                        }
                    }
                    Message::Binary(_) => {
                        self.error("bad_request", "binary frames are not supported; send JSON text", None)?
                    }
                    Message::Close(_) => return Ok(Read::Closed),
                    Message::Ping(_) | Message::Pong(_) | Message::Frame(_) => {}
                }
                Ok(Read::Handled)
            }
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(Read::Nothing),
            Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => Ok(Read::Closed),
            Err(tungstenite::Error::Capacity(e)) => {
                let _ = self.error(
                    "too_large",
                    &format!("frame too large ({e}); the limit is {MESSAGE_BYTES_MAX} bytes"),
                    None,
                );
                Err(hangup(CloseCode::Size, "frame too large"))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// The socket's frame rate; a frame over it is answered with `rate_limited` and dropped.
    fn admit_frame(&mut self) -> anyhow::Result<bool> {
        match self.frames.take(FRAME_RATE, Instant::now()) {
            Ok(()) => Ok(true),
            Err(wait) => {
                self.strikes += 1;
                if self.strikes > RATE_STRIKES_MAX {
                    return Err(hangup(CloseCode::Policy, "too many frames over the rate limit"));
                }
                self.rate_limited(wait, None)?;
                Ok(false)
            }
        }
    }

    fn rate_limited(&mut self, wait: Duration, client_id: Option<&str>) -> anyhow::Result<()> {
        let ms = wait.as_millis().max(1) as u64;
        let mut ev = json!({
            "type": "error",
            "code": "rate_limited",
            "message": format!("too many requests; retry in {ms} ms"),
            "retry_after_ms": ms,
        });
        if let Some(id) = client_id {
            ev["client_id"] = json!(id);
        }
        self.send(&ev)
    }

    /// Queues a frame for the socket ([`Conn::flush`] writes it).
    fn write_frame(&mut self, opcode: u8, payload: &[u8]) -> anyhow::Result<()> {
        if self.out.len() - self.out_sent + payload.len() > OUT_BYTES_MAX {
            return Err(hangup(
                CloseCode::Again,
                "too slow: the write buffer is full; reconnect with after_seq",
            ));
        }
        self.unflushed += payload.len();
        encode_frame(&mut self.out, opcode, payload);
        Ok(())
    }

    /// Writes out what is buffered; true when everything left, false when the socket is full
    /// (then its loop watches its writability).
    fn flush(&mut self) -> anyhow::Result<bool> {
        let done = self.write_out()?;
        if done {
            self.unflushed = 0;
        }
        self.writable_wanted = !done;
        Ok(done)
    }

    fn write_out(&mut self) -> anyhow::Result<bool> {
        // Tungstenite's replies were queued before these frames (nothing is read meanwhile).
        match self.ws.flush() {
            Ok(()) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        if self.out.is_empty() {
            return Ok(true);
        }
        let stream = self.ws.get_mut();
        while self.out_sent < self.out.len() {
            match io::Write::write(stream, &self.out[self.out_sent..]) {
                Ok(0) => anyhow::bail!("the socket took nothing"),
                Ok(n) => self.out_sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        if self.out.capacity() > OUT_KEPT_BYTES {
            self.out = Vec::new();
        } else {
            self.out.clear();
        }
        self.out_sent = 0;
        // A TLS socket may still hold some of it.
        match io::Write::flush(stream) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// A reply to this client's own request. Past [`UNSENT_BYTES_MAX`] unsent, the client's
    /// next requests wait until it has taken it ([`Conn::step`]).
    fn send(&mut self, v: &Value) -> anyhow::Result<()> {
        self.write_frame(OP_TEXT, v.to_string().as_bytes())
    }

    fn error(&mut self, code: &str, message: &str, client_id: Option<&str>) -> anyhow::Result<()> {
        let mut ev = json!({ "type": "error", "code": code, "message": message });
        if let Some(id) = client_id {
            ev["client_id"] = json!(id);
        }
        self.send(&ev)
    }

    fn on_text(&mut self, text: &str) -> anyhow::Result<()> {
        let frame: ClientFrame = match parse_client_frame(text) {
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
                return match self.on_send(&room_id, &client_id, &text) {
                    Ok(()) => Ok(()),
                    Err(SendError::Limited(wait)) => self.rate_limited(wait, Some(&client_id)),
                    Err(SendError::Refused(ApiError(_, msg))) => {
                        self.error("send_failed", &msg, Some(&client_id))
                    }
                    Err(SendError::Socket(e)) => Err(e),
                };
            }
            ClientFrame::Stop { room_id } => self.on_stop(&room_id),
            ClientFrame::Typing { room_id, is_typing } => self.on_typing(&room_id, is_typing),
            ClientFrame::View { visible, room_id } => {
                self.ctx.hub.set_view(self.client, visible, room_id.as_deref());
                if visible {
                    self.ctx.notifier.seen(&self.user.id);
                }
                Ok(())
            }
        };
        match res {
            Ok(()) => Ok(()),
            Err(JoinError::Api(ApiError(status, msg))) => {
                let code = match status {
                    404 => "not_found",
                    403 => "forbidden",
                    413 => "too_large",
                    507 => "storage_full",
                    500 => "internal",
                    _ => "bad_request",
                };
                self.error(code, &msg, None)
            }
        }
    }

    fn join(&mut self, room_id: &str, after_seq: Option<i64>) -> Result<(), JoinError> {
        let room = self.ctx.room_for(&self.user, room_id)?;
        if !self.joined.contains(&room.id) && self.joined.len() >= ROOMS_JOINED_MAX {
            return Err(ApiError::bad(format!("a socket may join at most {ROOMS_JOINED_MAX} rooms")).into());
        }
        // Join first, then read history: a message stored in between arrives twice (clients
        // de-duplicate by id) rather than not at all.
        self.ctx.hub.join(self.client, &room.id);
        self.joined.insert(room.id.clone());
        let after = match after_seq {
            Some(after) => after.max(0),
            None => {
                // The latest few: from just before the oldest of them.
                let conn = self.ctx.store.conn()?;
                let latest = central::latest_messages(&conn, &room.id, HISTORY_DEFAULT)?;
                latest.iter().map(|m| m.seq - 1).min().unwrap_or(i64::MAX)
            }
        };
        // Sent by [`Conn::step`] a frame at a time, before the client's next frame is read.
        self.catch_up = Some(CatchUp::new(room.id, after));
        Ok(())
    }

    /// Sends the next `history` frame of a join (at most [`HISTORY_FRAME_BYTES_MAX`] of
    /// messages); the last says `complete`.
    fn catch_up_frame(&mut self, mut c: CatchUp) -> anyhow::Result<()> {
        if c.page.is_empty() && !c.last_page {
            let read = self.ctx.store.conn().and_then(|conn| {
                Ok(central::messages_after_within(
                    &conn,
                    &c.room_id,
                    c.after,
                    HISTORY_PAGE,
                    HISTORY_FRAME_BYTES_MAX,
                )?)
            });
            match read {
                Ok((messages, more)) => {
                    c.last_page = !more;
                    c.after = messages.last().map_or(c.after, |m| m.seq);
                    c.page = messages.into();
                }
                Err(e) => {
                    return self.error(
                        "internal",
                        &format!("reading the room's history failed: {e:#}"),
                        None,
                    );
                }
            }
        }
        let mut batch: Vec<Value> = Vec::new();
        let mut bytes = 0;
        while let Some(m) = c.page.front() {
            let v = serde_json::to_value(super::redact::message(m))?;
            let size = v.to_string().len();
            if !batch.is_empty() && bytes + size > HISTORY_FRAME_BYTES_MAX {
                break;
            }
            c.page.pop_front();
            batch.push(v);
            bytes += size;
        }
        let complete = c.page.is_empty() && c.last_page;
        let frame =
            json!({ "type": "history", "room_id": c.room_id, "messages": batch, "complete": complete });
        self.send(&frame)?;
        if !complete {
            self.catch_up = Some(c);
        }
        Ok(())
    }

    fn on_send(&mut self, room_id: &str, client_id: &str, text: &str) -> Result<(), SendError> {
        if client_id.is_empty() {
            return Err(SendError::Refused(ApiError::bad(
                "send needs a client_id (any unique string, e.g. a UUID) so a resend is not stored twice",
            )));
        }
        let room = self.ctx.room_for(&self.user, room_id).map_err(SendError::Refused)?;
        let (message, _) = match self.ctx.send(&self.user, &room, text, Some(client_id)) {
            Ok(x) => x,
            Err(super::SendRefusal::Limited(wait)) => return Err(SendError::Limited(wait)),
            Err(super::SendRefusal::Refused(e)) => return Err(SendError::Refused(e)),
        };
        self.send(
            &json!({ "type": "ack", "client_id": client_id, "message": super::redact::message(&message) }),
        )
        .map_err(SendError::Socket)
    }

    fn on_stop(&mut self, room_id: &str) -> Result<(), JoinError> {
        let room = self.ctx.room_for(&self.user, room_id)?;
        let n = self.ctx.stop_room(&room)?;
        log::info!("{} asked to stop {n} running turn(s) in room {}", self.user.id, room.id);
        Ok(())
    }

    fn on_typing(&mut self, room_id: &str, is_typing: bool) -> Result<(), JoinError> {
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

/// What one read from the socket came to.
enum Read {
    Handled,
    Closed,
    Nothing,
}

pub(crate) fn hangup(code: CloseCode, reason: &str) -> anyhow::Error {
    anyhow::Error::new(Hangup(code, reason.to_string()))
}

impl std::fmt::Display for Hangup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for Hangup {}

/// A request that was refused (told to the client).
enum JoinError {
    Api(ApiError),
}

impl From<ApiError> for JoinError {
    fn from(e: ApiError) -> JoinError {
        JoinError::Api(e)
    }
}

impl From<rusqlite::Error> for JoinError {
    fn from(e: rusqlite::Error) -> JoinError {
        JoinError::Api(e.into())
    }
}

impl From<anyhow::Error> for JoinError {
    fn from(e: anyhow::Error) -> JoinError {
        JoinError::Api(e.into())
    }
}

enum SendError {
    Limited(Duration),
    Refused(ApiError),
    Socket(anyhow::Error),
}

/// Parses a client frame (CONTRACT.md §4).
pub fn parse_client_frame(text: &str) -> serde_json::Result<ClientFrame> {
    serde_json::from_str(text)
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Join {
        room_id: String,
        after_seq: Option<i64>,
    },
    Send {
        room_id: String,
        client_id: Option<String>,
        text: String,
    },
    Stop {
        room_id: String,
    },
    Typing {
        room_id: String,
        is_typing: bool,
    },
    /// The page is (not) in view, showing this room: no notifications for what it shows.
    View {
        visible: bool,
        room_id: Option<String>,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's side of the wire: reads what the server wrote, drops what it answers.
    struct Wire(io::Cursor<Vec<u8>>);

    impl io::Read for Wire {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl io::Write for Wire {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    /// The frames the server writes itself, read back by tungstenite as a client would.
    #[test]
    fn frames_written_here_are_read_by_a_websocket_client() {
        let sizes = [0usize, 1, 125, 126, 65_535, 65_536, 300_000];
        let mut wire = Vec::new();
        encode_frame(&mut wire, OP_PING, &[]);
        for n in sizes {
            let text: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            encode_frame(&mut wire, OP_TEXT, text.as_bytes());
        }
        let config = WebSocketConfig::default().max_message_size(None).max_frame_size(None);
        let mut client = WebSocket::from_raw_socket(Wire(io::Cursor::new(wire)), Role::Client, Some(config));
        assert!(matches!(client.read().unwrap(), Message::Ping(p) if p.is_empty()));
        for n in sizes {
            match client.read().unwrap() {
                Message::Text(t) => {
                    assert_eq!(t.len(), n);
                    assert!(t.bytes().enumerate().all(|(i, b)| b == b'a' + (i % 26) as u8));
                }
                other => panic!("expected a text frame of {n} bytes, got {other:?}"),
            }
        }
    }

    #[test]
    fn origin_must_match_host() {
        assert!(same_origin("http://127.0.0.1:3100", Some("127.0.0.1:3100")));
        assert!(same_origin("https://chat.example:443/", Some("chat.example:443")));
        assert!(!same_origin("http://evil.example", Some("127.0.0.1:3100")));
        assert!(!same_origin("null", Some("127.0.0.1:3100")));
        assert!(!same_origin("http://127.0.0.1:3100", None));
        assert!(same_origin("https://chat.example", Some("chat.example:443")), "default port written");
        assert!(same_origin("https://chat.example:443", Some("chat.example")), "default port left out");
        assert!(!same_origin("https://chat.example", Some("chat.example:80")));
        assert!(!same_origin("https://chat.example", Some("chat.example:8443")));
        assert!(!same_origin("ftp://chat.example", Some("chat.example")));
    }

    #[test]
    fn handshakes_are_checked() {
        let line = |m: &str, minor: u8| RequestLine { method: m.into(), target: "/ws".into(), minor };
        let head = |fields: &[(&str, &str)]| Head {
            start: String::new(),
            fields: fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        };
        let good = [
            ("host", "a"),
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
            ("sec-websocket-protocol", "bearer.x, other"),
        ];
        let hs = check_handshake(&head(&good), &line("GET", 1), Framing::None).unwrap();
        assert_eq!(hs.protocols, ["bearer.x", "other"]);
        let without =
            |name: &str| head(&good.iter().copied().filter(|(k, _)| *k != name).collect::<Vec<_>>());
        let with = |name: &str, value: &'static str| {
            head(&good.iter().map(|&(k, v)| if k == name { (k, value) } else { (k, v) }).collect::<Vec<_>>())
        };
        let status = |h: Head, l: RequestLine, f: Framing| check_handshake(&h, &l, f).unwrap_err().status;
        assert_eq!(status(without("upgrade"), line("GET", 1), Framing::None), 426);
        assert_eq!(status(with("upgrade", "h2c"), line("GET", 1), Framing::None), 426);
        assert_eq!(status(without("connection"), line("GET", 1), Framing::None), 426);
        assert_eq!(status(with("sec-websocket-version", "8"), line("GET", 1), Framing::None), 426);
        assert_eq!(status(without("sec-websocket-key"), line("GET", 1), Framing::None), 400);
        assert_eq!(status(with("sec-websocket-key", "short"), line("GET", 1), Framing::None), 400);
        assert_eq!(status(head(&good), line("POST", 1), Framing::None), 405);
        assert_eq!(status(head(&good), line("GET", 0), Framing::None), 400);
        assert_eq!(status(head(&good), line("GET", 1), Framing::Length(5)), 400);
    }
}
