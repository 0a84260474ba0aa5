//! The public listener. Each connection gets a thread that reads the first request head and
//! either keeps the socket as a WebSocket (`GET /ws` with `Upgrade: websocket`) or relays the
//! connection, bytes unchanged, to the internal tiny_http server.
//!
//! Limits: request heads up to [`HEAD_BYTES_MAX`] within [`HEAD_TIMEOUT`], at most
//! [`CONNECTIONS_MAX`] connections at once, idle keep-alive connections closed after
//! [`IDLE_TIMEOUT`].

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;
use mio::{Events, Interest, Poll, Token, Waker};

use super::Ctx;
use super::auth::Peer;

pub const HEAD_BYTES_MAX: usize = 16 * 1024;
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
pub const CONNECTIONS_MAX: usize = 512;
/// How long shutdown waits for connection threads after closing their sockets.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(5);

const LISTENER: Token = Token(1);
const STOP: Token = Token(0);

/// Open client sockets, so shutdown can close them and wait for their threads.
#[derive(Default)]
struct Live {
    sockets: Mutex<HashMap<u64, TcpStream>>,
    /// Signalled (with `sockets` locked) whenever a connection thread ends.
    ended: Condvar,
    next: AtomicU64,
    count: AtomicUsize,
}

pub struct Front {
    waker: Arc<Waker>,
    acceptor: Option<JoinHandle<()>>,
    live: Arc<Live>,
}

pub fn start(ctx: Arc<Ctx>, listener: TcpListener, internal_port: u16) -> anyhow::Result<Front> {
    listener.set_nonblocking(true)?;
    let mut listener = mio::net::TcpListener::from_std(listener);
    let poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), STOP)?);
    let live = Arc::new(Live::default());
    let live2 = live.clone();
    let acceptor = std::thread::Builder::new()
        .name("webchat-accept".into())
        .spawn(move || accept_loop(poll, listener, ctx, internal_port, live2))
        .context("starting the webchat acceptor")?;
    Ok(Front { waker, acceptor: Some(acceptor), live })
}

impl Front {
    pub fn stop_accepting(&mut self) {
        let _ = self.waker.wake();
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }

    /// Closes every client socket and waits (bounded) for their threads to finish.
    pub fn join(&mut self) {
        self.stop_accepting();
        for s in self.live.sockets.lock().unwrap_or_else(|e| e.into_inner()).values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let sockets = self.live.sockets.lock().unwrap_or_else(|e| e.into_inner());
        let (_sockets, waited) = self
            .live
            .ended
            .wait_timeout_while(sockets, JOIN_TIMEOUT, |_| self.live.count.load(Ordering::SeqCst) > 0)
            .unwrap_or_else(|e| e.into_inner());
        if waited.timed_out() {
            log::warn!(
                "{} webchat connection(s) still open at shutdown",
                self.live.count.load(Ordering::SeqCst)
            );
        }
    }
}

fn accept_loop(
    mut poll: Poll,
    listener: mio::net::TcpListener,
    ctx: Arc<Ctx>,
    internal_port: u16,
    live: Arc<Live>,
) {
    let mut events = Events::with_capacity(16);
    loop {
        if let Err(e) = crate::host::kick::poll(&mut poll, &mut events, None) {
            log::error!("webchat acceptor: {e}");
            return;
        }
        for ev in events.iter() {
            if ev.token() == STOP {
                return;
            }
        }
        loop {
            let (stream, addr) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    log::warn!("accept: {e}");
                    break;
                }
            };
            // Back to a blocking std socket: each connection has its own thread.
            let stream: TcpStream = match into_std_blocking(stream) {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("accepted socket: {e}");
                    continue;
                }
            };
            if live.count.load(Ordering::SeqCst) >= CONNECTIONS_MAX {
                let _ = (&stream).write_all(
                    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
                continue;
            }
            let id = live.next.fetch_add(1, Ordering::SeqCst);
            if let Ok(clone) = stream.try_clone() {
                live.sockets.lock().unwrap_or_else(|e| e.into_inner()).insert(id, clone);
            }
            live.count.fetch_add(1, Ordering::SeqCst);
            let ctx = ctx.clone();
            let live = live.clone();
            let spawned = std::thread::Builder::new().name("webchat-conn".into()).spawn(move || {
                let peer = Peer { addr, tls: false };
                if let Err(e) = connection(&ctx, stream, peer, internal_port) {
                    log::debug!("connection from {addr}: {e:#}");
                }
                let mut sockets = live.sockets.lock().unwrap_or_else(|e| e.into_inner());
                sockets.remove(&id);
                live.count.fetch_sub(1, Ordering::SeqCst);
                live.ended.notify_all();
            });
            if let Err(e) = spawned {
                log::error!("cannot start a connection thread: {e}");
            }
        }
    }
}

fn into_std_blocking(stream: mio::net::TcpStream) -> io::Result<TcpStream> {
    let std_stream = TcpStream::from(stream);
    std_stream.set_nonblocking(false)?;
    std_stream.set_nodelay(true)?;
    Ok(std_stream)
}

/// A parsed request head: just what routing the connection needs.
#[derive(Debug, PartialEq)]
pub struct Head {
    pub method: String,
    pub path: String,
    pub upgrade_websocket: bool,
}

/// Reads until the end of the first request head. Returns the bytes read (head plus anything
/// after it) and the parsed head.
pub fn read_head<R: Read>(r: &mut R) -> io::Result<(Vec<u8>, Head)> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            let head = parse_head(&buf[..end])
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "malformed request head"))?;
            return Ok((buf, head));
        }
        if buf.len() > HEAD_BYTES_MAX {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "request head too large"));
        }
        let n = r.read(&mut chunk)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed before a request"));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn parse_head(bytes: &[u8]) -> Option<Head> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_string();
    let target = first.next()?;
    if !first.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let mut upgrade_websocket = false;
    for line in lines {
        let (k, v) = line.split_once(':')?;
        if k.trim().eq_ignore_ascii_case("upgrade") && v.trim().eq_ignore_ascii_case("websocket") {
            upgrade_websocket = true;
        }
    }
    let path = target.split('?').next().unwrap_or("").to_string();
    Some(Head { method, path, upgrade_websocket })
}

fn connection(ctx: &Arc<Ctx>, mut stream: TcpStream, peer: Peer, internal_port: u16) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(HEAD_TIMEOUT))?;
    let (buf, head) = match read_head(&mut stream) {
        Ok(x) => x,
        Err(e) if e.kind() == io::ErrorKind::InvalidData => {
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            return Err(e.into());
        }
        Err(e) => return Err(e.into()),
    };
    if head.method == "GET" && head.path == "/ws" && head.upgrade_websocket {
        return super::ws::serve(ctx, Prefixed::new(buf, stream), peer);
    }
    relay(ctx, stream, &buf, peer, internal_port)
}

/// Relays the connection to tiny_http, recording which peer its internal port stands for.
fn relay(ctx: &Ctx, client: TcpStream, first: &[u8], peer: Peer, internal_port: u16) -> anyhow::Result<()> {
    let mut upstream =
        TcpStream::connect(("127.0.0.1", internal_port)).context("connecting to the internal HTTP server")?;
    upstream.set_nodelay(true)?;
    let local_port = upstream.local_addr()?.port();
    ctx.peers.lock().unwrap_or_else(|e| e.into_inner()).insert(local_port, peer);
    let res = (|| -> anyhow::Result<()> {
        upstream.write_all(first)?;
        client.set_read_timeout(Some(IDLE_TIMEOUT))?;
        let mut down_from = upstream.try_clone()?;
        let mut down_to = client.try_clone()?;
        let down = std::thread::Builder::new().name("webchat-relay".into()).spawn(move || {
            let _ = io::copy(&mut down_from, &mut down_to);
            let _ = down_to.shutdown(Shutdown::Write);
        })?;
        let mut up_from = client.try_clone()?;
        let _ = io::copy(&mut up_from, &mut upstream);
        let _ = upstream.shutdown(Shutdown::Write);
        let _ = down.join();
        Ok(())
    })();
    ctx.peers.lock().unwrap_or_else(|e| e.into_inner()).remove(&local_port);
    res
}

/// A stream that first yields bytes already read from it.
pub struct Prefixed<S> {
    prefix: Vec<u8>,
    pos: usize,
    pub inner: S,
}

impl<S> Prefixed<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Prefixed<S> {
        Prefixed { prefix, pos: 0, inner }
    }
}

impl<S: Read> Read for Prefixed<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.pos < self.prefix.len() {
            let n = buf.len().min(self.prefix.len() - self.pos);
            buf[..n].copy_from_slice(&self.prefix[self.pos..self.pos + n]);
            self.pos += n;
            if self.pos == self.prefix.len() {
                self.prefix = Vec::new();
                self.pos = 0;
            }
            return Ok(n);
        }
        self.inner.read(buf)
    }
}

impl<S: Write> Write for Prefixed<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<S: AsRawFd> AsRawFd for Prefixed<S> {
    fn as_raw_fd(&self) -> RawFd {
        self.inner.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_heads() {
        let raw =
            b"GET /ws?x=1 HTTP/1.1\r\nHost: a\r\nUpgrade: WebSocket\r\nConnection: Upgrade\r\n\r\nEXTRA";
        let (buf, head) = read_head(&mut &raw[..]).unwrap();
        assert_eq!(head, Head { method: "GET".into(), path: "/ws".into(), upgrade_websocket: true });
        assert_eq!(buf, raw.to_vec(), "bytes after the head are kept");
        let (_, plain) = read_head(&mut &b"POST /api/x HTTP/1.1\r\nHost: a\r\n\r\n"[..]).unwrap();
        assert!(!plain.upgrade_websocket);
        assert!(read_head(&mut &b"garbage\r\n\r\n"[..]).is_err());
        let huge = [b"GET / HTTP/1.1\r\nX: ".to_vec(), vec![b'a'; HEAD_BYTES_MAX + 10]].concat();
        assert!(read_head(&mut &huge[..]).is_err());
        assert!(read_head(&mut &b"GET / HTTP/1.1\r\n"[..]).is_err(), "EOF mid-head");
    }

    #[test]
    fn prefixed_replays_then_reads_on() {
        let mut p = Prefixed::new(b"abc".to_vec(), &b"def"[..]);
        let mut out = String::new();
        p.read_to_string(&mut out).unwrap();
        assert_eq!(out, "abcdef");
    }
}
