//! HTTP/1.1 on one client connection: read a head within a deadline, admit the request (route,
//! CSRF, identity) before reading any body, read the body at a minimum rate, answer through the
//! plain-function API ([`super::api`]), and keep the connection for the next request.
//!
//! `GET /ws` with a WebSocket upgrade leaves this loop for [`super::ws`]. Any other `Upgrade`
//! (`h2c`, say) is ignored and the request answered normally. The limits hold on every request
//! of a kept-alive connection, not only its first: [`HEAD_BYTES_MAX`] within [`HEAD_TIMEOUT`],
//! a body no larger than the route allows sent at [`BODY_BYTES_PER_S_MIN`] after
//! [`BODY_GRACE`], and [`KEEPALIVE_IDLE`] between requests. A request whose body was not read
//! (refused, too large, malformed) closes the connection, so no unread bytes can be taken for
//! the next request.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Ctx;
use super::api;
use super::auth::Peer;
use super::transport::{self, Transport};
use super::wire::{Req, Resp};
use crate::http1::{self, Framing, Head};

/// Largest request head (request line and header fields).
pub const HEAD_BYTES_MAX: usize = 16 * 1024;
/// Time to receive a whole request head, from its first byte (or from accept).
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// A kept-alive connection with no new request for this long is closed.
pub const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);
/// A body may start this slowly...
pub const BODY_GRACE: Duration = Duration::from_secs(10);
/// ...and must then arrive at least this fast on average.
pub const BODY_BYTES_PER_S_MIN: u64 = 16 * 1024;
/// A client that takes no bytes of a response for this long is dropped.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(30);
/// After refusing a request whose body was not read, the server reads and drops up to this
/// many bytes before closing, so the client sees the answer instead of a connection reset.
pub const LINGER_BYTES_MAX: u64 = 4 * 1024 * 1024;
/// ...for at most this long.
pub const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
/// Bytes read from the socket at once.
const READ_BUFFER_BYTES: usize = 8 * 1024;

/// What happens to the connection after a request.
enum Next {
    KeepAlive,
    Close,
}

/// Serves requests on one connection until it closes, fails a limit, or becomes a WebSocket
/// (returned, for a loop to serve).
pub(crate) fn serve(
    ctx: &Arc<Ctx>,
    transport: Transport,
    peer: Peer,
    accepted: Instant,
) -> anyhow::Result<Option<Box<super::ws::Upgraded>>> {
    transport.tcp().set_write_timeout(Some(WRITE_STALL_TIMEOUT))?;
    let mut conn = BufReader::with_capacity(READ_BUFFER_BYTES, transport);
    let mut head_deadline = accepted + HEAD_TIMEOUT;
    loop {
        conn.get_mut().set_deadline(Some(head_deadline));
        let head = match http1::read_head(&mut conn, HEAD_BYTES_MAX) {
            Ok(h) => h,
            Err(http1::Error::Closed) => return Ok(None),
            Err(e) => {
                let (status, msg) = head_error(&e);
                if status != 0 {
                    let _ =
                        transport::write_response(conn.get_mut(), &Resp::error(status, &msg), false, true);
                }
                anyhow::bail!("request head: {e}");
            }
        };
        let started = Instant::now();
        let (next, status, what) = match request(ctx, conn, head, peer) {
            Handled::Answered { conn: c, next, status, what } => {
                conn = c;
                (next, status, what)
            }
            Handled::Upgraded(up) => return Ok(Some(up)),
            Handled::Failed(e) => return Err(e),
        };
        log::debug!("{what} {status} {:?}", started.elapsed());
        if let Next::Close = next {
            return Ok(None);
        }
        // Idle until the next request's first byte, then the head deadline runs again.
        conn.get_mut().set_deadline(Some(Instant::now() + KEEPALIVE_IDLE));
        match conn.fill_buf() {
            Ok([]) => return Ok(None),
            Ok(_) => head_deadline = Instant::now() + HEAD_TIMEOUT,
            Err(e) if is_timeout(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The status (0: none, just close) and message for a head that could not be read.
fn head_error(e: &http1::Error) -> (u16, String) {
    match e {
        e if e.is_timeout() => (408, format!("the request head did not arrive within {HEAD_TIMEOUT:?}")),
        http1::Error::HeadTooLarge => (
            431,
            format!(
                "the request head is larger than {HEAD_BYTES_MAX} bytes or has more than {} fields",
                http1::FIELDS_MAX
            ),
        ),
        http1::Error::Malformed(m) => (400, format!("malformed request: {m}")),
        http1::Error::Unsupported(m) => (505, (*m).to_string()),
        http1::Error::Closed | http1::Error::Io(_) => (0, String::new()),
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut)
}

enum Handled {
    Answered { conn: BufReader<Transport>, next: Next, status: u16, what: String },
    Upgraded(Box<super::ws::Upgraded>),
    Failed(anyhow::Error),
}

/// Handles one request whose head has been read.
fn request(ctx: &Arc<Ctx>, mut conn: BufReader<Transport>, head: Head, peer: Peer) -> Handled {
    let answer = |mut conn: BufReader<Transport>, resp: Resp, what: String, close: bool, head_only: bool| {
        let status = resp.status;
        match transport::write_response(conn.get_mut(), &resp, head_only, close) {
            Ok(()) => {
                if close {
                    linger(&mut conn);
                }
                Handled::Answered {
                    conn,
                    next: if close { Next::Close } else { Next::KeepAlive },
                    status,
                    what,
                }
            }
            Err(e) => Handled::Failed(anyhow::anyhow!("writing the response: {e}")),
        }
    };
    let line = match http1::parse_request_line(&head.start) {
        Ok(l) => l,
        Err(e) => {
            let (status, msg) = head_error(&e);
            return answer(conn, Resp::error(status.max(400), &msg), "?".into(), true, false);
        }
    };
    let what = format!("{} {}", line.method, line.target.split('?').next().unwrap_or(""));
    if line.minor == 1 && head.field("host").is_none() {
        return answer(conn, Resp::error(400, "an HTTP/1.1 request needs a Host header"), what, true, false);
    }
    if head.fields.iter().filter(|(k, _)| k == "host").count() > 1 {
        return answer(conn, Resp::error(400, "more than one Host header"), what, true, false);
    }
    let framing = match http1::request_framing(&head) {
        Ok(f) => f,
        Err(e) => {
            let status = if matches!(e, http1::Error::Unsupported(_)) { 501 } else { 400 };
            return answer(conn, Resp::error(status, &e.to_string()), what, true, false);
        }
    };
    let Some((path, query)) = split_target(&line.target) else {
        return answer(
            conn,
            Resp::error(400, "the request path is not valid percent-encoded UTF-8"),
            what,
            true,
            false,
        );
    };
    if conn.get_ref().plain_on_tls_port() && !path.starts_with("/trust") && path != "/health" {
        // Plain HTTP on the HTTPS port: only the trust page (a phone needs it before it trusts
        // anything); everything else moves to HTTPS.
        let host = head.field("host").unwrap_or("localhost").to_string();
        let mut resp = Resp::error(308, "this server speaks HTTPS");
        resp.headers.push(("Location".into(), format!("https://{host}{}", line.target)));
        return answer(conn, resp, what, true, line.method == "HEAD");
    }
    let wants_close = if line.minor == 0 {
        !head.has_token("connection", "keep-alive")
    } else {
        head.has_token("connection", "close")
    };
    if path == "/ws" {
        let leftover = conn.buffer().to_vec();
        let transport = conn.into_inner();
        return match super::ws::upgrade(ctx, transport, leftover, &head, &line, framing, peer) {
            Ok(up) => Handled::Upgraded(up),
            Err(e) => Handled::Failed(e),
        };
    }
    let mut req =
        Req { method: line.method.clone(), path, query, headers: head.fields, body: Vec::new(), peer };
    let head_only = req.method == "HEAD";
    let admitted = match api::admit(ctx, &req) {
        Ok(a) => a,
        // The body (if any) stays unread: the connection cannot be reused.
        Err(resp) => return answer(conn, resp, what, wants_close || framing != Framing::None, head_only),
    };
    if let Framing::Length(n) = framing
        && n > admitted.body_max as u64
    {
        let resp = too_large(admitted.body_max);
        return answer(conn, resp, what, true, head_only);
    }
    if framing != Framing::None
        && req.header("expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        && let Err(e) = conn.get_mut().write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
    {
        return Handled::Failed(e.into());
    }
    if admitted.upload {
        // Streamed to disk by the handler; what it leaves unread is drained (bounded) or the
        // connection closes.
        let mut body = Body::new(&mut conn, framing, admitted.body_max);
        let resp = catch_unwind(AssertUnwindSafe(|| {
            if super::resumable::is_chunk_path(&req.path) {
                super::resumable::receive(ctx, &req, admitted.user.as_ref(), &mut body)
            } else {
                super::upload::receive(ctx, &req, admitted.user.as_ref(), &mut body)
            }
        }))
        .unwrap_or_else(|_| {
            log::error!("panic while handling {what}");
            Resp::error(500, "internal error; the host log has the details")
        });
        let rest = io::copy(&mut (&mut body).take(LINGER_BYTES_MAX), &mut io::sink());
        let clean = rest.is_ok() && body.finished();
        conn.get_mut().set_deadline(None);
        return answer(conn, resp, what, wants_close || !clean, head_only);
    }
    match read_body(&mut conn, framing, admitted.body_max) {
        Ok(body) => req.body = body,
        Err(BodyError::TooLarge) => return answer(conn, too_large(admitted.body_max), what, true, head_only),
        Err(BodyError::Timeout) => {
            let msg = format!(
                "the request body arrived too slowly (at least {BODY_BYTES_PER_S_MIN} bytes/s after {BODY_GRACE:?})"
            );
            return answer(conn, Resp::error(408, &msg), what, true, head_only);
        }
        Err(BodyError::Malformed(m)) => {
            return answer(
                conn,
                Resp::error(400, &format!("malformed request body: {m}")),
                what,
                true,
                head_only,
            );
        }
        Err(BodyError::Io(e)) => return Handled::Failed(e.into()),
    }
    conn.get_mut().set_deadline(None);
    let resp =
        catch_unwind(AssertUnwindSafe(|| api::handle(ctx, &req, admitted.user))).unwrap_or_else(|_| {
            log::error!("panic while handling {what}");
            Resp::error(500, "internal error; the host log has the details")
        });
    answer(conn, resp, what, wants_close, head_only)
}

/// Half-closes, then drops what the client still sends (bounded in bytes and time), so a client
/// busy sending a refused body reads the answer rather than a reset.
fn linger(conn: &mut BufReader<Transport>) {
    let _ = conn.get_ref().tcp().shutdown(std::net::Shutdown::Write);
    conn.get_mut().set_deadline(Some(Instant::now() + LINGER_TIMEOUT));
    let _ = io::copy(&mut conn.take(LINGER_BYTES_MAX), &mut io::sink());
}

fn too_large(max: usize) -> Resp {
    if max == 0 {
        Resp::error(413, "this request takes no body")
    } else {
        Resp::error(413, &format!("request body is larger than {max} bytes"))
    }
}

/// Splits a request target into a decoded path and query pairs. The absolute form
/// (`http://host/path`) is accepted as RFC 9112 §3.2.2 asks.
fn split_target(target: &str) -> Option<(String, Vec<(String, String)>)> {
    let target = match target.strip_prefix("http://").or_else(|| target.strip_prefix("https://")) {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = percent_decode(path)?;
    let query = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Some((percent_decode(&k.replace('+', " "))?, percent_decode(&v.replace('+', " "))?))
        })
        .collect();
    Some((path, query))
}

#[derive(Debug)]
enum BodyError {
    TooLarge,
    Timeout,
    Malformed(String),
    Io(io::Error),
}

/// A request body as a reader: at most `max` bytes, at [`BODY_BYTES_PER_S_MIN`] after
/// [`BODY_GRACE`] (a slower client gets `TimedOut`), framed by Content-Length or chunked.
/// More than `max` bytes is `FileTooLarge`; a body cut short is `UnexpectedEof`.
pub struct Body<'a> {
    framing: BodyFraming<'a>,
    start: Instant,
    received: u64,
    max: u64,
    done: bool,
}

enum BodyFraming<'a> {
    None,
    Length(&'a mut BufReader<Transport>, u64),
    Chunked(http1::Chunked<&'a mut BufReader<Transport>>),
}

impl<'a> Body<'a> {
    fn new(conn: &'a mut BufReader<Transport>, framing: Framing, max: usize) -> Body<'a> {
        let (framing, done) = match framing {
            Framing::None => (BodyFraming::None, true),
            Framing::Length(n) => (BodyFraming::Length(conn, n), n == 0),
            Framing::Chunked => (BodyFraming::Chunked(http1::Chunked::new(conn)), false),
        };
        Body { framing, start: Instant::now(), received: 0, max: max as u64, done }
    }

    /// The whole body has been read.
    pub fn finished(&self) -> bool {
        self.done
    }

    /// Bytes read so far.
    pub fn received(&self) -> u64 {
        self.received
    }
}

impl Read for Body<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.done || buf.is_empty() {
            return Ok(0);
        }
        let allowed = BODY_GRACE + Duration::from_millis(self.received * 1000 / BODY_BYTES_PER_S_MIN);
        let deadline = Some(self.start + allowed);
        let n = match &mut self.framing {
            BodyFraming::None => 0,
            BodyFraming::Length(conn, left) => {
                conn.get_mut().set_deadline(deadline);
                let want = (*left).min(buf.len() as u64) as usize;
                let n = conn.read(&mut buf[..want])?;
                if n == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
                *left -= n as u64;
                if *left == 0 {
                    self.done = true;
                }
                n
            }
            BodyFraming::Chunked(chunked) => {
                chunked.inner_mut().get_mut().set_deadline(deadline);
                let n = chunked.read(buf)?;
                if n == 0 {
                    self.done = true;
                }
                n
            }
        };
        self.received += n as u64;
        if self.received > self.max {
            return Err(io::Error::new(io::ErrorKind::FileTooLarge, "the body is too large"));
        }
        Ok(n)
    }
}

impl BodyError {
    fn of(e: io::Error) -> BodyError {
        if is_timeout(&e) {
            BodyError::Timeout
        } else if e.kind() == io::ErrorKind::FileTooLarge {
            BodyError::TooLarge
        } else if e.kind() == io::ErrorKind::InvalidData {
            BodyError::Malformed(e.to_string())
        } else if e.kind() == io::ErrorKind::UnexpectedEof {
            BodyError::Malformed("the connection closed before the body ended".into())
        } else {
            BodyError::Io(e)
        }
    }
}

/// Reads a whole request body of at most `max` bytes.
fn read_body(conn: &mut BufReader<Transport>, framing: Framing, max: usize) -> Result<Vec<u8>, BodyError> {
    let mut body = Vec::new();
    if let Framing::Length(n) = framing {
        body.reserve((n as usize).min(max));
    }
    Body::new(conn, framing, max).read_to_end(&mut body).map_err(BodyError::of)?;
    Ok(body)
}

/// Decodes `%XX` escapes; `None` for bad escapes or invalid UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("/api/rooms/a%20b").as_deref(), Some("/api/rooms/a b"));
        assert_eq!(percent_decode("%E2%9C%93").as_deref(), Some("✓"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_decode("%4"), None);
    }

    #[test]
    fn splits_targets_in_origin_and_absolute_form() {
        let (p, q) = split_target("/api/x?a=1&b=two+words&c").unwrap();
        assert_eq!(p, "/api/x");
        assert_eq!(
            q,
            [("a".into(), "1".into()), ("b".into(), "two words".into()), ("c".into(), String::new())]
        );
        assert_eq!(split_target("http://h:1/health?x=1").unwrap().0, "/health");
        assert_eq!(split_target("https://h").unwrap().0, "/");
        assert!(split_target("/%zz").is_none());
    }
}
