//! The container runtime seam: everything the host asks of a container engine, in one small
//! trait ([`Runtime`]: probe, start, stop, remove, list, watch exits, read logs), so another
//! engine (a remote one, Kubernetes) can be added without touching the host's threads. The
//! docker CLI is its one implementation.
//!
//! Exits are watched with one long-lived `docker events` process for the whole install (not a
//! client process per container). When it ends (the engine restarted, say) it is started again
//! with backoff and the watcher reports [`Watched::Resync`], so the registry compares what it
//! believes runs with what really does.

use std::io::{BufRead, BufReader, Read};
use std::process::Child;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::Context;

use super::backoff;
use crate::docker::{self, Died, Docker, Listed, Removed, RunSpec};

/// What the exit watcher reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Watched {
    Died(Died),
    /// The watch was (re)established: events may have been missed before it.
    Resync,
}

pub type Sink = Box<dyn Fn(Watched) + Send + Sync>;

pub trait Runtime: Send + Sync {
    /// The engine's version, or why it cannot be used.
    fn probe(&self) -> anyhow::Result<String>;
    fn image_exists(&self, image: &str) -> anyhow::Result<bool>;
    /// Starts a container and returns once it runs (or failed to).
    fn start(&self, spec: &RunSpec) -> anyhow::Result<()>;
    fn stop(&self, name: &str, grace: Duration) -> anyhow::Result<()>;
    fn remove(&self, name: &str) -> anyhow::Result<Removed>;
    /// Every container of the install, in any state.
    fn list(&self, install: &str) -> anyhow::Result<Vec<Listed>>;
    /// The last lines a container wrote.
    fn logs(&self, name: &str, lines: usize) -> anyhow::Result<String>;
    /// Reports deaths of the install's containers to `sink` until the [`Watch`] is stopped.
    fn watch(&self, install: &str, sink: Sink) -> anyhow::Result<Watch>;
}

impl Runtime for Docker {
    fn probe(&self) -> anyhow::Result<String> {
        self.server_version()
    }

    fn image_exists(&self, image: &str) -> anyhow::Result<bool> {
        Ok(self.image_labels(image)?.is_some())
    }

    fn start(&self, spec: &RunSpec) -> anyhow::Result<()> {
        self.run_detached(&docker::run_args(spec)?)
    }

    fn stop(&self, name: &str, grace: Duration) -> anyhow::Result<()> {
        Docker::stop(self, name, grace)
    }

    fn remove(&self, name: &str) -> anyhow::Result<Removed> {
        Docker::remove(self, name)
    }

    fn list(&self, install: &str) -> anyhow::Result<Vec<Listed>> {
        Docker::list(self, INSTALL_LABEL, install)
    }

    fn logs(&self, name: &str, lines: usize) -> anyhow::Result<String> {
        Docker::logs(self, name, lines)
    }

    fn watch(&self, install: &str, sink: Sink) -> anyhow::Result<Watch> {
        let stop = Arc::new(Stop::default());
        let docker = self.clone();
        let install = install.to_string();
        let stop2 = stop.clone();
        let thread = std::thread::Builder::new()
            .name("container-events".into())
            .spawn(move || watch_events(&docker, &install, &sink, &stop2))
            .context("starting the container watcher")?;
        Ok(Watch { stop, thread: Some(thread) })
    }
}

/// Label every agent container carries, valued with the install id (orphans are found by it).
pub const INSTALL_LABEL: &str = "pincer.install";

/// The running exit watcher; stopping it ends its `docker events` process.
pub struct Watch {
    stop: Arc<Stop>,
    thread: Option<JoinHandle<()>>,
}

#[derive(Default)]
struct Stop {
    state: Mutex<StopState>,
    changed: Condvar,
}

#[derive(Default)]
struct StopState {
    stopping: bool,
    child: Option<Child>,
}

impl Stop {
    fn lock(&self) -> std::sync::MutexGuard<'_, StopState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits up to `d`; true if stopping.
    fn wait(&self, d: Duration) -> bool {
        let st = self.lock();
        let (st, _) =
            self.changed.wait_timeout_while(st, d, |s| !s.stopping).unwrap_or_else(|e| e.into_inner());
        st.stopping
    }
}

impl Watch {
    pub fn stop(&mut self) {
        {
            let mut st = self.stop.lock();
            st.stopping = true;
            if let Some(child) = st.child.as_mut() {
                let _ = child.kill();
            }
        }
        self.stop.changed.notify_all();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.stop();
    }
}

fn watch_events(docker: &Docker, install: &str, sink: &Sink, stop: &Stop) {
    let mut failures = 0u32;
    loop {
        if stop.lock().stopping {
            return;
        }
        let mut child = match docker.events(INSTALL_LABEL, install) {
            Ok(c) => c,
            Err(e) => {
                failures += 1;
                log::error!("watching container exits: {e}");
                if stop.wait(retry_delay(failures)) {
                    return;
                }
                continue;
            }
        };
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        {
            let mut st = stop.lock();
            if st.stopping {
                let _ = child.kill();
                let _ = child.wait();
                return;
            }
            st.child = Some(child);
        }
        sink(Watched::Resync);
        let err_reader = stderr.map(|mut s| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = (&mut s).take(64 * 1024).read_to_string(&mut text);
                text
            })
        });
        let mut saw_events = false;
        if let Some(out) = stdout {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                saw_events = true;
                match docker::parse_died(&line) {
                    Some(died) => sink(Watched::Died(died)),
                    None => log::debug!("ignoring container event {line}"),
                }
            }
        }
        let child = stop.lock().child.take();
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
        let err = err_reader.and_then(|t| t.join().ok()).unwrap_or_default();
        if stop.lock().stopping {
            return;
        }
        failures = if saw_events { 1 } else { failures + 1 };
        log::warn!("the container event stream ended ({}); watching again", err.trim());
        if stop.wait(retry_delay(failures)) {
            return;
        }
    }
}

fn retry_delay(failures: u32) -> Duration {
    Duration::from_millis(backoff::ENGINE.delay_ms(failures).unwrap_or(30_000) as u64)
}
