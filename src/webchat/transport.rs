//! A client connection's byte stream, with a read deadline that holds across reads.
//!
//! A socket read timeout bounds one read; a slow client can trickle a byte per timeout forever.
//! [`Transport`] instead carries a deadline for the whole unit being read (a request head, a
//! body at a minimum rate) and sets the socket timeout to what is left before every read.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use super::api::Resp;
use crate::http1;

/// Accepts connections: plain TCP (TLS is added by the access layer when configured).
#[derive(Clone, Default)]
pub struct Acceptor {}

impl Acceptor {
    pub fn plain() -> Acceptor {
        Acceptor {}
    }

    /// Wraps an accepted socket.
    pub fn accept(&self, stream: TcpStream, _accepted: Instant) -> io::Result<Transport> {
        Ok(Transport { tcp: stream, deadline: None })
    }
}

pub struct Transport {
    tcp: TcpStream,
    deadline: Option<Instant>,
}

impl Transport {
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    pub fn is_tls(&self) -> bool {
        false
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
            self.tcp.set_read_timeout(Some(left.max(Duration::from_millis(1))))?;
        }
        Ok(())
    }
}

impl Read for Transport {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        self.tcp.read(buf)
    }
}

impl Write for Transport {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tcp.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

impl AsRawFd for Transport {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp.as_raw_fd()
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
