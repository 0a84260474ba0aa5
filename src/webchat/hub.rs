//! Fan-out of live events to WebSocket clients.
//!
//! Each connected socket registers an [`Outbox`]: a bounded queue plus the mio waker of its
//! connection thread. Broadcasting serialises an event once and pushes it to every client that
//! joined the room. A client that cannot keep up overflows its queue and is disconnected; it
//! resumes with `after_seq` and loses nothing durable (only ephemeral deltas).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Frames queued for one client before it counts as too slow.
pub const OUTBOX_FRAMES_MAX: usize = 2048;

pub struct Outbox {
    queue: Mutex<VecDeque<Arc<str>>>,
    waker: mio::Waker,
    overflowed: AtomicBool,
}

impl Outbox {
    pub fn new(waker: mio::Waker) -> Outbox {
        Outbox { queue: Mutex::new(VecDeque::new()), waker, overflowed: AtomicBool::new(false) }
    }

    pub fn push(&self, frame: Arc<str>) {
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if q.len() >= OUTBOX_FRAMES_MAX {
                self.overflowed.store(true, Ordering::SeqCst);
            } else {
                q.push_back(frame);
            }
        }
        let _ = self.waker.wake();
    }

    pub fn take(&self) -> VecDeque<Arc<str>> {
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
    }

    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::SeqCst)
    }

    /// Asks the connection thread to close (shutdown).
    pub fn close(&self) {
        self.overflowed.store(true, Ordering::SeqCst);
        let _ = self.waker.wake();
    }
}

struct Client {
    user_id: String,
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

    pub fn register(&self, user_id: &str, outbox: Arc<Outbox>) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::SeqCst) + 1;
        self.lock().insert(id, Client { user_id: user_id.to_string(), rooms: HashSet::new(), outbox });
        id
    }

    pub fn unregister(&self, id: u64) {
        self.lock().remove(&id);
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

    pub fn clients(&self) -> usize {
        self.lock().len()
    }

    /// Users with an open socket (for "rooms changed" pushes).
    pub fn users(&self) -> Vec<(u64, String)> {
        self.lock().iter().map(|(id, c)| (*id, c.user_id.clone())).collect()
    }

    /// Closes every connection (shutdown).
    pub fn close_all(&self) {
        for c in self.lock().values() {
            c.outbox.close();
        }
    }
}
