//! A client connection's byte stream: plain TCP or TLS, with a read deadline that holds across
//! reads.
//!
//! A socket read timeout bounds one read; a slow client can trickle a byte per timeout forever.
//! [`Transport`] instead carries a deadline for the whole unit being read (the TLS handshake, a
//! request head, a body at a minimum rate) and sets the socket timeout to what is left before
//! every read. With TLS on, one port serves both: a connection whose first byte starts a TLS
//! handshake gets TLS, any other is plain HTTP, which the server answers only for the trust
//! page and otherwise redirects to HTTPS.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::tls::Tls;
use super::wire::Resp;
use crate::http1;

/// Time to finish the TLS handshake, from accept.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// First byte of a TLS handshake record.
const TLS_HANDSHAKE: u8 = 0x16;

/// Accepts connections: plain TCP, or TLS when configured.
#[derive(Clone, Default)]
pub struct Acceptor {
    tls: Option<Arc<Tls>>,
}

impl Acceptor {
    pub fn plain() -> Acceptor {
        Acceptor { tls: None }
    }

    pub fn tls(tls: Arc<Tls>) -> Acceptor {
        Acceptor { tls: Some(tls) }
    }

    /// Wraps an accepted socket, doing the TLS handshake when the client starts one.
    pub fn accept(&self, tcp: TcpStream, accepted: Instant) -> io::Result<Transport> {
        let Some(tls) = &self.tls else {
            return Ok(Transport { inner: Inner::Plain(tcp), deadline: None, plain_on_tls_port: false });
        };
        let deadline = accepted + HANDSHAKE_TIMEOUT;
        let mut first = [0u8; 1];
        tcp.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
        if tcp.peek(&mut first)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed before a request"));
        }
        if first[0] != TLS_HANDSHAKE {
            return Ok(Transport { inner: Inner::Plain(tcp), deadline: None, plain_on_tls_port: true });
        }
        let conn = rustls::ServerConnection::new(tls.config()).map_err(io::Error::other)?;
        let mut t = Transport {
            inner: Inner::Tls(Box::new(rustls::StreamOwned::new(conn, tcp))),
            deadline: Some(deadline),
            plain_on_tls_port: false,
        };
        t.handshake()?;
        t.deadline = None;
        Ok(t)
    }
}

enum Inner {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

pub struct Transport {
    inner: Inner,
    deadline: Option<Instant>,
    /// Plain HTTP that arrived on a port serving TLS.
    plain_on_tls_port: bool,
}

impl Transport {
    pub fn tcp(&self) -> &TcpStream {
        match &self.inner {
            Inner::Plain(t) => t,
            Inner::Tls(s) => s.get_ref(),
        }
    }

    pub fn is_tls(&self) -> bool {
        matches!(self.inner, Inner::Tls(_))
    }

    /// Plain HTTP on a TLS port: only the trust page is served, the rest redirected.
    pub fn plain_on_tls_port(&self) -> bool {
        self.plain_on_tls_port
    }

    /// Reads after `deadline` fail with `TimedOut`; `None` lifts the deadline.
    pub fn set_deadline(&mut self, deadline: Option<Instant>) {
        self.deadline = deadline;
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn arm(&self) -> io::Result<()> {
        if let Some(d) = self.deadline {
            let left = d.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "deadline passed"));
            }
            self.tcp().set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        }
        Ok(())
    }

    fn handshake(&mut self) -> io::Result<()> {
        loop {
            self.arm()?;
            let Inner::Tls(s) = &mut self.inner else { return Ok(()) };
            if !s.conn.is_handshaking() {
                return Ok(());
            }
            let (conn, sock) = (&mut s.conn, &mut s.sock);
            conn.complete_io(sock)?;
        }
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        match &mut self.inner {
            Inner::Plain(t) => t.read(buf),
            Inner::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.inner {
            Inner::Plain(t) => t.write(buf),
            Inner::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.inner {
            Inner::Plain(t) => t.flush(),
            Inner::Tls(s) => s.flush(),
        }
    }
}

impl AsRawFd for Transport {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }
}

/// Headers every response carries.
const SECURITY_HEADERS: &[(&str, &str)] =
    &[("X-Content-Type-Options", "nosniff"), ("Referrer-Policy", "no-referrer"), ("X-Frame-Options", "DENY")];

/// Writes a response: the head, then the body (or the file, streamed).
pub fn write_response(w: &mut Transport, resp: &Resp, head_only: bool, close: bool) -> io::Result<()> {
    let file = match &resp.file {
        Some(path) => match std::fs::File::open(path).and_then(|f| Ok((f.metadata()?.len(), f))) {
            Ok(pair) => Some(pair),
            Err(e) => {
                log::warn!("opening {}: {e}", path.display());
                return write_response(w, &Resp::error(404, "no such file"), head_only, close);
            }
        },
        None => None,
    };
    let len = file.as_ref().map_or(resp.body.len() as u64, |(n, _)| *n);
    let mut head = format!("HTTP/1.1 {} {}\r\n", resp.status, http1::reason(resp.status));
    for (k, v) in
        resp.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain(SECURITY_HEADERS.iter().copied())
    {
        if k.bytes().all(|b| b.is_ascii_graphic()) && !v.contains(['\r', '\n']) {
            head.push_str(k);
            head.push_str(": ");
            head.push_str(v);
            head.push_str("\r\n");
        }
    }
    let no_body = resp.status == 304 || resp.status == 204 || (100..200).contains(&resp.status);
    if !no_body {
        head.push_str(&format!("Content-Length: {len}\r\n"));
    }
    if close {
        head.push_str("Connection: close\r\n");
    }
    head.push_str("\r\n");
    if head_only || no_body {
        w.write_all(head.as_bytes())?;
    } else if let Some((_, mut f)) = file {
        w.write_all(head.as_bytes())?;
        io::copy(&mut f, w)?;
    } else {
        let mut all = head.into_bytes();
        all.extend_from_slice(&resp.body);
        w.write_all(&all)?;
    }
    w.flush()
}
