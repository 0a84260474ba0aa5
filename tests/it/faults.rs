//! Fault injection against the real binary with real containers: the host killed with SIGKILL
//! (once, and at random points under load), containers killed mid-turn, docker unreachable at
//! start and mid-run, a full disk, a damaged session database, a model endpoint that hangs.
//! `make test` runs a short version of the random kills; `make test-faults` runs at least 20
//! (`PINCER_FAULT_KILLS`), with the seed printed (`PINCER_FAULT_SEED` repeats a run).

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;
use pincer::testing::{FakeModel, Gate, Reply, openai};

/// Has the agent answer `text` (starting its container), then kills the host with SIGKILL;
/// returns the one container left running.
fn answered_then_killed(dirs: &Dirs, mut host: Host, text: &str) -> Vec<String> {
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", text);
    ws.agent_reply("assistant", &format!("echo: {text}"), COLD);
    let running = containers_of(&dirs.install());
    assert_eq!(running.len(), 1, "one container runs: {running:?}");
    drop(ws);
    host.kill_group();
    running
}

#[test]
fn the_host_starts_after_kill_9_and_adopts_its_running_container() {
    let dirs = Dirs::new();
    let before = answered_then_killed(&dirs, Host::start(&dirs), "before the crash");

    // Adoption happens before the host listens.
    let host = Host::start(&dirs);
    let adopted = format!("adopted running container {}", before[0]);
    assert!(host.log_tail().contains(&adopted), "not adopted:\n{}", host.log_tail());
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "after the crash");
    ws.agent_reply("assistant", "echo: after the crash", COLD);
    assert_eq!(containers_of(&dirs.install()), before, "the same container answered");
    let (_, msgs) = host.get("/api/rooms/assistant/messages?limit=100");
    let replies = texts(msgs["messages"].as_array().unwrap());
    assert_eq!(replies.iter().filter(|t| t.contains("echo: before the crash")).count(), 1, "{replies:?}");
    // The first reply's outcome was still waiting for a commit to ride with when the host was
    // killed, and the second's waits for one that never comes: both end up recorded, the first
    // by a delivery again that showed nothing twice (above).
    let sessions = dirs.data().join("sessions");
    eventually("an outcome for every reply in inbound.db", Duration::from_secs(10), || {
        let files = find_files(&sessions, "inbound.db");
        let [inb] = &files[..] else { return None };
        let read = |path: &Path, sql: &str| -> Option<HashSet<String>> {
            let conn =
                rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                    .ok()?;
            let mut stmt = conn.prepare(sql).ok()?;
            let ids = stmt.query_map([], |r| r.get(0)).ok()?.collect::<Result<HashSet<String>, _>>().ok()?;
            Some(ids)
        };
        let rows = read(&inb.with_file_name("outbound.db"), "SELECT id FROM messages_out")?;
        let recorded = read(inb, "SELECT message_out_id FROM delivered WHERE status = 'delivered'")?;
        (rows.len() == 2 && rows == recorded).then_some(())
    });
}

#[test]
fn after_an_upgrade_a_container_of_the_earlier_image_is_replaced_not_adopted() {
    let dirs = Dirs::new();
    // The same runner under another name stands for the image of an earlier pincer.
    let earlier = format!("pincer-agent-earlier-{}:latest", dirs.install());
    assert!(docker(&["tag", &image(), &earlier]).status.success());
    let host = Host::start_with(&dirs, &[("PINCER_IMAGE", &earlier)]);
    let before = answered_then_killed(&dirs, host, "before the upgrade");

    let host = Host::start(&dirs);
    let log = host.log_tail();
    let _ = docker(&["image", "rm", &earlier]);
    assert!(!log.contains("adopted running container"), "a runner of another image was adopted:\n{log}");
    assert!(log.contains(&format!("removed container {}", before[0])), "not removed:\n{log}");
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "after the upgrade");
    ws.agent_reply("assistant", "echo: after the upgrade", COLD);
    let now = containers_of(&dirs.install());
    assert!(now.len() == 1 && now != before, "a new container answers: {now:?} (before {before:?})");
}

#[test]
fn containers_of_an_earlier_run_are_removed_in_any_state() {
    let dirs = Dirs::new();
    let install = dirs.install();
    let image = image();
    // A stopped one, a running one for a session that does not exist, one merely created.
    let label = format!("pincer.install={install}");
    let make = |name: &str, run: bool| {
        let mut args = vec![
            "create",
            "--name",
            name,
            "--label",
            &label,
            "--label",
            "pincer.session=sess-gone",
            "--label",
            "pincer.gen=1",
        ];
        args.extend(["--entrypoint", "/bin/sleep", &image, "300"]);
        let out = docker(&args);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        if run {
            assert!(docker(&["start", name]).status.success());
        }
    };
    let names: Vec<String> =
        (0..3).map(|i| format!("pincer-{install}-orphan-{i}-{}", pincer::ids::random_hex::<3>())).collect();
    make(&names[0], true);
    make(&names[1], false);
    make(&names[2], true);
    assert!(docker(&["stop", "-t", "0", &names[2]]).status.success());
    // Removal happens before the host listens.
    let host = Host::start(&dirs);
    assert!(
        host.log_tail().contains("0 agent container(s) of an earlier run adopted, 3 removed"),
        "{}",
        host.log_tail()
    );
    let left = docker(&["ps", "-a", "--filter", &label, "--format", "{{.Names}}"]);
    let left = String::from_utf8_lossy(&left.stdout);
    for n in &names {
        assert!(!left.contains(n.as_str()), "{n} is still there: {left}");
    }
    health_ok(&host);
}

fn health_ok(host: &Host) {
    let (status, body) = host.get("/health");
    assert_eq!(status, 200, "{body}");
}

/// A `docker` that fails as an unreachable engine does until `<script>.up` exists, then passes
/// every call to the real one.
fn flaky_docker(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let script = dir.join("docker");
    std::fs::write(
        &script,
        "#!/bin/sh\nif [ -e \"$0.up\" ]; then exec docker \"$@\"; fi\n\
         echo 'Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?' >&2\nexit 1\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

#[test]
fn docker_unreachable_at_start_and_mid_run_keeps_messages_until_it_is_back() {
    let dirs = Dirs::new();
    let script = flaky_docker(dirs.root());
    let up = script.with_extension("up");
    let mut host = Host::start_with(&dirs, &[("PINCER_DOCKER", script.to_str().unwrap())]);
    assert!(host.log_tail().contains("not reachable"), "start-up says docker is unreachable");
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "while docker is down");
    ws.notice("assistant", "docker engine is not reachable", COLD);
    // Docker comes back: the kept message is answered.
    std::fs::write(&up, "").unwrap();
    ws.agent_reply("assistant", "echo: while docker is down", Duration::from_secs(90));

    // Mid-run: docker goes away again and the agent's container dies.
    std::fs::remove_file(&up).unwrap();
    let running = containers_of(&dirs.install());
    assert_eq!(running.len(), 1);
    assert!(docker(&["kill", &running[0]]).status.success());
    let exited = host.wait_for_line(|l| l.contains(&running[0]) && l.contains("exited"), COLD);
    assert!(exited.is_some(), "{}", host.log_tail());
    ws.say("assistant", "docker gone again");
    ws.notice("assistant", "docker engine is not reachable", COLD);
    health_ok(&host);
    std::fs::write(&up, "").unwrap();
    ws.agent_reply("assistant", "echo: docker gone again", Duration::from_secs(90));
}

#[test]
fn a_container_killed_mid_turn_is_retried_and_answers_once() {
    let fake = FakeModel::start();
    let gate = Gate::new();
    fake.reply(openai::text(&["first try"], "stop").hold_at(0, &gate));
    fake.reply(openai::text(&["the answer"], "stop"));
    let dirs = Dirs::new();
    let base = format!("{}/v1", fake.url());
    let host = Host::start_with(&dirs, &[("PINCER_PROVIDER", "openai"), ("OPENAI_BASE_URL", &base)]);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "question");
    // The model has the request and holds its answer: the turn is in flight.
    assert!(fake.wait_holding(COLD), "the model call did not start");
    let running = containers_of(&dirs.install());
    assert!(docker(&["kill", &running[0]]).status.success());
    ws.agent_reply("assistant", "the answer", Duration::from_secs(90));
    let (_, msgs) = host.get("/api/rooms/assistant/messages?limit=100");
    let agent: Vec<Value> = msgs["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["sender_type"] == "agent")
        .cloned()
        .collect();
    assert_eq!(texts(&agent), ["the answer"], "answered once, by the second try");
    gate.open();
}

#[test]
fn a_model_endpoint_that_hangs_is_reported_in_the_room() {
    let fake = FakeModel::start();
    let gate = Gate::new();
    fake.reply(Reply::sse(vec![]).hold_at(0, &gate));
    let dirs = Dirs::new();
    let base = format!("{}/v1", fake.url());
    let host = Host::start_with(
        &dirs,
        &[("PINCER_PROVIDER", "openai"), ("OPENAI_BASE_URL", &base), ("PINCER_MODEL_TIMEOUT_S", "5")],
    );
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "are you there?");
    let notice = ws.wait(
        |f| {
            f["type"] == "message"
                && f["message"]["text"].as_str().is_some_and(|t| t.starts_with("model error: no answer"))
        },
        Duration::from_secs(60),
    );
    assert!(notice["message"]["text"].as_str().unwrap().contains("PINCER_MODEL_TIMEOUT_S"), "{notice}");
    // The agent is free again: the next message is answered.
    fake.reply(openai::text(&["back"], "stop"));
    ws.say("assistant", "and now?");
    ws.agent_reply("assistant", "back", COLD);
    gate.open();
}

#[test]
fn a_damaged_session_database_is_set_aside_and_other_sessions_go_on() {
    let dirs = Dirs::new();
    let host = Host::start(&dirs);
    let other = host.agent_with_room("Other");
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.join(&other, None);
    ws.say("assistant", "one");
    ws.agent_reply("assistant", "echo: one", COLD);
    // Damage the assistant's session database.
    let sessions = dirs.data().join("sessions");
    let inbound = find_files(&sessions, "inbound.db");
    let damaged = inbound
        .iter()
        .find(|p| p.parent().unwrap().join("outbound.db").exists())
        .expect("the assistant's session")
        .clone();
    std::fs::write(&damaged, vec![0x5au8; 16 * 1024]).unwrap();
    ws.say("assistant", "two");
    ws.notice("assistant", "has been set aside", COLD);
    ws.agent_reply("assistant", "echo: two", COLD);
    assert!(dirs.data().join("quarantine").read_dir().unwrap().count() == 1, "kept for inspection");
    ws.say(&other, "unaffected");
    ws.agent_reply(&other, "echo: unaffected", COLD);
}

fn find_files(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(find_files(&p, name));
        } else if p.file_name().is_some_and(|n| n == name) {
            out.push(p);
        }
    }
    out
}

/// A tmpfs of `size` mounted at `dir` for the test's life.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).unwrap();
        let out = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", dir.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mounting a tmpfs (the test needs root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_refuses_messages_clearly_and_recovers() {
    let dirs = Dirs::new();
    let _fs = Tmpfs::mount(&dirs.data(), "24m");
    let mut host = Host::start(&dirs);
    let mut ws = host.ws();
    ws.join("assistant", None);
    ws.say("assistant", "warm up");
    ws.agent_reply("assistant", "echo: warm up", COLD);
    // Fill the disk.
    let filler = dirs.data().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    let body = json!({ "text": "when full", "client_id": "full-1" });
    let (status, resp) = host.post("/api/rooms/assistant/messages", body.clone());
    assert_eq!(status, 507, "{resp}");
    assert!(resp["error"].as_str().unwrap().contains("disk"), "{resp}");
    health_ok(&host);
    std::fs::remove_file(&filler).unwrap();
    let (status, resp) = host.post("/api/rooms/assistant/messages", body);
    assert_eq!(status, 200, "{resp}");
    ws.agent_reply("assistant", "echo: when full", COLD);
    drop(ws);
    host.stop();
}

/// Sends messages over HTTP like a client with an outbox: each has a client id, and one not
/// acknowledged is sent again (same id) after the host comes back.
#[derive(Default)]
struct Ledger {
    /// Client id → text, in sending order.
    sent: Vec<(String, String)>,
    acked: HashSet<String>,
}

/// A small deterministic generator (xorshift), so a failing run can be repeated by its seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

#[test]
fn killed_at_random_points_under_load_nothing_is_lost_or_answered_twice() {
    let kills: u64 = std::env::var("PINCER_FAULT_KILLS").ok().and_then(|k| k.parse().ok()).unwrap_or(3);
    let seed: u64 = std::env::var("PINCER_FAULT_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| pincer::ids::now_ms() as u64 | 1);
    eprintln!("random kills: {kills}, seed {seed} (PINCER_FAULT_SEED={seed} repeats this run)");
    let mut rng = Rng(seed);
    let dirs = Dirs::new();
    let ledger = Arc::new((Mutex::new(Ledger::default()), Condvar::new()));
    let mut next = 0usize;
    let env = [("WEBCHAT_SEND_RATE", "100000")];
    let mut logs = String::new();
    for round in 0..kills {
        let mut host = Host::start_with(&dirs, &env);
        let port = host.port;
        resend_unacked(port, &ledger);
        // Kill after a random number of new acknowledgements, with sends in flight.
        let target = 1 + rng.below(12) as usize;
        let stop = Arc::new(AtomicBool::new(false));
        let sender = {
            let (ledger, stop) = (ledger.clone(), stop.clone());
            let first = next;
            std::thread::spawn(move || {
                let mut i = first;
                while !stop.load(Ordering::SeqCst) {
                    let (id, text) = (format!("k-{i}"), format!("msg {i}"));
                    ledger.0.lock().unwrap().sent.push((id.clone(), text.clone()));
                    i += 1;
                    if !post(port, &id, &text) {
                        break;
                    }
                    ledger.0.lock().unwrap().acked.insert(id);
                    ledger.1.notify_all();
                }
                i
            })
        };
        if rng.below(2) == 0 {
            // Kill after some acknowledgements: mostly while messages are stored and routed.
            let guard = ledger.0.lock().unwrap();
            let base = guard.acked.len();
            let (_guard, timeout) =
                ledger.1.wait_timeout_while(guard, COLD, |l| l.acked.len() < base + target).unwrap();
            assert!(!timeout.timed_out(), "round {round}: no acknowledgements:\n{}", host.log_tail());
        } else {
            // Kill after some answers: with containers running, turns and deliveries under way.
            let mut ws = Ws::connect(port, &[]);
            ws.join("assistant", Some(1_000_000));
            for _ in 0..target.min(4) {
                ws.wait(|f| f["type"] == "message" && f["message"]["sender_type"] == "agent", COLD);
            }
        }
        host.kill_group();
        stop.store(true, Ordering::SeqCst);
        next = sender.join().unwrap();
        logs.push_str(&format!("---- round {round} ----\n{}\n", host.log_tail()));
    }
    let mut host = Host::start_with(&dirs, &env);
    let mut ws = host.ws();
    ws.join("assistant", Some(1_000_000));
    resend_unacked(host.port, &ledger);
    // Every message gets its answer, some after a retry's backoff (a container killed with its
    // host mid-turn): wait for each.
    let mut waiting: HashSet<String> =
        ledger.0.lock().unwrap().sent.iter().map(|(_, text)| format!("echo: {text}")).collect();
    for m in &all_messages(&host, "assistant") {
        for line in m["text"].as_str().unwrap_or_default().lines() {
            waiting.remove(line);
        }
    }
    while !waiting.is_empty() {
        let f = ws.try_wait(
            &|f: &Value| f["type"] == "message" && f["message"]["sender_type"] == "agent",
            Duration::from_secs(120),
        );
        let Some(f) = f else {
            let mut containers = String::new();
            for c in containers_of(&dirs.install()) {
                let out = docker(&["logs", "--tail", "30", &c]);
                containers.push_str(&format!(
                    "---- {c} ----\n{}{}\n",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
            // Whether the answers are stored and only the socket missed them.
            let stored_lines: HashSet<String> = all_messages(&host, "assistant")
                .iter()
                .flat_map(|m| {
                    m["text"].as_str().unwrap_or_default().lines().map(str::to_string).collect::<Vec<_>>()
                })
                .collect();
            let stored: Vec<&String> = waiting.intersection(&stored_lines).collect();
            panic!(
                "never answered (seed {seed}): {waiting:?} (stored but not received: {stored:?})\n{logs}---- last ----\n{}\n{containers}",
                host.log_tail()
            );
        };
        for line in f["message"]["text"].as_str().unwrap_or_default().lines() {
            waiting.remove(line);
        }
    }
    // Then a last message: anything delivered twice would be delivered before its answer.
    ws.say("assistant", "sentinel");
    ws.agent_reply("assistant", "echo: sentinel", COLD);
    let l = ledger.0.lock().unwrap();
    let msgs = all_messages(&host, "assistant");
    let mut stored: HashMap<String, usize> = HashMap::new();
    for m in msgs.iter().filter(|m| m["sender_type"] == "user") {
        if let Some(id) = m["client_id"].as_str() {
            *stored.entry(id.to_string()).or_default() += 1;
        }
    }
    let replies: Vec<String> = msgs
        .iter()
        .filter(|m| m["sender_type"] == "agent")
        .flat_map(|m| m["text"].as_str().unwrap_or_default().lines().map(str::to_string).collect::<Vec<_>>())
        .collect();
    for (id, text) in &l.sent {
        assert_eq!(stored.get(id).copied().unwrap_or(0), 1, "{id} stored once (seed {seed})");
        let echo = format!("echo: {text}");
        let n = replies.iter().filter(|r| **r == echo).count();
        assert_eq!(
            n,
            1,
            "{id} answered once, not {n} times (seed {seed})\nreplies: {replies:?}\n{logs}---- last ----\n{}",
            host.log_tail()
        );
    }
    eprintln!("{} messages through {kills} kills, each stored and answered once", l.sent.len());
    host.stop();
}

/// Every message of a room, page by page.
fn all_messages(host: &Host, room: &str) -> Vec<Value> {
    let mut all: Vec<Value> = Vec::new();
    loop {
        let after = all.last().map_or(0, |m| m["seq"].as_i64().unwrap());
        let (status, page) = host.get(&format!("/api/rooms/{room}/messages?after={after}&limit=1000"));
        assert_eq!(status, 200, "{page}");
        let page = page["messages"].as_array().unwrap().clone();
        if page.is_empty() {
            return all;
        }
        all.extend(page);
    }
}

/// One message over HTTP; true when the host acknowledged it (stored).
fn post(port: u16, client_id: &str, text: &str) -> bool {
    use std::io::Write;
    let body = json!({ "text": text, "client_id": client_id }).to_string();
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let req = format!(
        "POST /api/rooms/assistant/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Webchat-CSRF: 1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    matches!(raw_exchange(&mut s, req.as_bytes(), WARM), Some((200, _))) && s.flush().is_ok()
}

fn resend_unacked(port: u16, ledger: &Arc<(Mutex<Ledger>, Condvar)>) {
    let pending: Vec<(String, String)> = {
        let l = ledger.0.lock().unwrap();
        l.sent.iter().filter(|(id, _)| !l.acked.contains(id)).cloned().collect()
    };
    for (id, text) in pending {
        assert!(post(port, &id, &text), "resending {id}");
        ledger.0.lock().unwrap().acked.insert(id);
    }
}
