//! A client connection's byte stream, with a read deadline that holds across reads.
//!
//! A socket read timeout bounds one read; a slow client can trickle a byte per timeout forever.
//! [`Transport`] instead carries a deadline for the whole unit being read (a request head, a
//! body at a minimum rate) and sets the socket timeout to what is left before every read.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

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
