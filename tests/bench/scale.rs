//! The scale phase: one host (mock provider) under many chats, many agents and many clients.
//!
//! - Throughput: [`CHATS`] agents, each in its own room, each chatted with by a client that sends
//!   its next message as soon as the reply to the last one arrived; messages per second over all
//!   of them and each message's round trip. Baselines: one chat alone on the same host, and the
//!   disk's durable commits per second to as many files at once.
//! - Idle agents: [`IDLE_AGENTS`] agents with warm containers; the host's CPU time per second
//!   while nobody writes. Baseline: the same host before any agent ran.
//! - Many clients: [`CLIENTS`] plain WebSocket clients joined to one room; the host's memory per
//!   client, and how long one message takes to reach all of them (the time from its send until
//!   the last client has read it; the room's agent answers meanwhile), and how long a `typing`
//!   event (no store, no agent) takes to reach all of them, and the host's CPU time for one.
//!   Baseline: the bench writing a 1 KB frame to as many loopback sockets itself and reading it
//!   on their other ends (the writes alone for the CPU figure).

use std::collections::HashSet;
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use serde_json::{Value, json};
use tungstenite::client::IntoClientRequest;
use tungstenite::{Message, WebSocket};

use crate::host::Host;
use crate::net::{Ws, http_json};

/// Concurrent chats of the throughput figure.
pub(crate) const CHATS: usize = 10;
/// Messages each chat sends.
const MESSAGES_PER_CHAT: usize = 100;
/// Sockets each chat sends over (each stays within its frame-rate burst of 100).
const SENDERS_PER_CHAT: usize = 2;
/// Agents with warm containers in the idle figure.
pub(crate) const IDLE_AGENTS: usize = 50;
/// How long the idle host is watched.
const IDLE_WATCH: Duration = Duration::from_secs(30);
/// Idle WebSocket clients of the memory and broadcast figures.
pub(crate) const CLIENTS: usize = 1000;
/// Loopback source addresses they come from (the host allows 64 per address).
const SOURCES: usize = 20;
/// Broadcasts timed.
const BROADCASTS: usize = 30;
const TIMEOUT: Duration = Duration::from_secs(30);
/// The first message of an agent starts its container.
const COLD_TIMEOUT: Duration = Duration::from_secs(120);

pub(crate) struct Scale {
    pub(crate) throughput_msg_s: f64,
    /// Durable commits per second to [`CHATS`] files at once (the disk's rate).
    pub(crate) commits_per_s: f64,
    pub(crate) chat_round_trips: Vec<Duration>,
    pub(crate) alone_round_trips: Vec<Duration>,
    pub(crate) idle_cpu_ms_per_s: f64,
    pub(crate) empty_cpu_ms_per_s: f64,
    pub(crate) clients: Fanout,
}

/// The many-clients figures.
pub(crate) struct Fanout {
    pub(crate) rss_before_clients_mb: f64,
    pub(crate) rss_clients_mb: f64,
    pub(crate) broadcast: Vec<Duration>,
    pub(crate) fanout: Vec<Duration>,
    /// The host's CPU time per `typing` fan-out (all its threads).
    pub(crate) fanout_host_cpu: Duration,
    pub(crate) loopback_fanout: Vec<Duration>,
    /// The loopback baseline's writes alone (one thread writing the frame to every socket).
    pub(crate) loopback_writes: Vec<Duration>,
}

/// A new agent with a room of its own; its room id.
fn agent_with_room(port: u16, name: &str) -> anyhow::Result<String> {
    let (status, created) =
        http_json(port, "POST", "/api/agents", Some(&json!({ "name": name, "withRoom": true })))?;
    ensure!(status == 201, "POST /api/agents answered {status}: {created}");
    Ok(created["roomId"].as_str().context("no roomId")?.to_string())
}

/// A socket that joined `room` and got its history.
fn joined(port: u16, room: &str) -> anyhow::Result<Ws> {
    let mut ws = Ws::connect(port, "/ws")?;
    let deadline = Instant::now() + TIMEOUT;
    ws.wait_for(deadline, "the ready frame", |v| v["type"] == "ready")?;
    ws.send_json(&json!({ "type": "join", "room_id": room }))?;
    ws.wait_for(deadline, "the history frame", |v| v["type"] == "history" && v["room_id"] == room)?;
    Ok(ws)
}

fn ready(port: u16) -> anyhow::Result<Ws> {
    let mut ws = Ws::connect(port, "/ws")?;
    ws.wait_for(Instant::now() + TIMEOUT, "the ready frame", |v| v["type"] == "ready")?;
    Ok(ws)
}

/// Sends `text` to `room` over `sender` and waits on `ws` for the mock agent's echo of it.
fn round_trip(
    sender: &mut Ws,
    ws: &mut Ws,
    room: &str,
    text: &str,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let expected = format!("echo: {text}");
    let client_id = text.replace(' ', "-");
    let started = Instant::now();
    sender.send_json(&json!({ "type": "send", "room_id": room, "client_id": client_id, "text": text }))?;
    ws.wait_for(started + timeout, &format!("the reply to {text:?}"), |v: &Value| {
        v["type"] == "message"
            && v["message"]["sender_type"] == "agent"
            && v["message"]["text"].as_str().is_some_and(|t| t.lines().any(|l| l == expected))
    })?;
    Ok(started.elapsed())
}

/// One chat: its room, the socket replies come in on, the sockets messages go out on.
struct Chat {
    room: String,
    ws: Ws,
    senders: Vec<Ws>,
}

impl Chat {
    fn open(port: u16, name: &str) -> anyhow::Result<Chat> {
        let room = agent_with_room(port, name)?;
        let ws = joined(port, &room)?;
        let senders = (0..SENDERS_PER_CHAT).map(|_| ready(port)).collect::<anyhow::Result<Vec<_>>>()?;
        Ok(Chat { room, ws, senders })
    }

    /// `n` messages, each sent when the reply to the one before arrived.
    fn run(&mut self, tag: &str, n: usize) -> anyhow::Result<Vec<Duration>> {
        (0..n)
            .map(|i| {
                let text = format!("{tag} {i}");
                let sender = &mut self.senders[i % SENDERS_PER_CHAT];
                round_trip(sender, &mut self.ws, &self.room, &text, TIMEOUT)
            })
            .collect()
    }
}

pub(crate) fn phase(dir: &std::path::Path, image: &str) -> anyhow::Result<Scale> {
    let commit_dir = dir.join("commit-rate");
    std::fs::create_dir_all(&commit_dir)?;
    let commits_per_s = crate::baseline::sqlite_commit_rate(&commit_dir, CHATS, 100)?;
    let mut host = Host::start(dir, image, &[("PINCER_MAX_CONTAINERS", "64")], TIMEOUT)?;
    let port = host.port;
    let empty_cpu_ms_per_s = cpu_per_second(&host)?;

    // Throughput: every chat's agent is warmed first (its container started).
    let mut chats =
        (0..CHATS).map(|i| Chat::open(port, &format!("Chat {i}"))).collect::<anyhow::Result<Vec<_>>>()?;
    for (i, chat) in chats.iter_mut().enumerate() {
        let room = chat.room.clone();
        round_trip(&mut chat.senders[0], &mut chat.ws, &room, &format!("warm {i}"), COLD_TIMEOUT)?;
    }
    let alone_round_trips = chats[0].run("alone", MESSAGES_PER_CHAT)?;
    let started = Instant::now();
    let runs: Vec<anyhow::Result<Vec<Duration>>> = std::thread::scope(|s| {
        let jobs: Vec<_> = chats
            .iter_mut()
            .enumerate()
            .map(|(i, chat)| s.spawn(move || chat.run(&format!("chat {i}"), MESSAGES_PER_CHAT)))
            .collect();
        jobs.into_iter().map(|j| j.join().unwrap_or_else(|_| Err(anyhow!("a chat panicked")))).collect()
    });
    let took = started.elapsed();
    let mut chat_round_trips = Vec::new();
    for r in runs {
        chat_round_trips.extend(r?);
    }
    let throughput_msg_s = chat_round_trips.len() as f64 / took.as_secs_f64();
    drop(chats);

    // Idle agents: the rest are created and woken once over one pair of sockets, then nobody
    // writes.
    let mut ws = ready(port)?;
    let mut sender = ready(port)?;
    for i in CHATS..IDLE_AGENTS {
        let room = agent_with_room(port, &format!("Idle {i}"))?;
        ws.send_json(&json!({ "type": "join", "room_id": room }))?;
        ws.wait_for(Instant::now() + TIMEOUT, "the history frame", |v| {
            v["type"] == "history" && v["room_id"] == room.as_str()
        })?;
        round_trip(&mut sender, &mut ws, &room, &format!("wake {i}"), COLD_TIMEOUT)?;
    }
    drop((ws, sender));
    let running = crate::docker::containers(&format!(
        "pincer-{}-",
        pincer::host::containers::RunnerConfig::install_id(&host.data_dir)
    ))?;
    ensure!(
        running.len() >= IDLE_AGENTS,
        "{} agent containers are running, {IDLE_AGENTS} were woken; the host's last lines:\n{}",
        running.len(),
        host.log_tail(60)
    );
    let idle_cpu_ms_per_s = cpu_per_second(&host)?;

    let clients = fanout(&host)?;
    host.stop()?;
    Ok(Scale {
        throughput_msg_s,
        commits_per_s,
        chat_round_trips,
        alone_round_trips,
        idle_cpu_ms_per_s,
        empty_cpu_ms_per_s,
        clients,
    })
}

/// The many-clients part alone, on a host of its own.
pub(crate) fn clients_phase(dir: &std::path::Path, image: &str) -> anyhow::Result<Fanout> {
    let mut host = Host::start(dir, image, &[], TIMEOUT)?;
    let clients = fanout(&host)?;
    host.stop()?;
    Ok(clients)
}

/// [`CLIENTS`] clients in one room: the host's memory for them, then broadcasts to them.
fn fanout(host: &Host) -> anyhow::Result<Fanout> {
    let port = host.port;
    let room = agent_with_room(port, "Broadcast")?;
    let rss_before_clients_mb = host.rss_mb()?;
    let mut clients = Clients::join(port, &room, CLIENTS)?;
    let rss_clients_mb = host.rss_mb()?;
    let mut sender = ready(port)?;
    let mut broadcast = Vec::with_capacity(BROADCASTS);
    for i in 0..BROADCASTS {
        let marker = format!("broadcast {i} to every client");
        let started = Instant::now();
        let frame = json!({ "type": "send", "room_id": room, "client_id": format!("b{i}"), "text": marker });
        sender.send_json(&frame)?;
        clients.wait_all(&marker, started + TIMEOUT)?;
        broadcast.push(started.elapsed());
        // The agent's answer reaches them too; the next round starts after it.
        clients.wait_all(&format!("echo: {marker}"), Instant::now() + COLD_TIMEOUT)?;
        clients.forget();
    }
    // The fan-out alone: a `typing` event (no store, no agent) to every client.
    let mut fanout = Vec::with_capacity(BROADCASTS);
    let cpu_before = host.cpu_fine()?;
    for i in 0..BROADCASTS {
        let started = Instant::now();
        sender.send_json(&json!({ "type": "typing", "room_id": room, "is_typing": i % 2 == 0 }))?;
        clients.wait_until(&format!("typing event {i}"), started + TIMEOUT, |_, n| n > i)?;
        fanout.push(started.elapsed());
    }
    let fanout_host_cpu = (host.cpu_fine()? - cpu_before) / BROADCASTS as u32;
    drop(clients);
    let (loopback_fanout, loopback_writes) = loopback_fanout(CLIENTS, BROADCASTS)?;
    Ok(Fanout {
        rss_before_clients_mb,
        rss_clients_mb,
        broadcast,
        fanout,
        fanout_host_cpu,
        loopback_fanout,
        loopback_writes,
    })
}

/// The host's CPU time per second of wall time over [`IDLE_WATCH`] (to the nanosecond: the
/// 10 ms ticks of `/proc/<pid>/stat` would be a third of a millisecond per second here).
fn cpu_per_second(host: &Host) -> anyhow::Result<f64> {
    let (cpu0, t0) = (host.cpu_fine()?, Instant::now());
    std::thread::sleep(IDLE_WATCH);
    Ok(host.cpu_fine()?.saturating_sub(cpu0).as_secs_f64() * 1e3 / t0.elapsed().as_secs_f64())
}

/// Many joined clients read together on one mio poll.
struct Clients {
    ws: Vec<WebSocket<TcpStream>>,
    poll: Poll,
    /// The lines of the messages each client has read (until [`Clients::forget`]).
    seen: Vec<HashSet<String>>,
    /// `typing` events each client has read.
    typing: Vec<usize>,
}

impl Clients {
    fn join(port: u16, room: &str, n: usize) -> anyhow::Result<Clients> {
        let poll = Poll::new()?;
        let mut ws = Vec::with_capacity(n);
        for i in 0..n {
            let source = format!("127.0.0.{}", 2 + i % SOURCES);
            let mut c = connect_from(&source, port).with_context(|| format!("client {i}"))?;
            read_until(&mut c, Instant::now() + TIMEOUT, |v| v["type"] == "ready")?;
            c.send(Message::text(json!({ "type": "join", "room_id": room }).to_string()))?;
            read_until(&mut c, Instant::now() + TIMEOUT, |v| v["type"] == "history")?;
            c.get_ref().set_nonblocking(true)?;
            poll.registry().register(
                &mut SourceFd(&c.get_ref().as_raw_fd()),
                Token(i),
                Interest::READABLE,
            )?;
            ws.push(c);
        }
        Ok(Clients { seen: vec![HashSet::new(); n], typing: vec![0; n], ws, poll })
    }

    /// Waits until every client has read a message with the line `text`.
    fn wait_all(&mut self, text: &str, deadline: Instant) -> anyhow::Result<()> {
        self.wait_until(text, deadline, |seen, _| seen.contains(text))
    }

    /// Waits until `done` holds for every client (given the lines it has seen and its `typing`
    /// count); `what` names it in the error. Only the clients that have read something are looked
    /// at again, so the bench's side of a round costs what the loopback baseline's does.
    fn wait_until(
        &mut self,
        what: &str,
        deadline: Instant,
        done: impl Fn(&HashSet<String>, usize) -> bool,
    ) -> anyhow::Result<()> {
        let mut events = Events::with_capacity(1024);
        let mut waiting = vec![true; self.ws.len()];
        let mut left = self.ws.len();
        // Frames may already sit in a client's buffer: read every client once first.
        let mut ready: Vec<usize> = (0..self.ws.len()).collect();
        loop {
            for i in ready.drain(..) {
                drain(&mut self.ws[i], &mut self.seen[i], &mut self.typing[i])?;
                if waiting[i] && done(&self.seen[i], self.typing[i]) {
                    waiting[i] = false;
                    left -= 1;
                }
            }
            if left == 0 {
                return Ok(());
            }
            let wait = deadline.checked_duration_since(Instant::now()).context("broadcast timed out")?;
            self.poll.poll(&mut events, Some(wait))?;
            if events.is_empty() {
                let missing: Vec<usize> = (0..self.ws.len()).filter(|&i| waiting[i]).collect();
                bail!(
                    "{} of {} clients did not get {what:?} in time (the first: {:?})",
                    missing.len(),
                    self.ws.len(),
                    &missing[..missing.len().min(8)]
                );
            }
            ready.extend(events.iter().map(|e| e.token().0));
        }
    }

    fn forget(&mut self) {
        self.seen.iter_mut().for_each(HashSet::clear);
    }
}

/// The part of a `message` event the clients look at (read without building a JSON tree).
#[derive(serde::Deserialize)]
struct MessageFrame {
    #[serde(rename = "type")]
    kind: String,
    message: Option<MessageText>,
}

#[derive(serde::Deserialize)]
struct MessageText {
    text: Option<String>,
}

/// Reads everything a non-blocking client has, noting the lines of the messages in it and
/// counting `typing` events.
fn drain(
    ws: &mut WebSocket<TcpStream>,
    seen: &mut HashSet<String>,
    typing: &mut usize,
) -> anyhow::Result<()> {
    loop {
        match ws.read() {
            // Only messages are looked into (not stream deltas, typing, ...).
            Ok(Message::Text(t)) if t.contains(r#""type":"message""#) => {
                let m: MessageFrame = serde_json::from_str(&t)?;
                if m.kind == "message"
                    && let Some(text) = m.message.and_then(|m| m.text)
                {
                    seen.extend(text.lines().map(str::to_string));
                }
            }
            Ok(Message::Text(t)) if t.contains(r#""type":"typing""#) => *typing += 1,
            Ok(Message::Close(c)) => bail!("a client was closed: {c:?}"),
            Ok(_) => {}
            Err(tungstenite::Error::Io(e)) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
}

fn connect_from(source: &str, port: u16) -> anyhow::Result<WebSocket<TcpStream>> {
    let tcp = crate::net::tcp_from(source, port, TIMEOUT)?;
    let mut req = format!("ws://127.0.0.1:{port}/ws").into_client_request()?;
    req.headers_mut().insert("Origin", format!("http://127.0.0.1:{port}").parse()?);
    let (ws, _) = tungstenite::client(req, tcp).map_err(|e| anyhow!("WebSocket handshake: {e}"))?;
    Ok(ws)
}

fn read_until(
    ws: &mut WebSocket<TcpStream>,
    deadline: Instant,
    pred: impl Fn(&Value) -> bool,
) -> anyhow::Result<()> {
    while Instant::now() < deadline {
        if let Message::Text(t) = ws.read()? {
            let v: Value = serde_json::from_str(&t)?;
            if pred(&v) {
                return Ok(());
            }
        }
    }
    bail!("deadline passed waiting for a frame")
}

/// The floor of a fan-out: one thread writes the same ~1 KB WebSocket text frame to `n`
/// loopback sockets, and their other ends are read on one poll until each has it all. Each
/// round's whole time, and its writes' alone.
fn loopback_fanout(n: usize, rounds: usize) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let mut writers = Vec::with_capacity(n);
    let mut readers = Vec::with_capacity(n);
    let mut poll = Poll::new()?;
    for i in 0..n {
        let r = TcpStream::connect(addr)?;
        let (w, _) = listener.accept()?;
        w.set_nodelay(true)?;
        r.set_nonblocking(true)?;
        poll.registry().register(&mut SourceFd(&r.as_raw_fd()), Token(i), Interest::READABLE)?;
        writers.push(w);
        readers.push(r);
    }
    let payload = vec![b'x'; 1000];
    let mut frame = vec![0x81, 126, (payload.len() >> 8) as u8, payload.len() as u8];
    frame.extend_from_slice(&payload);
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut out = Vec::with_capacity(rounds);
    let mut writes = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let started = Instant::now();
        for w in &mut writers {
            w.write_all(&frame)?;
        }
        writes.push(started.elapsed());
        let mut have = vec![0usize; n];
        let mut left = n;
        let deadline = started + TIMEOUT;
        while left > 0 {
            let wait =
                deadline.checked_duration_since(Instant::now()).context("loopback fan-out timed out")?;
            poll.poll(&mut events, Some(wait))?;
            for e in events.iter() {
                let i = e.token().0;
                loop {
                    match readers[i].read(&mut buf) {
                        Ok(0) => bail!("a loopback socket closed"),
                        Ok(k) => {
                            let was = have[i];
                            have[i] += k;
                            if was < frame.len() && have[i] >= frame.len() {
                                left -= 1;
                            }
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
        }
        out.push(started.elapsed());
    }
    Ok((out, writes))
}
