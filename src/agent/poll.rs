//! The poll loop: wait for a wake (or the safety poll), read pending rows, claim them, reply,
//! acknowledge, tell the host.
//!
//! Claims make processing at-most-once per container: a row is `processing` in `outbound.db`
//! before the model sees it and `completed` (or `failed`) in the same transaction that writes the
//! reply, so a reply is never written twice and a crash leaves a claim the host can retry.

use std::time::Instant;

use anyhow::Context;

use super::config::{AgentConfig, touch};
use super::link::{Event, Link, LinkWriter};
use super::provider::{self, Provider};
use crate::db::inbound::{self, InboundRow};
use crate::db::outbound::{self, NewOutbound};
use crate::db::{self, Connection, Kind};
use crate::ids::{new_id, now_ms};
use crate::link::ToHost;

pub fn run(cfg: &AgentConfig) -> anyhow::Result<()> {
    let mut out = db::open(&cfg.outbound_db(), Kind::Outbound)?;
    let stale = outbound::delete_processing_claims(&out)?;
    if stale > 0 {
        log::info!("dropped {stale} claims left by a previous container");
    }
    let link = Link::connect(&cfg.link_socket())?;
    let mut provider = provider::create(&provider::ProviderConfig {
        name: cfg.provider.clone(),
        model: cfg.model.clone(),
        proxy: cfg.workspace.join("model.sock"),
    })?;
    log::info!(
        "agent {} ({}) ready, session {}, provider {}",
        cfg.agent_name,
        cfg.agent_id,
        cfg.session_id,
        provider.name()
    );

    let mut first_poll = true;
    let mut last_work = Instant::now();
    loop {
        touch(&cfg.heartbeat());
        let worked = poll_once(cfg, &mut out, provider.as_mut(), &link.writer, first_poll)?;
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
        match link.wait(cfg.safety_poll) {
            Some(Event::Closed) => {
                log::info!("host closed the link; exiting");
                return Ok(());
            }
            Some(Event::Wake | Event::Stop) | None => {
                // Coalesce a burst of wakes into one poll.
                if link.drain().contains(&Event::Closed) {
                    return Ok(());
                }
            }
        }
    }
}

/// One poll: returns true if a batch was processed.
pub fn poll_once(
    cfg: &AgentConfig,
    out: &mut Connection,
    provider: &mut dyn Provider,
    link: &LinkWriter,
    first_poll: bool,
) -> anyhow::Result<bool> {
    // A fresh read-only connection per poll: nothing cached survives the other side's writes.

    let view = db::open_agent_view(&cfg.inbound_db(), &cfg.outbound_db())?;
    let batch = inbound::pending(&view, now_ms(), first_poll, cfg.max_messages)?;
    if !batch.iter().any(|r| r.trigger) {
        // Context-only rows stay pending and ride along with the next triggering one.
        return Ok(false);
    }

    let ids: Vec<&str> = batch.iter().map(|r| r.id.as_str()).collect();
    db::write_tx(out, |tx| Ok(outbound::set_ack(tx, &ids, "processing", now_ms())?))?;

    let texts: Vec<String> = batch
        .iter()
        .filter(|r| r.trigger && r.kind == "chat")
        .map(|r| format!("<message id=\"{}\">{}</message>", r.seq, provider::mock::row_text_escaped(r)))
        .collect();
    let msgs = [crate::agent::model::Message::user_text(texts.join("\n"))];
    let req = crate::agent::model::Request { model: "", system: "", messages: &msgs, tools: &[], max_tokens: 1024 };
    let cancel = crate::agent::model::Cancel::default();
    let (status, reply) = match provider.call(&req, &mut |_| {}, &cancel) {
        Ok(resp) => ("completed", Some(resp.message.text())),
        Err(e) => {
            log::error!("provider {} failed: {e:#}", provider.name());
            ("failed", Some(format!("model error: {e:#}")))
        }
    };
    let max_in = inbound::max_seq(&view)?;
    db::write_tx(out, |tx| {
        if let Some(text) = &reply {
            write_reply(tx, &batch, text, max_in)?;
        }
        outbound::set_ack(tx, &ids, status, now_ms())?;
        Ok(())
    })
    .context("writing the reply")?;

    touch(&cfg.heartbeat());
    link.send(&ToHost::Out);
    Ok(true)
}

/// Writes a chat reply addressed to where the batch came from.
fn write_reply(
    tx: &Connection,
    batch: &[InboundRow],
    text: &str,
    max_in: Option<i64>,
) -> anyhow::Result<i64> {
    let first = &batch[0];
    let content = serde_json::json!({ "text": text }).to_string();
    let id = new_id("msg");
    let seq = outbound::insert(
        tx,
        &NewOutbound {
            id: &id,
            kind: "chat",
            in_reply_to: Some(&first.id),
            timestamp: now_ms(),
            deliver_after: None,
            channel_type: first.channel_type.as_deref(),
            platform_id: first.platform_id.as_deref(),
            thread_id: first.thread_id.as_deref(),
            content: &content,
        },
        max_in,
    )?;
    Ok(seq)
}
