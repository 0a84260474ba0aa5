//! The container's end of the link (see [`crate::link`]).
//!
//! A reader thread turns incoming frames into [`Event`]s on a channel, so the poll loop can wait
//! for "wake, stop, or timeout" in one call. Writes go through a mutex: the poll loop and tool
//! threads may both report.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;

use super::model::Cancel;
use crate::link::{DELTA_BYTES_MAX, LineBuf, ToAgent, ToHost, delta_pieces, encode};

/// What the poll loop waits for.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Wake,
    Stop,
    /// The host closed the link (it stopped or restarted).
    Closed,
}

/// How long the runner waits for the host's socket to appear at start-up.
const CONNECT_ATTEMPTS_MAX: u32 = 50;
/// A host that takes no bytes for this long is treated as gone (the link is dropped, the turn
/// goes on: its reply is durable in `outbound.db`).
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct LinkWriter {
    stream: Arc<Mutex<Option<UnixStream>>>,
}

impl LinkWriter {
    /// Sends a frame; a broken or stalled link is logged and dropped, never fatal (the DBs are
    /// the durable path). Long model text goes out as several `delta` frames.
    pub fn send(&self, frame: &ToHost) {
        if let ToHost::Delta { stream, text } = frame
            && text.len() > DELTA_BYTES_MAX
        {
            for piece in delta_pieces(text) {
                self.send(&ToHost::Delta { stream: stream.clone(), text: piece.to_string() });
            }
            return;
        }
        let mut guard = self.stream.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(stream) = guard.as_mut()
            && let Err(e) = stream.write_all(&encode(frame))
        {
            log::warn!("link write failed: {e}; going on without the link");
            *guard = None;
        }
    }

    /// A writer that drops everything (tests, or a runner without a host).
    pub fn detached() -> LinkWriter {
        LinkWriter { stream: Arc::new(Mutex::new(None)) }
    }

    /// A writer on an already connected socket (tests read the other end).
    pub fn on(stream: UnixStream) -> LinkWriter {
        LinkWriter { stream: Arc::new(Mutex::new(Some(stream))) }
    }
}

pub struct Link {
    pub writer: LinkWriter,
    /// Triggered when the host asks to stop the running turn; the turn resets it when it starts.
    pub cancel: Cancel,
    /// Set on every wake: new inbound rows may be waiting (the turn checks it before looking).
    pub woken: Arc<AtomicBool>,
    events: Receiver<Event>,
}

impl Link {
    /// Connects to the host's socket, retrying briefly while the host is still binding it.
    pub fn connect(path: &Path) -> anyhow::Result<Link> {
        let mut attempt = 0;
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) if attempt < CONNECT_ATTEMPTS_MAX => {
                    log::debug!("link not ready ({e}), retrying");
                    attempt += 1;
                    std::thread::sleep(Duration::from_millis(20 * u64::from(attempt.min(10))));
                }
                Err(e) => {
                    return Err(e).with_context(|| format!("connecting to {}", path.display()));
                }
            }
        };
        let cancel = Cancel::default();
        let woken = Arc::new(AtomicBool::new(false));
        let writer = LinkWriter::detached();
        let events = attach(&stream, &writer, &cancel, &woken)?;
        Ok(Link { writer, cancel, woken, events })
    }

    /// The host went away (it stopped, or crashed): waits up to `window` for a host to serve
    /// the socket again (a restarted host adopts running containers) and links up with it.
    /// False if none came; the runner then exits.
    pub fn reconnect(&mut self, path: &Path, window: Duration) -> bool {
        let deadline = std::time::Instant::now() + window;
        let mut pause = Duration::from_millis(50);
        loop {
            if let Ok(stream) = UnixStream::connect(path) {
                match attach(&stream, &self.writer, &self.cancel, &self.woken) {
                    Ok(events) => {
                        self.events = events;
                        log::info!("linked up with the host again");
                        return true;
                    }
                    Err(e) => log::warn!("relinking: {e}"),
                }
            }
            if std::time::Instant::now() + pause > deadline {
                return false;
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(1));
        }
    }

    /// Waits up to `timeout` for an event; `None` on timeout.
    pub fn wait(&self, timeout: Duration) -> Option<Event> {
        match self.events.recv_timeout(timeout) {
            Ok(ev) => Some(ev),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => Some(Event::Closed),
        }
    }

    /// Takes every event already queued without waiting.
    pub fn drain(&self) -> Vec<Event> {
        self.events.try_iter().collect()
    }
}

/// Sets up a connected link: the writer gets the socket, a reader thread turns frames into events.
fn attach(
    stream: &UnixStream,
    writer: &LinkWriter,
    cancel: &Cancel,
    woken: &Arc<AtomicBool>,
) -> anyhow::Result<Receiver<Event>> {
    stream.set_write_timeout(Some(WRITE_STALL_TIMEOUT))?;
    let reader = stream.try_clone()?;
    let (tx, rx) = mpsc::sync_channel(64);
    let flag = cancel.clone();
    let woken_flag = woken.clone();
    std::thread::Builder::new()
        .name("link-reader".into())
        .spawn(move || read_loop(reader, tx, &flag, &woken_flag))?;
    *writer.stream.lock().unwrap_or_else(|e| e.into_inner()) = Some(stream.try_clone()?);
    Ok(rx)
}

fn read_loop(mut stream: UnixStream, tx: mpsc::SyncSender<Event>, cancel: &Cancel, woken: &AtomicBool) {
    let mut lines = LineBuf::default();
    let mut buf = [0u8; 4096];
    loop {
        let n = match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        lines.push(&buf[..n]);
        loop {
            let line = match lines.next_line() {
                Ok(Some(line)) => line,
                Ok(None) => break,
                Err(_) => {
                    log::error!("skipping a link frame over the size limit");
                    continue;
                }
            };
            let event = match serde_json::from_slice::<ToAgent>(&line) {
                Ok(ToAgent::Wake) => {
                    woken.store(true, Ordering::SeqCst);
                    Event::Wake
                }
                Ok(ToAgent::Stop) => {
                    // The flag is what a running turn checks; the event only wakes an idle loop.
                    cancel.cancel();
                    Event::Stop
                }
                Err(e) => {
                    log::warn!("ignoring unknown link frame: {e}");
                    continue;
                }
            };
            // A full queue already holds a wake; dropping another loses nothing (stop is the flag).
            let _ = tx.try_send(event);
        }
    }
    let _ = tx.send(Event::Closed);
}
