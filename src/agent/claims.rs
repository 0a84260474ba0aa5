//! A turn's claims, written when they are needed: the batch's rows are marked `processing` in
//! `outbound.db` before anything acts on them (a tool, a pre-task script, a message folded into
//! the turn) or once the turn has run for [`CLAIM_AFTER`], whichever comes first. A turn that
//! answers sooner writes its replies and the rows' final status in one commit and no claim at
//! all: one durable commit per answer instead of two.
//!
//! A claim is for the host: when a container exits with a row claimed, the row is retried with
//! backoff and then failed (a message that kills its container cannot loop), and a claim held too
//! long gets the container stopped. Before a claim is written only the prompt and the model call
//! have run; a container that dies then leaves the row pending, and the next container answers
//! it, as it would a row it never read.
//!
//! The timer runs on a thread of its own with its own connection to `outbound.db` (the runner's
//! main thread is inside the model call when it fires). The two never write at the same time:
//! the main thread takes a held claim back, or waits for the one being written, before it
//! writes the same rows' status ([`Claims::settle`]).

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::db::{self, Connection, outbound};
use crate::ids::now_ms;

/// How long a turn runs before its claims are written anyway. Any model a person waits for takes
/// longer; an instant local model (or the mock) answers first.
pub const CLAIM_AFTER: Duration = Duration::from_millis(50);

#[derive(Debug)]
enum State {
    /// Nothing held.
    Idle,
    /// Rows claimed in memory, to be written at `due` unless taken back first.
    Held { ids: Vec<String>, due: Instant },
    /// The timer's thread is writing them.
    Writing,
    /// The timer's thread could not write them (told at the next [`Claims::settle`]).
    Failed(String),
    /// The runner is ending.
    Stop,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The runner's held claims and the thread that writes them when the turn runs long.
pub struct Claims {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    /// How long a turn runs before its claims are written anyway ([`CLAIM_AFTER`]).
    after: Duration,
}

impl Claims {
    /// Starts the timer's thread; `conn` is its own read-write connection to `outbound.db`.
    pub fn start(conn: Connection, after: Duration) -> anyhow::Result<Claims> {
        let shared = Arc::new(Shared { state: Mutex::new(State::Idle), changed: Condvar::new() });
        let for_thread = shared.clone();
        let thread = std::thread::Builder::new()
            .name("claims".into())
            .spawn(move || timer(&for_thread, conn))
            .context("starting the claims thread")?;
        Ok(Claims { shared, thread: Some(thread), after })
    }

    /// Holds claims on `ids` (read just now, not yet acted on).
    pub fn hold(&self, ids: &[&str]) {
        let mut st = self.shared.lock();
        debug_assert!(matches!(*st, State::Idle), "claims held twice: {st:?}");
        *st = State::Held {
            ids: ids.iter().map(|s| s.to_string()).collect(),
            due: Instant::now() + self.after,
        };
        self.shared.changed.notify_all();
    }

    /// Writes the held claims now (before something acts on the rows); waits for the timer's
    /// write if it is under way.
    pub fn write_now(&self, out: &mut Connection) -> anyhow::Result<()> {
        let mut st = self.shared.lock();
        loop {
            match std::mem::replace(&mut *st, State::Idle) {
                State::Writing => {
                    *st = State::Writing;
                    st = self.shared.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                State::Held { ids, .. } => {
                    drop(st);
                    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
                    return db::write_tx(out, |tx| Ok(outbound::set_ack(tx, &ids, "processing", now_ms())?));
                }
                State::Failed(e) => anyhow::bail!("writing the turn's claims: {e}"),
                State::Idle => return Ok(()),
                State::Stop => {
                    *st = State::Stop;
                    return Ok(());
                }
            }
        }
    }

    /// Before the rows' final status is written: takes back claims not yet written (the final
    /// status replaces them) or waits for the timer's write to end, so a claim never lands after
    /// the status that completes it.
    pub fn settle(&self) -> anyhow::Result<()> {
        let mut st = self.shared.lock();
        loop {
            match std::mem::replace(&mut *st, State::Idle) {
                State::Writing => {
                    *st = State::Writing;
                    st = self.shared.changed.wait(st).unwrap_or_else(|e| e.into_inner());
                }
                State::Failed(e) => anyhow::bail!("writing the turn's claims: {e}"),
                State::Held { .. } | State::Idle => return Ok(()),
                State::Stop => {
                    *st = State::Stop;
                    return Ok(());
                }
            }
        }
    }
}

impl Drop for Claims {
    fn drop(&mut self) {
        *self.shared.lock() = State::Stop;
        self.shared.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The timer's thread: writes held claims when they come due.
fn timer(shared: &Shared, mut conn: Connection) {
    let mut st = shared.lock();
    loop {
        match &*st {
            State::Stop => return,
            State::Held { due, .. } => {
                let now = Instant::now();
                if now < *due {
                    let wait = *due - now;
                    st = shared.changed.wait_timeout(st, wait).unwrap_or_else(|e| e.into_inner()).0;
                    continue;
                }
                let State::Held { ids, .. } = std::mem::replace(&mut *st, State::Writing) else {
                    unreachable!("matched Held above")
                };
                drop(st);
                let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
                let res =
                    db::write_tx(&mut conn, |tx| Ok(outbound::set_ack(tx, &refs, "processing", now_ms())?));
                st = shared.lock();
                if matches!(*st, State::Writing) {
                    *st = match res {
                        Ok(()) => State::Idle,
                        Err(e) => State::Failed(format!("{e:#}")),
                    };
                }
                shared.changed.notify_all();
            }
            State::Idle | State::Writing | State::Failed(_) => {
                st = shared.changed.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::Kind;

    /// Every row's status on disk (`processing` claims and final statuses), by id.
    fn on_disk(path: &std::path::Path) -> Vec<(String, String)> {
        let conn = db::open(path, Kind::Outbound).unwrap();
        let mut all: Vec<(String, String)> = outbound::processing_claims(&conn)
            .unwrap()
            .into_iter()
            .map(|(id, _)| (id, "processing".to_string()))
            .chain(outbound::finished_acks(&conn).unwrap())
            .collect();
        all.sort();
        all
    }

    fn setup(after: Duration) -> (tempfile::TempDir, std::path::PathBuf, Connection, Claims) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbound.db");
        let main = db::open(&path, Kind::Outbound).unwrap();
        let claims = Claims::start(db::open(&path, Kind::Outbound).unwrap(), after).unwrap();
        (dir, path, main, claims)
    }

    fn processing(ids: &[&str]) -> Vec<(String, String)> {
        ids.iter().map(|id| (id.to_string(), "processing".to_string())).collect()
    }

    #[test]
    fn claims_taken_back_before_they_are_due_are_never_written() {
        let (_dir, path, _main, claims) = setup(Duration::from_secs(3600));
        claims.hold(&["m1", "m2"]);
        claims.settle().unwrap();
        drop(claims);
        assert!(on_disk(&path).is_empty());
    }

    #[test]
    fn write_now_writes_held_claims_at_once_and_only_once() {
        let (_dir, path, mut main, claims) = setup(Duration::from_secs(3600));
        claims.hold(&["m1"]);
        claims.write_now(&mut main).unwrap();
        assert_eq!(on_disk(&path), processing(&["m1"]));
        // Nothing is held any more: settling and writing again change nothing.
        db::write_tx(&mut main, |tx| Ok(outbound::set_ack(tx, &["m1"], "completed", now_ms())?)).unwrap();
        claims.settle().unwrap();
        claims.write_now(&mut main).unwrap();
        assert_eq!(on_disk(&path), vec![("m1".to_string(), "completed".to_string())]);
    }

    #[test]
    fn claims_held_past_their_time_are_written_by_the_timer() {
        let (_dir, path, _main, claims) = setup(Duration::from_millis(1));
        claims.hold(&["m1", "m2"]);
        let deadline = Instant::now() + Duration::from_secs(10);
        while on_disk(&path).is_empty() {
            assert!(Instant::now() < deadline, "the timer did not write the claims");
            std::thread::yield_now();
        }
        // Settling after the timer's write leaves them written (the final status follows).
        claims.settle().unwrap();
        assert_eq!(on_disk(&path), processing(&["m1", "m2"]));
    }
}
