//! The `pincer` host under test: started in a temp dir with the bench-profile binary, its stderr
//! drained by a thread (which also finds the `webchat listening on` line), stopped with SIGTERM
//! when the guard is dropped, also when the bench panics.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long the host may take to stop after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) struct Host {
    child: Option<Child>,
    pub(crate) port: u16,
    pub(crate) data_dir: PathBuf,
    /// Every stderr line so far (the drain thread appends).
    log: Arc<Mutex<Vec<String>>>,
}

impl Host {
    /// Starts `pincer run` in `dir` and waits (up to `timeout`) for it to listen.
    pub(crate) fn start(
        dir: &Path,
        image: &str,
        env: &[(&str, &str)],
        timeout: Duration,
    ) -> anyhow::Result<Host> {
        let data_dir = dir.join("data");
        // Created here so its canonical path (which the install id hashes) is known before the start.
        std::fs::create_dir_all(&data_dir)?;
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pincer"));
        cmd.arg("run").current_dir(dir).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
        // Nothing from the caller's environment may change the setup (the host rejects unknown keys).
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if ["PINCER_", "WEBCHAT_", "ANTHROPIC_", "OPENAI_"].iter().any(|p| k.starts_with(p)) {
                cmd.env_remove(&*k);
            }
        }
        cmd.env("PINCER_DATA_DIR", &data_dir)
            .env("PINCER_GROUPS_DIR", dir.join("groups"))
            // The default image is derived from the working directory, which is the temp dir here.
            .env("PINCER_IMAGE", image)
            .env("PINCER_PROVIDER", "mock")
            .env("WEBCHAT_PORT", "0")
            .env("PINCER_LOG", "info")
            // The bench measures the way through pincer, not the per-person send limit.
            .env("WEBCHAT_SEND_RATE", "100000");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().context("starting the pincer host")?;
        let stderr = child.stderr.take().context("host stderr")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(port) = listening_port(&line) {
                    let _ = tx.send(port);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let mut host = Host { child: Some(child), port: 0, data_dir, log };
        match rx.recv_timeout(timeout) {
            Ok(port) => host.port = port,
            Err(RecvTimeoutError::Timeout) => {
                bail!("host not listening after {timeout:?}; its log:\n{}", host.log_text())
            }
            Err(RecvTimeoutError::Disconnected) => bail!("host exited before listening; its log:\n{}", {
                // The pipe closed: wait for the writer to finish appending.
                let _ = host.child.as_mut().map(Child::wait);
                host.log_text()
            }),
        }
        Ok(host)
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// VmRSS of the host process in MB (10^6 bytes).
    pub(crate) fn rss_mb(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))?;
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .context("no VmRSS in /proc/<pid>/status")?;
        Ok(kb * 1024.0 / 1e6)
    }

    /// CPU time the host process has used so far (user + system, all threads), from
    /// `/proc/<pid>/stat` in clock ticks of 10 ms.
    pub(crate) fn cpu(&self) -> anyhow::Result<Duration> {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))?;
        // Fields after the command name (which may hold spaces) in parentheses.
        let rest = stat.rsplit_once(')').context("no ')' in /proc/<pid>/stat")?.1;
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
        let ticks: u64 = f
            .get(11)
            .zip(f.get(12))
            .and_then(|(u, s)| Some(u.parse::<u64>().ok()? + s.parse::<u64>().ok()?))
            .context("no utime/stime")?;
        Ok(Duration::from_millis(ticks * 10))
    }

    /// The host's threads' time on a CPU in nanoseconds (`/proc/<pid>/task/*/schedstat`), for
    /// windows too short for the 10 ms ticks of [`Host::cpu`]. A thread that ends inside the
    /// window takes its time with it: only for windows in which the host ends none.
    pub(crate) fn cpu_fine(&self) -> anyhow::Result<Duration> {
        let mut ns = 0u64;
        for task in std::fs::read_dir(format!("/proc/{}/task", self.pid()))? {
            let Ok(stat) = std::fs::read_to_string(task?.path().join("schedstat")) else { continue };
            ns += stat.split_whitespace().next().and_then(|v| v.parse::<u64>().ok()).context("schedstat")?;
        }
        Ok(Duration::from_nanos(ns))
    }

    /// How many lines the host has logged so far, and those at WARN or ERROR level.
    pub(crate) fn warnings(&self) -> (usize, Vec<String>) {
        let log = self.log.lock().unwrap();
        let level = |l: &str| l.split_whitespace().nth(1).is_some_and(|lv| lv == "WARN" || lv == "ERROR");
        (log.len(), log.iter().filter(|l| level(l)).cloned().collect())
    }

    fn log_text(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// The last `n` lines the host logged (for a phase's error).
    pub(crate) fn log_tail(&self, n: usize) -> String {
        let log = self.log.lock().unwrap();
        log[log.len().saturating_sub(n)..].join("\n")
    }

    /// SIGTERM, then waits for the exit; returns how long that took. Idempotent.
    pub(crate) fn stop(&mut self) -> anyhow::Result<Duration> {
        let Some(mut child) = self.child.take() else { return Ok(Duration::ZERO) };
        let started = Instant::now();
        if child.try_wait()?.is_none() {
            Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
        }
        // Wait for the exit on a thread; kill the host (by pid) if it outlives the deadline.
        let pid = child.id();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(child.wait());
        });
        match rx.recv_timeout(STOP_TIMEOUT) {
            Ok(status) => {
                let status = status?;
                if !status.success() {
                    bail!("host exited with {status}; its log:\n{}", self.log_text());
                }
                Ok(started.elapsed())
            }
            Err(_) => {
                let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
                bail!("host still running {STOP_TIMEOUT:?} after SIGTERM: killed");
            }
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("bench: stopping the host: {e:#}");
        }
    }
}

/// The port of a `webchat listening on http(s)://127.0.0.1:PORT/` log line.
fn listening_port(line: &str) -> Option<u16> {
    let rest = line.split_once("webchat listening on ")?.1;
    let rest = rest.strip_prefix("http://").or_else(|| rest.strip_prefix("https://"))?;
    let hostport = rest.split('/').next()?;
    hostport.rsplit(':').next()?.parse().ok()
}
