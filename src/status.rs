//! `pincer status`: what an install is doing, read from its files and the container engine
//! without changing anything — whether the host runs, each agent's sessions, containers and disk
//! use, messages waiting, approvals and tasks, push and HTTPS.

use std::collections::HashSet;
use std::path::Path;

use anyhow::Context;
use serde::Serialize;

use crate::config::Config;
use crate::db::{self, Kind, central, inbound, outbound};
use crate::host::containers::SESSION_LABEL;
use crate::host::runtime::{INSTALL_LABEL, Runtime};

#[derive(Debug, Serialize)]
pub struct Status {
    /// The pid of the running host, if one runs on this data directory.
    pub host_pid: Option<u32>,
    pub data_dir: String,
    /// `None` when the engine could not be asked (with why in `docker_error`).
    pub containers_running: Option<usize>,
    pub docker_error: Option<String>,
    pub agents: Vec<AgentStatus>,
    /// Messages stored and not yet given to the agents.
    pub queued: i64,
    /// Messages the agents have not finished.
    pub in_flight: i64,
    pub approvals_pending: i64,
    pub tasks_active: usize,
    pub next_task: Option<String>,
    pub people: i64,
    pub rooms: i64,
    pub push: String,
    pub tls: String,
    pub disk_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct AgentStatus {
    pub name: String,
    pub folder: String,
    pub sessions: usize,
    pub containers_running: usize,
    pub in_flight: i64,
    pub disk_bytes: u64,
}

pub fn gather(cfg: &Config) -> anyhow::Result<Status> {
    let central_path = cfg.data_dir.join("pincer.db");
    if !central_path.is_file() {
        anyhow::bail!(
            "there is no pincer install at {} yet (`pincer run` makes one)",
            cfg.data_dir.display()
        );
    }
    let conn = db::open_readonly(&central_path, Kind::Central).context("reading the central database")?;
    let counts = central::counts(&conn)?;
    let install = crate::host::containers::RunnerConfig::install_id(&cfg.data_dir);
    let docker = crate::docker::Docker::new(&cfg.docker);
    let listed = Runtime::list(&docker, &install);
    let running_sessions: Vec<String> = match &listed {
        Ok(l) => l
            .iter()
            .filter(|c| c.state == "running")
            .filter_map(|c| c.labels.get(SESSION_LABEL).cloned())
            .collect(),
        Err(_) => Vec::new(),
    };
    let _ = INSTALL_LABEL;
    let tz = jiff::tz::TimeZone::get(&cfg.tz).unwrap_or(jiff::tz::TimeZone::UTC);
    let mut agents = Vec::new();
    let (mut in_flight, mut tasks_active, mut next_task) = (0, 0, None::<(i64, String)>);
    for a in central::agents(&conn)? {
        let sessions = central::sessions_of_agent(&conn, &a.id)?;
        let mut pending = 0;
        for s in &sessions {
            let dir = crate::host::sessions::SessionDir::new(&cfg.data_dir, &a.id, &s.id);
            if let Ok(inb) = db::open_readonly(&dir.inbound(), Kind::Inbound) {
                let finished: HashSet<String> = db::open_readonly(&dir.outbound(), Kind::Outbound)
                    .ok()
                    .zip(inbound::pending_rows(&inb).ok())
                    .and_then(|(out, ids)| outbound::finished_acks_of(&out, &ids).ok())
                    .map(|acks| acks.into_iter().map(|(id, _)| id).collect())
                    .unwrap_or_default();
                pending += inbound::pending_count(&inb, &finished).unwrap_or(0);
            }
        }
        in_flight += pending;
        for t in crate::host::tasks::of_agent(&conn, &cfg.data_dir, &a.id).unwrap_or_default() {
            if t.task.status == "pending" {
                tasks_active += 1;
                if let Some(at) = t.task.next_run
                    && next_task.as_ref().is_none_or(|(n, _)| at < *n)
                {
                    next_task = Some((at, format!("{} ({})", local(at, &tz), a.name)));
                }
            }
        }
        let disk = du(&cfg.groups_dir.join(&a.folder)) + du(&cfg.data_dir.join("sessions").join(&a.id));
        agents.push(AgentStatus {
            containers_running: sessions.iter().filter(|s| running_sessions.contains(&s.id)).count(),
            sessions: sessions.len(),
            name: a.name,
            folder: a.folder,
            in_flight: pending,
            disk_bytes: disk,
        });
    }
    let push =
        if cfg.data_dir.join("push/vapid-private.key").is_file() || cfg.webchat.vapid_private_key.is_some() {
            format!("on, {} device(s) subscribed", counts.push_subscriptions)
        } else {
            "no keys yet (made when pincer first runs)".into()
        };
    let tls = match crate::webchat::tls::Source::from_config(&cfg.webchat, &cfg.data_dir) {
        None => "off (plain HTTP)".into(),
        Some(source) => match crate::webchat::tls::inspect(&source) {
            Ok(i) => {
                let leaf = match i {
                    crate::webchat::tls::Inspection::Files(l) => Some(l),
                    crate::webchat::tls::Inspection::Auto { leaf, .. } => leaf,
                    crate::webchat::tls::Inspection::AutoFresh => None,
                };
                match leaf {
                    Some(leaf) => {
                        let days = leaf.days_left(crate::ids::now_ms() / 1000);
                        format!("on, certificate valid {days} more days ({})", leaf.names.join(", "))
                    }
                    None => "on (pincer's own CA; the certificate is made when pincer starts)".into(),
                }
            }
            Err(e) => format!("configured but not usable: {e:#}"),
        },
    };
    Ok(Status {
        host_pid: host_pid(&cfg.data_dir),
        data_dir: cfg.data_dir.display().to_string(),
        containers_running: listed.as_ref().ok().map(|l| l.iter().filter(|c| c.state == "running").count()),
        docker_error: listed.err().map(|e| format!("{e:#}")),
        agents,
        queued: counts.unrouted,
        in_flight,
        approvals_pending: counts.approvals_pending,
        tasks_active,
        next_task: next_task.map(|(_, s)| s),
        people: counts.people,
        rooms: counts.rooms,
        push,
        tls,
        disk_bytes: du(&cfg.data_dir) + du(&cfg.groups_dir),
    })
}

pub fn print(s: &Status) {
    match s.host_pid {
        Some(pid) => println!("pincer     running (pid {pid}) on {}", s.data_dir),
        None => println!("pincer     not running ({})", s.data_dir),
    }
    match (&s.containers_running, &s.docker_error) {
        (Some(n), _) => println!("containers {n} running"),
        (None, Some(e)) => println!("containers unknown: {e}"),
        _ => {}
    }
    println!("messages   {} waiting to be routed, {} not yet answered", s.queued, s.in_flight);
    println!("approvals  {} pending", s.approvals_pending);
    match &s.next_task {
        Some(next) => println!("tasks      {} scheduled, next {next}", s.tasks_active),
        None => println!("tasks      {} scheduled", s.tasks_active),
    }
    println!("people     {} in {} room(s)", s.people, s.rooms);
    println!("push       {}", s.push);
    println!("https      {}", s.tls);
    println!("disk       {}", size(s.disk_bytes));
    println!();
    println!("{:<24} {:>8} {:>10} {:>9} {:>10}", "AGENT", "SESSIONS", "CONTAINERS", "UNANSWERED", "DISK");
    for a in &s.agents {
        println!(
            "{:<24} {:>8} {:>10} {:>9} {:>10}",
            format!("{} ({})", a.name, a.folder),
            a.sessions,
            a.containers_running,
            a.in_flight,
            size(a.disk_bytes)
        );
    }
}

/// The running host's pid, from the lock file, if that process lives.
fn host_pid(data_dir: &Path) -> Option<u32> {
    let text = std::fs::read_to_string(data_dir.join(crate::host::lock::LOCK_FILE)).ok()?;
    let pid: u32 = text.trim().parse().ok()?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    String::from_utf8_lossy(&cmdline).contains("pincer").then_some(pid)
}

fn local(ms: i64, tz: &jiff::tz::TimeZone) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_zoned(tz.clone()).strftime("%Y-%m-%d %H:%M").to_string())
        .unwrap_or_default()
}

/// Bytes used by the files under `dir` (not following links).
pub fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => stack.push(e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b => format!("{:.0} KiB", (b as f64 / 1024.0).ceil()),
    }
}
