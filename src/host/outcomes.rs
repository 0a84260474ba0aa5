//! Delivery outcomes that wait to ride with their session's next `inbound.db` commit.
//!
//! A message a channel stores by its source id (the webchat's room store) is on disk, and
//! shown, before its outcome is written, and delivering it again changes nothing: a crash before
//! the outcome is written loses no message and shows none twice. So the `delivered` row of such a
//! message, and the container's acknowledgements that came with it, need not cost a commit of
//! their own: on a rollback-journal file that is four `fsync`s, and it held the session's file
//! just when the next message's queuing wanted it. They wait here and go with the router's next
//! insert into the session, or with delivery's next commit of it, or after [`HOLD_MAX`] in a
//! commit of their own. What is lost at a crash is found again: the next pass after a start
//! reads the session's rows from the start (a no-op for delivered ones), and the sweep applies
//! every acknowledgement before it counts what is pending.
//!
//! Only outcomes that are safe to redo wait (delivery decides); failures, files, edits, host
//! actions and messages between agents are recorded at once.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::db::Connection;
use crate::db::inbound::{self, Outcome};

/// The longest an outcome waits for another commit to ride with.
pub const HOLD_MAX: Duration = Duration::from_millis(500);
/// The most outcomes a session holds: an agent that sends this many in [`HOLD_MAX`] has them
/// written at once (a few KiB at most wait per session).
pub const HELD_ROWS_MAX: usize = 100;

/// A session's waiting outcomes.
#[derive(Debug, Default, PartialEq)]
pub struct Held {
    /// The session's `inbound.db`.
    pub inbound: PathBuf,
    /// Delivered rows: outbound row id → the id the channel gave it.
    pub delivered: Vec<(String, String)>,
    /// The container's acknowledgements: inbound row id → final status.
    pub acks: Vec<(String, String)>,
}

impl Held {
    /// Whether the session's `inbound.db` is still there (a session removed meanwhile has
    /// nothing to record).
    pub fn still_there(&self) -> bool {
        self.inbound.exists()
    }

    /// Writes them in the caller's transaction.
    pub fn write(&self, tx: &Connection, now: i64) -> rusqlite::Result<()> {
        for (row_id, platform_id) in &self.delivered {
            inbound::record_outcome(tx, row_id, Outcome::Delivered, Some(platform_id), None, now)?;
        }
        inbound::apply_acks(tx, &self.acks)?;
        Ok(())
    }

    /// Adds later outcomes. Acknowledgements already held are not added again: delivery leaves
    /// out the ones held ([`Outcomes::drop_held_acks`]), but a pass that ran while these were
    /// out for a commit that failed ([`Outcomes::put_back`]) found them pending and held them too.
    fn merge(&mut self, later: Held) {
        self.inbound = later.inbound;
        self.delivered.extend(later.delivered);
        let known: HashSet<String> = self.acks.iter().map(|(id, _)| id.clone()).collect();
        self.acks.extend(later.acks.into_iter().filter(|(id, _)| !known.contains(id)));
    }
}

/// The waiting outcomes of every session, shared by the threads that write `inbound.db`.
#[derive(Clone, Default)]
pub struct Outcomes {
    inner: Arc<Mutex<HashMap<String, (Held, Instant)>>>,
}

impl Outcomes {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, (Held, Instant)>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds outcomes to the session's waiting ones (which wait from the oldest's time). Returns
    /// whether the session now holds [`HELD_ROWS_MAX`] or more: then the caller takes them for
    /// a commit at once.
    pub fn hold(&self, session: &str, held: Held, now: Instant) -> bool {
        let mut map = self.lock();
        let rows = match map.get_mut(session) {
            Some((h, _)) => {
                h.merge(held);
                h.delivered.len()
            }
            None => {
                let rows = held.delivered.len();
                map.insert(session.to_string(), (held, now));
                rows
            }
        };
        rows >= HELD_ROWS_MAX
    }

    /// Takes the session's waiting outcomes, to write them in the caller's commit.
    pub fn take(&self, session: &str) -> Option<Held> {
        self.lock().remove(session).map(|(h, _)| h)
    }

    /// Returns outcomes taken for a commit that failed: they wait again, from `now`.
    pub fn put_back(&self, session: &str, held: Held, now: Instant) {
        let mut map = self.lock();
        match map.remove(session) {
            Some((later, since)) => {
                let mut back = held;
                back.merge(later);
                map.insert(session.to_string(), (back, since.min(now)));
            }
            None => {
                map.insert(session.to_string(), (held, now));
            }
        }
    }

    /// Drops from `acks` those the session holds already (their rows stay pending in
    /// `inbound.db` until the held outcomes are written, so every pass finds them again).
    pub fn drop_held_acks(&self, session: &str, acks: &mut Vec<(String, String)>) {
        if let Some((h, _)) = self.lock().get(session) {
            acks.retain(|(id, _)| !h.acks.iter().any(|(held, _)| held == id));
        }
    }

    /// Whether the outbound row's outcome is waiting.
    pub fn holds(&self, session: &str, row_id: &str) -> bool {
        self.lock().get(session).is_some_and(|(h, _)| h.delivered.iter().any(|(id, _)| id == row_id))
    }

    /// The sessions whose outcomes have waited [`HOLD_MAX`] at `now` (all of them with `None`).
    pub fn due(&self, now: Option<Instant>) -> Vec<String> {
        let map = self.lock();
        map.iter()
            .filter(|(_, (_, since))| now.is_none_or(|n| n.saturating_duration_since(*since) >= HOLD_MAX))
            .map(|(s, _)| s.clone())
            .collect()
    }

    /// When the next session's outcomes will have waited [`HOLD_MAX`].
    pub fn next_due(&self) -> Option<Instant> {
        self.lock().values().map(|(_, since)| *since + HOLD_MAX).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(rows: &[&str], acks: &[&str]) -> Held {
        Held {
            inbound: PathBuf::from("/nowhere/inbound.db"),
            delivered: rows.iter().map(|r| (r.to_string(), format!("msg-{r}"))).collect(),
            acks: acks.iter().map(|a| (a.to_string(), "completed".to_string())).collect(),
        }
    }

    #[test]
    fn outcomes_wait_from_the_oldest_and_are_taken_together() {
        let o = Outcomes::default();
        let t0 = Instant::now();
        assert!(!o.hold("s1", held(&["o1"], &["i1"]), t0));
        assert!(!o.hold("s1", held(&["o3"], &["i2"]), t0 + Duration::from_millis(400)));
        assert!(!o.hold("s2", held(&["o1"], &[]), t0 + Duration::from_millis(300)));
        assert_eq!(o.next_due(), Some(t0 + HOLD_MAX));
        assert!(o.due(Some(t0 + Duration::from_millis(499))).is_empty());
        assert_eq!(o.due(Some(t0 + HOLD_MAX)), vec!["s1".to_string()], "s1 waits from its first hold");
        let mut all = o.due(None);
        all.sort();
        assert_eq!(all, vec!["s1".to_string(), "s2".to_string()]);
        assert!(o.holds("s1", "o3") && !o.holds("s1", "o2") && !o.holds("s3", "o1"));

        assert_eq!(o.take("s1"), Some(held(&["o1", "o3"], &["i1", "i2"])));
        assert_eq!(o.take("s1"), None);
        assert!(!o.holds("s1", "o1"));
        assert_eq!(o.next_due(), Some(t0 + Duration::from_millis(300) + HOLD_MAX));
    }

    #[test]
    fn an_acknowledgement_held_already_is_held_once() {
        let o = Outcomes::default();
        let t0 = Instant::now();
        o.hold("s1", held(&["o1"], &["i1"]), t0);
        o.hold("s1", held(&["o3"], &["i1", "i2"]), t0);
        assert_eq!(o.take("s1"), Some(held(&["o1", "o3"], &["i1", "i2"])));
    }

    #[test]
    fn acknowledgements_held_already_are_not_found_new_again() {
        let o = Outcomes::default();
        let acks = |ids: &[&str]| -> Vec<(String, String)> {
            ids.iter().map(|a| (a.to_string(), "completed".to_string())).collect()
        };
        let mut found = acks(&["i1", "i2"]);
        o.drop_held_acks("s1", &mut found);
        assert_eq!(found, acks(&["i1", "i2"]), "nothing held: all are new");
        o.hold("s1", held(&["o1"], &["i1"]), Instant::now());
        o.drop_held_acks("s1", &mut found);
        assert_eq!(found, acks(&["i2"]));
        let mut other = acks(&["i1"]);
        o.drop_held_acks("s2", &mut other);
        assert_eq!(other, acks(&["i1"]), "another session's holds do not count");
    }

    #[test]
    fn a_session_holding_too_many_outcomes_has_them_written_at_once() {
        let o = Outcomes::default();
        let t0 = Instant::now();
        let rows: Vec<String> = (0..HELD_ROWS_MAX).map(|i| format!("o{i}")).collect();
        let (first, rest) = rows.split_at(HELD_ROWS_MAX - 1);
        fn refs(r: &[String]) -> Vec<&str> {
            r.iter().map(String::as_str).collect()
        }
        assert!(!o.hold("s1", held(&refs(first), &[]), t0), "one short of the bound still waits");
        assert!(o.hold("s1", held(&refs(rest), &[]), t0), "at the bound they are due at once");
        assert_eq!(o.take("s1").map(|h| h.delivered.len()), Some(HELD_ROWS_MAX));
    }

    #[test]
    fn outcomes_put_back_keep_their_order_before_later_ones_and_wait_again() {
        let o = Outcomes::default();
        let t0 = Instant::now();
        o.hold("s1", held(&["o1"], &["i1"]), t0);
        let taken = o.take("s1").unwrap();
        // Held again while the taken ones were being written.
        let t1 = t0 + Duration::from_millis(100);
        o.hold("s1", held(&["o3"], &[]), t1);
        let t2 = t0 + Duration::from_millis(200);
        o.put_back("s1", taken, t2);
        assert_eq!(o.take("s1"), Some(held(&["o1", "o3"], &["i1"])));

        o.put_back("s2", held(&["o5"], &[]), t2);
        assert_eq!(o.next_due(), Some(t2 + HOLD_MAX), "a failed commit's outcomes wait a whole hold again");
    }

    #[test]
    fn held_outcomes_are_written_in_the_callers_commit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbound.db");
        let mut conn = crate::db::open(&path, crate::db::Kind::Inbound).unwrap();
        crate::db::write_tx(&mut conn, |tx| {
            inbound::insert(tx, &inbound::NewInbound::chat_for_tests("i1", true, None))?;
            inbound::insert(
                tx,
                &inbound::NewInbound {
                    kind: "task",
                    ..inbound::NewInbound::chat_for_tests("t1", true, None)
                },
            )?;
            Ok(())
        })
        .unwrap();
        // Until then the row counts as unanswered unless the container's acknowledgement is given.
        let finished = std::collections::HashSet::from(["i1".to_string()]);
        assert_eq!(inbound::pending_count(&conn, &Default::default()).unwrap(), 1);
        assert_eq!(inbound::pending_count(&conn, &finished).unwrap(), 0);
        let h = Held { inbound: path.clone(), ..held(&["o1"], &["i1"]) };
        assert!(h.still_there());
        crate::db::write_tx(&mut conn, |tx| Ok(h.write(tx, 1_000)?)).unwrap();
        assert!(inbound::has_outcome(&conn, "o1").unwrap());
        assert_eq!(
            inbound::pending_count(&conn, &Default::default()).unwrap(),
            0,
            "the acknowledged row is no longer pending"
        );
        assert!(!held(&[], &[]).still_there());
        // Delivery lets no outcome wait whose acknowledgement ends a task's run.
        assert!(!inbound::any_task(&conn, ["i1", "o1", "nope"]).unwrap());
        assert!(inbound::any_task(&conn, ["i1", "t1"]).unwrap());
    }
}
