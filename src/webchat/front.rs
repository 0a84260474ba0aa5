//! The public listener: accepts connections, holds the connection limits, and gives each
//! accepted connection a thread that speaks HTTP/1.1 ([`super::http`]) and, after an upgrade,
//! WebSocket ([`super::ws`]).
//!
//! pincer serves HTTP itself rather than through a library server because a WebSocket must be
//! pushable at any time (its thread polls the socket's fd together with a waker), because the
//! request head has to be parsed and authenticated before any body is read, and because TLS is
//! terminated here for both. Limits: [`CONNECTIONS_MAX`] in total and
//! [`CONNECTIONS_PER_ADDRESS_MAX`] per client address (an IPv6 client counts per /64), except
//! for configured trusted proxies, which carry many clients.

use std::collections::HashMap;
use std::io::{self, Write};
use std::net::{IpAddr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use mio::{Events, Interest, Poll, Token, Waker};

use super::Ctx;
use super::auth::Peer;
use super::transport::Acceptor;
use super::wsloop::{self, Loops};

/// Open connections at once, all addresses together.
pub const CONNECTIONS_MAX: usize = 1024;
/// Open connections from one client address (or one IPv6 /64).
pub const CONNECTIONS_PER_ADDRESS_MAX: usize = 64;
/// Stack of a connection thread (its HTTP requests run on it; a WebSocket moves to a loop).
pub const THREAD_STACK_BYTES: usize = 512 * 1024;
/// When the last connection of a burst at least this large ends, free memory is handed back...
pub const TRIM_AFTER_CONNECTIONS: usize = 16;
/// ...this long after, once the connection threads have exited and freed their stacks.
pub const TRIM_DELAY: Duration = Duration::from_secs(1);
/// How long shutdown waits for connection threads and WebSocket loops to let go of their sockets.
pub const JOIN_TIMEOUT: Duration = Duration::from_secs(5);

const LISTENER: Token = Token(1);
const WAKE: Token = Token(0);

/// Who is connected: sockets (so shutdown can close them) and counts per address.
#[derive(Default)]
struct Live {
    state: Mutex<LiveState>,
    /// Signalled whenever a connection ends.
    ended: Condvar,
    next: AtomicU64,
    /// Wakes the acceptor (to stop, or for a due memory trim).
    waker: std::sync::OnceLock<Arc<Waker>>,
    stopping: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct LiveState {
    sockets: HashMap<u64, TcpStream>,
    per_address: HashMap<IpAddr, usize>,
    /// Highest number of connections since memory was last given back.
    peak: usize,
    /// A burst ended: give memory back at this time (the acceptor does it).
    trim_at: Option<(Instant, usize)>,
}

impl Live {
    fn lock(&self) -> MutexGuard<'_, LiveState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Ends a connection's accounting when its thread ends, however it ends.
struct Slot {
    live: Arc<Live>,
    id: u64,
    key: IpAddr,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut st = self.live.lock();
        st.sockets.remove(&self.id);
        if let Some(n) = st.per_address.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                st.per_address.remove(&self.key);
            }
        }
        let burst = if st.sockets.is_empty() { std::mem::take(&mut st.peak) } else { 0 };
        if burst >= TRIM_AFTER_CONNECTIONS {
            st.trim_at = Some((Instant::now() + TRIM_DELAY, burst));
        }
        drop(st);
        self.live.ended.notify_all();
        if burst >= TRIM_AFTER_CONNECTIONS
            && let Some(w) = self.live.waker.get()
        {
            let _ = w.wake();
        }
    }
}

/// The key a connection is counted under: the address, with IPv4-mapped IPv6 as IPv4 and other
/// IPv6 addresses by their /64 (one household or host usually owns a whole /64).
pub fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

/// Why a connection was refused at accept.
#[derive(Debug, PartialEq)]
pub enum Refusal {
    Total,
    PerAddress,
}

/// Decides whether one more connection fits, given how many are open in total and from its
/// address.
fn admit(total: usize, from_address: usize, exempt: bool) -> Result<(), Refusal> {
    if total >= CONNECTIONS_MAX {
        return Err(Refusal::Total);
    }
    if !exempt && from_address >= CONNECTIONS_PER_ADDRESS_MAX {
        return Err(Refusal::PerAddress);
    }
    Ok(())
}

pub struct Front {
    waker: Arc<Waker>,
    acceptor: Option<JoinHandle<()>>,
    live: Arc<Live>,
    loops: Arc<Loops>,
}

pub fn start(ctx: Arc<Ctx>, listener: TcpListener, tls: Acceptor) -> anyhow::Result<Front> {
    listener.set_nonblocking(true)?;
    let mut listener = mio::net::TcpListener::from_std(listener);
    let poll = Poll::new()?;
    poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
    let live = Arc::new(Live::default());
    let _ = live.waker.set(waker.clone());
    let live2 = live.clone();
    let loops = Arc::new(Loops::start(wsloop::loop_count())?);
    let loops2 = loops.clone();
    let acceptor = std::thread::Builder::new()
        .name("webchat-accept".into())
        .spawn(move || accept_loop(poll, listener, ctx, tls, live2, loops2))
        .context("starting the webchat acceptor")?;
    Ok(Front { waker, acceptor: Some(acceptor), live, loops })
}

impl Front {
    pub fn stop_accepting(&mut self) {
        self.live.stopping.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
        if let Some(t) = self.acceptor.take() {
            let _ = t.join();
        }
    }

    /// Closes every client socket, waits (bounded) for their threads and loops to let go of
    /// them, and ends the loops.
    pub fn join(&mut self) {
        self.stop_accepting();
        let st = self.live.lock();
        for s in st.sockets.values() {
            let _ = s.shutdown(Shutdown::Both);
        }
        let (st, waited) = self
            .live
            .ended
            .wait_timeout_while(st, JOIN_TIMEOUT, |st| !st.sockets.is_empty())
            .unwrap_or_else(|e| e.into_inner());
        if waited.timed_out() {
            log::warn!("{} webchat connection(s) still open at shutdown", st.sockets.len());
        }
        drop(st);
        self.loops.stop();
    }
}

fn accept_loop(
    mut poll: Poll,
    listener: mio::net::TcpListener,
    ctx: Arc<Ctx>,
    tls: Acceptor,
    live: Arc<Live>,
    loops: Arc<Loops>,
) {
    let mut events = Events::with_capacity(16);
    let mut last_refusal_log = Instant::now() - Duration::from_secs(60);
    loop {
        let trim_at = live.lock().trim_at;
        let timeout = trim_at.map(|(at, _)| at.saturating_duration_since(Instant::now()));
        if let Err(e) = crate::mailbox::poll(&mut poll, &mut events, timeout) {
            log::error!("webchat acceptor: {e}");
            return;
        }
        if live.stopping.load(Ordering::SeqCst) {
            return;
        }
        trim_if_due(&live);
        loop {
            let (stream, addr) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => {
                    // EMFILE and the like: the next readiness event tries again.
                    log::warn!("accept: {e}");
                    break;
                }
            };
            let stream = match into_std_blocking(stream) {
                Ok(s) => s,
                Err(e) => {
                    log::debug!("accepted socket: {e}");
                    continue;
                }
            };
            let key = address_key(addr.ip());
            let exempt = ctx.is_trusted_proxy(addr.ip());
            let slot = {
                let mut st = live.lock();
                let from_address = st.per_address.get(&key).copied().unwrap_or(0);
                match admit(st.sockets.len(), from_address, exempt) {
                    Ok(()) => {
                        let id = live.next.fetch_add(1, Ordering::SeqCst);
                        if let Ok(clone) = stream.try_clone() {
                            st.sockets.insert(id, clone);
                        }
                        *st.per_address.entry(key).or_insert(0) += 1;
                        st.peak = st.peak.max(st.sockets.len());
                        Ok(Slot { live: live.clone(), id, key })
                    }
                    Err(why) => Err(why),
                }
            };
            let slot = match slot {
                Ok(s) => s,
                Err(why) => {
                    refuse(&stream, &why);
                    if last_refusal_log.elapsed() >= Duration::from_secs(10) {
                        last_refusal_log = Instant::now();
                        log::warn!("refusing connections from {key}: {why:?} limit reached");
                    }
                    continue;
                }
            };
            let ctx = ctx.clone();
            let tls = tls.clone();
            let loops = loops.clone();
            let spawned = std::thread::Builder::new()
                .name("webchat-conn".into())
                .stack_size(THREAD_STACK_BYTES)
                .spawn(move || connection(&ctx, &tls, stream, addr, slot, &loops));
            if let Err(e) = spawned {
                log::error!("cannot start a connection thread: {e}");
            }
        }
    }
}

/// Hands free memory back once a burst of connections has ended and their threads are gone.
fn trim_if_due(live: &Live) {
    let due = {
        let mut st = live.lock();
        match st.trim_at {
            Some((at, burst)) if Instant::now() >= at => {
                st.trim_at = None;
                st.sockets.is_empty().then_some(burst)
            }
            _ => None,
        }
    };
    if let Some(burst) = due {
        crate::alloc::release_free_memory();
        log::info!("a burst of {burst} connections ended; free memory returned to the system");
    }
}

/// Answers a refused connection without reading it (the socket is fresh, so this tiny write
/// does not block) and closes it.
fn refuse(stream: &TcpStream, why: &Refusal) {
    let (status, text) = match why {
        Refusal::Total => {
            ("503 Service Unavailable", "the server is at its connection limit; try again shortly")
        }
        Refusal::PerAddress => {
            ("429 Too Many Requests", "too many connections from your address; close some and retry")
        }
    };
    let body = format!("{{\"error\":\"{text}\"}}");
    let resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 5\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.set_nonblocking(true);
    let _ = (&*stream).write_all(resp.as_bytes());
    let _ = stream.shutdown(Shutdown::Both);
}

fn into_std_blocking(stream: mio::net::TcpStream) -> io::Result<TcpStream> {
    let std_stream = TcpStream::from(stream);
    std_stream.set_nonblocking(false)?;
    std_stream.set_nodelay(true)?;
    Ok(std_stream)
}

/// Serves one connection's requests on this thread; a WebSocket goes on to a loop with the
/// connection's `slot`.
fn connection(
    ctx: &Arc<Ctx>,
    tls: &Acceptor,
    stream: TcpStream,
    addr: SocketAddr,
    slot: Slot,
    loops: &Loops,
) {
    let accepted = Instant::now();
    let transport = match tls.accept(stream, accepted) {
        Ok(t) => t,
        Err(e) => {
            log::debug!("TLS handshake with {addr}: {e:#}");
            return;
        }
    };
    let peer = Peer { addr, tls: transport.is_tls() };
    match super::http::serve(ctx, transport, peer, accepted) {
        Ok(Some(upgraded)) => loops.adopt(upgraded, Box::new(slot)),
        Ok(None) => {}
        Err(e) => log::debug!("connection from {addr}: {e:#}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_counted_by_host_or_ipv6_prefix() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(address_key(ip("10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(address_key(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(address_key(ip("2001:db8:1:2:aaaa::1")), address_key(ip("2001:db8:1:2:bbbb::9")));
        assert_ne!(address_key(ip("2001:db8:1:2::1")), address_key(ip("2001:db8:1:3::1")));
    }

    #[test]
    fn admission_holds_both_limits() {
        let per = CONNECTIONS_PER_ADDRESS_MAX;
        assert_eq!(admit(10, per - 1, false), Ok(()));
        assert_eq!(admit(10, per, false), Err(Refusal::PerAddress));
        assert_eq!(admit(10, per, true), Ok(()), "a trusted proxy carries many clients");
        assert_eq!(admit(CONNECTIONS_MAX, 0, false), Err(Refusal::Total));
        assert_eq!(admit(CONNECTIONS_MAX, 0, true), Err(Refusal::Total));
    }
}
