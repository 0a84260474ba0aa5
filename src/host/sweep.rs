//! The sweep thread: what happens after a container exits, and the periodic health pass.
//!
//! After an exit it resets the container's unfinished claims (each inbound row is retried with
//! backoff, [`backoff::INBOUND_RETRY`]), backs off a container that keeps failing to start and
//! tells the user when it gives up, and starts a new container when messages are still due.
//! Periodically it starts containers for due messages (retries, missed wakes) and stops
//! containers that are stuck. Decisions are pure functions of `now` ([`decide_stuck`],
//! [`retry_delay_ms`]) so they are tested without sleeping.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, UNIX_EPOCH};

use mio::{Events, Poll};

use super::backoff;
use super::channels::Channels;
use super::containers::{Containers, ExitReport, WakeOutcome};
use super::sessions::SessionDir;
use super::tasks;
use crate::db::central::{self, Session};
use crate::db::{self, Connection, Kind, inbound, outbound};
use crate::ids::now_ms;
use crate::mailbox::{self, Mailbox};

/// Period of the health pass (which also compares the registry with what really runs).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(60);
/// A running container whose heartbeat is older than this is stopped (or the declared timeout
/// of the tool it is running, if longer).
pub const HEARTBEAT_CEILING_MS: i64 = 30 * 60 * 1000;
/// A claim older than this with no heartbeat since is stuck (or the tool's declared timeout).
pub const CLAIM_STUCK_MS: i64 = 60 * 1000;
/// A container that has not connected its link after this long is stopped (and started again
/// if messages wait).
pub const LINK_DEADLINE: Duration = Duration::from_secs(60);
/// Consecutive container start failures before pending messages are failed with a notice.
pub const START_FAILURES_MAX: u32 = 3;

/// Backoff before the next try of an inbound row that has been tried `tries` times already
/// ([`backoff::INBOUND_RETRY`]: 5, 10, 20, 40, 80 s), or `None` when it has had its tries.
pub fn retry_delay_ms(tries: i64) -> Option<i64> {
    backoff::INBOUND_RETRY.delay_ms(u32::try_from(tries.max(0)).unwrap_or(u32::MAX).saturating_add(1))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StuckAction {
    Ok,
    /// No heartbeat for longer than the ceiling.
    KillCeiling,
    /// A claim has been processing too long with no heartbeat since it was made.
    KillClaim(String),
}

/// Whether a running container is stuck. `heartbeat_ms` is the heartbeat file's mtime (`None`
/// before the first beat of a fresh container), `tool_timeout_ms` the declared timeout of the tool
/// in flight, `claims` the `(message id, claimed at)` still processing.
pub fn decide_stuck(
    now: i64,
    heartbeat_ms: Option<i64>,
    tool_timeout_ms: Option<i64>,
    claims: &[(String, i64)],
) -> StuckAction {
    let tool = tool_timeout_ms.unwrap_or(0);
    let Some(beat) = heartbeat_ms else {
        return StuckAction::Ok;
    };
    if now - beat > HEARTBEAT_CEILING_MS.max(tool) {
        return StuckAction::KillCeiling;
    }
    for (id, claimed_at) in claims {
        if now - claimed_at > CLAIM_STUCK_MS.max(tool) && beat <= *claimed_at {
            return StuckAction::KillClaim(id.clone());
        }
    }
    StuckAction::Ok
}

/// The sweep thread's mailbox.
#[derive(Debug, PartialEq)]
pub enum SweepMsg {
    Exited(ExitReport),
    /// Look at this session soon (e.g. a wake was deferred).
    Check(String),
    Stop,
}

pub struct Sweep {
    pub central: Connection,
    pub data_dir: PathBuf,
    pub containers: Arc<Containers>,
    pub channels: Channels,
    /// Sessions told that docker is unreachable (told once until it is back).
    pub told_engine_down: HashSet<String>,
    /// The zone tasks' schedules are read in.
    pub tz: jiff::tz::TimeZone,
    /// What the last health pass read of each session whose files have not changed since.
    pub seen: HashMap<String, Seen>,
}

/// A session file as `stat` shows it, once it has been left alone for [`SETTLED`]: a later write
/// then cannot share its modification time (whatever the file system's clock granularity), so
/// an equal stamp means an unchanged file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    ino: u64,
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

/// How long a file must have been left alone before its stamp is trusted.
pub const SETTLED: Duration = Duration::from_secs(2);

impl FileStamp {
    /// The file's stamp if it is settled at `now` (`None`: missing, or written too lately).
    pub fn of(meta: &std::fs::Metadata, now: std::time::SystemTime) -> Option<FileStamp> {
        use std::os::unix::fs::MetadataExt;
        let modified = meta.modified().ok()?;
        if now.duration_since(modified).ok()? < SETTLED {
            return None;
        }
        Some(FileStamp {
            ino: meta.ino(),
            size: meta.size(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            ctime_ns: i128::from(meta.ctime()) * 1_000_000_000 + i128::from(meta.ctime_nsec()),
        })
    }

    /// The stamp of a file that is not there.
    pub const MISSING: FileStamp = FileStamp { ino: 0, size: 0, mtime_ns: 0, ctime_ns: 0 };

    /// The file's stamp, [`FileStamp::MISSING`] if there is none, `None` if it is not settled
    /// (or cannot be looked at).
    fn at(path: &std::path::Path) -> Option<FileStamp> {
        match std::fs::metadata(path) {
            Ok(meta) => FileStamp::of(&meta, std::time::SystemTime::now()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(FileStamp::MISSING),
            Err(_) => None,
        }
    }
}

/// What a health pass read of a session with nothing due: while neither of its files changes
/// and nothing comes due, the next pass decides from this instead of opening both again (that
/// was a hundred opens a minute with fifty idle agents, the host's only work while idle).
#[derive(Debug, Clone, PartialEq)]
pub struct Seen {
    inbound: FileStamp,
    /// [`FileStamp::MISSING`] for a session without one.
    outbound: FileStamp,
    /// The next time something of the session comes due.
    soonest: Option<i64>,
    /// The running tool's declared timeout and the claims still processing (stuck detection).
    tool: Option<i64>,
    claims: Vec<(String, i64)>,
}

impl Seen {
    /// Whether this still holds at `now` for files stamped as given (`None`: not settled).
    pub fn holds(&self, inbound: Option<FileStamp>, outbound: Option<FileStamp>, now: i64) -> bool {
        inbound == Some(self.inbound)
            && outbound == Some(self.outbound)
            && self.soonest.is_none_or(|t| now < t)
    }
}

/// Runs the sweep thread until [`SweepMsg::Stop`].
pub fn run(mut s: Sweep, mut poll: Poll, mailbox: Mailbox<SweepMsg>) -> anyhow::Result<()> {
    let mut events = Events::with_capacity(8);
    let mut next_pass = Instant::now();
    let mut next_reconcile = Instant::now() + SWEEP_INTERVAL;
    loop {
        let timeout = next_pass.saturating_duration_since(Instant::now());
        mailbox::poll(&mut poll, &mut events, Some(timeout))?;
        let mut exits = Vec::new();
        let mut check = HashSet::new();
        let mut stop = false;
        for msg in mailbox.take() {
            match msg {
                SweepMsg::Exited(r) => exits.push(r),
                SweepMsg::Check(session) => {
                    s.seen.remove(&session);
                    check.insert(session);
                }
                SweepMsg::Stop => stop = true,
            }
        }
        let exited = !exits.is_empty();
        for report in exits {
            s.seen.remove(&report.session_id);
            if let Err(e) = s.on_exit(&report, now_ms(), stop) {
                log::error!("after the exit of {}: {e:#}", report.container);
            }
        }
        if stop {
            log::info!("sweep stopped");
            return Ok(());
        }
        let mut soonest = None;
        for session_id in check {
            if let Ok(Some(session)) = central::session(&s.central, &session_id) {
                match s.check_session(&session, now_ms()) {
                    Ok(t) => soonest = earliest(soonest, t),
                    Err(e) => log::error!("sweep: session {session_id}: {e:#}"),
                }
            }
        }
        if Instant::now() >= next_reconcile {
            // Exits the runtime's watcher may have missed.
            s.containers.reconcile();
            next_reconcile = Instant::now() + SWEEP_INTERVAL;
        }
        // An exit frees a slot and may end a backoff: look at every session then, too.
        if exited || Instant::now() >= next_pass {
            soonest = earliest(soonest, s.pass(now_ms()));
            next_pass = Instant::now() + SWEEP_INTERVAL;
        }
        if let Some(t) = soonest {
            let until = Duration::from_millis((t - now_ms()).max(0) as u64 + 5);
            next_pass = next_pass.min(Instant::now() + until);
        }
    }
}

impl Sweep {
    /// One health pass over every active session; returns the soonest future due time seen.
    pub fn pass(&mut self, now: i64) -> Option<i64> {
        for session in self.containers.unlinked_for(LINK_DEADLINE) {
            self.containers.stop(&session, "it did not connect to the host in time");
        }
        let sessions = match central::active_sessions(&self.central) {
            Ok(s) => s,
            Err(e) => {
                log::error!("sweep: listing sessions: {e}");
                return None;
            }
        };
        let active: HashSet<&str> = sessions.iter().map(|s| s.id.as_str()).collect();
        self.seen.retain(|id, _| active.contains(id.as_str()));
        let mut soonest: Option<i64> = None;
        for session in sessions {
            match self.check_session(&session, now) {
                Ok(Some(t)) => soonest = Some(soonest.map_or(t, |s| s.min(t))),
                Ok(None) => {}
                Err(e) if db::is_corrupt(&e) => {
                    super::containers::set_aside(
                        &self.central,
                        &self.data_dir,
                        &self.containers,
                        &self.channels,
                        &session,
                        &e,
                    );
                }
                Err(e) => log::error!("sweep: session {}: {e:#}", session.id),
            }
        }
        soonest
    }

    /// Applies acks, stops a stuck container or starts one for due messages. Returns when the
    /// next not-yet-due message of the session becomes due.
    fn check_session(&mut self, session: &Session, now: i64) -> anyhow::Result<Option<i64>> {
        let dir = SessionDir::new(&self.data_dir, &session.agent_id, &session.id);
        if !dir.inbound().exists() {
            self.seen.remove(&session.id);
            return Ok(None);
        }
        // Stamped before anything is read: a write after this changes the stamp.
        let stamps = (FileStamp::at(&dir.inbound()), FileStamp::at(&dir.outbound()));
        if let Some(seen) = self.seen.get(&session.id)
            && seen.holds(stamps.0, stamps.1, now)
        {
            // Nothing was due and nothing changed: only the heartbeat may have (stuck detection).
            let (tool, claims, soonest) = (seen.tool, seen.claims.clone(), seen.soonest);
            if seen.outbound != FileStamp::MISSING && self.containers.is_running(&session.id) {
                self.stop_if_stuck(session, &dir, tool, &claims, now);
            }
            return Ok(soonest);
        }
        self.seen.remove(&session.id);
        let mut inb = dir.open_inbound()?;
        let out = if dir.outbound().exists() {
            Some(db::open_readonly(&dir.outbound(), Kind::Outbound)?)
        } else {
            None
        };
        if let Some(out) = &out {
            let acks = outbound::finished_acks_of(out, &inbound::pending_rows(&inb)?)?;
            if !acks.is_empty() {
                let next = db::write_tx(&mut inb, |tx| {
                    inbound::apply_acks(tx, &acks)?;
                    Ok(tasks::advance(tx, now, &self.tz)?)
                })?;
                for run in next.iter().filter(|n| n.missed > 0) {
                    self.notice(&session.id, &tasks::catch_up_notice(run));
                }
            }
        }
        let mut soonest = inbound::next_due_at(&inb, now)?;
        let due = inbound::due_count(&inb, now)?;
        let (tool, claims) = match &out {
            Some(out) => {
                (outbound::current_tool(out)?.and_then(|(_, t)| t), outbound::processing_claims(out)?)
            }
            None => (None, Vec::new()),
        };
        if self.containers.is_running(&session.id) {
            // A run that has come due (a task, a retry) wakes a container that sits idle.
            if due > 0 {
                log::debug!("session {}: a run is due; waking its container", session.id);
                self.containers.wake(&self.central, session)?;
            }
            if out.is_some() {
                self.stop_if_stuck(session, &dir, tool, &claims, now);
            }
        } else if due > 0 {
            match self.containers.wake(&self.central, session)? {
                WakeOutcome::Deferred { why, retry_at } => {
                    log::debug!("session {}: start deferred: {why}", session.id);
                    soonest = earliest(soonest, retry_at);
                }
                WakeOutcome::Started | WakeOutcome::Signalled => {}
            }
        }
        if due == 0
            && let (Some(inbound), Some(outbound)) = stamps
            && (outbound == FileStamp::MISSING) == out.is_none()
        {
            self.seen.insert(session.id.clone(), Seen { inbound, outbound, soonest, tool, claims });
        }
        Ok(soonest)
    }

    /// Stops the session's running container if [`decide_stuck`] says so.
    fn stop_if_stuck(
        &self,
        session: &Session,
        dir: &SessionDir,
        tool: Option<i64>,
        claims: &[(String, i64)],
        now: i64,
    ) {
        match decide_stuck(now, mtime_ms(&dir.heartbeat()), tool, claims) {
            StuckAction::Ok => {}
            StuckAction::KillCeiling => self.containers.stop(&session.id, "no heartbeat for too long"),
            StuckAction::KillClaim(id) => {
                self.containers.stop(&session.id, &format!("message {id} has been processing too long"))
            }
        }
    }

    fn on_exit(&mut self, r: &ExitReport, now: i64, stopping: bool) -> anyhow::Result<()> {
        central::set_container_status(&self.central, &r.session_id, "stopped", now)?;
        let dir = SessionDir::new(&self.data_dir, &r.agent_id, &r.session_id);
        if dir.inbound().exists() && dir.outbound().exists() {
            self.reset_claims(&dir, r, now)?;
        }
        if r.engine_down {
            // Not the agent's failure: the messages stay pending and are answered once docker
            // is back (the wake is retried with the engine's backoff). Said once per session.
            if !stopping && self.told_engine_down.insert(r.session_id.clone()) {
                self.notice(&r.session_id, &format!(
                    "The agent cannot start: the docker engine is not reachable ({}). Your message is kept and will be answered when docker is back; `pincer doctor` checks it.",
                    crate::process::tail(r.stderr_tail.trim(), 300)
                ));
            }
            if !stopping && let Some(session) = central::session(&self.central, &r.session_id)? {
                self.check_session(&session, now)?;
            }
            return Ok(());
        }
        if r.linked {
            self.told_engine_down.remove(&r.session_id);
        }
        let failed_start = !r.linked && !r.stop_requested && !stopping;
        if failed_start {
            let failures = self.containers.record_failure(&r.session_id);
            log::warn!(
                "container {} for session {} failed to start ({failures} in a row), exit {:?}: {}",
                r.container,
                r.session_id,
                r.code,
                r.stderr_tail
            );
            if failures >= START_FAILURES_MAX {
                self.containers.clear_failures(&r.session_id);
                let detail = if r.stderr_tail.is_empty() {
                    format!("exit code {:?}", r.code)
                } else {
                    r.stderr_tail.clone()
                };
                self.give_up(&dir, &r.session_id, &format!(
                    "The agent's container failed to start {failures} times ({detail}). Run `pincer doctor` to check docker and the agent image."
                ), now)?;
                return Ok(());
            }
        }
        if !stopping && let Some(session) = central::session(&self.central, &r.session_id)? {
            self.check_session(&session, now)?;
        }
        Ok(())
    }

    /// The container is gone: its unfinished claims become retries (with backoff) or failures.
    fn reset_claims(&mut self, dir: &SessionDir, r: &ExitReport, now: i64) -> anyhow::Result<()> {
        // The host writes outbound.db only here, when no container is running.
        let mut out = db::open(&dir.outbound(), Kind::Outbound)?;
        let claims = outbound::processing_claims(&out)?;
        if claims.is_empty() {
            return Ok(());
        }
        let mut inb = dir.open_inbound()?;
        let mut gave_up = Vec::new();
        db::write_tx(&mut inb, |tx| {
            for (id, _) in &claims {
                let Some(state) = inbound::retry_state(tx, id)? else {
                    continue;
                };
                if state.process_after.is_some_and(|t| t > now) {
                    continue;
                }
                match retry_delay_ms(state.tries) {
                    Some(delay) => inbound::schedule_retry(tx, id, state.tries + 1, now + delay)?,
                    None => {
                        inbound::mark_failed(tx, id)?;
                        gave_up.push(id.clone());
                    }
                }
            }
            Ok(())
        })?;
        db::write_tx(&mut out, |tx| Ok(outbound::delete_processing_claims(tx)?))?;
        log::info!(
            "session {}: {} unfinished message(s) will be retried",
            r.session_id,
            claims.len() - gave_up.len()
        );
        if !gave_up.is_empty() {
            self.notice(&r.session_id, &format!(
                "The agent stopped while working on a message {} times in a row; giving up on it (last exit code {:?}).",
                backoff::INBOUND_RETRY.tries_max.unwrap_or(0),
                r.code
            ));
        }
        Ok(())
    }

    /// Fails every pending triggering message of the session and tells the user why.
    fn give_up(&mut self, dir: &SessionDir, session_id: &str, why: &str, _now: i64) -> anyhow::Result<()> {
        let mut inb = dir.open_inbound()?;
        let ids = inbound::pending_ids(&inb)?;
        db::write_tx(&mut inb, |tx| {
            for id in &ids {
                inbound::mark_failed(tx, id)?;
            }
            Ok(())
        })?;
        self.notice(session_id, why);
        Ok(())
    }

    fn notice(&self, session_id: &str, text: &str) {
        self.channels.notice_session(&self.central, session_id, text);
    }
}

fn earliest(a: Option<i64>, b: Option<i64>) -> Option<i64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

fn mtime_ms(path: &std::path::Path) -> Option<i64> {
    let t = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    Some(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: i64 = 60_000;

    #[test]
    fn retry_backoff_doubles_then_gives_up() {
        let delays: Vec<Option<i64>> = (0..6).map(retry_delay_ms).collect();
        // 5 tries after the first, then the row fails.
        assert_eq!(delays, [Some(5000), Some(10_000), Some(20_000), Some(40_000), Some(80_000), None]);
    }

    #[test]
    fn stuck_decisions() {
        let now = 100 * MIN;
        let claim = |at: i64| vec![("m1".to_string(), at)];
        type Case = (&'static str, Option<i64>, Option<i64>, Vec<(String, i64)>, StuckAction);
        let cases: Vec<Case> = vec![
            ("fresh container, no heartbeat yet", None, None, claim(now - 50 * MIN), StuckAction::Ok),
            ("recent heartbeat", Some(now - MIN), None, vec![], StuckAction::Ok),
            ("heartbeat past the ceiling", Some(now - 31 * MIN), None, vec![], StuckAction::KillCeiling),
            ("long tool widens the ceiling", Some(now - 31 * MIN), Some(40 * MIN), vec![], StuckAction::Ok),
            (
                "claim stuck without heartbeat since",
                Some(now - 2 * MIN),
                None,
                claim(now - 2 * MIN + 1),
                StuckAction::KillClaim("m1".into()),
            ),
            (
                "claim old but heartbeat after it",
                Some(now - 10_000),
                None,
                claim(now - 2 * MIN),
                StuckAction::Ok,
            ),
            ("claim young", Some(now - 50_000), None, claim(now - 50_000), StuckAction::Ok),
            (
                "long tool widens the claim window",
                Some(now - 3 * MIN),
                Some(5 * MIN),
                claim(now - 3 * MIN),
                StuckAction::Ok,
            ),
        ];
        for (what, beat, tool, claims, want) in cases {
            assert_eq!(decide_stuck(now, beat, tool, &claims), want, "{what}");
        }
    }

    #[test]
    fn a_file_stamp_is_trusted_once_settled_and_changes_with_every_write() {
        use std::time::SystemTime;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("inbound.db");
        std::fs::write(&path, b"one").unwrap();
        let meta = || std::fs::metadata(&path).unwrap();
        let written = meta().modified().unwrap();
        assert_eq!(FileStamp::of(&meta(), written), None, "just written: not settled");
        assert_eq!(FileStamp::of(&meta(), written + SETTLED / 2), None);
        let later = written + SETTLED;
        let first = FileStamp::of(&meta(), later).expect("settled");
        assert_eq!(FileStamp::of(&meta(), later + SETTLED), Some(first), "unchanged: the same stamp");
        // A write (one within the clock's granularity is why a stamp must settle first).
        std::fs::write(&path, b"three").unwrap();
        let rewritten = meta().modified().unwrap();
        let second = FileStamp::of(&meta(), rewritten.max(later) + SETTLED).expect("settled");
        assert_ne!(second, first);
        assert_eq!(FileStamp::of(&meta(), SystemTime::UNIX_EPOCH), None, "a time from the future");
        assert_eq!(FileStamp::at(&dir.path().join("outbound.db")), Some(FileStamp::MISSING));
    }

    #[test]
    fn what_a_pass_saw_holds_while_both_files_stay_and_nothing_comes_due() {
        let stamp = |n: u64| FileStamp { ino: n, size: 4096, mtime_ns: 1, ctime_ns: 1 };
        let seen = Seen {
            inbound: stamp(1),
            outbound: stamp(2),
            soonest: Some(10 * MIN),
            tool: None,
            claims: Vec::new(),
        };
        assert!(seen.holds(Some(stamp(1)), Some(stamp(2)), MIN));
        assert!(!seen.holds(Some(stamp(1)), Some(stamp(2)), 10 * MIN), "something came due");
        assert!(!seen.holds(Some(stamp(3)), Some(stamp(2)), MIN), "inbound.db changed");
        assert!(!seen.holds(Some(stamp(1)), Some(FileStamp::MISSING), MIN), "outbound.db went");
        assert!(!seen.holds(None, Some(stamp(2)), MIN), "inbound.db written lately");
        assert!(!seen.holds(Some(stamp(1)), None, MIN), "outbound.db written lately");
        let without = Seen { outbound: FileStamp::MISSING, soonest: None, ..seen };
        assert!(without.holds(Some(stamp(1)), Some(FileStamp::MISSING), i64::MAX));
        assert!(!without.holds(Some(stamp(1)), None, MIN), "an outbound.db appeared, not settled");
    }
}
