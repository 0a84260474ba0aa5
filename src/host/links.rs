//! The sockets of every running session, both halves: `link.sock` (wakes one way, "out",
//! deltas and tool events the other) and `model.sock` (the credential proxy's door).
//!
//! [`bind`] creates both listeners in a session directory before its container starts.
//! [`LinkSet`] holds the listening and connected sockets in the mio `Poll` of the thread that
//! drives it (delivery's, so a container's "out" frame starts delivery without a hop) and turns
//! what it reads into [`LinkEvent`]s; accepted model connections go straight to the handler it
//! was built with. [`Links`] holds the write half of every connected link for whichever thread
//! sends a frame to a container (router, sweep, webchat). Nothing here knows about containers
//! or delivery.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::{UnixListener as StdUnixListener, UnixStream as StdUnixStream};
use std::path::Path;
use std::sync::{Arc, Mutex};

use mio::net::{UnixListener, UnixStream};
use mio::{Interest, Registry, Token};

use crate::link::{LineBuf, ToAgent, ToHost, encode};

/// File name of the link socket in a session directory (`/workspace/link.sock` inside).
pub use crate::link::SOCKET_NAME as LINK_SOCKET;
/// File name of the credential proxy's socket (`/workspace/model.sock` inside).
pub const MODEL_SOCKET: &str = "model.sock";
/// Streams (turns) tracked per link.
pub const STREAMS_PER_LINK_MAX: usize = 64;

/// A session's two listening sockets.
#[derive(Debug)]
pub struct SessionSockets {
    pub link: StdUnixListener,
    pub model: StdUnixListener,
}

impl PartialEq for SessionSockets {
    fn eq(&self, other: &SessionSockets) -> bool {
        self.link.as_raw_fd() == other.link.as_raw_fd()
    }
}

/// Binds both sockets in `dir`, replacing stale socket files.
pub fn bind(dir: &Path) -> std::io::Result<SessionSockets> {
    Ok(SessionSockets { link: bind_socket(dir, LINK_SOCKET)?, model: bind_socket(dir, MODEL_SOCKET)? })
}

/// Binds `<dir>/<name>`, replacing a stale socket file. A Unix socket path is limited to 107
/// bytes, so a long data directory is reached through `/proc/self/fd/<dir fd>/` instead.
pub fn bind_socket(dir: &Path, name: &str) -> std::io::Result<StdUnixListener> {
    let sock = dir.join(name);
    match std::fs::remove_file(&sock) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let listener = if sock.as_os_str().len() < 100 {
        StdUnixListener::bind(&sock)?
    } else {
        let d = std::fs::File::open(dir)?;
        StdUnixListener::bind(format!("/proc/self/fd/{}/{name}", d.as_raw_fd()))?
    };
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The write halves of connected links.
#[derive(Default)]
pub struct Links {
    writers: Mutex<HashMap<String, StdUnixStream>>,
}

impl Links {
    /// Sends a frame to a session's container; false if it has no link (or the link broke and
    /// was dropped).
    pub fn send(&self, session: &str, frame: &ToAgent) -> bool {
        let mut writers = self.writers.lock().unwrap_or_else(|e| e.into_inner());
        let Some(w) = writers.get_mut(session) else { return false };
        match w.write_all(&encode(frame)) {
            Ok(()) => true,
            Err(e) => {
                log::debug!("link to session {session} broken: {e}");
                writers.remove(session);
                false
            }
        }
    }

    pub fn is_linked(&self, session: &str) -> bool {
        self.writers.lock().unwrap_or_else(|e| e.into_inner()).contains_key(session)
    }

    fn attach(&self, session: &str, w: StdUnixStream) {
        self.writers.lock().unwrap_or_else(|e| e.into_inner()).insert(session.to_string(), w);
    }

    fn detach(&self, session: &str) {
        self.writers.lock().unwrap_or_else(|e| e.into_inner()).remove(session);
    }
}

/// What a [`LinkSet`] read.
#[derive(Debug, Clone, PartialEq)]
pub enum LinkEvent {
    /// A container connected its link (it is up; a wake has been sent).
    Up(String),
    Frame(String, ToHost),
    /// The link closed.
    Down(String),
}

/// Handles an accepted `model.sock` connection (the credential proxy).
pub type ModelCalls = Box<dyn Fn(&str, StdUnixStream) + Send>;

enum Entry {
    Link { session: String, listener: UnixListener },
    Model { session: String, listener: UnixListener },
    Conn { session: String, stream: UnixStream, lines: LineBuf },
}

impl Entry {
    fn session(&self) -> &str {
        match self {
            Entry::Link { session, .. } | Entry::Model { session, .. } | Entry::Conn { session, .. } => {
                session
            }
        }
    }
}

pub struct LinkSet {
    links: Arc<Links>,
    model_calls: ModelCalls,
    entries: HashMap<Token, Entry>,
    /// Tokens from here up are this set's (below: the owning loop's own).
    next: usize,
}

impl LinkSet {
    /// `first_token`: the tokens below it belong to the loop driving this set.
    pub fn new(links: Arc<Links>, model_calls: ModelCalls, first_token: usize) -> LinkSet {
        LinkSet { links, model_calls, entries: HashMap::new(), next: first_token }
    }

    pub fn owns(&self, token: Token) -> bool {
        self.entries.contains_key(&token)
    }

    fn register(&mut self, registry: &Registry, mut entry: Entry) {
        let token = Token(self.next);
        self.next += 1;
        let res = match &mut entry {
            Entry::Link { listener, .. } | Entry::Model { listener, .. } => {
                registry.register(listener, token, Interest::READABLE)
            }
            Entry::Conn { stream, .. } => registry.register(stream, token, Interest::READABLE),
        };
        match res {
            Ok(()) => {
                self.entries.insert(token, entry);
            }
            Err(e) => log::error!("registering a socket of session {}: {e}", entry.session()),
        }
    }

    /// Serves a session's sockets. A container that connected before this call is accepted at
    /// once: readiness is reported on registration and accept drains the backlog.
    pub fn listen(&mut self, registry: &Registry, session: &str, sockets: SessionSockets) {
        self.close(registry, session);
        let link = UnixListener::from_std(sockets.link);
        let model = UnixListener::from_std(sockets.model);
        self.register(registry, Entry::Link { session: session.to_string(), listener: link });
        self.register(registry, Entry::Model { session: session.to_string(), listener: model });
    }

    /// Closes everything of a session: listeners, the link (both halves).
    pub fn close(&mut self, registry: &Registry, session: &str) {
        let tokens: Vec<Token> =
            self.entries.iter().filter(|(_, e)| e.session() == session).map(|(t, _)| *t).collect();
        for t in tokens {
            self.drop_entry(registry, t);
        }
        self.links.detach(session);
    }

    fn drop_entry(&mut self, registry: &Registry, token: Token) {
        match self.entries.remove(&token) {
            Some(Entry::Link { mut listener, .. } | Entry::Model { mut listener, .. }) => {
                let _ = registry.deregister(&mut listener);
            }
            Some(Entry::Conn { mut stream, session, .. }) => {
                let _ = registry.deregister(&mut stream);
                self.links.detach(&session);
            }
            None => {}
        }
    }

    /// Reads whatever a session's link has buffered now (without waiting): the frames its
    /// container wrote so far.
    pub fn drain(&mut self, registry: &Registry, session: &str) -> Vec<LinkEvent> {
        let tokens: Vec<Token> = self
            .entries
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Conn { .. }) && e.session() == session)
            .map(|(t, _)| *t)
            .collect();
        tokens.into_iter().flat_map(|t| self.read_conn(registry, t)).collect()
    }

    /// Handles readiness of one of this set's sockets.
    pub fn ready(&mut self, registry: &Registry, token: Token) -> Vec<LinkEvent> {
        let (session, accepted, is_link) = match self.entries.get(&token) {
            Some(Entry::Link { session, listener }) => (session.clone(), accept_all(listener, session), true),
            Some(Entry::Model { session, listener }) => {
                (session.clone(), accept_all(listener, session), false)
            }
            Some(Entry::Conn { .. }) => return self.read_conn(registry, token),
            None => return Vec::new(),
        };
        let mut events = Vec::new();
        for stream in accepted {
            if !is_link {
                let std_stream = StdUnixStream::from(OwnedFd::from(stream));
                match std_stream.set_nonblocking(false) {
                    Ok(()) => (self.model_calls)(&session, std_stream),
                    Err(e) => log::error!("model call of session {session}: {e}"),
                }
                continue;
            }
            let w = match dup_std(&stream) {
                Ok(w) => w,
                Err(e) => {
                    log::error!("link of session {session}: {e}");
                    continue;
                }
            };
            // The write half shares the socket's non-blocking mode: a container that has let
            // its receive buffer fill up loses its link instead of blocking the sender.
            self.links.attach(&session, w);
            // Rows written before the link existed are covered by this first wake.
            self.links.send(&session, &ToAgent::Wake);
            log::debug!("link up for session {session}");
            self.register(
                registry,
                Entry::Conn { session: session.clone(), stream, lines: LineBuf::default() },
            );
            events.push(LinkEvent::Up(session.clone()));
        }
        events
    }

    fn read_conn(&mut self, registry: &Registry, token: Token) -> Vec<LinkEvent> {
        let mut events = Vec::new();
        let mut closed = false;
        let Some(Entry::Conn { session, stream, lines }) = self.entries.get_mut(&token) else {
            return events;
        };
        let mut buf = [0u8; 16 * 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => lines.push(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    log::debug!("link read for {session}: {e}");
                    closed = true;
                    break;
                }
            }
        }
        loop {
            match lines.next_line() {
                Ok(Some(line)) => match serde_json::from_slice::<ToHost>(&line) {
                    Ok(frame) => events.push(LinkEvent::Frame(session.clone(), frame)),
                    Err(e) => log::warn!("bad link frame from {session}: {e}"),
                },
                Ok(None) => break,
                Err(_) => log::error!("skipped a link frame from {session} over the size limit"),
            }
        }
        if closed {
            let session = session.clone();
            self.drop_entry(registry, token);
            events.push(LinkEvent::Down(session));
        }
        events
    }
}

fn accept_all(listener: &UnixListener, session: &str) -> Vec<UnixStream> {
    let mut out = Vec::new();
    loop {
        match listener.accept() {
            Ok((stream, _)) => out.push(stream),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return out,
            Err(e) => {
                log::error!("accepting on a socket of session {session}: {e}");
                return out;
            }
        }
    }
}

/// A blocking std clone of a mio stream (the same socket), for the write half.
fn dup_std(stream: &UnixStream) -> std::io::Result<StdUnixStream> {
    let fd: OwnedFd = stream.as_fd().try_clone_to_owned()?;
    Ok(StdUnixStream::from(fd))
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::time::Duration;

    #[test]
    fn binds_sockets_under_long_paths() {
        let tmp = tempfile::tempdir().unwrap();
        let long = tmp.path().join("a".repeat(60)).join("b".repeat(60));
        std::fs::create_dir_all(&long).unwrap();
        for dir in [tmp.path(), long.as_path()] {
            let listener = bind_socket(dir, LINK_SOCKET).unwrap();
            assert!(dir.join(LINK_SOCKET).exists());
            // Connect the way a container does: from inside the directory, with a short path.
            let short = std::env::temp_dir().join(format!("pincer-test-{}", crate::ids::random_hex::<4>()));
            std::os::unix::fs::symlink(dir, &short).unwrap();
            let mut client = StdUnixStream::connect(short.join(LINK_SOCKET)).unwrap();
            client.write_all(b"hi\n").unwrap();
            listener.set_nonblocking(false).unwrap();
            let (mut server, _) = listener.accept().unwrap();
            let mut got = [0u8; 3];
            server.read_exact(&mut got).unwrap();
            assert_eq!(&got, b"hi\n");
            std::fs::remove_file(short).unwrap();
            // Binding again replaces the stale socket file.
            drop(listener);
            bind_socket(dir, LINK_SOCKET).unwrap();
        }
    }

    #[test]
    fn a_link_set_reports_up_frames_and_down_and_owns_both_halves() {
        let tmp = tempfile::tempdir().unwrap();
        let mut poll = mio::Poll::new().unwrap();
        let links = Arc::new(Links::default());
        let calls = Arc::new(Mutex::new(Vec::new()));
        let calls2 = calls.clone();
        let mut set = LinkSet::new(
            links.clone(),
            Box::new(move |s: &str, _| calls2.lock().unwrap().push(s.to_string())),
            10,
        );
        set.listen(poll.registry(), "s1", bind(tmp.path()).unwrap());
        let mut runner = StdUnixStream::connect(tmp.path().join(LINK_SOCKET)).unwrap();
        let _model = StdUnixStream::connect(tmp.path().join(MODEL_SOCKET)).unwrap();
        let mut events = mio::Events::with_capacity(8);
        let mut seen = Vec::new();
        let wait =
            |poll: &mut mio::Poll, events: &mut mio::Events, set: &mut LinkSet, seen: &mut Vec<LinkEvent>| {
                crate::mailbox::poll(poll, events, Some(Duration::from_secs(5))).unwrap();
                let tokens: Vec<Token> = events.iter().map(|e| e.token()).collect();
                for t in tokens {
                    seen.extend(set.ready(poll.registry(), t));
                }
            };
        while !seen.contains(&LinkEvent::Up("s1".into())) || calls.lock().unwrap().is_empty() {
            wait(&mut poll, &mut events, &mut set, &mut seen);
        }
        assert_eq!(*calls.lock().unwrap(), ["s1"], "the model connection went to the handler");
        // The first wake arrived, and sends reach the runner.
        assert!(links.send("s1", &ToAgent::Stop));
        let mut got = vec![0u8; encode(&ToAgent::Wake).len() + encode(&ToAgent::Stop).len()];
        runner.read_exact(&mut got).unwrap();
        assert_eq!(got, [encode(&ToAgent::Wake), encode(&ToAgent::Stop)].concat());
        runner.write_all(&encode(&ToHost::Out)).unwrap();
        while !seen.contains(&LinkEvent::Frame("s1".into(), ToHost::Out)) {
            wait(&mut poll, &mut events, &mut set, &mut seen);
        }
        drop(runner);
        while !seen.contains(&LinkEvent::Down("s1".into())) {
            wait(&mut poll, &mut events, &mut set, &mut seen);
        }
        assert!(!links.is_linked("s1"), "the write half is gone with the link");
        assert!(!links.send("s1", &ToAgent::Wake));
    }
}
