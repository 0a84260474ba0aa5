//! The router thread: hands each stored user message to the agents wired to its room.
//!
//! Its queue is the central DB itself: user messages are stored with `routed_at = NULL` before the
//! sender gets an ack, and the router marks them routed only after every engaged agent's session
//! holds the message (inbound rows are keyed `<message id>:<agent id>`, so routing again after a
//! crash is a no-op). A kick makes it route at once; a slow timeout is the safety net. It never
//! waits on docker: starting a container is a spawn, not a wait.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mio::{Events, Poll};

use super::backoff;
use super::channels::Channels;
use super::containers::{Containers, WakeOutcome};
use super::engage;
use super::outcomes::Outcomes;
use super::sessions::{self, SessionDir, SessionMode};
use super::sweep::SweepMsg;
use crate::db::central::{self, Engagement, Room, Session, Unrouted, Wiring};
use crate::db::inbound::{self, NewInbound};
use crate::db::kept::{Kept, Mode};
use crate::db::{self, Connection, Kind};
use crate::ids::now_ms;
use crate::mailbox::{self, Mailbox};

/// Safety net when no kick arrives.
pub const SAFETY_POLL: Duration = Duration::from_secs(10);
/// Messages taken from the queue per query.
pub const BATCH_MAX: i64 = 64;

/// The router thread's mailbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouterMsg {
    /// Messages were stored: route them.
    Route,
    Stop,
}

pub struct Router {
    pub central: Connection,
    pub data_dir: PathBuf,
    pub containers: Arc<Containers>,
    pub sweep: Mailbox<SweepMsg>,
    pub channels: Channels,
    /// Failed attempts per message id (in memory: a restart gives every message fresh attempts).
    pub attempts: HashMap<String, u32>,
    /// After a failure, routing waits until then (epoch ms).
    pub retry_at: Option<i64>,
    /// Compiled engage patterns.
    pub patterns: HashMap<String, Option<fancy_regex::Regex>>,
    /// Session `inbound.db` connections kept between messages.
    pub kept: Kept,
    /// Delivery outcomes waiting for a commit of their session: they ride with the message's.
    pub outcomes: Outcomes,
}

/// Runs the router until [`RouterMsg::Stop`].
pub fn run(mut r: Router, mut poll: Poll, mailbox: Mailbox<RouterMsg>) -> anyhow::Result<()> {
    let mut events = Events::with_capacity(8);
    loop {
        if mailbox.take().contains(&RouterMsg::Stop) {
            log::info!("router stopped");
            return Ok(());
        }
        let now = now_ms();
        if r.retry_at.is_none_or(|t| now >= t) {
            r.retry_at = None;
            r.route_pending();
        }
        let timeout = match r.retry_at {
            Some(t) => Duration::from_millis((t - now_ms()).clamp(1, SAFETY_POLL.as_millis() as i64) as u64),
            None => SAFETY_POLL,
        };
        mailbox::poll(&mut poll, &mut events, Some(timeout))?;
    }
}

impl Router {
    pub fn new(
        central: Connection,
        data_dir: PathBuf,
        containers: Arc<Containers>,
        sweep: Mailbox<SweepMsg>,
        channels: Channels,
        outcomes: Outcomes,
    ) -> Router {
        Router {
            central,
            data_dir,
            containers,
            sweep,
            channels,
            attempts: HashMap::new(),
            retry_at: None,
            patterns: HashMap::new(),
            kept: Kept::default(),
            outcomes,
        }
    }

    /// Routes every queued message; stops early on an error (the next kick or poll retries).
    /// A batch shorter than [`BATCH_MAX`] was the whole queue: a message stored since came with
    /// a kick, which runs this again (the queue is not read once more to find it empty).
    pub fn route_pending(&mut self) {
        loop {
            let batch = match central::unrouted_messages(&self.central, BATCH_MAX) {
                Ok(b) => b,
                Err(e) => {
                    log::error!("router: reading the queue: {e}");
                    return;
                }
            };
            if batch.is_empty() {
                return;
            }
            let whole_queue = batch.len() < BATCH_MAX as usize;
            for m in &batch {
                if let Err(e) = self.route(m) {
                    let n = self.attempts.entry(m.id.clone()).or_insert(0);
                    *n += 1;
                    log::error!("router: message {} (attempt {n}): {e:#}", m.id);
                    match backoff::ROUTING.delay_ms(*n) {
                        Some(delay) => {
                            self.retry_at = Some(now_ms() + delay);
                            return;
                        }
                        None => self.give_up(m, &format!("{e:#}")),
                    }
                }
            }
            if whole_queue {
                return;
            }
        }
    }

    fn route(&mut self, m: &Unrouted) -> anyhow::Result<()> {
        let now = now_ms();
        // The room with its rules, and its wirings with their agents' folders: two reads.
        let Some((room, policy, eng)) = central::room_for_routing(&self.central, &m.room_id)? else {
            central::mark_routed(&self.central, &m.id, now)?;
            return Ok(());
        };
        let (wirings, folders): (Vec<Wiring>, Vec<String>) =
            central::wirings_with_folders(&self.central, &room.id)?.into_iter().unzip();
        // Agents whose owner is to be asked about the sender (after the message is marked routed:
        // a quick "let in" then routes it again instead of racing with this pass).
        let mut asks: Vec<String> = Vec::new();
        let mut to_wake: Vec<Session> = Vec::new();
        let mut touched: Vec<String> = Vec::new();
        let engaged_agents = self.engaged(&room, &eng, &wirings, &folders, &m.text)?;
        for w in &wirings {
            let engaged = engaged_agents.contains(&w.agent_id);
            if !engaged && w.ignored_message_policy != "accumulate" {
                continue;
            }
            if let Some(sender) = m.sender_id.as_deref()
                && !self.admits(&room, &policy, w, m, sender, &mut asks, now)?
            {
                continue;
            }
            let session = sessions::resolve(
                &self.central,
                &self.data_dir,
                &w.agent_id,
                &room,
                None,
                SessionMode::parse(&w.session_mode),
                now,
            )?;

            let session = match self.write_inbound(&room, &session, m, engaged) {
                Ok(()) => session,
                Err(e) if db::is_corrupt(&e) => {
                    // Set the damaged session aside and hand the message to a fresh one.
                    super::containers::set_aside(
                        &self.central,
                        &self.data_dir,
                        &self.containers,
                        &self.channels,
                        &session,
                        &e,
                    );
                    let fresh = sessions::resolve(
                        &self.central,
                        &self.data_dir,
                        &w.agent_id,
                        &room,
                        None,
                        SessionMode::parse(&w.session_mode),
                        now,
                    )?;
                    self.write_inbound(&room, &fresh, m, engaged)?;
                    fresh
                }
                Err(e) => return Err(e),
            };

            touched.push(session.id.clone());
            if engaged {
                to_wake.push(session);
            }
        }

        // Wake first: the rows are committed in the sessions, so the agents can start while the
        // queue bookkeeping commits (routing again after a crash here is a no-op).
        for session in &to_wake {
            match self.containers.wake(&self.central, session) {
                Ok(WakeOutcome::Deferred { why, .. }) => {
                    log::info!("session {}: container start deferred: {why}", session.id);
                    self.sweep.post(SweepMsg::Check(session.id.clone()));
                }
                Ok(_) => {}
                Err(e) => {
                    // The message is stored in the session; the sweep retries the start.
                    log::error!("starting the container of session {}: {e:#}", session.id);
                    self.sweep.post(SweepMsg::Check(session.id.clone()));
                }
            }
        }
        // Losing this mark at a power failure only routes the message again (a no-op): it does
        // not wait for the disk.
        db::write_tx_redoable(&mut self.central, |tx| {
            central::mark_routed(tx, &m.id, now)?;
            for id in &touched {
                central::touch_session(tx, id, now)?;
            }
            Ok(())
        })?;
        self.attempts.remove(&m.id);
        if let Some(sender) = m.sender_id.as_deref() {
            for agent_id in asks {
                if let Err(e) = super::approvals::ask_about_sender(
                    &self.central,
                    &self.channels,
                    &room,
                    &agent_id,
                    sender,
                    &m.sender,
                    now,
                ) {
                    log::error!("asking about {sender} in room {}: {e:#}", room.id);
                }
            }
        }
        Ok(())
    }

    /// Whether the wiring's agent gets a person's message: they may use the agent (or the room
    /// answers everyone), and a `/clear` comes from its owner or an admin. A message it does not
    /// get is recorded with the reason; in a room that asks, the owner or the agent's admins get
    /// an approval card, and the message is given to the agent if they let the person in.
    #[allow(clippy::too_many_arguments)]
    fn admits(
        &self,
        room: &Room,
        policy: &str,
        w: &Wiring,
        m: &Unrouted,
        sender: &str,
        asks: &mut Vec<String>,
        now: i64,
    ) -> anyhow::Result<bool> {
        let drop = |reason: &str| -> anyhow::Result<bool> {
            central::insert_dropped(&self.central, &room.id, &m.id, &w.agent_id, Some(sender), reason, now)?;
            log::info!("message {} not given to agent {}: {reason}", m.id, w.agent_id);
            Ok(false)
        };
        if m.text.trim_start().starts_with("/clear")
            && !super::approvals::may_decide(&self.central, sender, &w.agent_id)?
        {
            // Recorded first, then told: whoever reads the notice finds the record.
            drop("command_not_allowed")?;
            let name = central::agent(&self.central, &w.agent_id)?.map(|a| a.name).unwrap_or_default();
            self.channels.notice_room(
                room,
                &format!("Only the owner or an admin of {name} can clear its conversation; {name} did not get that."),
            );
            return Ok(false);
        }
        if policy == "public" || central::can_access_agent(&self.central, sender, &w.agent_id)? {
            return Ok(true);
        }
        if policy != "request_approval" {
            return drop("not_member");
        }
        use super::approvals::{self, SenderState};
        match approvals::sender_state(&self.central, &room.id, &w.agent_id, sender)? {
            SenderState::Denied => drop("sender_denied"),
            SenderState::Asked => drop("awaiting_approval"),
            SenderState::Unasked => {
                // Held first, asked once the pass is done: whoever sees the card finds it held.
                asks.push(w.agent_id.clone());
                drop("awaiting_approval")
            }
        }
    }

    fn write_inbound(
        &mut self,
        room: &Room,
        session: &Session,
        m: &Unrouted,
        trigger: bool,
    ) -> anyhow::Result<()> {
        let dir = SessionDir::new(&self.data_dir, &session.agent_id, &session.id);
        if !dir.inbound().exists() {
            dir.ensure()?;
        }
        let files = self.files_into_inbox(&dir, m)?;
        let mut content = serde_json::json!({
            "text": m.text,
            "sender": m.sender,
            "senderId": m.sender_id,
            "senderName": m.sender,
        });
        if files.as_array().is_some_and(|f| !f.is_empty()) {
            content["files"] = files;
        }
        let content = content.to_string();
        let id = format!("{}:{}", m.id, session.agent_id);
        let mut inb = self.kept.take(&dir.inbound(), Kind::Inbound, Mode::Write)?;
        // The session's last replies' outcomes, if still waiting, go with this commit.
        let held = self.outcomes.take(&session.id);
        let written = db::write_tx(&mut inb, |tx| {
            if let Some(h) = &held {
                h.write(tx, now_ms())?;
            }
            inbound::insert(
                tx,
                &NewInbound {
                    id: &id,
                    kind: "chat",
                    timestamp: m.created_at,
                    trigger,
                    process_after: None,
                    channel_type: Some(&room.channel_type),
                    platform_id: Some(&room.platform_id),
                    thread_id: None,
                    content: &content,
                    on_wake: false,
                    recurrence: None,
                    series_id: None,
                    source_session_id: None,
                },
            )?;
            Ok(())
        });
        if let Err(e) = written {
            if let Some(h) = held {
                self.outcomes.put_back(&session.id, h, std::time::Instant::now());
            }
            return Err(e);
        }
        self.kept.put(inb);
        Ok(())
    }

    /// Copies the files a person's message carries into the session's `inbox/<message>/` (again
    /// on a retry: copying is idempotent) and returns the `files` the agent is given: each
    /// with the path its container sees. A file gone from the room is left out and logged.
    fn files_into_inbox(&self, dir: &SessionDir, m: &Unrouted) -> anyhow::Result<serde_json::Value> {
        let entries: Vec<serde_json::Value> = serde_json::from_str(&m.files).unwrap_or_default();
        let mut out = Vec::new();
        for e in entries {
            let Some((room, stored)) = e
                .get("url")
                .and_then(|u| u.as_str())
                .and_then(|u| u.strip_prefix("/api/files/"))
                .and_then(|u| u.split_once('/'))
                .filter(|(r, n)| crate::ids::is_plain_file_name(r) && crate::ids::is_plain_file_name(n))
            else {
                continue;
            };
            let src = crate::config::uploads_dir(&self.data_dir).join(room).join(stored);
            // Stored as `<tag>-<name>`: the agent sees the name.
            let local = stored.split_once('-').map(|(_, n)| n).filter(|n| crate::ids::is_plain_file_name(n));
            let local = local.unwrap_or(stored);
            let inbox = dir.path().join("inbox").join(&m.id);
            std::fs::create_dir_all(&inbox)?;
            match std::fs::copy(&src, inbox.join(local)) {
                Ok(_) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                    log::warn!("message {}: its file {stored} is gone from the room", m.id);
                    continue;
                }
                Err(err) => return Err(anyhow::anyhow!("copying {stored} into the agent's inbox: {err}")),
            }
            let mut f = e.clone();
            f["path"] = serde_json::json!(format!("/workspace/inbox/{}/{local}", m.id));
            // The picture's copy made for the model, beside it.
            let copy = super::pictures::model_copy(&src);
            if copy.exists() {
                let name = format!(".{local}.model.jpg");
                std::fs::copy(&copy, inbox.join(&name))
                    .map_err(|e| anyhow::anyhow!("copying {stored}'s picture for the model: {e}"))?;
                f["model_path"] = serde_json::json!(format!("/workspace/inbox/{}/{name}", m.id));
            }
            if let Some(o) = f.as_object_mut() {
                o.remove("url");
            }
            out.push(f);
        }
        Ok(serde_json::Value::Array(out))
    }

    /// Which of the room's agents take part in a message ([`engage::decide`]); a mention in a
    /// room with a sticky agent moves the conversation.
    fn engaged(
        &mut self,
        room: &Room,
        eng: &Engagement,
        wirings: &[Wiring],
        folders: &[String],
        text: &str,
    ) -> anyhow::Result<Vec<String>> {
        let members: Vec<engage::Member<'_>> =
            wirings.iter().zip(folders).map(|(w, f)| engage::Member { wiring: w, folder: f }).collect();
        let patterns = &mut self.patterns;
        let decision = engage::decide(eng, &members, text, &mut |p, t| {
            let re = patterns.entry(p.to_string()).or_insert_with(|| match compile_pattern(p) {
                Ok(re) => Some(re),
                Err(e) => {
                    log::error!(
                        "invalid engage pattern {p:?} in room {}: {e}; engaging on every message",
                        room.id
                    );
                    None
                }
            });
            re.as_ref().is_none_or(|re| pattern_engages(re, t))
        });
        if let Some(sticky) = &decision.sticky {
            central::set_sticky(&self.central, &room.id, sticky.as_deref())?;
        }
        Ok(decision.engaged)
    }

    fn give_up(&mut self, m: &Unrouted, why: &str) {
        self.attempts.remove(&m.id);
        if let Err(e) = central::mark_routed(&self.central, &m.id, now_ms()) {
            log::error!("router: cannot mark {} routed: {e}", m.id);
            return;
        }
        let Ok(Some(room)) = central::room(&self.central, &m.room_id) else {
            return;
        };
        let text = format!("Your message could not be handed to the agents of this room: {why}");
        self.channels.notice_room(&room, &text);
    }
}

/// Longest engage pattern accepted.
pub const PATTERN_CHARS_MAX: usize = 1000;
/// Backtracking steps one match may take (look-ahead patterns can backtrack badly).
pub const PATTERN_BACKTRACK_MAX: usize = 100_000;

/// Compiles an engage pattern with bounded size and matching work.
pub fn compile_pattern(p: &str) -> Result<fancy_regex::Regex, String> {
    if p.chars().count() > PATTERN_CHARS_MAX {
        return Err(format!("longer than {PATTERN_CHARS_MAX} characters"));
    }
    fancy_regex::RegexBuilder::new(p)
        .backtrack_limit(PATTERN_BACKTRACK_MAX)
        .delegate_size_limit(1 << 20)
        .delegate_dfa_size_limit(1 << 20)
        .build()
        .map_err(|e| e.to_string())
}

/// Whether a compiled pattern engages on `text`; a match that runs out of steps engages (a
/// message is never dropped because a pattern is slow).
pub fn pattern_engages(re: &fancy_regex::Regex, text: &str) -> bool {
    re.is_match(text).unwrap_or(true)
}
