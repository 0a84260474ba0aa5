//! The container runner: one agent container per active session, started on demand.
//!
//! [`Containers::wake`] either signals the running container over its link or starts one
//! (`docker run`, never waited on by the caller). Concurrent wakes of one session start one
//! container: the registry entry is created under the same lock that decides to spawn. A watcher
//! thread per container notices its exit and reports it to the sweep, which decides what happens
//! next (retry claims, back off a crash loop, start again for pending messages).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;

use super::delivery::DeliveryHandle;
use super::proxy::{self, ProxyHandle};
use super::sessions::{self, SessionDir};
use super::sweep::{ExitReport, SweepHandle};
use crate::db::Connection;
use crate::db::central::{self, Session};
use crate::docker::{self, Docker, Mount, RunSpec};
use crate::ids::now_ms;
use crate::link::{SOCKET_NAME, ToAgent, encode};

/// Label every agent container carries, valued with the install id (orphans are found by it).
pub const INSTALL_LABEL: &str = "pincer.install";
/// Label with the session id, for operators.
pub const SESSION_LABEL: &str = "pincer.session";
/// Grace period of `docker stop` before SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(1);
/// Lines of a container's stderr kept for error reports.
const STDERR_TAIL_BYTES: usize = 4096;

/// What the runner needs to start agent containers.
#[derive(Debug, Clone)]
pub struct RunnerConfig {
    pub docker: Docker,
    pub image: String,
    pub data_dir: PathBuf,
    pub groups_dir: PathBuf,
    /// Value of [`INSTALL_LABEL`]: derived from the data directory, so two installs on one engine
    /// never remove each other's containers.
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
}

/// Outcome of a wake.
#[derive(Debug, PartialEq)]
pub enum Wake {
    /// The container was running and has been told.
    Signalled,
    /// A container was started.
    Started,
    /// Nothing started now (backoff, capacity, shutdown); the sweep tries again, at `retry_at`
    /// (epoch ms) when that is known.
    Deferred { why: &'static str, retry_at: Option<i64> },
}

struct Slot {
    name: String,
    link: Option<UnixStream>,
    stop_requested: bool,
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
    stopping: bool,
}

pub struct Containers {
    cfg: RunnerConfig,
    state: Mutex<State>,
    changed: Condvar,
    delivery: DeliveryHandle,
    sweep: SweepHandle,
    proxy: ProxyHandle,
}

impl Containers {
    pub fn new(
        cfg: RunnerConfig,
        delivery: DeliveryHandle,
        sweep: SweepHandle,
        proxy: ProxyHandle,
    ) -> Containers {
        Containers {
            cfg,
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
            delivery,
            sweep,
            proxy,
        }
    }

    pub fn config(&self) -> &RunnerConfig {
        &self.cfg
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes sure the session's container sees new inbound rows: signal it, or start it.
    pub fn wake(self: &Arc<Self>, conn: &Connection, session: &Session) -> anyhow::Result<Wake> {
        let mut state = self.lock();
        if let Some(slot) = state.running.get_mut(&session.id) {
            signal(slot, &ToAgent::Wake);
            return Ok(Wake::Signalled);
        }
        if state.stopping {
            return Ok(Wake::Deferred { why: "host is shutting down", retry_at: None });
        }
        if let Some(b) = state.backoff.get(&session.id)
            && now_ms() < b.not_before
        {
            return Ok(Wake::Deferred {
                why: "backing off after container failures",
                retry_at: Some(b.not_before),
            });
        }
        if state.running.len() >= self.cfg.max_containers {
            // Retried when a container exits.
            return Ok(Wake::Deferred { why: "at PINCER_MAX_CONTAINERS", retry_at: None });
        }
        let (child, name, listener, model_listener) = self.start(conn, session)?;
        state
            .running
            .insert(session.id.clone(), Slot { name: name.clone(), link: None, stop_requested: false });
        drop(state);
        central::set_container_status(conn, &session.id, "running", now_ms())?;
        self.delivery.listen(&session.id, listener);
        self.proxy.listen(&session.id, model_listener);
        let me = Arc::clone(self);
        let session_id = session.id.clone();
        let agent_id = session.agent_id.clone();
        std::thread::Builder::new()
            .name(format!("watch-{name}"))
            .stack_size(64 * 1024)
            .spawn(move || me.watch(child, session_id, agent_id, name))
            .context("starting the container watcher thread")?;
        Ok(Wake::Started)
    }

    /// Prepares the session directory and runs `docker run`.
    fn start(
        &self,
        conn: &Connection,
        session: &Session,
    ) -> anyhow::Result<(Child, String, UnixListener, UnixListener)> {
        let agent =
            central::agent(conn, &session.agent_id)?.context("the session's agent no longer exists")?;
        let dir = SessionDir::new(&self.cfg.data_dir, &agent.id, &session.id);
        dir.ensure()?;
        sessions::project(conn, &dir, session)?;
        let group = self.cfg.groups_dir.join(&agent.folder);
        std::fs::create_dir_all(&group).with_context(|| format!("creating {}", group.display()))?;
        // A stale heartbeat would make a fresh container look stuck.
        let _ = std::fs::remove_file(dir.heartbeat());
        let listener = bind_socket(dir.path(), SOCKET_NAME)
            .with_context(|| format!("binding the link socket in {}", dir.path().display()))?;
        let model_listener = proxy::bind(dir.path())
            .with_context(|| format!("binding the model proxy socket in {}", dir.path().display()))?;

        let folder: String = agent.folder.chars().take(40).collect();
        let name = format!("pincer-{}-{folder}-{}", self.cfg.install, now_ms());
        let provider = agent.provider.clone().unwrap_or_else(|| self.cfg.default_provider.clone());
        let model = agent.model.clone().or_else(|| match provider.as_str() {
            "anthropic" => self.cfg.anthropic_model.clone(),
            "openai" => self.cfg.openai_model.clone(),
            _ => None,
        });
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
            name: name.clone(),
            image: self.cfg.image.clone(),
            labels: vec![
                (INSTALL_LABEL.to_string(), self.cfg.install.clone()),
                (SESSION_LABEL.to_string(), session.id.clone()),
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
        let args = docker::run_args(&spec)?;
        let child = self.cfg.docker.spawn_run(&args)?;
        log::info!("started container {name} for session {} (agent {})", session.id, agent.name);
        Ok((child, name, listener, model_listener))
    }

    /// Runs on the watcher thread until the container exits.
    fn watch(&self, mut child: Child, session_id: String, agent_id: String, name: String) {
        let started = Instant::now();
        let mut tail = String::new();
        if let Some(stderr) = child.stderr.take() {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                log::debug!("[{name}] {line}");
                tail.push_str(&line);
                tail.push('\n');
                if tail.len() > 2 * STDERR_TAIL_BYTES {
                    tail = crate::process::tail(&tail, STDERR_TAIL_BYTES);
                }
            }
        }
        let code = match child.wait() {
            Ok(status) => status.code(),
            Err(e) => {
                log::error!("waiting for {name}: {e}");
                None
            }
        };
        let (linked, stop_requested) = {
            let mut state = self.lock();
            let slot = state.running.remove(&session_id);
            self.changed.notify_all();
            slot.map(|s| (s.link.is_some(), s.stop_requested)).unwrap_or((false, false))
        };
        log::info!("container {name} exited ({code:?}) after {:?}", started.elapsed());
        self.delivery.close(&session_id);
        self.proxy.close(&session_id);
        self.sweep.container_exited(ExitReport {
            session_id,
            agent_id,
            container: name,
            code,
            stderr_tail: crate::process::tail(tail.trim(), STDERR_TAIL_BYTES),
            ran_for: started.elapsed(),
            linked,
            stop_requested,
        });
    }

    /// Called by delivery when the container connected its link: from now on wakes go over it.
    /// Sends one wake at once, covering rows written before the link existed.
    pub fn attach_link(&self, session_id: &str, stream: UnixStream) -> bool {
        let mut state = self.lock();
        let Some(slot) = state.running.get_mut(session_id) else {
            return false;
        };
        slot.link = Some(stream);
        signal(slot, &ToAgent::Wake);
        // A container that connected is healthy: forget earlier failures.
        state.backoff.remove(session_id);
        true
    }

    /// Sends a frame to a running container; false if it is not running or not linked.
    pub fn send(&self, session_id: &str, frame: &ToAgent) -> bool {
        let mut state = self.lock();
        match state.running.get_mut(session_id) {
            Some(slot) if slot.link.is_some() => signal(slot, frame),
            _ => false,
        }
    }

    pub fn is_running(&self, session_id: &str) -> bool {
        self.lock().running.contains_key(session_id)
    }

    /// Session ids with a running container.
    pub fn running(&self) -> Vec<String> {
        self.lock().running.keys().cloned().collect()
    }

    /// Records a failed start; the next start waits 2^failures seconds (capped). Returns the
    /// number of consecutive failures.
    pub fn record_failure(&self, session_id: &str) -> u32 {
        let mut state = self.lock();
        let failures = state.backoff.get(session_id).map_or(0, |b| b.failures) + 1;
        let delay_ms = (1000i64 << failures.min(8)).min(300_000);
        state.backoff.insert(session_id.to_string(), Backoff { failures, not_before: now_ms() + delay_ms });
        failures
    }

    pub fn clear_failures(&self, session_id: &str) {
        self.lock().backoff.remove(session_id);
    }

    /// Stops one container (stuck, or its agent was removed); its exit is reported as usual.
    pub fn stop(&self, session_id: &str, reason: &str) {
        let name = {
            let mut state = self.lock();
            let Some(slot) = state.running.get_mut(session_id) else {
                return;
            };
            slot.stop_requested = true;
            slot.name.clone()
        };
        log::warn!("stopping container {name}: {reason}");
        let docker = self.cfg.docker.clone();
        let _ = std::thread::Builder::new().name("docker-stop".into()).spawn(move || {
            if let Err(e) = docker.stop(&name, STOP_GRACE) {
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
        let stoppers: Vec<_> = names
            .into_iter()
            .map(|name| {
                let docker = self.cfg.docker.clone();
                std::thread::spawn(move || {
                    if let Err(e) = docker.stop(&name, STOP_GRACE) {
                        log::error!("stopping {name}: {e:#}");
                    }
                })
            })
            .collect();
        for s in stoppers {
            let _ = s.join();
        }
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

/// Writes a frame to a container's link; a broken link is dropped (the safety poll covers it).
fn signal(slot: &mut Slot, frame: &ToAgent) -> bool {
    let Some(link) = slot.link.as_mut() else {
        return false;
    };
    match link.write_all(&encode(frame)) {
        Ok(()) => true,
        Err(e) => {
            log::debug!("link to {} broken: {e}", slot.name);
            slot.link = None;
            false
        }
    }
}

/// Binds `<dir>/<name>`, replacing a stale socket file. A Unix socket path is limited to 107
/// bytes, so a long data directory is reached through `/proc/self/fd/<dir fd>/` instead.
pub fn bind_socket(dir: &Path, name: &str) -> std::io::Result<UnixListener> {
    let sock = dir.join(name);
    match std::fs::remove_file(&sock) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = if sock.as_os_str().len() < 100 {
        UnixListener::bind(&sock)?
    } else {
        let d = File::open(dir)?;
        UnixListener::bind(format!("/proc/self/fd/{}/{name}", d.as_raw_fd()))?
    };
    listener.set_nonblocking(true)?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_link_sockets_under_long_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let long = tmp.path().join("a".repeat(60)).join("b".repeat(60));
        std::fs::create_dir_all(&long).unwrap();
        for dir in [tmp.path(), long.as_path()] {
            let listener = bind_socket(dir, SOCKET_NAME).unwrap();
            assert!(dir.join(SOCKET_NAME).exists());
            // Connect the way a container does: from inside the directory, with a short path.
            let short = std::env::temp_dir().join(format!("pincer-test-{}", crate::ids::random_hex::<4>()));
            std::os::unix::fs::symlink(dir, &short).unwrap();
            let mut client = UnixStream::connect(short.join(SOCKET_NAME)).unwrap();
            client.write_all(b"hi\n").unwrap();
            listener.set_nonblocking(false).unwrap();
            let (mut server, _) = listener.accept().unwrap();
            let mut buf = [0u8; 3];
            std::io::Read::read_exact(&mut server, &mut buf).unwrap();
            assert_eq!(&buf, b"hi\n");
            std::fs::remove_file(short).unwrap();
            // Binding again replaces the stale socket file.
            drop(listener);
            bind_socket(dir, SOCKET_NAME).unwrap();
        }
    }
}
