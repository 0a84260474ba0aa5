//! The container registry: one agent container per active session, started on demand.
//!
//! [`Containers::wake`] either signals the running container over its link or starts one. The
//! start itself (`docker run --detach`) runs on a short-lived thread, so no caller waits on the
//! engine. Concurrent wakes of one session start one container: the registry entry is created
//! under the same lock that decides to start. Names are `pincer-<install>-<session>-<gen>` with a
//! generation kept in the central DB: never reused, never taken from the clock, and a new one
//! only after the previous container is gone, so no two runners ever serve one session.
//!
//! Lifecycle goes out through one closed enum, [`ContainerEvent`], to the sink the host gives at
//! construction: sockets to serve before a container starts, and every exit (with its log tail)
//! after the container has been removed. Exits come from the runtime's watcher; [`Containers::
//! reconcile`] compares the registry with what really runs when events may have been missed.
//! After a crash of the host, [`Containers::adopt`] keeps the containers still healthy for a
//! known session and removes the rest, whatever state they are in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant, UNIX_EPOCH};

use anyhow::Context;

use super::backoff;
use super::links::{self, Links, SessionSockets};
use super::runtime::{INSTALL_LABEL, Runtime, Watched};
use super::sessions::{self, SessionDir};
use crate::db::Connection;
use crate::db::central::{self, Session};
use crate::docker::{Died, EngineDown, Mount, RunSpec};
use crate::ids::now_ms;
use crate::link::ToAgent;

/// Label with the session id.
pub const SESSION_LABEL: &str = "pincer.session";
/// Label with the container generation.
pub const GEN_LABEL: &str = "pincer.gen";
/// Grace period of `docker stop` before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(1);
/// Log lines of an exited container kept for its exit report.
pub const LOG_TAIL_LINES: usize = 40;
/// Bytes of an exited container's log kept for its exit report.
pub const LOG_TAIL_BYTES: usize = 4096;
/// A running container found at start-up is adopted only if its heartbeat is this fresh.
pub const ADOPT_HEARTBEAT_MS: i64 = 2 * 60 * 1000;

/// What the runner needs to start agent containers.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub image: String,
    pub data_dir: PathBuf,
    pub groups_dir: PathBuf,
    /// Value of the install label: derived from the data directory, so two installs on one
    /// engine never touch each other's containers.
    pub install: String,
    /// `uid:gid` of the data directory's owner.
    pub user: String,
    pub tz: String,
    pub default_provider: String,
    /// Model names configured for each protocol (`ANTHROPIC_MODEL`, `OPENAI_MODEL`).
    pub anthropic_model: Option<String>,
    pub openai_model: Option<String>,
    pub idle_exit_s: u64,
    pub max_containers: usize,
    pub log_level: String,
    /// Extra environment for the runner (tests shorten its safety poll with it).
    pub extra_env: Vec<(String, String)>,
}

impl RunnerConfig {
    pub fn install_id(data_dir: &Path) -> String {
        let abs = std::fs::canonicalize(data_dir).unwrap_or_else(|_| data_dir.to_path_buf());
        sha1_smol::Sha1::from(abs.as_os_str().as_encoded_bytes()).digest().to_string()[..8].to_string()
    }

    /// `uid:gid` owning `dir`.
    pub fn owner_of(dir: &Path) -> anyhow::Result<String> {
        use std::os::unix::fs::MetadataExt;
        let meta = std::fs::metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
        Ok(format!("{}:{}", meta.uid(), meta.gid()))
    }

    /// The container name of a session's generation.
    pub fn container_name(&self, session_id: &str, generation: i64) -> String {
        format!("pincer-{}-{session_id}-{generation}", self.install)
    }
}

/// Outcome of a wake.
#[derive(Debug, PartialEq)]
pub enum WakeOutcome {
    /// The container was running and has been told.
    Signalled,
    /// A container is starting.
    Started,
    /// Nothing started now (backoff, capacity, shutdown, engine down); the sweep tries again, at
    /// `retry_at` (epoch ms) when that is known.
    Deferred { why: String, retry_at: Option<i64> },
}

/// A container exit.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitReport {
    pub session_id: String,
    pub agent_id: String,
    pub container: String,
    pub code: Option<i32>,
    /// The end of what the container wrote, or why it could not be started.
    pub stderr_tail: String,
    pub ran_for: Duration,
    /// It connected its link (it started properly).
    pub linked: bool,
    /// The host asked it to stop.
    pub stop_requested: bool,
    /// It never ran because the engine was unreachable (not the agent's failure).
    pub engine_down: bool,
}

/// What the registry tells the rest of the host.
#[derive(Debug)]
pub enum ContainerEvent {
    /// Serve these sockets: a container is about to start (or was adopted) for the session.
    Sockets { session: String, sockets: SessionSockets },
    /// The container is gone (and removed).
    Exited(ExitReport),
}

pub type EventSink = Box<dyn Fn(ContainerEvent) + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// `docker run` is under way.
    Starting,
    Running,
}

struct Slot {
    name: String,
    agent_id: String,
    phase: Phase,
    /// It connected its link to this host.
    linked: bool,
    /// It started properly (linked now or before a crash of the host): an exit is no failed start.
    proven: bool,
    stop_requested: bool,
    since: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Backoff {
    failures: u32,
    /// Epoch ms.
    not_before: i64,
}

#[derive(Default)]
struct State {
    running: HashMap<String, Slot>,
    backoff: HashMap<String, Backoff>,
    /// The engine was unreachable: no start before this (epoch ms), with the number of misses.
    engine_down: Option<Backoff>,
    stopping: bool,
}

pub struct Containers {
    cfg: RunnerConfig,
    runtime: Arc<dyn Runtime>,
    links: Arc<Links>,
    sink: EventSink,
    state: Mutex<State>,
    changed: Condvar,
    /// The engine's last answer to a probe, for `/health`.
    probed: Mutex<Option<(Instant, Result<(), String>)>>,
}

/// `/health` asks the engine at most this often.
pub const ENGINE_PROBE_EVERY: Duration = Duration::from_secs(15);

impl Containers {
    pub fn new(
        cfg: RunnerConfig,
        runtime: Arc<dyn Runtime>,
        links: Arc<Links>,
        sink: EventSink,
    ) -> Containers {
        Containers {
            cfg,
            runtime,
            links,
            sink,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            probed: Mutex::new(None),
        }
    }

    /// Whether the container engine answers (asked at most every [`ENGINE_PROBE_EVERY`]).
    pub fn engine_status(&self) -> Result<(), String> {
        let mut probed = self.probed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((at, r)) = &*probed
            && at.elapsed() < ENGINE_PROBE_EVERY
        {
            return r.clone();
        }
        let r = self.runtime.probe().map(|_| ()).map_err(|e| format!("{e:#}"));
        *probed = Some((Instant::now(), r.clone()));
        r
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes sure the session's container sees new inbound rows: signal it, or start it.
    pub fn wake(self: &Arc<Self>, conn: &Connection, session: &Session) -> anyhow::Result<WakeOutcome> {
        let mut state = self.lock();
        if state.running.contains_key(&session.id) {
            // Not linked yet: the first wake on connect covers it.
            self.links.send(&session.id, &ToAgent::Wake);
            return Ok(WakeOutcome::Signalled);
        }
        let now = now_ms();
        if state.stopping {
            return Ok(WakeOutcome::Deferred { why: "host is shutting down".into(), retry_at: None });
        }
        if let Some(b) = state.engine_down
            && now < b.not_before
        {
            return Ok(WakeOutcome::Deferred {
                why: "the docker engine is not reachable".into(),
                retry_at: Some(b.not_before),
            });
        }
        if let Some(b) = state.backoff.get(&session.id)
            && now < b.not_before
        {
            return Ok(WakeOutcome::Deferred {
                why: "backing off after container failures".into(),
                retry_at: Some(b.not_before),
            });
        }
        if state.running.len() >= self.cfg.max_containers {
            // Retried when a container exits.
            return Ok(WakeOutcome::Deferred { why: "at PINCER_MAX_CONTAINERS".into(), retry_at: None });
        }
        let (spec, sockets) = self.prepare(conn, session)?;
        let name = spec.name.clone();
        state.running.insert(
            session.id.clone(),
            Slot {
                name: name.clone(),
                agent_id: session.agent_id.clone(),
                phase: Phase::Starting,
                linked: false,
                proven: false,
                stop_requested: false,
                since: Instant::now(),
            },
        );
        drop(state);
        central::set_container_status(conn, &session.id, "running", now)?;
        (self.sink)(ContainerEvent::Sockets { session: session.id.clone(), sockets });
        let me = Arc::clone(self);
        let session_id = session.id.clone();
        std::thread::Builder::new()
            .name("container-start".into())
            .stack_size(128 * 1024)
            .spawn(move || me.start(&session_id, &spec))
            .context("starting the container start thread")?;
        Ok(WakeOutcome::Started)
    }

    /// Prepares the session directory and sockets, takes the next generation, builds the spec.
    fn prepare(&self, conn: &Connection, session: &Session) -> anyhow::Result<(RunSpec, SessionSockets)> {
        let agent =
            central::agent(conn, &session.agent_id)?.context("the session's agent no longer exists")?;
        let dir = SessionDir::new(&self.cfg.data_dir, &agent.id, &session.id);
        dir.ensure()?;
        sessions::project(conn, &dir, session)?;
        let group = self.cfg.groups_dir.join(&agent.folder);
        std::fs::create_dir_all(&group).with_context(|| format!("creating {}", group.display()))?;
        let sockets = links::bind(dir.path())
            .with_context(|| format!("binding the session sockets in {}", dir.path().display()))?;
        let generation = central::next_container_gen(conn, &session.id)?;
        let provider = agent.provider.clone().unwrap_or_else(|| self.cfg.default_provider.clone());
        // An endpoint added in the app: the runner speaks its protocol; the proxy sends the
        // session's calls there.
        let own = crate::db::endpoints::get(conn, &provider)?;
        let (provider, model) = match own {
            Some(e) => (e.kind, agent.model.clone().or(e.default_model)),
            None => {
                let model = agent.model.clone().or_else(|| match provider.as_str() {
                    "anthropic" => self.cfg.anthropic_model.clone(),
                    "openai" => self.cfg.openai_model.clone(),
                    _ => None,
                });
                (provider, model)
            }
        };
        let mut env = vec![
            ("TZ".to_string(), self.cfg.tz.clone()),
            ("HOME".to_string(), "/workspace/agent".to_string()),
            ("PINCER_SESSION_ID".to_string(), session.id.clone()),
            ("PINCER_AGENT_ID".to_string(), agent.id.clone()),
            ("PINCER_AGENT_NAME".to_string(), agent.name.clone()),
            ("PINCER_PROVIDER".to_string(), provider),
            ("PINCER_IDLE_EXIT_S".to_string(), self.cfg.idle_exit_s.to_string()),
            ("PINCER_LOG".to_string(), self.cfg.log_level.clone()),
        ];
        if crate::db::kept::SHARED_PAGE_CACHE {
            // The bind mount is this kernel's own file: the runner may keep its view open.
            env.push(("PINCER_KEEP_VIEW".to_string(), "1".to_string()));
        }
        if let Some(model) = model {
            env.push(("PINCER_MODEL".to_string(), model));
        }
        if agent.mcp_servers.trim() != "{}" && !agent.mcp_servers.trim().is_empty() {
            env.push(("PINCER_MCP_SERVERS".to_string(), agent.mcp_servers.clone()));
        }
        if let Some(n) = agent.max_messages_per_prompt {
            env.push(("PINCER_MAX_MESSAGES".to_string(), n.to_string()));
        }
        env.extend(self.cfg.extra_env.iter().cloned());
        let spec = RunSpec {
            name: self.cfg.container_name(&session.id, generation),
            image: self.cfg.image.clone(),
            labels: vec![
                (INSTALL_LABEL.to_string(), self.cfg.install.clone()),
                (SESSION_LABEL.to_string(), session.id.clone()),
                (GEN_LABEL.to_string(), generation.to_string()),
            ],
            user: self.cfg.user.clone(),
            env,
            mounts: vec![
                Mount { host: dir.path().to_path_buf(), container: "/workspace".into(), readonly: false },
                // The container only reads inbound.db; the mount makes that a fact.
                Mount { host: dir.inbound(), container: "/workspace/inbound.db".into(), readonly: true },
                Mount { host: group, container: "/workspace/agent".into(), readonly: false },
            ],
            workdir: "/workspace/agent".into(),
        };
        Ok((spec, sockets))
    }

    /// Runs on the start thread: `docker run --detach`; a failure is an exit that never ran.
    fn start(&self, session_id: &str, spec: &RunSpec) {
        match self.runtime.start(spec) {
            Ok(()) => {
                let mut state = self.lock();
                if let Some(slot) = state.running.get_mut(session_id)
                    && slot.name == spec.name
                    && slot.phase == Phase::Starting
                {
                    slot.phase = Phase::Running;
                }
                state.engine_down = None;
                log::info!("started container {} for session {session_id}", spec.name);
            }
            Err(e) => {
                let engine_down = e.downcast_ref::<EngineDown>().is_some();
                if engine_down {
                    let mut state = self.lock();
                    let failures = state.engine_down.map_or(0, |b| b.failures) + 1;
                    let delay = backoff::ENGINE.delay_ms(failures).unwrap_or(30_000);
                    state.engine_down = Some(Backoff { failures, not_before: now_ms() + delay });
                }
                log::error!("starting container {}: {e:#}", spec.name);
                // A container that was created but not started is removed too.
                let _ = self.runtime.remove(&spec.name);
                self.finish(&spec.name, None, format!("{e:#}"), engine_down);
            }
        }
    }

    /// Handles what the runtime's watcher saw.
    pub fn watched(&self, w: Watched) {
        match w {
            Watched::Died(Died { name, code }) => self.died(&name, code),
            Watched::Resync => self.reconcile(),
        }
    }

    /// A container died: read its log tail, remove it, report the exit.
    fn died(&self, name: &str, code: Option<i32>) {
        let known = self.lock().running.values().any(|s| s.name == name);
        if !known {
            // A container this registry does not track (its start failed, or it was already
            // handled): make sure it is gone.
            let _ = self.runtime.remove(name);
            return;
        }
        let tail = match self.runtime.logs(name, LOG_TAIL_LINES) {
            Ok(t) => crate::process::tail(t.trim(), LOG_TAIL_BYTES),
            Err(e) => format!("(the log could not be read: {e:#})"),
        };
        for line in tail.lines().rev().take(5).collect::<Vec<_>>().into_iter().rev() {
            log::debug!("[{name}] {line}");
        }
        if let Err(e) = self.runtime.remove(name) {
            log::warn!("removing exited container {name}: {e:#}");
        }
        self.finish(name, code, tail, false);
    }

    /// Forgets a container and reports its exit.
    fn finish(&self, name: &str, code: Option<i32>, tail: String, engine_down: bool) {
        let (session_id, slot) = {
            let mut state = self.lock();
            let Some(session_id) = state.running.iter().find(|(_, s)| s.name == name).map(|(k, _)| k.clone())
            else {
                return;
            };
            let slot = state.running.remove(&session_id).expect("found above");
            if slot.proven {
                // A container that connected was healthy: forget earlier failures.
                state.backoff.remove(&session_id);
            }
            self.changed.notify_all();
            (session_id, slot)
        };
        log::info!("container {name} exited ({code:?}) after {:?}", slot.since.elapsed());
        (self.sink)(ContainerEvent::Exited(ExitReport {
            session_id,
            agent_id: slot.agent_id,
            container: name.to_string(),
            code,
            stderr_tail: tail,
            ran_for: slot.since.elapsed(),
            linked: slot.proven,
            stop_requested: slot.stop_requested,
            engine_down,
        }));
    }

    /// Compares the registry with the containers that really run; any that vanished unseen is
    /// reported as exited. Starting containers are left alone (their start thread reports).
    pub fn reconcile(&self) {
        let listed = match self.runtime.list(&self.cfg.install) {
            Ok(l) => l,
            Err(e) => {
                log::warn!("listing containers: {e:#}");
                return;
            }
        };
        let gone: Vec<String> = {
            let state = self.lock();
            state
                .running
                .values()
                .filter(|s| s.phase == Phase::Running)
                .filter(|s| {
                    !listed.iter().any(|l| {
                        l.name == s.name && matches!(l.state.as_str(), "running" | "restarting" | "paused")
                    })
                })
                .map(|s| s.name.clone())
                .collect()
        };
        for name in gone {
            log::warn!("container {name} is no longer running; handling its exit");
            self.died(&name, None);
        }
    }

    /// Start-up after any stop of the host, a crash included: adopts each container that still
    /// runs the current image for an active session with a fresh heartbeat (the newest
    /// generation, if several) and removes every other one, whatever state docker has it in.
    /// Returns (adopted, removed).
    pub fn adopt(&self, conn: &Connection) -> anyhow::Result<(usize, usize)> {
        let listed = self.runtime.list(&self.cfg.install)?;
        let now = now_ms();
        let mut keep: HashMap<String, (i64, String)> = HashMap::new();
        for c in &listed {
            let Some(session_id) = c.labels.get(SESSION_LABEL) else { continue };
            let generation: i64 = c.labels.get(GEN_LABEL).and_then(|g| g.parse().ok()).unwrap_or(-1);
            // A runner from another image (pincer was upgraded: the tag now names the rebuilt
            // image, and docker lists older containers by image ID) may not know the session
            // files' schema this host migrates them to: it is removed, and a current one starts
            // on demand.
            if c.state != "running" || generation < 0 || c.image != self.cfg.image {
                continue;
            }
            let Some(session) = central::session(conn, session_id)? else { continue };
            if session.status != "active" {
                continue;
            }
            let dir = SessionDir::new(&self.cfg.data_dir, &session.agent_id, &session.id);
            let fresh = mtime_ms(&dir.heartbeat()).is_some_and(|t| now - t < ADOPT_HEARTBEAT_MS);
            if !fresh {
                continue;
            }
            if keep.get(session_id).is_none_or(|(g, _)| generation > *g) {
                keep.insert(session_id.clone(), (generation, c.name.clone()));
            }
        }
        let mut removed = 0;
        for c in &listed {
            if keep.values().any(|(_, n)| *n == c.name) {
                continue;
            }
            match self.runtime.remove(&c.name) {
                Ok(how) => {
                    log::info!("removed container {} ({}) left by an earlier run: {how:?}", c.name, c.state);
                    removed += 1;
                }
                Err(e) => log::warn!("could not remove container {} ({}): {e:#}", c.name, c.state),
            }
        }
        let mut adopted = 0;
        for (session_id, (generation, name)) in keep {
            let Some(session) = central::session(conn, &session_id)? else { continue };
            let dir = SessionDir::new(&self.cfg.data_dir, &session.agent_id, &session.id);
            let sockets = match links::bind(dir.path()) {
                Ok(s) => s,
                Err(e) => {
                    log::warn!("cannot adopt {name}: binding its sockets: {e}");
                    let _ = self.runtime.remove(&name);
                    continue;
                }
            };
            // The host's own file: a write cut short by the crash is rolled back now, before
            // the runner (which may only read it) looks again.
            if let Err(e) = dir.open_inbound().and_then(|c| {
                Ok(c.query_row("SELECT COUNT(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0))?)
            }) {
                log::warn!("checking {}: {e:#}", dir.inbound().display());
            }
            central::raise_container_gen(conn, &session_id, generation)?;
            central::set_container_status(conn, &session_id, "running", now)?;
            self.lock().running.insert(
                session_id.clone(),
                Slot {
                    name: name.clone(),
                    agent_id: session.agent_id.clone(),
                    phase: Phase::Running,
                    linked: false,
                    // It ran properly before the crash: a later exit is not a failed start.
                    proven: true,
                    stop_requested: false,
                    since: Instant::now(),
                },
            );
            (self.sink)(ContainerEvent::Sockets { session: session_id.clone(), sockets });
            log::info!("adopted running container {name} for session {session_id}");
            adopted += 1;
        }
        Ok((adopted, removed))
    }

    /// The container connected its link: it started properly.
    pub fn linked(&self, session_id: &str) {
        let mut state = self.lock();
        if let Some(slot) = state.running.get_mut(session_id) {
            slot.linked = true;
            slot.proven = true;
            slot.phase = Phase::Running;
        }
        state.backoff.remove(session_id);
    }

    /// Sends a frame to a running container; false if it is not running or not linked.
    pub fn send(&self, session_id: &str, frame: &ToAgent) -> bool {
        self.links.send(session_id, frame)
    }

    pub fn is_running(&self, session_id: &str) -> bool {
        self.lock().running.contains_key(session_id)
    }

    /// Sessions whose container has run this long without connecting its link (a runner that
    /// hangs before it is up, or an adopted one that never came back).
    pub fn unlinked_for(&self, d: Duration) -> Vec<String> {
        let state = self.lock();
        state
            .running
            .iter()
            .filter(|(_, s)| !s.linked && s.phase == Phase::Running && s.since.elapsed() >= d)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Session ids with a running container.
    pub fn running(&self) -> Vec<String> {
        self.lock().running.keys().cloned().collect()
    }

    /// Records a failed start; the next start waits per [`backoff::CONTAINER_START`]. Returns
    /// the number of consecutive failures.
    pub fn record_failure(&self, session_id: &str) -> u32 {
        let mut state = self.lock();
        let failures = state.backoff.get(session_id).map_or(0, |b| b.failures) + 1;
        let delay_ms = backoff::CONTAINER_START.delay_ms(failures).unwrap_or(300_000);
        state.backoff.insert(session_id.to_string(), Backoff { failures, not_before: now_ms() + delay_ms });
        failures
    }

    pub fn clear_failures(&self, session_id: &str) {
        self.lock().backoff.remove(session_id);
    }

    /// When the engine may be tried again, if it was found unreachable.
    pub fn engine_retry_at(&self) -> Option<i64> {
        self.lock().engine_down.map(|b| b.not_before)
    }

    /// Stops one container (stuck, or its agent was removed); its exit is reported as usual.
    pub fn stop(self: &Arc<Self>, session_id: &str, reason: &str) {
        let name = {
            let mut state = self.lock();
            let Some(slot) = state.running.get_mut(session_id) else {
                return;
            };
            slot.stop_requested = true;
            slot.name.clone()
        };
        log::warn!("stopping container {name}: {reason}");
        let me = Arc::clone(self);
        let _ = std::thread::Builder::new().name("container-stop".into()).spawn(move || {
            if let Err(e) = me.runtime.stop(&name, STOP_GRACE) {
                log::error!("stopping {name}: {e:#}");
            }
        });
    }

    /// Shutdown: start no more containers, stop all running ones, wait (bounded) for their exit.
    pub fn stop_all(&self, timeout: Duration) {
        let names: Vec<String> = {
            let mut state = self.lock();
            state.stopping = true;
            state
                .running
                .values_mut()
                .map(|s| {
                    s.stop_requested = true;
                    s.name.clone()
                })
                .collect()
        };
        if names.is_empty() {
            return;
        }
        log::info!("stopping {} agent container(s)", names.len());
        std::thread::scope(|scope| {
            for name in &names {
                scope.spawn(move || {
                    if let Err(e) = self.runtime.stop(name, STOP_GRACE) {
                        log::error!("stopping {name}: {e:#}");
                    }
                });
            }
        });
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        while !state.running.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::error!("{} container(s) did not exit in time", state.running.len());
                break;
            }
            state = self.changed.wait_timeout(state, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// A session whose database is damaged: its container is stopped, its directory set aside
/// ([`sessions::quarantine`]) and the room told; the next message starts a fresh session.
pub fn set_aside(
    conn: &Connection,
    data_dir: &Path,
    containers: &Arc<Containers>,
    channels: &super::channels::Channels,
    session: &Session,
    err: &anyhow::Error,
) {
    containers.stop(&session.id, "its session database is damaged");
    let text = match sessions::quarantine(conn, data_dir, session, now_ms()) {
        Ok(path) => format!(
            "This conversation's store was damaged ({err:#}) and has been set aside in {}; the agent starts a fresh conversation with your next message.",
            path.display()
        ),
        Err(e) => format!(
            "This conversation's store is damaged ({err:#}) and could not be set aside ({e:#}); see the host log."
        ),
    };
    channels.notice_session(conn, &session.id, &text);
}

fn mtime_ms(path: &Path) -> Option<i64> {
    let t = std::fs::metadata(path).and_then(|m| m.modified()).ok()?;
    Some(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis() as i64)
}
