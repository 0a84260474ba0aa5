//! A wake-up for a thread that sleeps in a mio `Poll`: a `Waker` plus a pending flag.
//!
//! Waker events coalesce, so the flag (not the number of events) says whether work was asked
//! for. `kick()` is cheap and can be called from any thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use mio::{Registry, Token, Waker};

/// The token every loop registers its waker under.
pub const WAKE: Token = Token(0);

#[derive(Clone)]
pub struct Kick {
    waker: Arc<Waker>,
    pending: Arc<AtomicBool>,
}

impl Kick {
    pub fn new(registry: &Registry) -> std::io::Result<Kick> {
        Ok(Kick { waker: Arc::new(Waker::new(registry, WAKE)?), pending: Arc::new(AtomicBool::new(false)) })
    }

    pub fn kick(&self) {
        self.pending.store(true, Ordering::SeqCst);
        if let Err(e) = self.waker.wake() {
            log::error!("waker failed: {e}");
        }
    }

    /// True once per batch of kicks.
    pub fn take(&self) -> bool {
        self.pending.swap(false, Ordering::SeqCst)
    }
}

/// Polls with EINTR retried.
pub fn poll(
    poll: &mut mio::Poll,
    events: &mut mio::Events,
    timeout: Option<std::time::Duration>,
) -> std::io::Result<()> {
    loop {
        match poll.poll(events, timeout) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            res => return res,
        }
    }
}
