//! The poll loop: wait for a wake (or the safety poll), read pending rows, claim them, run a turn.
//!
//! Claims make processing at-most-once per container: a row is `completed` (or `failed`) in
//! `outbound.db` in the same transaction that writes the reply, so a reply is never written
//! twice, and `processing` before anything acts on it or once the turn runs long
//! ([`super::claims`]), so a crash leaves a claim the host can retry.

use std::time::Instant;

use super::config::{AgentConfig, beat, touch};
use super::link::{Event, Link};
use super::mcp;
use super::provider::{self, ProviderConfig};
use super::tools::{self, Tool};
use super::turn::{self, Runner};
use crate::db::{self, Kind, inbound, outbound};
use crate::ids::now_ms;

/// After the host closed the link, how long the runner waits for a host to serve it again (a
/// host restarted after a crash adopts running containers) before it exits.
pub const RELINK_WINDOW: std::time::Duration = std::time::Duration::from_secs(30);

pub fn run(cfg: &AgentConfig) -> anyhow::Result<()> {
    let out = db::open(&cfg.outbound_db(), Kind::Outbound)?;
    let stale = outbound::delete_processing_claims(&out)?;
    if stale > 0 {
        log::info!("dropped {stale} claims left by a previous container");
    }
    let mut link = Link::connect(&cfg.link_socket())?;
    let provider = provider::create(&ProviderConfig {
        name: cfg.provider.clone(),
        model: cfg.model.clone(),
        proxy: cfg.model_socket(),
        timeout: cfg.model_timeout,
    })?;
    let tools = all_tools(cfg);
    log::info!(
        "agent {} ({}) ready, session {}, provider {}, {} tools",
        cfg.agent_name,
        cfg.agent_id,
        cfg.session_id,
        provider.name(),
        tools.len()
    );
    let mut runner =
        Runner::new(cfg.clone(), out, provider, tools, link.writer.clone(), link.cancel.clone())?;
    runner.woken = link.woken.clone();

    let mut first_poll = true;
    let mut last_work = Instant::now();
    loop {
        beat(&cfg.heartbeat());
        let worked = poll_once(&mut runner, first_poll)?;
        first_poll = false;
        if worked {
            last_work = Instant::now();
            // Look again at once: more may have arrived while the model was busy.
            continue;
        }
        if last_work.elapsed() >= cfg.idle_exit {
            log::info!("idle for {:?}; exiting", cfg.idle_exit);
            return Ok(());
        }
        let mut closed = match link.wait(cfg.safety_poll) {
            Some(Event::Closed) => true,
            // Coalesce a burst of wakes into one poll.
            Some(Event::Wake | Event::Stop) | None => link.drain().contains(&Event::Closed),
        };
        if closed {
            log::info!("the host closed the link; waiting up to {RELINK_WINDOW:?} for it to come back");
            touch(&cfg.heartbeat());
            closed = !link.reconnect(&cfg.link_socket(), RELINK_WINDOW);
        }
        if closed {
            log::info!("no host came back; exiting");
            return Ok(());
        }
    }
}

/// The runner's tools: files/shell/web, messaging, scheduled tasks, requests to the host (a new
/// agent, an MCP server), and approved MCP servers. `install_packages` is not offered: the host
/// cannot carry it out yet.
fn all_tools(cfg: &AgentConfig) -> Vec<Box<dyn Tool>> {
    let mut tools = tools::builtin();
    tools.extend(tools::messaging::tools());
    tools.extend(tools::tasks::scheduling());
    tools.extend(tools::tasks::requests());
    if let Some(json) = &cfg.mcp_servers {
        match mcp::parse_config(json) {
            Ok(configs) => {
                let (mcp_tools, errors) = mcp::start_all(&configs);
                for e in errors {
                    log::warn!("MCP: {e}");
                }
                tools.extend(mcp_tools);
            }
            Err(e) => log::warn!("PINCER_MCP_SERVERS is invalid: {e}"),
        }
    }
    tools
}

/// One poll: returns true if a batch was processed.
pub fn poll_once(r: &mut Runner, first_poll: bool) -> anyhow::Result<bool> {
    // Wakes from now on may mean rows this read does not see yet.
    r.woken.store(false, std::sync::atomic::Ordering::SeqCst);
    let max = r.cfg.max_messages;
    let read = r.view.read(|v| {
        let batch = inbound::pending(v, now_ms(), first_poll, max)?;
        if !batch.iter().any(|row| row.trigger) {
            // Context-only rows stay pending and ride along with the next triggering one.
            return Ok(None);
        }
        Ok(Some((batch, inbound::destinations(v)?, inbound::max_seq(v)?)))
    });
    let (batch, dests, max_in) = match read {
        Ok(Some(found)) => found,
        Ok(None) => return Ok(false),
        Err(e) if db::needs_rollback(&e) => {
            // A crashed writer left a hot journal. In outbound.db (ours) reading through the
            // read-write connection rolls it back; in inbound.db the host does on its next write.
            log::warn!("{e:#}; recovering and looking again at the next poll");
            let _ = r.out.query_row("SELECT COUNT(*) FROM sqlite_master", [], |row| row.get::<_, i64>(0));
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    let ids: Vec<&str> = batch.iter().map(|row| row.id.as_str()).collect();
    r.claims.hold(&ids);
    let batch = pre_task_scripts(r, batch)?;
    if !batch.iter().any(|row| row.trigger) {
        // Every task's script said there is nothing to do; context rows wait for the next turn.
        r.claims.settle()?;
        let waiting: Vec<&str> = batch.iter().map(|row| row.id.as_str()).collect();
        db::write_tx(&mut r.out, |tx| Ok(outbound::delete_claims(tx, &waiting)?))?;
        return Ok(true);
    }
    if let Err(e) = turn::run(r, batch, dests, max_in) {
        // The rows stay claimed (when the file takes it): the host retries them with backoff.
        if let Err(w) = r.claims.write_now(&mut r.out) {
            log::warn!("{w:#}");
        }
        return Err(e);
    }
    Ok(true)
}

/// How long a pre-task script may run.
pub const SCRIPT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Runs the scripts of the batch's task runs (their claims written first). A script decides whether its
/// task wakes the agent: its last output line is JSON `{"wakeAgent": bool, "data": …}`. A run
/// whose script says `false` is completed without a turn; otherwise the agent gets the task with
/// the script's `data` (or, when the script failed, what went wrong, so it can say so).
fn pre_task_scripts(
    r: &mut Runner,
    batch: Vec<inbound::InboundRow>,
) -> anyhow::Result<Vec<inbound::InboundRow>> {
    let mut keep = Vec::with_capacity(batch.len());
    let mut quiet = Vec::new();
    let bash = tools::bash::Bash::new();
    for mut row in batch {
        let mut content: serde_json::Value = match serde_json::from_str(&row.content) {
            Ok(v) if row.kind == "task" => v,
            _ => {
                keep.push(row);
                continue;
            }
        };
        let Some(script) = content.get("script").and_then(|s| s.as_str()).filter(|s| !s.trim().is_empty())
        else {
            keep.push(row);
            continue;
        };
        // A script acts: the rows are claimed on disk first.
        r.claims.write_now(&mut r.out)?;
        let run = bash.run_script(script, &r.cfg.agent_dir(), SCRIPT_TIMEOUT, &r.cancel);
        let verdict = script_verdict(&run);
        log::info!(
            "task {}: pre-task script {}",
            row.id,
            match &verdict {
                Ok(None) => "says there is nothing to do".to_string(),
                Ok(Some(_)) => "wakes the agent".to_string(),
                Err(e) => format!("failed ({e})"),
            }
        );
        match verdict {
            Ok(None) => {
                quiet.push(row.id);
                continue;
            }
            Ok(Some(data)) => content["scriptOutput"] = data,
            Err(e) => content["scriptOutput"] = serde_json::json!({ "error": e }),
        }
        row.content = content.to_string();
        keep.push(row);
    }
    if !quiet.is_empty() {
        let ids: Vec<&str> = quiet.iter().map(String::as_str).collect();
        db::write_tx(&mut r.out, |tx| Ok(outbound::set_ack(tx, &ids, "completed", now_ms())?))?;
    }
    Ok(keep)
}

/// What a script's run means: `Ok(None)` no wake, `Ok(Some(data))` wake with data, `Err` it
/// failed (the agent is woken with the reason).
fn script_verdict(run: &tools::bash::ScriptRun) -> Result<Option<serde_json::Value>, String> {
    if !run.ok {
        return Err(format!("the script failed: {}", run.detail));
    }
    let last = run.stdout.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(last.trim()).map_err(|_| {
        format!(
            "the script's last output line is not JSON like {{\"wakeAgent\": true, \"data\": …}}: {last:?}"
        )
    })?;
    match v.get("wakeAgent").and_then(|w| w.as_bool()) {
        Some(false) => Ok(None),
        Some(true) => Ok(Some(v.get("data").cloned().unwrap_or(serde_json::Value::Null))),
        None => Err(format!("the script's last output line has no boolean wakeAgent: {last:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::tools::bash::ScriptRun;

    #[test]
    fn a_script_decides_whether_the_agent_wakes() {
        let run =
            |ok: bool, stdout: &str| ScriptRun { ok, detail: "exit code: 3".into(), stdout: stdout.into() };
        assert_eq!(script_verdict(&run(true, "checking\n{\"wakeAgent\": false}\n")), Ok(None));
        assert_eq!(
            script_verdict(&run(true, "{\"wakeAgent\": true, \"data\": {\"new\": 3}}")),
            Ok(Some(serde_json::json!({"new": 3})))
        );
        assert!(script_verdict(&run(false, "")).unwrap_err().contains("exit code: 3"));
        assert!(script_verdict(&run(true, "done")).unwrap_err().contains("not JSON"));
        assert!(script_verdict(&run(true, "{\"wake\": 1}")).unwrap_err().contains("wakeAgent"));
    }
}
