//! Wake-ups and mailboxes for threads that sleep in a mio `Poll`.
//!
//! [`Kick`] is a `Waker` plus a pending flag: waker events coalesce, so the flag (not the number
//! of events) says whether work was asked for. [`Mailbox`] adds a queue of one thread's closed
//! message enum; posting a message equal to one already queued adds nothing, so a mailbox holds
//! at most one copy of each distinct message however often it is posted (its bound). Both are
//! cheap and can be used from any thread.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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

/// A thread's queue of messages, with the kick that wakes it.
pub struct Mailbox<M> {
    kick: Kick,
    queue: Arc<Mutex<Vec<M>>>,
}

impl<M> Clone for Mailbox<M> {
    fn clone(&self) -> Self {
        Mailbox { kick: self.kick.clone(), queue: self.queue.clone() }
    }
}

impl<M: PartialEq> Mailbox<M> {
    pub fn new(registry: &Registry) -> std::io::Result<Mailbox<M>> {
        Ok(Mailbox { kick: Kick::new(registry)?, queue: Arc::default() })
    }

    /// Queues a message (unless an equal one is already queued) and wakes the thread.
    pub fn post(&self, msg: M) {
        {
            let mut q = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            if !q.contains(&msg) {
                q.push(msg);
            }
        }
        self.kick.kick();
    }

    /// Everything queued, in order.
    pub fn take(&self) -> Vec<M> {
        self.kick.take();
        std::mem::take(&mut *self.queue.lock().unwrap_or_else(|e| e.into_inner()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mailbox_keeps_one_copy_of_each_message_in_order() {
        let poll = mio::Poll::new().unwrap();
        let mb: Mailbox<(u8, &str)> = Mailbox::new(poll.registry()).unwrap();
        for m in [(1, "a"), (2, "b"), (1, "a"), (3, "c"), (2, "b")] {
            mb.post(m);
        }
        assert_eq!(mb.take(), [(1, "a"), (2, "b"), (3, "c")]);
        assert!(mb.take().is_empty());
    }
}
