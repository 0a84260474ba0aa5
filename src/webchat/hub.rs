//! Fan-out of live events to WebSocket clients.
//!
//! Each connected socket registers an [`Outbox`]: a queue bounded in frames and in bytes that
//! rings its loop's [`Bell`] when a frame arrives (once, until the loop looks). Broadcasting
//! serialises an event once and pushes it to every client that joined the room. A client that
//! cannot keep up overflows its queue and is disconnected (the queue is freed at once); it
//! resumes with `after_seq` and loses nothing durable (only ephemeral deltas). The socket's loop
//! takes frames out only while the socket keeps up, so what is queued here is what is really
//! unsent.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Frames queued for one client before it counts as too slow.
pub const OUTBOX_FRAMES_MAX: usize = 2048;
/// Bytes queued for one client before it counts as too slow.
pub const OUTBOX_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Why an outbox was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closed {
    /// The client did not take its events fast enough.
    TooSlow,
    /// The server is shutting down.
    Shutdown,
    /// The person was signed out, removed, or lost access.
    Revoked,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Arc<str>>,
    bytes: usize,
}

/// A WebSocket loop's doorbell: which of its sockets' outboxes have news (frames, or a close)
/// since the loop last looked, and the waker of the loop's poll.
pub struct Bell {
    waker: mio::Waker,
    rung: Mutex<Vec<usize>>,
}

impl Bell {
    pub fn new(waker: mio::Waker) -> Bell {
        Bell { waker, rung: Mutex::new(Vec::new()) }
    }

    /// Notes `key`; only the first ring since the loop last looked wakes it (one wake-up per
    /// broadcast, not one per socket).
    fn ring(&self, key: usize) {
        let first = {
            let mut rung = self.rung.lock().unwrap_or_else(|e| e.into_inner());
            rung.push(key);
            rung.len() == 1
        };
        if first {
            let _ = self.waker.wake();
        }
    }

    /// Wakes the loop without news from an outbox (a new socket or a stop for it).
    pub fn wake(&self) {
        let _ = self.waker.wake();
    }

    /// The keys of the outboxes that rang, each once.
    pub fn take(&self) -> Vec<usize> {
        std::mem::take(&mut *self.rung.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

pub struct Outbox {
    queue: Mutex<Queue>,
    bell: Arc<Bell>,
    /// The socket's key in its loop.
    key: usize,
    /// The bell was rung and the loop has not looked yet (a burst rings once).
    rung: AtomicBool,
    /// 0 open, 1 too slow, 2 shutdown, 3 revoked.
    closed: AtomicU8,
}

impl Outbox {
    pub fn new(bell: Arc<Bell>, key: usize) -> Outbox {
        Outbox {
            queue: Mutex::new(Queue::default()),
            bell,
            key,
            rung: AtomicBool::new(false),
            closed: AtomicU8::new(0),
        }
    }

    fn ring(&self) {
        if !self.rung.swap(true, Ordering::SeqCst) {
            self.bell.ring(self.key);
        }
    }

    /// The loop is looking at this outbox now: news from here on rings again.
    pub fn answered(&self) {
        self.rung.store(false, Ordering::SeqCst);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn push(&self, frame: Arc<str>) {
        if self.closed().is_some() {
            return;
        }
        {
            let mut q = self.lock();
            if q.frames.len() >= OUTBOX_FRAMES_MAX || q.bytes + frame.len() > OUTBOX_BYTES_MAX {
                *q = Queue::default();
                self.closed.store(1, Ordering::SeqCst);
            } else {
                q.bytes += frame.len();
                q.frames.push_back(frame);
            }
        }
        self.ring();
    }

    /// Takes queued frames, up to about `bytes_max` (always at least one if any is queued).
    pub fn take(&self, bytes_max: usize) -> Vec<Arc<str>> {
        let mut q = self.lock();
        let mut out = Vec::new();
        let mut taken = 0;
        while let Some(f) = q.frames.front() {
            if !out.is_empty() && taken + f.len() > bytes_max {
                break;
            }
            taken += f.len();
            let f = q.frames.pop_front().expect("front exists");
            out.push(f);
        }
        q.bytes -= taken;
        out
    }

    /// Bytes waiting in the queue.
    pub fn queued_bytes(&self) -> usize {
        self.lock().bytes
    }

    pub fn closed(&self) -> Option<Closed> {
        match self.closed.load(Ordering::SeqCst) {
            0 => None,
            1 => Some(Closed::TooSlow),
            2 => Some(Closed::Shutdown),
            _ => Some(Closed::Revoked),
        }
    }

    /// Asks the socket's loop to close it.
    pub fn close(&self, why: Closed) {
        let code = match why {
            Closed::TooSlow => 1,
            Closed::Shutdown => 2,
            Closed::Revoked => 3,
        };
        self.closed.store(code, Ordering::SeqCst);
        self.ring();
    }
}

struct Client {
    user_id: String,
    /// The signed-in session the socket was opened with.
    session: Option<String>,
    /// The app is in view, showing this room (as the page reports it).
    visible: bool,
    looking_at: Option<String>,
    rooms: HashSet<String>,
    outbox: Arc<Outbox>,
}

#[derive(Default)]
pub struct Hub {
    clients: Mutex<HashMap<u64, Client>>,
    next_id: AtomicU64,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Client>> {
        self.clients.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn register(&self, user_id: &str, session: Option<&str>, outbox: Arc<Outbox>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst) + 1;
        let client = Client {
            user_id: user_id.to_string(),
            session: session.map(str::to_string),
            visible: true,
            looking_at: None,
            rooms: HashSet::new(),
            outbox,
        };
        self.lock().insert(id, client);
        id
    }

    /// Closes the sockets of a person (removed, or lost access: they reconnect with what is left).
    pub fn close_user(&self, user_id: &str) {
        for c in self.lock().values().filter(|c| c.user_id == user_id) {
            c.outbox.close(Closed::Revoked);
        }
    }

    /// Closes the sockets opened with a signed-in session that was revoked.
    pub fn close_session(&self, session: &str) {
        for c in self.lock().values().filter(|c| c.session.as_deref() == Some(session)) {
            c.outbox.close(Closed::Revoked);
        }
    }

    /// What the page shows: in view or not, and which room.
    pub fn set_view(&self, id: u64, visible: bool, room: Option<&str>) {
        if let Some(c) = self.lock().get_mut(&id) {
            c.visible = visible;
            c.looking_at = room.map(str::to_string);
        }
    }

    /// The people who have this room in view on some device (they get no notification for it).
    pub fn looking_at(&self, room_id: &str) -> HashSet<String> {
        self.lock()
            .values()
            .filter(|c| c.visible && c.looking_at.as_deref() == Some(room_id))
            .map(|c| c.user_id.clone())
            .collect()
    }

    /// Whether the person has an open socket.
    pub fn is_online(&self, user_id: &str) -> bool {
        self.lock().values().any(|c| c.user_id == user_id)
    }

    pub fn unregister(&self, id: u64) {
        let mut clients = self.lock();
        clients.remove(&id);
        // After a burst: the table would keep its peak capacity (a slot a client it once held).
        if clients.is_empty() {
            clients.shrink_to_fit();
        }
    }

    pub fn join(&self, id: u64, room_id: &str) {
        if let Some(c) = self.lock().get_mut(&id) {
            c.rooms.insert(room_id.to_string());
        }
    }

    /// Sends to every client in the room (except `except`).
    pub fn broadcast(&self, room_id: &str, frame: &str, except: Option<u64>) {
        let frame: Arc<str> = Arc::from(frame);
        for (id, c) in self.lock().iter() {
            if Some(*id) != except && c.rooms.contains(room_id) {
                c.outbox.push(frame.clone());
            }
        }
    }

    pub fn send(&self, id: u64, frame: &str) {
        if let Some(c) = self.lock().get(&id) {
            c.outbox.push(Arc::from(frame));
        }
    }

    /// Users with an open socket (for "rooms changed" pushes).
    pub fn users(&self) -> Vec<(u64, String)> {
        self.lock().iter().map(|(id, c)| (*id, c.user_id.clone())).collect()
    }

    /// Closes every connection (shutdown).
    pub fn close_all(&self) {
        for c in self.lock().values() {
            c.outbox.close(Closed::Shutdown);
        }
    }
}
