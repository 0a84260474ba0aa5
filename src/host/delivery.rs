//! The delivery thread: reads what containers wrote to `outbound.db` and hands it to channel
//! adapters, after re-checking that the agent may send there.
//!
//! It drives the sessions' sockets ([`LinkSet`]) in its mio loop, so a container's "outbound
//! changed" frame triggers delivery at once, and forwards stream deltas and tool events to the
//! room's channel as they arrive; a slow safety tick covers missed frames. Every outbound row
//! ends with an outcome in `inbound.db` (`delivered`, or `failed` with a reason the user and the
//! agent both see). A row is recorded only after the adapter stored or sent it, and adapters
//! store by the row's stable source id, so a crash between the two never duplicates a message;
//! the outcome of a message that is safe to deliver again waits to ride with the session's next
//! commit ([`super::outcomes`]).

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::{Events, Poll};

use super::a2a;
use super::approvals;
use super::backoff;
use super::channels::{Activity, Body, Channels, DeliverError, Outgoing};
use super::containers::Containers;
use super::links::{LinkEvent, LinkSet, SessionSockets};
use super::outcomes::{Held, Outcomes};
use super::sessions::SessionDir;
use super::sweep::SweepMsg;
use super::tasks;
use crate::db::central::{self, Agent, Room, Session};
use crate::db::inbound::{self, Outcome};
use crate::db::kept::{Kept, Mode};
use crate::db::outbound::{self, OutboundRow};
use crate::db::{self, Connection, Kind};
use crate::ids::now_ms;
use crate::link::ToHost;
use crate::mailbox::{self, Mailbox, WAKE};

/// Safety net for a frame the link lost: this often, a session with a running container is read
/// again if its `outbound.db` changed since its last pass (its header's change counter: idle
/// agents cost next to nothing); held rows that are due and sessions whose last pass failed are read again too.
pub const SAFETY_TICK: Duration = Duration::from_secs(2);
/// Every session with a running container is read again this often, changed or not, a tick's
/// share at a time ([`sweep_due`]). Its stamp already shows any commit to its `outbound.db`,
/// so this is the last safety net, spread out so that idle agents cost no burst of reads (a
/// pass opens and reads both session files: 50 idle agents read at once every 30 s were most
/// of an idle host's CPU).
pub const RUNNING_SWEEP: Duration = Duration::from_secs(600);
/// Ticks in one [`RUNNING_SWEEP`]: each reads again at most 1/`SWEEP_TICKS` of the sessions.
const SWEEP_TICKS: usize = (RUNNING_SWEEP.as_secs() / SAFETY_TICK.as_secs()) as usize;
/// Outbound rows read per session per pass.
pub const BATCH_MAX: i64 = 100;
/// Streams (turns) tracked per session at once.
pub const STREAMS_MAX: usize = 64;

/// The delivery thread's mailbox.
#[derive(Debug, PartialEq)]
pub enum DeliveryMsg {
    /// Serve a session's sockets (its container is starting, or was adopted).
    Listen { session: String, sockets: SessionSockets },
    /// The session's container is gone: close its sockets, deliver what it left.
    Gone(String),
    /// Deliver what is pending, then end the thread.
    Stop,
}

#[derive(Default)]
struct Cursor {
    /// Every row up to this seq has an outcome.
    seq: i64,
    /// Retryable failures: row id → when to try again and how often it failed.
    retries: HashMap<String, Retry>,
    /// The earliest time a row scheduled for later is due (epoch ms).
    due: Option<i64>,
    /// `outbound.db` and how it looked when the last pass began.
    out: Option<Watched>,
    /// When the last pass began.
    passed: Option<Instant>,
}

/// A SQLite file's change counter (header bytes 24..28): every commit in rollback journal mode
/// bumps it, whatever it changed (the file's size would add a call a tick and tell nothing more).
type Stamp = u32;

fn stamp(file: &File) -> Option<Stamp> {
    use std::os::unix::fs::FileExt;
    let mut head = [0u8; 28];
    file.read_exact_at(&mut head, 0).ok()?;
    Some(u32::from_be_bytes([head[24], head[25], head[26], head[27]]))
}

/// A session's `outbound.db` held open to read its stamp at each tick: one read, where opening
/// it each time cost four calls. Kept for as long as the file is the same one, also
/// because closing a descriptor drops every POSIX lock the process holds on the file, SQLite's
/// included: the fewer closes, the fewer chances to do that under another thread's read.
struct Watched {
    file: File,
    /// The file's inode: a file set aside and replaced is opened anew.
    ino: u64,
    /// The stamp when the last pass began.
    seen: Stamp,
}

impl Watched {
    /// Re-stamps `prev` if `path` is still the same file, or opens it.
    fn stamp(path: &Path, prev: Option<Watched>) -> Option<Watched> {
        use std::os::unix::fs::MetadataExt;
        let ino = std::fs::metadata(path).ok()?.ino();
        let file = match prev {
            Some(w) if w.ino == ino => w.file,
            _ => File::open(path).ok()?,
        };
        let seen = stamp(&file)?;
        Some(Watched { file, ino, seen })
    }

    /// Whether the file changed since [`Watched::seen`] (or cannot be read: look).
    fn changed(&self) -> bool {
        stamp(&self.file) != Some(self.seen)
    }
}

#[derive(Debug, Clone, Copy)]
struct Retry {
    failures: u32,
    /// Epoch ms.
    not_before: i64,
}

pub struct Delivery {
    pub central: Connection,
    pub data_dir: PathBuf,
    /// Agents' folders (an agent may create another).
    pub groups_dir: PathBuf,
    pub channels: Channels,
    pub containers: Arc<Containers>,
    pub links: LinkSet,
    /// Told when a session gets a run scheduled for later (its timer).
    pub sweep: Mailbox<SweepMsg>,
    /// The zone tasks' schedules are read in.
    pub tz: jiff::tz::TimeZone,
    /// Outcomes waiting for a commit of their session (shared with the router).
    pub outcomes: Outcomes,
}

/// What is known about a linked session's live turns.
#[derive(Default)]
struct Live {
    agent: String,
    /// Stream id → the room its deltas go to.
    streams: HashMap<String, Room>,
}

struct Loop {
    d: Delivery,
    poll: Poll,
    mailbox: Mailbox<DeliveryMsg>,
    live: HashMap<String, Live>,
    cursors: HashMap<String, Cursor>,
    /// Sessions whose last pass failed (e.g. a locked file); retried on the next tick.
    failed_sessions: HashSet<String>,
    /// Sessions to pass over again at once (their `out` was read while draining the link).
    again: HashSet<String>,
    /// Sessions that got a task run scheduled in this pass (the sweep is told).
    scheduled: HashSet<String>,
    /// Agent-to-agent messages per pair (the loop bound).
    rates: a2a::PairRates,
    /// Session DB connections kept between passes.
    kept: Kept,
}

/// The running sessions the slow sweep reads again at this tick: those not read for
/// [`RUNNING_SWEEP`], the longest unread first, at most a tick's share (so that sessions that
/// came due together are spread over the ticks that follow).
fn sweep_due(running: &[(String, Instant)], now: Instant) -> Vec<String> {
    let mut due: Vec<&(String, Instant)> =
        running.iter().filter(|(_, read)| now.saturating_duration_since(*read) >= RUNNING_SWEEP).collect();
    due.sort_unstable_by_key(|(_, read)| *read);
    due.into_iter().take(running.len().div_ceil(SWEEP_TICKS)).map(|(s, _)| s.clone()).collect()
}

/// Runs the delivery thread until [`DeliveryMsg::Stop`].
pub fn run(d: Delivery, poll: Poll, mailbox: Mailbox<DeliveryMsg>) -> anyhow::Result<()> {
    let mut lp = Loop {
        d,
        poll,
        mailbox,
        live: HashMap::new(),
        cursors: HashMap::new(),
        failed_sessions: HashSet::new(),
        again: HashSet::new(),
        scheduled: HashSet::new(),
        rates: a2a::PairRates::default(),
        kept: Kept::default(),
    };
    lp.run()
}

impl Loop {
    fn run(&mut self) -> anyhow::Result<()> {
        let mut events = Events::with_capacity(256);
        let mut next_tick = Instant::now() + SAFETY_TICK;
        loop {
            let timeout = if self.again.is_empty() {
                let wake = self.d.outcomes.next_due().map_or(next_tick, |due| due.min(next_tick));
                wake.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            mailbox::poll(&mut self.poll, &mut events, Some(timeout))?;
            let mut dirty: HashSet<String> = std::mem::take(&mut self.again);
            for ev in events.iter() {
                if ev.token() == WAKE {
                    continue;
                }
                for le in self.d.links.ready(self.poll.registry(), ev.token()) {
                    self.on_link(le, &mut dirty);
                }
            }
            let mut stop = false;
            for msg in self.mailbox.take() {
                match msg {
                    DeliveryMsg::Listen { session, sockets } => {
                        self.d.links.listen(self.poll.registry(), &session, sockets);
                    }
                    DeliveryMsg::Gone(session) => {
                        self.d.links.close(self.poll.registry(), &session);
                        self.live.remove(&session);
                        self.kept.forget_part(&session);
                        dirty.insert(session);
                    }
                    DeliveryMsg::Stop => stop = true,
                }
            }
            if Instant::now() >= next_tick {
                next_tick = Instant::now() + SAFETY_TICK;
                let mut unchanged = Vec::new();
                for session in self.d.containers.running() {
                    let cursor = self.cursors.get(&session);
                    match cursor.and_then(|c| Some((c.out.as_ref()?, c.passed?))) {
                        Some((out, passed)) if !out.changed() => unchanged.push((session, passed)),
                        _ => {
                            dirty.insert(session);
                        }
                    }
                }
                dirty.extend(sweep_due(&unchanged, Instant::now()));
                let now = now_ms();
                dirty.extend(
                    self.cursors
                        .iter()
                        .filter(|(_, c)| !c.retries.is_empty() || c.due.is_some_and(|t| t <= now))
                        .map(|(s, _)| s.clone()),
                );
                dirty.extend(self.failed_sessions.drain());
            }
            for session in dirty {
                if let Err(e) = self.deliver_session(&session) {
                    log::error!("delivering session {session}: {e:#}");
                    if db::is_corrupt(&e)
                        && let Ok(Some(s)) = central::session(&self.d.central, &session)
                    {
                        super::containers::set_aside(
                            &self.d.central,
                            &self.d.data_dir,
                            &self.d.containers,
                            &self.d.channels,
                            &s,
                            &e,
                        );
                        continue;
                    }
                    // The next tick tries again.
                    self.failed_sessions.insert(session);
                }
            }
            self.record_held(self.d.outcomes.due(if stop { None } else { Some(Instant::now()) }));
            if stop {
                log::info!("delivery stopped");
                return Ok(());
            }
        }
    }

    fn on_link(&mut self, event: LinkEvent, dirty: &mut HashSet<String>) {
        match event {
            LinkEvent::Up(session) => {
                self.d.containers.linked(&session);
                let agent = self.agent_name(&session);
                self.live.insert(session.clone(), Live { agent, streams: HashMap::new() });
                dirty.insert(session);
            }
            LinkEvent::Down(session) => {
                self.live.remove(&session);
                dirty.insert(session);
            }
            LinkEvent::Frame(session, frame) => self.on_frame(&session, frame, dirty),
        }
    }

    fn on_frame(&mut self, session: &str, frame: ToHost, dirty: &mut HashSet<String>) {
        match frame {
            ToHost::Out => {
                dirty.insert(session.to_string());
            }
            ToHost::StreamStart { stream, channel_type, platform_id } => {
                let room =
                    central::room_by_address(&self.d.central, &channel_type, &platform_id).ok().flatten();
                if let (Some(room), Some(live)) = (room, self.live.get_mut(session))
                    && live.streams.len() < STREAMS_MAX
                {
                    live.streams.insert(stream, room);
                }
            }
            ToHost::Delta { stream, text } => {
                let agent = self.live.get(session).map(|l| l.agent.clone()).unwrap_or_default();
                self.activity(
                    session,
                    &stream,
                    &Activity::Delta { stream: &stream, agent: &agent, text: &text },
                );
            }
            ToHost::Tool { stream, name, state, summary, input, output } => {
                self.activity(
                    session,
                    &stream,
                    &Activity::Tool {
                        stream: &stream,
                        name: &name,
                        state,
                        summary: &summary,
                        input: input.as_deref(),
                        output: output.as_deref(),
                    },
                );
            }
            ToHost::StreamEnd { stream } => {
                self.activity(session, &stream, &Activity::StreamEnd { stream: &stream });
                if let Some(live) = self.live.get_mut(session) {
                    live.streams.remove(&stream);
                }
            }
        }
    }

    /// Records the waiting outcomes of `sessions` in commits of their own. One that cannot be
    /// written is let go with the session's cursor: the next pass reads the session from the
    /// start, delivers its messages again (a no-op) and records them with the usual error
    /// handling.
    fn record_held(&mut self, sessions: Vec<String>) {
        for session in sessions {
            let Some(held) = self.d.outcomes.take(&session) else { continue };
            if !held.still_there() {
                continue;
            }
            let written = self
                .kept
                .take(&held.inbound, Kind::Inbound, Mode::Write)
                .and_then(|mut inb| db::write_tx(&mut inb, |tx| Ok(held.write(tx, now_ms())?)).map(|_| inb));
            match written {
                Ok(inb) => self.kept.put(inb),
                Err(e) => {
                    log::warn!("session {session}: recording delivered messages: {e:#}; reading it again");
                    self.cursors.remove(&session);
                    self.failed_sessions.insert(session);
                }
            }
        }
    }

    fn agent_name(&self, session_id: &str) -> String {
        central::session(&self.d.central, session_id)
            .ok()
            .flatten()
            .and_then(|s| central::agent(&self.d.central, &s.agent_id).ok().flatten())
            .map(|a| a.name)
            .unwrap_or_else(|| "Agent".into())
    }

    fn activity(&self, session: &str, stream: &str, activity: &Activity<'_>) {
        let Some(room) = self.live.get(session).and_then(|l| l.streams.get(stream)) else {
            return;
        };
        if let Some(adapter) = self.d.channels.get(&room.channel_type) {
            adapter.activity(room, activity);
        }
    }

    /// Delivers the session's due outbound rows, then records their outcomes and applies the
    /// container's acknowledgements in one `inbound.db` transaction (one short lock, taken after
    /// the replies are already on their way), or leaves them to ride with the session's next
    /// commit when every row is safe to deliver again ([`super::outcomes`]).
    fn deliver_session(&mut self, session_id: &str) -> anyhow::Result<()> {
        let now = now_ms();
        let Some(session) = central::session(&self.d.central, session_id)? else {
            self.cursors.remove(session_id);
            return Ok(());
        };
        let Some(agent) = central::agent(&self.d.central, &session.agent_id)? else {
            return Ok(());
        };
        let dir = SessionDir::new(&self.d.data_dir, &session.agent_id, &session.id);
        if !dir.outbound().exists() {
            return Ok(());
        }
        // Stamped before reading: a write during the pass shows as a change at the next tick.
        let watched =
            Watched::stamp(&dir.outbound(), self.cursors.get_mut(session_id).and_then(|c| c.out.take()));
        let passed = Instant::now();
        let out = self.kept.take(&dir.outbound(), Kind::Outbound, Mode::Read)?;
        // The container writes a reply's stream frames to the link before it commits the reply,
        // so once a row is visible its frames are in the link's buffer. Handling them before the
        // rows up to `upto` keeps every stream frame ahead of the message that completes it, also
        // when this pass was started by the safety tick rather than by the link's `out`.
        let upto = outbound::last_seq(&out)?;
        let mut again = HashSet::new();
        for ev in self.d.links.drain(self.poll.registry(), session_id) {
            self.on_link(ev, &mut again);
        }
        self.again.extend(again);
        let mut inb = self.kept.take(&dir.inbound(), Kind::Inbound, Mode::Write)?;
        let mut cursor = self.cursors.remove(session_id).unwrap_or_default();
        let mut writes = Vec::new();
        let pass = Pass { session: &session, agent: &agent, dir: &dir, out: &out, inb: &inb };
        let delivered = self.deliver_rows(&pass, &mut cursor, &mut writes, upto, now);
        // The container's final acknowledgements of rows still pending here, less those that
        // wait already: by key, so a pass costs the same after ten messages or ten thousand.
        let mut acks = outbound::finished_acks_of(&out, &inbound::pending_rows(&inb)?)?;
        self.d.outcomes.drop_held_acks(session_id, &mut acks);
        let mut scheduled = self.scheduled.remove(session_id);
        let mut caught_up = Vec::new();
        // Messages safe to deliver again, acknowledging rows whose end schedules nothing: their
        // outcomes wait for the session's next commit.
        let wait = !writes.is_empty()
            && writes.iter().all(|w| w.may_wait)
            && !scheduled
            && !inbound::any_task(&inb, acks.iter().map(|(id, _)| id.as_str()))?;
        // Held unless the session now holds too many: then all of them go with this pass's commit.
        let waiting = wait && {
            let delivered = writes.drain(..).map(|w| (w.row_id, w.platform_id.unwrap_or_default())).collect();
            let acks = std::mem::take(&mut acks);
            !self.d.outcomes.hold(
                session_id,
                Held { inbound: dir.inbound(), delivered, acks },
                Instant::now(),
            )
        };
        let recorded = if waiting {
            Ok(())
        } else {
            // What waits goes with this commit; a pass with nothing to record takes none of it
            // (it commits nothing unless a task run is to be scheduled).
            let held = if wait || !(writes.is_empty() && acks.is_empty()) {
                self.d.outcomes.take(session_id)
            } else {
                None
            };
            let recorded = db::write_tx(&mut inb, |tx| {
                if let Some(h) = &held {
                    h.write(tx, now)?;
                }
                for w in &writes {
                    inbound::record_outcome(
                        tx,
                        &w.row_id,
                        w.outcome,
                        w.platform_id.as_deref(),
                        w.reason.as_deref(),
                        now,
                    )?;
                    if let Some(note) = &w.note_to_agent {
                        super::sessions::note(tx, &note.id, &note.text, false, false, now)?;
                    }
                }
                inbound::apply_acks(tx, &acks)?;
                let next = tasks::advance(tx, now, &self.d.tz)?;
                scheduled |= !next.is_empty();
                caught_up.extend(next.into_iter().filter(|n| n.missed > 0));
                Ok(())
            });
            if recorded.is_err()
                && let Some(h) = held
            {
                self.d.outcomes.put_back(session_id, h, Instant::now());
            }
            recorded
        };
        for run in caught_up {
            self.d.channels.notice_session(&self.d.central, session_id, &tasks::catch_up_notice(&run));
        }
        if scheduled {
            self.d.sweep.post(SweepMsg::Check(session_id.to_string()));
        }
        if delivered.is_ok() && recorded.is_ok() {
            self.kept.put(out);
            self.kept.put(inb);
        }
        if recorded.is_ok() {
            // Only a running container writes: the file of one that is gone is not held open.
            cursor.out = watched.filter(|_| self.d.containers.is_running(session_id));
            cursor.passed = Some(passed);
            self.cursors.insert(session_id.to_string(), cursor);
        }
        // On failure the cursor is dropped: the next pass re-reads from the start, and adapters
        // store by source id, so nothing is delivered twice.
        delivered.and(recorded)
    }

    /// Delivers the rows up to `upto` (later ones wait for the next pass).
    fn deliver_rows(
        &mut self,
        pass: &Pass<'_>,
        cursor: &mut Cursor,
        writes: &mut Vec<Write>,
        upto: i64,
        now: i64,
    ) -> anyhow::Result<()> {
        // `scan` walks every row once; `cursor.seq` only passes rows that have an outcome, so a
        // held row (scheduled for later, or waiting for a retry) is looked at again next time
        // while the rows after it are still delivered now, in order.
        let mut scan = cursor.seq;
        let mut held = false;
        cursor.due = None;
        loop {
            let rows = outbound::rows_after(pass.out, scan, BATCH_MAX)?;
            for row in &rows {
                if row.seq > upto {
                    return Ok(());
                }
                scan = row.seq;
                let done = if inbound::has_outcome(pass.inb, &row.id)?
                    || self.d.outcomes.holds(&pass.session.id, &row.id)
                {
                    cursor.retries.remove(&row.id);
                    true
                } else if let Some(t) = row.deliver_after.filter(|&t| t > now) {
                    cursor.due = Some(cursor.due.map_or(t, |d| d.min(t)));
                    false
                } else if cursor.retries.get(&row.id).is_some_and(|r| r.not_before > now) {
                    false
                } else {
                    self.deliver_one(pass, row, cursor, writes, now);
                    !cursor.retries.contains_key(&row.id)
                };
                held |= !done;
                if !held {
                    cursor.seq = row.seq;
                }
            }
            if (rows.len() as i64) < BATCH_MAX {
                return Ok(());
            }
        }
    }

    fn deliver_one(
        &mut self,
        pass: &Pass<'_>,
        row: &OutboundRow,
        cursor: &mut Cursor,
        writes: &mut Vec<Write>,
        now: i64,
    ) {
        match self.route(pass, row) {
            Ok(sent) => {
                cursor.retries.remove(&row.id);
                writes.push(Write::delivered(&row.id, sent));
                // Staged files were copied by the adapter; the copy in the session is done with.
                let staged = pass.dir.path().join("outbox").join(&row.id);
                if staged.is_dir() {
                    let _ = std::fs::remove_dir_all(staged);
                }
            }
            Err(DeliverError::Retry(reason)) => {
                let failures = cursor.retries.get(&row.id).map_or(0, |r| r.failures) + 1;
                match backoff::DELIVERY_RETRY.delay_ms(failures) {
                    None => {
                        cursor.retries.remove(&row.id);
                        writes.push(self.fail(
                            pass.session,
                            pass.agent,
                            row,
                            &format!("{reason} (after {failures} attempts)"),
                        ));
                    }
                    Some(delay) => {
                        log::warn!("delivery of {} will be retried: {reason}", row.id);
                        cursor.retries.insert(row.id.clone(), Retry { failures, not_before: now + delay });
                    }
                }
            }
            Err(DeliverError::Permanent(reason)) => {
                cursor.retries.remove(&row.id);
                writes.push(self.fail(pass.session, pass.agent, row, &reason));
            }
        }
    }

    /// Re-validates the destination and hands the row to its channel (or acts on it).
    fn route(&mut self, pass: &Pass<'_>, row: &OutboundRow) -> Result<Sent, DeliverError> {
        let (session, agent) = (pass.session, pass.agent);
        let perm = |s: String| Err(DeliverError::Permanent(s));
        let retry = |e: rusqlite::Error| DeliverError::Retry(format!("database: {e}"));
        let content: serde_json::Value = match serde_json::from_str(&row.content) {
            Ok(v) => v,
            Err(e) => return perm(format!("the message content is not valid JSON ({e})")),
        };
        if row.kind == "system" {
            let action = content.get("action").and_then(|a| a.as_str()).unwrap_or("?");
            if approvals::is_request(action) {
                let env = approvals::Env {
                    central: &self.d.central,
                    data_dir: &self.d.data_dir,
                    groups_dir: &self.d.groups_dir,
                    channels: &self.d.channels,
                    containers: &self.d.containers,
                    reroute: None,
                };
                return approvals::request(
                    &env,
                    session,
                    agent,
                    pass.inb,
                    &row.id,
                    row.in_reply_to.as_deref(),
                    action,
                    &content,
                    now_ms(),
                )
                .map(Sent::once);
            }
            if !tasks::is_task_action(action) {
                return perm(format!("the action {action:?} is not supported by this host"));
            }
            // Runs are answered where the session converses.
            let route = inbound::routing(pass.inb).map_err(retry)?.unwrap_or_default();
            return match tasks::apply(pass.inb, action, &content, &route, now_ms(), &self.d.tz) {
                Ok(applied) => {
                    log::info!(
                        "session {}: {action} {} (next run {:?})",
                        session.id,
                        applied.series_id,
                        applied.next_run
                    );
                    if applied.next_run.is_some() {
                        self.scheduled.insert(session.id.clone());
                    }
                    Ok(Sent::once(format!("task:{}", applied.series_id)))
                }
                Err(why) => perm(why),
            };
        }
        let (Some(channel_type), Some(platform_id)) =
            (row.channel_type.as_deref(), row.platform_id.as_deref())
        else {
            return perm("the message has no destination".into());
        };
        if channel_type == "agent" {
            let routed = a2a::route(
                &self.d.central,
                &self.d.data_dir,
                &mut self.rates,
                session,
                agent,
                pass.inb,
                &row.id,
                row.in_reply_to.as_deref(),
                platform_id,
                &content,
                now_ms(),
            )
            .map_err(|e| DeliverError::Retry(format!("{e:#}")))?;
            return match routed {
                Ok(r) => {
                    match self.d.containers.wake(&self.d.central, &r.session) {
                        Ok(super::containers::WakeOutcome::Deferred { .. }) | Err(_) => {
                            self.d.sweep.post(SweepMsg::Check(r.session.id.clone()))
                        }
                        Ok(_) => {}
                    }
                    Ok(Sent::once(format!("{}/{}", r.session.id, r.inbound_id)))
                }
                Err(why) => perm(why),
            };
        }
        let room =
            match central::room_by_address(&self.d.central, channel_type, platform_id).map_err(retry)? {
                Some(room) => room,
                None => return perm(format!("no room {platform_id:?} on channel {channel_type:?}")),
            };
        let own_room = session.room_id.as_deref() == Some(room.id.as_str());
        if !own_room && !central::may_send_to_room(&self.d.central, &agent.id, &room.id).map_err(retry)? {
            return perm(format!("agent {:?} may not send to room {:?}", agent.name, room.name));
        }
        let Some(adapter) = self.d.channels.get(channel_type) else {
            return perm(format!("no adapter for channel type {channel_type:?}"));
        };
        let text = content.get("text").and_then(|t| t.as_str()).unwrap_or_default();
        let source_id = format!("{}/{}", session.id, row.id);
        let stream_id = content.get("stream_id").and_then(|s| s.as_str());
        let target;
        let files;
        let body = match content.get("operation").and_then(|o| o.as_str()) {
            Some(op @ ("edit" | "reaction")) => {
                let seq = content.get("message_seq").and_then(|s| s.as_i64()).unwrap_or(0);
                target = match self.target(pass, seq, &room.id, op == "edit").map_err(retry)? {
                    Ok(id) => id,
                    Err(why) => return perm(why),
                };
                if op == "edit" {
                    Body::Edit { target: &target, text }
                } else {
                    Body::Reaction {
                        target: &target,
                        emoji: content.get("emoji").and_then(|e| e.as_str()).unwrap_or(""),
                    }
                }
            }
            Some(op) => return perm(format!("the operation {op:?} is not supported by this host")),
            None => {
                files = match staged_files(pass.dir, &row.id, &content) {
                    Ok(f) => f,
                    Err(why) => return perm(why),
                };
                let card = (content.get("type").and_then(|t| t.as_str()) == Some("ask_question"))
                    .then_some(&content);
                let notice = content.get("error").and_then(|e| e.as_bool()).unwrap_or(false);
                Body::Message { text, files: &files, card, notice }
            }
        };
        // A message without files is stored once per source id: delivering it again is a no-op
        // (a file is taken from the session when it is delivered, so it could not be sent again).
        let redoable = matches!(body, Body::Message { files, .. } if files.is_empty());
        let platform_id =
            adapter.deliver(&Outgoing { room: &room, agent, source_id: &source_id, stream_id, body })?;
        Ok(Sent { platform_id, redoable })
    }

    /// The room message an agent-visible `seq` refers to: an odd seq is one of the agent's own
    /// messages, an even one a message it received. `own_only` refuses the latter (edits).
    fn target(
        &self,
        pass: &Pass<'_>,
        seq: i64,
        room_id: &str,
        own_only: bool,
    ) -> rusqlite::Result<Result<String, String>> {
        let unknown = || Ok(Err(format!("message {seq} is not one this agent can refer to in this room")));
        let message = if seq % 2 == 1 {
            let Some(out_id) = outbound::id_by_seq(pass.out, seq)? else { return unknown() };
            central::message_by_source(&self.d.central, &format!("{}/{out_id}", pass.session.id))?
        } else {
            if own_only {
                return Ok(Err(format!(
                    "message {seq} is not yours; an agent can only edit its own messages"
                )));
            }
            let Some(in_id) = inbound::id_by_seq(pass.inb, seq)? else { return unknown() };
            // Inbound ids are `<room message id>:<agent id>`.
            let Some((msg_id, _)) = in_id.rsplit_once(':') else { return unknown() };
            central::message(&self.d.central, msg_id)?
        };
        match message {
            Some(m) if m.room_id == room_id => Ok(Ok(m.id)),
            _ => unknown(),
        }
    }

    /// A failed row: the outcome to record, a context note for the agent, and a notice the user
    /// sees in the room at once.
    fn fail(&self, session: &Session, agent: &Agent, row: &OutboundRow, reason: &str) -> Write {
        log::warn!("delivery of {} from agent {} failed: {reason}", row.id, agent.name);
        // A request to the host (a `system` row) is refused rather than undelivered.
        let action = (row.kind == "system")
            .then(|| serde_json::from_str::<serde_json::Value>(&row.content).ok())
            .flatten()
            .and_then(|c| c.get("action").and_then(|a| a.as_str()).map(str::to_string));
        let (text, note) = match &action {
            Some(a) => (
                format!("{} asked for {a}, which was refused: {reason}", agent.name),
                format!("Your {a} request was refused: {reason}"),
            ),
            None => (
                format!("A message from {} could not be delivered: {reason}", agent.name),
                format!("Your message {} could not be delivered: {reason}", row.seq),
            ),
        };
        // A conversation between agents has no room: the room its chain started from hears it.
        let to = a2a::room_session(&self.d.central, &self.d.data_dir, session)
            .unwrap_or_else(|| session.id.clone());
        self.d.channels.notice_session(&self.d.central, &to, &text);
        Write {
            row_id: row.id.clone(),
            outcome: Outcome::Failed,
            platform_id: None,
            reason: Some(reason.to_string()),
            note_to_agent: Some(Note { id: format!("fail-{}", row.id), text: note }),
            may_wait: false,
        }
    }
}

/// What one delivery pass of a session works with.
struct Pass<'a> {
    session: &'a Session,
    agent: &'a Agent,
    dir: &'a SessionDir,
    out: &'a Connection,
    inb: &'a Connection,
}

/// Largest number of files in one message.
pub const FILES_MAX: usize = 10;

/// The files an outbound row refers to, staged by the agent in `outbox/<row id>/`: plain names
/// only, regular files only (no links).
fn staged_files(dir: &SessionDir, row_id: &str, content: &serde_json::Value) -> Result<Vec<PathBuf>, String> {
    let Some(names) = content.get("files").and_then(|f| f.as_array()) else { return Ok(Vec::new()) };
    if names.len() > FILES_MAX {
        return Err(format!("a message may carry at most {FILES_MAX} files"));
    }
    let base = dir.path().join("outbox").join(row_id);
    let mut out = Vec::new();
    for n in names {
        let Some(name) = n.as_str().filter(|n| crate::ids::is_plain_file_name(n)) else {
            return Err(format!("the file name {n} is not allowed"));
        };
        let path = base.join(name);
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_file() => out.push(path),
            _ => return Err(format!("the file {name:?} the agent sent is missing")),
        }
    }
    Ok(out)
}

/// A row its channel took (or the host acted on).
struct Sent {
    platform_id: String,
    /// Delivering it again would change nothing: its outcome may wait ([`super::outcomes`]).
    redoable: bool,
}

impl Sent {
    /// A row acted on that must not be acted on again.
    fn once(platform_id: String) -> Sent {
        Sent { platform_id, redoable: false }
    }
}

/// An `inbound.db` write of a delivery pass.
struct Write {
    row_id: String,
    outcome: Outcome,
    platform_id: Option<String>,
    reason: Option<String>,
    note_to_agent: Option<Note>,
    /// It may wait for the session's next commit.
    may_wait: bool,
}

impl Write {
    fn delivered(row_id: &str, sent: Sent) -> Write {
        Write {
            row_id: row_id.to_string(),
            outcome: Outcome::Delivered,
            platform_id: Some(sent.platform_id),
            reason: None,
            note_to_agent: None,
            may_wait: sent.redoable,
        }
    }
}

/// A context-only message from pincer to the agent (it rides along with the next prompt).
struct Note {
    id: String,
    text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ticks of `rounds` sweeps over `n` sessions all read at `start`, none changing; how often
    /// each was read again and the most read at one tick.
    fn sweeps(n: usize, rounds: u32) -> (HashMap<String, u32>, usize) {
        let start = Instant::now();
        let mut read: Vec<(String, Instant)> =
            (0..n).map(|i| (format!("sess-{:04}", (i * 7919) % 10_000), start)).collect();
        let mut count: HashMap<String, u32> = HashMap::new();
        let mut most = 0;
        let mut now = start;
        while now + SAFETY_TICK < start + RUNNING_SWEEP * (rounds + 1) {
            now += SAFETY_TICK;
            let due = sweep_due(&read, now);
            most = most.max(due.len());
            for s in due {
                *count.entry(s.clone()).or_default() += 1;
                read.iter_mut().find(|(id, _)| *id == s).expect("a running session").1 = now;
            }
        }
        (count, most)
    }

    #[test]
    fn the_slow_sweep_reads_each_unchanged_session_once_a_round_a_few_at_a_time() {
        for n in [1, 7, 50, SWEEP_TICKS, 1000] {
            let (count, most) = sweeps(n, 3);
            assert_eq!(count.len(), n, "{n} sessions: some were never read again");
            assert!(
                count.values().all(|&c| c == 3),
                "{n} sessions: read {:?} times in 3 rounds",
                count.values().collect::<HashSet<_>>()
            );
            assert_eq!(most, n.div_ceil(SWEEP_TICKS), "{n} sessions: the most read at one tick");
        }
    }

    #[test]
    fn the_slow_sweep_leaves_sessions_read_lately() {
        let now = Instant::now() + RUNNING_SWEEP * 2;
        let read = vec![
            ("new".to_string(), now - SAFETY_TICK),
            ("old".to_string(), now - RUNNING_SWEEP - SAFETY_TICK),
            ("older".to_string(), now - RUNNING_SWEEP * 2),
        ];
        assert_eq!(sweep_due(&read, now), ["older"], "one a tick, the longest unread first");
        assert!(sweep_due(&read[..1], now).is_empty());
        assert!(sweep_due(&[], now).is_empty());
    }

    #[test]
    fn every_commit_changes_the_stamp_and_reading_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbound.db");
        let conn = db::open(&path, Kind::Outbound).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let mut watched = Watched::stamp(&path, None).expect("a stamp");
        for i in 0..3 {
            // Same size each time: only the change counter tells them apart.
            conn.execute("INSERT OR REPLACE INTO t (rowid, x) VALUES (1, ?1)", [i]).unwrap();
            assert!(watched.changed(), "commit {i} left the stamp as it was");
            watched = Watched::stamp(&path, Some(watched)).unwrap();
            assert!(!watched.changed());
        }
        let _: i64 = conn.query_row("SELECT COUNT(*) FROM t", [], |r| r.get(0)).unwrap();
        assert!(!watched.changed(), "reading changed the stamp");
        assert!(Watched::stamp(&dir.path().join("missing.db"), None).is_none());
    }

    #[test]
    fn a_file_set_aside_and_replaced_is_watched_anew() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("outbound.db");
        drop(db::open(&path, Kind::Outbound).unwrap());
        let watched = Watched::stamp(&path, None).unwrap();
        std::fs::rename(&path, dir.path().join("outbound.db.damaged")).unwrap();
        let conn = db::open(&path, Kind::Outbound).unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        let old_ino = watched.ino;
        let again = Watched::stamp(&path, Some(watched)).unwrap();
        assert_ne!(again.ino, old_ino, "still the file set aside");
        conn.execute_batch("INSERT INTO t VALUES (1)").unwrap();
        assert!(again.changed(), "a commit to the new file is seen");
    }
}
