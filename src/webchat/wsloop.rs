//! The WebSocket loops: a few threads, each serving many upgraded sockets on one mio poll.
//!
//! A request's thread upgrades a socket and hands it to the loop with the fewest sockets, then
//! ends. A loop wakes for a socket's readiness, for its outbox's [`Bell`], for a socket handed
//! to it, and every [`TICK`] for pings and deadlines. A socket costs its own state only (no
//! thread, no stack, no allocator cache), which is what lets thousands of idle clients stay
//! cheap, and a broadcast is written by [`loop_count`] threads rather than woken in one thread
//! per client.
//!
//! A socket's turn is short: its frames are answered in order, and a join's history goes out a
//! frame at a time ([`Conn::step`]), so one client cannot hold a loop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use tungstenite::protocol::frame::coding::CloseCode;

use super::hub::Bell;
use super::ws::{self, Conn, Upgraded};
use crate::mailbox::WAKE;

/// How often a loop pings quiet sockets and checks deadlines.
pub const TICK: Duration = Duration::from_secs(1);
/// Readiness events taken per poll.
const EVENTS: usize = 1024;

/// The number of loops: one per core, at most four.
pub fn loop_count() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4)
}

/// A loop's mailbox.
enum LoopMsg {
    /// Serve this socket; `held` (the connection's accounting) is dropped when it closes.
    Adopt(Box<Upgraded>, Box<dyn Send>),
    /// Close every socket and end.
    Stop,
}

struct Shared {
    bell: Arc<Bell>,
    inbox: Mutex<Vec<LoopMsg>>,
    sockets: AtomicUsize,
}

impl Shared {
    fn post(&self, msg: LoopMsg) {
        self.inbox.lock().unwrap_or_else(|e| e.into_inner()).push(msg);
        self.bell.wake();
    }
}

pub struct Loops {
    loops: Vec<Arc<Shared>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Loops {
    pub fn start(n: usize) -> anyhow::Result<Loops> {
        let mut loops = Vec::with_capacity(n);
        let mut threads = Vec::with_capacity(n);
        for i in 0..n.max(1) {
            let poll = Poll::new()?;
            let bell = Arc::new(Bell::new(mio::Waker::new(poll.registry(), WAKE)?));
            let shared = Arc::new(Shared { bell, inbox: Mutex::default(), sockets: AtomicUsize::new(0) });
            let for_thread = shared.clone();
            threads.push(
                std::thread::Builder::new()
                    .name(format!("webchat-ws-{i}"))
                    .spawn(move || run(poll, &for_thread))
                    .context("starting a WebSocket loop")?,
            );
            loops.push(shared);
        }
        Ok(Loops { loops, threads: Mutex::new(threads) })
    }

    /// Hands an upgraded socket to the loop with the fewest.
    pub(crate) fn adopt(&self, up: Box<Upgraded>, held: Box<dyn Send>) {
        let Some(least) = self.loops.iter().min_by_key(|l| l.sockets.load(Ordering::SeqCst)) else { return };
        least.sockets.fetch_add(1, Ordering::SeqCst);
        least.post(LoopMsg::Adopt(up, held));
    }

    /// Sockets being served.
    pub fn sockets(&self) -> usize {
        self.loops.iter().map(|l| l.sockets.load(Ordering::SeqCst)).sum()
    }

    /// Closes every socket (saying the server is going away) and ends the loops.
    pub fn stop(&self) {
        for l in &self.loops {
            l.post(LoopMsg::Stop);
        }
        for t in std::mem::take(&mut *self.threads.lock().unwrap_or_else(|e| e.into_inner())) {
            let _ = t.join();
        }
    }
}

/// A socket in a loop.
struct Socket {
    conn: Conn,
    /// Dropped with the socket.
    _held: Box<dyn Send>,
    /// Its writability is watched.
    writable: bool,
}

fn run(mut poll: Poll, shared: &Shared) {
    // Boxed: the table's capacity stays at its peak after a burst of clients leaves, and a
    // socket's state inline would keep that peak's worth of memory (about 1.5 MiB a loop after
    // 250 sockets, measured) where a pointer a slot keeps next to nothing.
    let mut sockets: HashMap<usize, Box<Socket>> = HashMap::new();
    let mut next_key = WAKE.0 + 1;
    let mut events = Events::with_capacity(EVENTS);
    let mut next_tick = Instant::now() + TICK;
    loop {
        let timeout = next_tick.saturating_duration_since(Instant::now());
        if let Err(e) = crate::mailbox::poll(&mut poll, &mut events, Some(timeout)) {
            log::error!("WebSocket loop: {e}");
            return;
        }
        let mut turn: Vec<usize> = Vec::with_capacity(events.iter().count());
        for e in events.iter().filter(|e| e.token() != WAKE) {
            turn.push(e.token().0);
            if (e.is_readable() || e.is_read_closed() || e.is_error())
                && let Some(s) = sockets.get_mut(&e.token().0)
            {
                s.conn.readable = true;
            }
        }
        turn.extend(shared.bell.take());
        let mut stop = false;
        for msg in std::mem::take(&mut *shared.inbox.lock().unwrap_or_else(|e| e.into_inner())) {
            match msg {
                LoopMsg::Adopt(up, held) => {
                    let key = next_key;
                    next_key += 1;
                    match adopt(&poll, up, held, shared, key) {
                        Some(s) => {
                            sockets.insert(key, s);
                            turn.push(key);
                        }
                        None => {
                            shared.sockets.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                }
                LoopMsg::Stop => stop = true,
            }
        }
        turn.sort_unstable();
        turn.dedup();
        for key in turn {
            if let Some(s) = sockets.get_mut(&key) {
                let res = s.conn.step();
                settle(&poll, &mut sockets, shared, key, res);
            }
        }
        if Instant::now() >= next_tick {
            next_tick = Instant::now() + TICK;
            let keys: Vec<usize> = sockets.keys().copied().collect();
            for key in keys {
                if let Some(s) = sockets.get_mut(&key) {
                    let res = s.conn.tick().map(|()| true);
                    settle(&poll, &mut sockets, shared, key, res);
                }
            }
        }
        if stop {
            for (_, mut s) in sockets.drain() {
                s.conn.end(Err(ws::hangup(CloseCode::Away, "server shutting down")));
            }
            shared.sockets.store(0, Ordering::SeqCst);
            return;
        }
    }
}

/// Registers a socket and says `ready`; `None` if it failed (then it is closed).
fn adopt(
    poll: &Poll,
    up: Box<Upgraded>,
    held: Box<dyn Send>,
    shared: &Shared,
    key: usize,
) -> Option<Box<Socket>> {
    let mut conn = match Conn::open(up, shared.bell.clone(), key) {
        Ok(c) => c,
        Err(e) => {
            log::debug!("taking a WebSocket into its loop: {e:#}");
            return None;
        }
    };
    let registered = poll.registry().register(&mut SourceFd(&conn.fd()), Token(key), Interest::READABLE);
    if let Err(e) = registered.map_err(anyhow::Error::from).and_then(|()| conn.start()) {
        let _ = poll.registry().deregister(&mut SourceFd(&conn.fd()));
        conn.end(Err(e));
        return None;
    }
    Some(Box::new(Socket { conn, _held: held, writable: false }))
}

/// After a socket's turn: watches its writability as it needs, or closes it when it ended.
fn settle(
    poll: &Poll,
    sockets: &mut HashMap<usize, Box<Socket>>,
    shared: &Shared,
    key: usize,
    res: anyhow::Result<bool>,
) {
    let ended = match res {
        Ok(true) => {
            let Some(s) = sockets.get_mut(&key) else { return };
            if s.conn.writable_wanted != s.writable {
                let interest = if s.conn.writable_wanted {
                    Interest::READABLE | Interest::WRITABLE
                } else {
                    Interest::READABLE
                };
                match poll.registry().reregister(&mut SourceFd(&s.conn.fd()), Token(key), interest) {
                    Ok(()) => {
                        s.writable = s.conn.writable_wanted;
                        return;
                    }
                    Err(e) => Err(e.into()),
                }
            } else {
                return;
            }
        }
        Ok(false) => Ok(()),
        Err(e) => Err(e),
    };
    if let Some(mut s) = sockets.remove(&key) {
        let _ = poll.registry().deregister(&mut SourceFd(&s.conn.fd()));
        s.conn.end(ended);
        shared.sockets.fetch_sub(1, Ordering::SeqCst);
    }
}
