//! The agents-act phase: a host whose agents use a scripted model. Measured: how late a
//! scheduled task's answer reaches the browser after the time it was due (tasks scheduled by the
//! agent with its tool, spaced so each run is a turn of its own), and an agent-to-agent round
//! trip (a person asks, the agent asks another agent, the answer comes back and is relayed to
//! the room), each compared with the same host's warm round trip.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, ensure};
use serde_json::{Value, json};

use crate::host::Host;
use crate::net::{Ws, http_json};

/// Scheduled tasks measured.
pub(crate) const TASKS: usize = 50;
/// Between two tasks' times (each run is a turn of its own).
const TASK_SPACING_MS: i64 = 300;
/// Agent-to-agent round trips measured.
pub(crate) const A2A: usize = 20;
const TIMEOUT: Duration = Duration::from_secs(60);

pub(crate) struct Acted {
    /// Due time → the run's answer on the browser's socket.
    pub(crate) task_lateness: Vec<Duration>,
    /// A person's message → the relayed answer of the other agent in the room.
    pub(crate) a2a: Vec<Duration>,
    /// A person's message → the agent's answer (one model call), same host.
    pub(crate) warm: Vec<Duration>,
}

fn epoch_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn say(ws: &mut Ws, text: &str, n: usize) -> anyhow::Result<()> {
    ws.send_json(&json!({ "type": "send", "room_id": "assistant", "client_id": format!("act-{n}-{}", epoch_ms()), "text": text }))
}

fn agent_text(v: &Value) -> Option<&str> {
    (v["type"] == "message" && v["message"]["sender_type"] == "agent")
        .then(|| v["message"]["text"].as_str())
        .flatten()
}

pub(crate) fn phase(dir: &std::path::Path, image: &str) -> anyhow::Result<Acted> {
    use pincer::testing::{FakeModel, openai};
    let fake = FakeModel::start();
    let base = format!("{}/v1", fake.url());
    let env = [("PINCER_PROVIDER", "openai"), ("OPENAI_BASE_URL", base.as_str()), ("OPENAI_MODEL", "bench")];
    let mut host = Host::start(dir, image, &env, TIMEOUT)?;
    let port = host.port;
    let mut ws = Ws::connect(port, "/ws")?;
    ws.wait_for(Instant::now() + TIMEOUT, "the ready frame", |v| v["type"] == "ready")?;
    ws.send_json(&json!({ "type": "join", "room_id": "assistant" }))?;
    ws.wait_for(Instant::now() + TIMEOUT, "the history", |v| v["type"] == "history")?;

    // Warm round trips (the first starts the container).
    let mut warm = Vec::new();
    for n in 0..=A2A {
        fake.reply(openai::text(&[&format!("warm {n}")], "stop"));
        let sent = Instant::now();
        say(&mut ws, &format!("warm {n}"), n)?;
        let want = format!("warm {n}");
        ws.wait_for(sent + TIMEOUT, "a warm answer", |v| agent_text(v) == Some(want.as_str()))?;
        if n > 0 {
            warm.push(sent.elapsed());
        }
        fake.next_request(TIMEOUT).context("the warm turn's model call")?;
    }

    // Tasks: one turn schedules them all, spaced, with times the bench knows.
    let first = epoch_ms() + 3_000;
    let times: Vec<i64> = (0..TASKS as i64).map(|i| first + i * TASK_SPACING_MS).collect();
    let args: Vec<String> = times
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let at = jiff::Timestamp::from_millisecond(*t).expect("a time").to_string();
            json!({ "prompt": format!("task {i}"), "process_after": at }).to_string()
        })
        .collect();
    let calls: Vec<(String, &str, Vec<&str>)> = args
        .iter()
        .enumerate()
        .map(|(i, a)| (format!("call_{i}"), "schedule_task", vec![a.as_str()]))
        .collect();
    let refs: Vec<(&str, &str, &[&str])> =
        calls.iter().map(|(i, n, f)| (i.as_str(), *n, f.as_slice())).collect();
    fake.reply(openai::tool_calls(&refs));
    fake.reply(openai::text(&["Scheduled."], "stop"));
    for i in 0..TASKS {
        fake.reply(openai::text(&[&format!("ran task {i}")], "stop"));
    }
    say(&mut ws, "schedule them", 1000)?;
    for _ in 0..2 {
        fake.next_request(TIMEOUT).context("the scheduling turn")?;
    }
    // Each answer belongs to one run (one model call); a run late enough to catch the next task
    // carries both, and both are measured at that answer.
    let mut task_lateness = Vec::with_capacity(TASKS);
    let deadline = Instant::now() + TIMEOUT + Duration::from_millis((TASKS as i64 * TASK_SPACING_MS) as u64);
    while task_lateness.len() < TASKS {
        ws.wait_for(deadline, "a task's answer", |v| {
            agent_text(v).is_some_and(|t| t.starts_with("ran task "))
        })?;
        let at = epoch_ms();
        let run = fake.next_request(TIMEOUT).context("the run's model call")?;
        // The run's own prompt: the last user message (the history holds earlier runs too).
        let prompt = run.body["messages"]
            .as_array()
            .and_then(|m| m.iter().rev().find(|m| m["role"] == "user"))
            .and_then(|m| m["content"].as_str())
            .unwrap_or_default()
            .to_string();
        let mut found = 0;
        for part in prompt.split("Instructions:\ntask ").skip(1) {
            let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
            let i: usize = digits.parse().context("a task number in the prompt")?;
            task_lateness.push(Duration::from_millis((at - times[i]).max(0) as u64));
            found += 1;
        }
        ensure!(found > 0, "a run without a task in its prompt: {prompt}");
    }
    // Runs that carried two tasks used one answer for both: the answers left over must not
    // answer the next phase's calls.
    fake.clear_replies();

    // Agent to agent: the assistant asks a helper; the answer is relayed to the room.
    let (status, made) = http_json(port, "POST", "/api/agents", Some(&json!({ "name": "Helper" })))?;
    ensure!(status == 201, "creating the helper: {made}");
    let helper = made["agentGroup"]["id"].as_str().context("helper id")?.to_string();
    let (_, agents) = http_json(port, "GET", "/api/agents", None)?;
    let assistant = agents
        .as_array()
        .and_then(|a| a.iter().find(|x| x["name"] == "Assistant"))
        .and_then(|a| a["id"].as_str())
        .context("assistant id")?
        .to_string();
    let (status, linked) = http_json(
        port,
        "POST",
        &format!("/api/agents/{assistant}/destinations"),
        Some(&json!({ "agentId": helper, "both": true })),
    )?;
    ensure!(status == 201, "linking: {linked}");
    let mut a2a = Vec::new();
    for n in 0..=A2A {
        let ask = json!({ "to": "helper", "text": format!("question {n}") }).to_string();
        fake.reply(openai::tool_calls(&[("call_ask", "send_message", &[ask.as_str()])]));
        fake.reply(openai::text(&["Asking the helper."], "stop"));
        fake.reply(openai::text(&[&format!("answer {n}")], "stop"));
        fake.reply(openai::text(&[&format!("<message to=\"assistant\">relayed {n}</message>")], "stop"));
        let sent = Instant::now();
        say(&mut ws, &format!("ask the helper {n}"), 2000 + n)?;
        let want = format!("relayed {n}");
        ws.wait_for(sent + TIMEOUT, "the relayed answer", |v| agent_text(v) == Some(want.as_str()))
            .with_context(|| format!("round trip {n}; the host's last lines:\n{}", host.log_tail(40)))?;
        if n > 0 {
            a2a.push(sent.elapsed());
        }
    }
    host.stop()?;
    Ok(Acted { task_lateness, a2a, warm })
}
