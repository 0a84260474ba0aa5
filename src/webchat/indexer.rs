//! The search indexer: a thread that indexes stored messages for search in batches, off the
//! path of a message.
//!
//! A stored message waits unindexed (its rowid is above `search_state.indexed_upto`) and rings
//! this thread ([`Indexer::stored`]). The thread lets [`GATHER`] pass, so one batch takes what a
//! busy moment stored, then indexes [`BATCH_MAX`] messages per transaction (short, so the
//! writers of messages wait little). Indexing is redoable work: a batch commits without
//! waiting for the disk, and one lost at a power failure is indexed again by the next. A
//! search indexes what waits first ([`index_all`]), so it finds every stored message. The
//! thread starts with whatever an earlier run left unindexed and indexes everything before it
//! stops.

use std::path::Path;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;
use mio::{Events, Poll};

use crate::db::{self, Connection, Kind, central};
use crate::mailbox::{self, Mailbox};

/// How long after a message is stored its batch is indexed (what else is stored meanwhile goes
/// in the same batch).
pub const GATHER: Duration = Duration::from_millis(250);
/// Messages indexed per transaction.
pub const BATCH_MAX: i64 = 200;
/// After a failed batch (a full disk, say), the next try.
pub const RETRY: Duration = Duration::from_secs(5);

/// The indexer thread's mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum IndexMsg {
    /// A message was stored.
    Stored,
    /// Index what waits, then end.
    Stop,
}

pub struct Indexer {
    mailbox: Mailbox<IndexMsg>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Indexer {
    /// Starts the thread on its own connection to the central DB.
    pub fn start(central_path: &Path) -> anyhow::Result<Indexer> {
        let poll = Poll::new()?;
        let mailbox = Mailbox::new(poll.registry())?;
        let conn = db::open(central_path, Kind::Central)?;
        let mb = mailbox.clone();
        let thread = std::thread::Builder::new()
            .name("search-index".into())
            .spawn(move || run(conn, poll, &mb))
            .context("starting the search indexer")?;
        Ok(Indexer { mailbox, thread: Mutex::new(Some(thread)) })
    }

    /// A message was stored: its batch is indexed within [`GATHER`].
    pub fn stored(&self) {
        self.mailbox.post(IndexMsg::Stored);
    }

    /// Indexes what waits and ends the thread.
    pub fn stop(&self) {
        self.mailbox.post(IndexMsg::Stop);
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

fn run(mut conn: Connection, mut poll: Poll, mailbox: &Mailbox<IndexMsg>) {
    let mut events = Events::with_capacity(4);
    // What an earlier run left unindexed is indexed at once.
    let mut due = Some(Instant::now());
    loop {
        let msgs = mailbox.take();
        let stop = msgs.contains(&IndexMsg::Stop);
        if msgs.contains(&IndexMsg::Stored) && due.is_none() {
            due = Some(Instant::now() + GATHER);
        }
        if stop || due.is_some_and(|t| Instant::now() >= t) {
            due = None;
            if let Err(e) = index_all(&mut conn) {
                log::error!("indexing messages for search: {e:#}; trying again in {}s", RETRY.as_secs());
                due = Some(Instant::now() + RETRY);
            }
            if stop {
                return;
            }
        }
        let timeout = due.map(|t| t.saturating_duration_since(Instant::now()));
        if let Err(e) = mailbox::poll(&mut poll, &mut events, timeout) {
            log::error!("search indexer: {e}");
            return;
        }
    }
}

/// Indexes every message waiting, [`BATCH_MAX`] per transaction; how many.
pub fn index_all(conn: &mut Connection) -> anyhow::Result<usize> {
    let mut total = 0;
    loop {
        let n = db::write_tx_redoable(conn, |tx| Ok(central::index_batch(tx, BATCH_MAX)?))?;
        total += n;
        if n < BATCH_MAX as usize {
            return Ok(total);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::webchat::store::Store;

    #[test]
    fn stopping_indexes_every_message_stored_before() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pincer.db");
        let conn = db::open(&path, Kind::Central).unwrap();
        let room = central::Room::webchat_for_tests("r1");
        central::insert_room(&conn, &room).unwrap();
        let store = Store::new(&path);
        let indexer = std::sync::Arc::new(Indexer::start(&path).unwrap());
        store.index_with(indexer.clone());
        for i in 0..(BATCH_MAX + 5) {
            store.notice(&room, &format!("walrus number {i}")).unwrap();
        }
        indexer.stop();
        assert_eq!(central::indexed_texts(&conn, "walrus").len(), BATCH_MAX as usize + 5);
        assert!(!central::unindexed_left(&conn).unwrap(), "nothing waits");
    }
}
