//! `make bench`: starts the real `pincer` host with the mock provider in a temp dir and measures
//! the first reply of a fresh agent (container start included), warm round trips over the
//! WebSocket, the host's memory and the agent container's memory. A second host talks to a
//! scripted model server (the OpenAI streaming format) to measure how long a model token takes
//! to reach the browser, how long a message takes to reach the model, and a warm round trip with an
//! instant model through the openai provider (against a direct call to that model with the same
//! request). Every number is printed next to a baseline measured in the same run (CONTRACT.md §6),
//! so the overhead over the physical limit can be read off: `name value unit  (baseline name
//! value unit, xRATIO)`. A third host
//! serves HTTPS from its own CA: sign-in and socket opening over TLS against a bare rustls
//! handshake, and memory with 500 idle signed-in clients. A fourth has agents act: how late a
//! scheduled task's answer reaches the browser, and an agent-to-agent round trip. A sixth is
//! under load ([`scale`]): 10 concurrent chats, 50 idle warm agents, 1 000 clients' memory and a
//! broadcast to all of them. A seventh takes an upload (against `cp`) and searches 100 000
//! messages (against the same query on SQLite). `PINCER_BENCH_ONLY=scale` runs the load phase
//! alone; `PINCER_BENCH_ONLY=rt` stops after the round trips (mock and openai);
//! `PINCER_BENCH_ONLY=agents` runs the agents-act phase alone; `PINCER_BENCH_ONLY=clients` the
//! many-clients part of the load phase.

mod access;
mod agents;
mod baseline;
mod build;
mod docker;
mod files;
mod host;
mod net;
mod proxy;
mod scale;

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use crate::host::Host;
use crate::net::{Ws, http_json};

/// Warm round trips, echo round trips and SQLite commits measured.
const SAMPLES: usize = 200;
/// Sockets the round-trip messages are sent over (each stays within its frame-rate burst).
const SENDERS: usize = 4;
/// `docker run` of a trivial command, repeated for the median.
const DOCKER_RUNS: usize = 5;
const HOST_READY_TIMEOUT: Duration = Duration::from_secs(30);
/// The first reply includes the container start.
const COLD_TIMEOUT: Duration = Duration::from_secs(60);
const WARM_TIMEOUT: Duration = Duration::from_secs(10);

fn main() {
    if let Err(e) = run() {
        eprintln!("bench failed: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let image = image_name(env!("CARGO_MANIFEST_DIR"));
    if std::env::var("PINCER_BENCH_ONLY").is_ok_and(|v| v == "scale") {
        // The scale phase alone (minutes less when working on it).
        let dir = tempfile::Builder::new().prefix("pincer-bench-scale-").tempdir()?;
        report_scale(&scale::phase(dir.path(), &image).context("scale phase")?);
        return Ok(());
    }
    if std::env::var("PINCER_BENCH_ONLY").is_ok_and(|v| v == "clients") {
        // The many-clients part of the scale phase alone.
        let dir = tempfile::Builder::new().prefix("pincer-bench-clients-").tempdir()?;
        report_clients(&scale::clients_phase(dir.path(), &image).context("clients phase")?);
        return Ok(());
    }
    if std::env::var("PINCER_BENCH_ONLY").is_ok_and(|v| v == "agents") {
        // The agents-act phase alone.
        let dir = tempfile::Builder::new().prefix("pincer-bench-agents-").tempdir()?;
        let acted = agents::phase(dir.path(), &image).context("agents phase")?;
        println!(
            "task_due_to_browser_p50 {} ms",
            num(percentile(&acted.task_lateness, 50).as_secs_f64() * 1e3)
        );
        println!("agent_to_agent_round_trip_p50 {} ms", num(percentile(&acted.a2a, 50).as_secs_f64() * 1e3));
        return Ok(());
    }
    let tmp = tempfile::Builder::new().prefix("pincer-bench-").tempdir()?;
    println!(
        "# pincer bench  date {}  kernel {}  image {image}",
        shell("date", &["-Iseconds"]),
        shell("uname", &["-r"])
    );

    let echo = baseline::ws_echo(SAMPLES).context("WebSocket echo baseline")?;
    let docker_true =
        (0..DOCKER_RUNS).map(|_| docker::run_true(&image)).collect::<anyhow::Result<Vec<_>>>()?;

    // Containers of this install are named `pincer-<install>-<folder>-<ms>`; the guard removes
    // any the host leaves behind (it is declared first, so it is dropped after the host).
    std::fs::create_dir_all(tmp.path().join("data"))?;
    let install = pincer::host::containers::RunnerConfig::install_id(&tmp.path().join("data"));
    let leftovers = Leftovers(format!("pincer-{install}-"));
    let mut host = Host::start(tmp.path(), &image, &[], HOST_READY_TIMEOUT)?;
    let rss_idle = host.rss_mb()?;
    let sqlite = baseline::sqlite_commits(&host.data_dir.join("bench-baseline.db"), SAMPLES)?;

    let port = host.port;
    let (status, created) =
        http_json(port, "POST", "/api/agents", Some(&json!({ "name": "Bench", "withRoom": true })))?;
    ensure!(status == 201, "POST /api/agents answered {status}: {created}");
    let room = created["roomId"].as_str().context("no roomId in the POST /api/agents answer")?.to_string();

    let mut ws = Ws::connect(port, "/ws")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    ws.wait_for(deadline, "the ready frame", |v| v["type"] == "ready")?;
    ws.send_json(&json!({ "type": "join", "room_id": room }))?;
    ws.wait_for(deadline, "the history frame", |v| v["type"] == "history" && v["room_id"] == room.as_str())?;

    let mut senders = senders(port)?;
    let cold = round_trip(&mut senders[0], &mut ws, &room, 0, COLD_TIMEOUT)?;
    let cpu_before = host.cpu()?;
    let warm = (1..=SAMPLES)
        .map(|i| round_trip(&mut senders[i % SENDERS], &mut ws, &room, i, WARM_TIMEOUT))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let host_cpu_per_message = (host.cpu()? - cpu_before).as_secs_f64() * 1e3 / SAMPLES as f64;

    let containers = docker::containers(&leftovers.0)?;
    ensure!(!containers.is_empty(), "no agent container named {}* after the warm run", leftovers.0);
    let mem = docker::mem_mb(&containers)?;
    let runner_rss = docker::runner_rss_mb(&containers[0])?;
    let rss_after = host.rss_mb()?;
    let (log_lines, warnings) = host.warnings();
    let stop_took = host.stop()?;

    let ms = |d: &[Duration], p: usize| percentile(d, p).as_secs_f64() * 1e3;
    let (echo50, echo99, sql50, sql99) = (ms(&echo, 50), ms(&echo, 99), ms(&sqlite, 50), ms(&sqlite, 99));
    report(
        "cold_first_reply",
        cold.as_secs_f64() * 1e3,
        "ms",
        &[("docker_run_true", ms(&docker_true, 50), "ms")],
    );
    report(
        "warm_round_trip_p50",
        ms(&warm, 50),
        "ms",
        &[("ws_echo_loopback_p50", echo50, "ms"), ("sqlite_commit_delete", sql50, "ms")],
    );
    report(
        "warm_round_trip_p99",
        ms(&warm, 99),
        "ms",
        &[("ws_echo_loopback_p99", echo99, "ms"), ("sqlite_commit_delete_p99", sql99, "ms")],
    );
    println!("host_rss_idle {} MB  (target < 20 MB)", num(rss_idle));
    println!(
        "host_cpu_per_round_trip {} ms  (user+system of the host over {SAMPLES} warm round trips, /proc/<pid>/stat; target <= 1 ms)",
        num(host_cpu_per_message)
    );
    println!(
        "host_rss_after {} MB  (after {} round trips; idle {} MB)",
        num(rss_after),
        SAMPLES + 1,
        num(rss_idle)
    );
    let names: Vec<&str> = mem.iter().map(|(n, _)| n.as_str()).collect();
    let total: f64 = mem.iter().map(|(_, m)| m).sum();
    println!(
        "agent_runner_rss {} MB  (the pincer-agent process after {} turns)",
        num(runner_rss),
        SAMPLES + 1
    );
    println!(
        "agent_container_mem {} MB  ({}: the runner and its init, idle after the warm run)",
        num(total),
        names.join(", ")
    );

    let stream_dir = tempfile::Builder::new().prefix("pincer-bench-model-").tempdir()?;
    let streamed = stream_phase(stream_dir.path(), &image).context("model streaming phase")?;
    report(
        "first_token_to_browser_p50",
        ms(&streamed.first_token, 50),
        "ms",
        &[("ws_echo_loopback_p50", echo50, "ms")],
    );
    report(
        "first_token_to_browser_p99",
        ms(&streamed.first_token, 99),
        "ms",
        &[("ws_echo_loopback_p99", echo99, "ms")],
    );
    report(
        "send_to_model_request_p50",
        ms(&streamed.to_model, 50),
        "ms",
        &[("sqlite_commit_delete", sql50, "ms")],
    );
    report(
        "warm_round_trip_openai_p50",
        ms(&streamed.openai_round_trip, 50),
        "ms",
        &[
            ("fake_model_direct_call_same_request_p50", ms(&streamed.model_direct, 50), "ms"),
            ("warm_round_trip_mock_p50", ms(&warm, 50), "ms"),
        ],
    );
    report(
        "warm_round_trip_openai_p99",
        ms(&streamed.openai_round_trip, 99),
        "ms",
        &[("fake_model_direct_call_same_request_p99", ms(&streamed.model_direct, 99), "ms")],
    );
    println!(
        "openai_request_bytes {}  (the agent's request body at the last of {SAMPLES} round trips: instructions, tools, conversation)",
        streamed.request_bytes
    );
    if std::env::var("PINCER_BENCH_ONLY").is_ok_and(|v| v == "rt") {
        // The round trips alone (minutes less when working on them).
        return Ok(());
    }

    let access_dir = tempfile::Builder::new().prefix("pincer-bench-access-").tempdir()?;
    let a = access::phase(access_dir.path(), &image, ACCESS_SAMPLES, IDLE_CLIENTS).context("access phase")?;
    let tls50 = ms(&a.tls_handshake, 50);
    report("tls_login_p50", ms(&a.login, 50), "ms", &[("rustls_handshake_loopback_p50", tls50, "ms")]);
    report("wss_open_p50", ms(&a.ws_open, 50), "ms", &[("rustls_handshake_loopback_p50", tls50, "ms")]);
    report(
        &format!("host_rss_{}_idle_wss_clients", a.clients),
        a.rss_clients_mb,
        "MB",
        &[("host_rss_before_them", a.rss_idle_mb, "MB")],
    );
    println!(
        "host_rss_per_idle_wss_client {} KB  (TLS + WebSocket + session state)",
        num((a.rss_clients_mb - a.rss_idle_mb) * 1e3 / a.clients as f64)
    );

    let acted_dir = tempfile::Builder::new().prefix("pincer-bench-agents-").tempdir()?;
    let acted = agents::phase(acted_dir.path(), &image).context("agents phase")?;
    let warm50 = ms(&acted.warm, 50);
    report(
        "task_due_to_browser_p50",
        ms(&acted.task_lateness, 50),
        "ms",
        &[("warm_round_trip_same_host_p50", warm50, "ms")],
    );
    report(
        "task_due_to_browser_p99",
        ms(&acted.task_lateness, 99),
        "ms",
        &[("warm_round_trip_same_host_p99", ms(&acted.warm, 99), "ms")],
    );
    report(
        "agent_to_agent_round_trip_p50",
        ms(&acted.a2a, 50),
        "ms",
        &[("warm_round_trip_same_host_p50", warm50, "ms")],
    );

    let proxy_dir = tempfile::Builder::new().prefix("pincer-bench-proxy-").tempdir()?;
    let px = proxy::phase(proxy_dir.path()).context("proxy phase")?;
    let (via50, direct50) = (ms(&px.through_proxy, 50), ms(&px.direct, 50));
    report("model_first_byte_via_proxy_p50", via50, "ms", &[("same_call_direct_p50", direct50, "ms")]);
    report(
        "model_first_byte_via_proxy_p99",
        ms(&px.through_proxy, 99),
        "ms",
        &[("same_call_direct_p99", ms(&px.direct, 99), "ms")],
    );
    println!("proxy_added_first_byte_p50 {} ms  (target <= 0.3 ms)", num(via50 - direct50));

    let scale_dir = tempfile::Builder::new().prefix("pincer-bench-scale-").tempdir()?;
    let sc = scale::phase(scale_dir.path(), &image).context("scale phase")?;
    report_scale(&sc);

    let files_dir = tempfile::Builder::new().prefix("pincer-bench-files-").tempdir()?;
    let f = files::phase(files_dir.path(), &image).context("files phase")?;
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    report(
        &format!("upload_{}mib_throughput", files::UPLOAD_MIB),
        median(&f.upload_mb_s),
        "MB/s",
        &[("cp_same_file_synced", median(&f.cp_mb_s), "MB/s")],
    );
    report(
        &format!("search_{}k_messages_p50", files::MESSAGES / 1000),
        ms(&f.search, 50),
        "ms",
        &[("sqlite_fts5_same_query_p50", ms(&f.fts_direct, 50), "ms")],
    );
    report(
        &format!("search_{}k_messages_p99", files::MESSAGES / 1000),
        ms(&f.search, 99),
        "ms",
        &[("sqlite_fts5_same_query_p99", ms(&f.fts_direct, 99), "ms")],
    );
    let r = |k: &str| f.render[k].as_f64().unwrap_or(f64::NAN);
    let laid_out = format!("chromium_{}k_plain_messages_laid_out", files::RENDERED / 1000);
    report(
        &format!("open_{}k_message_room", files::RENDERED / 1000),
        r("open_ms"),
        "ms",
        &[(&laid_out, r("static_ms"), "ms")],
    );
    report(
        &format!("scroll_back_{}k_message_room", files::RENDERED / 1000),
        r("scroll_back_ms"),
        "ms",
        &[(&laid_out, r("static_ms"), "ms")],
    );

    if std::env::var("PINCER_BENCH_COLD_BUILD").is_ok_and(|v| v == "1") {
        let build_dir = tempfile::Builder::new().prefix("pincer-bench-build-").tempdir()?;
        let b = build::phase(build_dir.path()).context("cold build phase")?;
        report(
            "cold_build_host_and_runner",
            b.one_build.as_secs_f64(),
            "s",
            &[("cold_build_host_alone", b.host_alone.as_secs_f64(), "s")],
        );
    } else {
        eprintln!("bench: the cold build is measured with PINCER_BENCH_COLD_BUILD=1 (minutes)");
    }
    eprintln!("bench: host stopped {:.0} ms after SIGTERM", stop_took.as_secs_f64() * 1e3);
    eprintln!("bench: host logged {log_lines} lines at info, {} at WARN/ERROR", warnings.len());
    for w in &warnings {
        eprintln!("bench: host logged: {w}");
    }
    let left = docker::containers(&leftovers.0)?;
    if !left.is_empty() {
        eprintln!("bench: containers left after the host stopped (removing them): {}", left.join(", "));
    }
    Ok(())
}

/// The scale phase's lines.
fn report_scale(sc: &scale::Scale) {
    let ms = |d: &[Duration], p: usize| percentile(d, p).as_secs_f64() * 1e3;
    report(
        &format!("throughput_{}_concurrent_chats", scale::CHATS),
        sc.throughput_msg_s,
        "msg/s",
        &[
            ("one_chat_alone", 1e3 / ms(&sc.alone_round_trips, 50), "msg/s"),
            ("sqlite_delete_commits_10_files", sc.commits_per_s, "commits/s"),
        ],
    );
    report(
        &format!("round_trip_{}_concurrent_chats_p95", scale::CHATS),
        ms(&sc.chat_round_trips, 95),
        "ms",
        &[("one_chat_alone_p95", ms(&sc.alone_round_trips, 95), "ms")],
    );
    report(
        &format!("host_cpu_{}_idle_warm_agents", scale::IDLE_AGENTS),
        sc.idle_cpu_ms_per_s,
        "ms/s",
        &[("same_host_before_any_agent", sc.empty_cpu_ms_per_s, "ms/s")],
    );
    report_clients(&sc.clients);
}

fn report_clients(sc: &scale::Fanout) {
    let ms = |d: &[Duration], p: usize| percentile(d, p).as_secs_f64() * 1e3;
    report(
        &format!("host_rss_{}_idle_ws_clients", scale::CLIENTS),
        sc.rss_clients_mb,
        "MB",
        &[("host_rss_before_them", sc.rss_before_clients_mb, "MB")],
    );
    println!(
        "host_rss_per_idle_ws_client {} KiB  (plain WebSocket joined to a room; target <= 20 KiB)",
        num((sc.rss_clients_mb - sc.rss_before_clients_mb) * 1e6 / 1024.0 / scale::CLIENTS as f64)
    );
    report(
        &format!("broadcast_to_{}_clients_p50", scale::CLIENTS),
        ms(&sc.broadcast, 50),
        "ms",
        &[("loopback_fanout_same_frame_p50", ms(&sc.loopback_fanout, 50), "ms")],
    );
    report(
        &format!("broadcast_to_{}_clients_p99", scale::CLIENTS),
        ms(&sc.broadcast, 99),
        "ms",
        &[("loopback_fanout_same_frame_p99", ms(&sc.loopback_fanout, 99), "ms")],
    );
    report(
        &format!("typing_event_to_{}_clients_p50", scale::CLIENTS),
        ms(&sc.fanout, 50),
        "ms",
        &[("loopback_fanout_same_frame_p50", ms(&sc.loopback_fanout, 50), "ms")],
    );
    report(
        &format!("typing_event_to_{}_clients_p99", scale::CLIENTS),
        ms(&sc.fanout, 99),
        "ms",
        &[("loopback_fanout_same_frame_p99", ms(&sc.loopback_fanout, 99), "ms")],
    );
    // What the host spends on one fan-out, against one thread writing the same number of frames.
    report(
        &format!("host_cpu_per_typing_event_to_{}_clients", scale::CLIENTS),
        sc.fanout_host_cpu.as_secs_f64() * 1e3,
        "ms",
        &[("loopback_writes_same_frame_p50", ms(&sc.loopback_writes, 50), "ms")],
    );
}

/// Sign-ins and socket openings measured over TLS.
const ACCESS_SAMPLES: usize = 50;
/// Idle signed-in WebSocket clients held open for the memory figure.
const IDLE_CLIENTS: usize = 500;

/// Samples of the streaming phase.
const STREAM_SAMPLES: usize = 50;

struct Streamed {
    /// The model writes its first token → the browser's socket has it.
    first_token: Vec<Duration>,
    /// The browser sends a message → the model receives the request.
    to_model: Vec<Duration>,
    /// Warm round trips through the openai provider against an instant model.
    openai_round_trip: Vec<Duration>,
    /// The same model called straight over TCP with the same request (alternating with the
    /// round trips).
    model_direct: Vec<Duration>,
    /// The size of the last round trip's request body.
    request_bytes: usize,
}

/// A host whose agents use a scripted OpenAI-format model: each reply holds before its first
/// token; the bench releases it and times the token's way to the WebSocket client.
fn stream_phase(dir: &std::path::Path, image: &str) -> anyhow::Result<Streamed> {
    use pincer::testing::{FakeModel, Gate, openai};
    let fake = FakeModel::start();
    let base = format!("{}/v1", fake.url());
    let env = [("PINCER_PROVIDER", "openai"), ("OPENAI_BASE_URL", base.as_str()), ("OPENAI_MODEL", "bench")];
    std::fs::create_dir_all(dir.join("data"))?;
    let install = pincer::host::containers::RunnerConfig::install_id(&dir.join("data"));
    let _leftovers = Leftovers(format!("pincer-{install}-"));
    let mut host = Host::start(dir, image, &env, HOST_READY_TIMEOUT)?;
    let mut ws = Ws::connect(host.port, "/ws")?;
    let deadline = Instant::now() + Duration::from_secs(10);
    ws.wait_for(deadline, "the ready frame", |v| v["type"] == "ready")?;
    ws.send_json(&json!({ "type": "join", "room_id": "assistant" }))?;
    ws.wait_for(deadline, "the history frame", |v| v["type"] == "history")?;
    let mut out = Streamed {
        first_token: Vec::new(),
        to_model: Vec::new(),
        openai_round_trip: Vec::new(),
        model_direct: Vec::new(),
        request_bytes: 0,
    };
    // The first message starts the container; it is not measured.
    for n in 0..=STREAM_SAMPLES {
        let gate = Gate::new();
        fake.reply(openai::text(&["token", " more"], "stop").hold_at(1, &gate));
        let timeout = if n == 0 { COLD_TIMEOUT } else { WARM_TIMEOUT };
        let sent = Instant::now();
        ws.send_json(&json!({ "type": "send", "room_id": "assistant", "client_id": format!("s-{n}"), "text": format!("stream {n}") }))?;
        fake.next_request(timeout).context("the model was not called")?;
        let asked = sent.elapsed();
        ensure!(fake.wait_holding(timeout), "the fake model did not reach its hold");
        let released = Instant::now();
        gate.open();
        ws.wait_for(released + timeout, "the first streamed token", |v| {
            v["type"] == "stream" && v["delta"] == "token"
        })?;
        let first = released.elapsed();
        ws.wait_for(released + timeout, "the final message", |v| {
            v["type"] == "message" && v["message"]["sender_type"] == "agent"
        })?;
        if n > 0 {
            out.first_token.push(first);
            out.to_model.push(asked);
        }
    }
    // Warm round trips with an instant model, each beside a direct call to that model.
    let mut senders = senders(host.port)?;
    for n in 0..SAMPLES {
        fake.reply(openai::text(&["instant"], "stop"));
        let sent = Instant::now();
        senders[n % SENDERS].send_json(&json!({ "type": "send", "room_id": "assistant", "client_id": format!("rt-{n}"), "text": format!("round trip {n}") }))?;
        ws.wait_for(sent + WARM_TIMEOUT, "the agent's reply", |v| {
            v["type"] == "message"
                && v["message"]["sender_type"] == "agent"
                && v["message"]["text"] == "instant"
        })?;
        out.openai_round_trip.push(sent.elapsed());
        let asked = fake.next_request(WARM_TIMEOUT).context("the model was not called")?;
        out.request_bytes = asked.raw_body.len();
        // The same request straight to the model: the agent's request grows with the conversation.
        fake.reply(openai::text(&["instant"], "stop"));
        out.model_direct.push(proxy::direct_call(&fake, &asked.raw_body)?);
        fake.next_request(WARM_TIMEOUT).context("the fake model saw no request")?;
    }
    host.stop()?;
    Ok(out)
}

/// Sockets that messages go out over, so none exceeds the per-socket frame rate (the bench
/// measures the way through pincer, not its limiter); replies come in on a socket of their own.
fn senders(port: u16) -> anyhow::Result<Vec<Ws>> {
    (0..SENDERS)
        .map(|_| {
            let mut s = Ws::connect(port, "/ws")?;
            s.wait_for(Instant::now() + WARM_TIMEOUT, "the ready frame", |v| v["type"] == "ready")?;
            Ok(s)
        })
        .collect()
}

/// Sends message `n` to `room` over `sender` and waits on `ws` for the mock agent's
/// `echo: <text>`; the time between.
fn round_trip(
    sender: &mut Ws,
    ws: &mut Ws,
    room: &str,
    n: usize,
    timeout: Duration,
) -> anyhow::Result<Duration> {
    let text = format!("bench message {n}");
    let expected = format!("echo: {text}");
    let client_id = format!("bench-{}-{n}", std::process::id());
    let started = Instant::now();
    sender.send_json(&json!({ "type": "send", "room_id": room, "client_id": client_id, "text": text }))?;
    ws.wait_for(started + timeout, &format!("the agent's reply to {text:?}"), |v: &Value| {
        v["type"] == "message"
            && v["room_id"] == room
            && v["message"]["sender_type"] == "agent"
            && v["message"]["text"].as_str().is_some_and(|t| t.lines().any(|l| l == expected))
    })?;
    Ok(started.elapsed())
}

/// `pincer-agent-<first 8 hex of sha1(canonical project root)>:latest`, as the host derives it.
fn image_name(root: &str) -> String {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.into());
    let hex = sha1_smol::Sha1::from(root.as_os_str().as_encoded_bytes()).digest().to_string();
    format!("pincer-agent-{}:latest", &hex[..8])
}

/// Nearest-rank percentile.
fn percentile(samples: &[Duration], p: usize) -> Duration {
    let mut s = samples.to_vec();
    s.sort();
    s[(s.len() * p).div_ceil(100).clamp(1, s.len()) - 1]
}

/// One metric line with its baselines and the ratio to each.
fn report(name: &str, value: f64, unit: &str, baselines: &[(&str, f64, &str)]) {
    let base: Vec<String> = baselines
        .iter()
        .map(|(b, v, u)| {
            if *v == 0.0 {
                // No ratio to a baseline of nothing.
                return format!("{b} {} {u}", num(*v));
            }
            let ratio = value / v;
            let ratio = if ratio >= 10.0 { format!("{ratio:.0}") } else { format!("{ratio:.1}") };
            format!("{b} {} {u}, x{ratio}", num(*v))
        })
        .collect();
    println!("{name} {} {unit}  (baseline {})", num(value), base.join("; "));
}

/// Three significant digits or so.
fn num(v: f64) -> String {
    match v.abs() {
        a if a >= 100.0 => format!("{v:.0}"),
        a if a >= 10.0 => format!("{v:.1}"),
        a if a >= 1.0 => format!("{v:.2}"),
        _ => format!("{v:.3}"),
    }
}

fn shell(cmd: &str, args: &[&str]) -> String {
    Command::new(cmd)
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|e| format!("<{cmd}: {e}>"))
}

/// Removes the bench install's containers when dropped (after the host, even on a panic).
struct Leftovers(String);

impl Drop for Leftovers {
    fn drop(&mut self) {
        match docker::containers(&self.0) {
            Ok(names) if !names.is_empty() => {
                if let Err(e) = docker::remove(&names) {
                    eprintln!("bench: removing leftover containers: {e:#}");
                }
            }
            Ok(_) => {}
            Err(e) => eprintln!("bench: listing leftover containers: {e:#}"),
        }
    }
}
