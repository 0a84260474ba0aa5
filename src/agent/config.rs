//! The runner's settings, read once from the environment the host passes to the container.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};

/// Default number of inbound rows folded into one prompt.
pub const MAX_MESSAGES_DEFAULT: i64 = 10;

#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The session directory (`/workspace` in a container).
    pub workspace: PathBuf,
    pub session_id: String,
    pub agent_id: String,
    pub agent_name: String,
    /// `mock`, `anthropic` or `openai`.
    pub provider: String,
    pub model: Option<String>,
    pub max_messages: i64,
    /// Exit after this long without work (the host starts a new container when needed).
    pub idle_exit: Duration,
    /// Poll even without a wake this often (a missed wake costs at most this much).
    pub safety_poll: Duration,
    /// How long a model may send nothing before its call fails.
    pub model_timeout: Duration,
    /// Whether the poll's read-only view of the session DBs stays open between polls: the host
    /// says so (`PINCER_KEEP_VIEW=1`) when the container's bind mount is the host's own file
    /// (one kernel, one page cache); over a VM's file share each poll opens the files again.
    pub keep_view: bool,
    pub tz: String,
    pub log_level: log::LevelFilter,
    /// Context budget in tokens; older exchanges are trimmed to stay under it.
    pub context_tokens: usize,
    /// Output limit of one model call.
    pub max_tokens: u32,
    /// MCP servers approved for the agent (JSON object; see `agent::mcp`).
    pub mcp_servers: Option<String>,
}

/// Context budget when none is configured: generous for hosted models, modest for local servers.
pub fn default_context_tokens(provider: &str) -> usize {
    match provider {
        "anthropic" => 150_000,
        "openai" => 24_000,
        _ => 100_000,
    }
}

impl AgentConfig {
    pub fn from_env() -> anyhow::Result<AgentConfig> {
        #[allow(clippy::disallowed_methods)]
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        let num = |k: &str, default: u64, max: u64| -> anyhow::Result<u64> {
            match get(k) {
                None => Ok(default),
                Some(v) => match v.trim().parse::<u64>() {
                    Ok(n) if n >= 1 && n <= max => Ok(n),
                    _ => bail!("invalid {k}={v:?}: expected a whole number from 1 to {max}"),
                },
            }
        };
        let provider = get("PINCER_PROVIDER").unwrap_or_else(|| "mock".into());
        Ok(AgentConfig {
            context_tokens: num(
                "PINCER_CONTEXT_TOKENS",
                default_context_tokens(&provider) as u64,
                10_000_000,
            )? as usize,
            max_tokens: num("PINCER_MAX_TOKENS", 8192, 1_000_000)? as u32,
            mcp_servers: get("PINCER_MCP_SERVERS"),
            workspace: PathBuf::from(get("PINCER_WORKSPACE").unwrap_or_else(|| "/workspace".into())),
            session_id: get("PINCER_SESSION_ID").context("PINCER_SESSION_ID is not set")?,
            agent_id: get("PINCER_AGENT_ID").context("PINCER_AGENT_ID is not set")?,
            agent_name: get("PINCER_AGENT_NAME").unwrap_or_else(|| "Agent".into()),
            provider,
            model: get("PINCER_MODEL"),
            max_messages: num("PINCER_MAX_MESSAGES", MAX_MESSAGES_DEFAULT as u64, 200)? as i64,
            idle_exit: Duration::from_secs(num("PINCER_IDLE_EXIT_S", 1800, 7 * 86_400)?),
            safety_poll: Duration::from_millis(num("PINCER_SAFETY_POLL_MS", 5000, 600_000)?),
            model_timeout: Duration::from_secs(num("PINCER_MODEL_TIMEOUT_S", 600, 86_400)?),
            keep_view: get("PINCER_KEEP_VIEW").is_some_and(|v| v == "1"),
            tz: get("TZ").unwrap_or_else(|| "UTC".into()),
            log_level: get("PINCER_LOG")
                .and_then(|l| crate::logger::parse_level(&l))
                .unwrap_or(log::LevelFilter::Info),
        })
    }

    pub fn inbound_db(&self) -> PathBuf {
        self.workspace.join("inbound.db")
    }

    pub fn outbound_db(&self) -> PathBuf {
        self.workspace.join("outbound.db")
    }

    pub fn link_socket(&self) -> PathBuf {
        self.workspace.join(crate::link::SOCKET_NAME)
    }

    pub fn heartbeat(&self) -> PathBuf {
        self.workspace.join(".heartbeat")
    }

    pub fn agent_dir(&self) -> PathBuf {
        self.workspace.join("agent")
    }

    pub fn model_socket(&self) -> PathBuf {
        self.workspace.join("model.sock")
    }

    /// The agent's instructions (`AGENT.md` in its folder), read fresh for every turn so edits
    /// apply at once.
    pub fn instructions(&self) -> String {
        std::fs::read_to_string(self.agent_dir().join("AGENT.md")).unwrap_or_default()
    }
}

/// When this process last touched the heartbeat.
static LAST_TOUCH: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
/// A [`beat`] within this long of the last touch is left out.
pub const BEAT_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// The heartbeat on a turn's way to its reply (woken, model answered, reply written): touched
/// unless it was less than [`BEAT_EVERY`] ago. The host's stuck detection counts in tens of
/// seconds; three touches a turn were three file system round trips in front of every reply.
/// Before a tool runs, [`touch`] it (the host then waits for the tool's declared time).
pub fn beat(path: &Path) {
    beat_at(path, std::time::Instant::now());
}

/// [`beat`] as of `now`.
fn beat_at(path: &Path, now: std::time::Instant) {
    let recent = LAST_TOUCH
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_some_and(|t| now.saturating_duration_since(t) < BEAT_EVERY);
    if !recent {
        touch(path);
    }
}

/// Sets the heartbeat file's mtime to now (creating it); the host reads the mtime to tell a
/// working container from a stuck one. A file touch, not a DB write, so liveness never takes the
/// outbound write lock.
pub fn touch(path: &Path) {
    *LAST_TOUCH.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
    let res = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(std::time::SystemTime::now()));
    if let Err(e) = res {
        log::warn!("cannot touch {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn set_mtime(path: &Path, t: SystemTime) {
        std::fs::OpenOptions::new().write(true).open(path).unwrap().set_modified(t).unwrap();
    }

    #[test]
    fn a_beat_within_a_second_of_the_last_touch_is_left_out_and_a_later_one_touches() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".heartbeat");
        let mtime = || std::fs::metadata(&path).unwrap().modified().unwrap();
        touch(&path);
        let touched = LAST_TOUCH.lock().unwrap().expect("a touch is noted");
        let old = SystemTime::now() - Duration::from_secs(3600);
        set_mtime(&path, old);
        beat_at(&path, touched + BEAT_EVERY / 2);
        assert_eq!(mtime(), old, "within BEAT_EVERY of the touch: left out");
        // Well past it (other tests' touches are moments apart from this one's).
        beat_at(&path, touched + BEAT_EVERY * 3600);
        assert!(mtime() > old, "past BEAT_EVERY: touched");
        set_mtime(&path, old);
        touch(&path);
        assert!(mtime() > old, "a touch is never left out");
    }
}
