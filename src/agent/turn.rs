//! One turn: a batch of inbound rows in, the agent's replies out.
//!
//! The batch becomes a user message; the model is called (text streamed to the browser through
//! the link, filtered like the final parse), tool calls are run and their results sent back,
//! messages that arrive meanwhile are folded in, and the loop ends when the model ends its turn.
//! Then everything the model wrote is parsed into deliveries and written to `outbound.db`
//! together with the acknowledgements, in one transaction. A stop aborts the model call and the
//! running tool at once and says so in the room; a model error becomes a visible notice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rusqlite::Connection;
use serde_json::{Value, json};

use super::claims::{CLAIM_AFTER, Claims};
use super::config::{AgentConfig, beat, touch};
use super::history;
use super::link::LinkWriter;
use super::model::{Block, Cancel, Message, ModelError, Request, Role, Stop, StreamEvent, ToolSpec};
use super::outbox::{self, Row, TurnActions};
use super::output::{self, StreamFilter};
use super::prompt::{self, Formatter};
use super::provider::{self, Provider};
use super::tools::{Roots, Tool, ToolCtx, ToolOutput, cap_middle};
use super::view::View;
use crate::db::central::ResolvedDestination;
use crate::db::inbound::{self, Address, InboundRow};
use crate::db::{self, Kind, outbound};
use crate::ids::{new_id, now_ms};
use crate::link::{TOOL_DETAIL_BYTES_MAX, ToHost, ToolState};

/// Model calls in one turn (tool rounds included).
pub const CALLS_MAX: usize = 40;
/// Times a reply cut off by the output limit is continued.
pub const CONTINUATIONS_MAX: usize = 3;
/// A tool result longer than this is cut (head and tail kept).
pub const TOOL_RESULT_BYTES_MAX: usize = 100_000;

/// What stays between turns.
pub struct Runner {
    pub cfg: AgentConfig,
    pub out: Connection,
    pub provider: Box<dyn Provider>,
    pub tools: Vec<Box<dyn Tool>>,
    pub specs: Vec<ToolSpec>,
    pub link: LinkWriter,
    pub cancel: Cancel,
    /// Set by the link on every wake; new rows only exist if it was set (a missed wake is caught by
    /// the next poll instead).
    pub woken: Arc<AtomicBool>,
    /// Loaded from `outbound.db` on first use.
    pub history: Option<history::Conversation>,
    pub roots: Roots,
    /// The batch's claims, written when something acts on the rows or the turn runs long.
    pub claims: Claims,
    /// The read-only view of both session DBs.
    pub view: View,
}

impl Runner {
    pub fn new(
        cfg: AgentConfig,
        out: Connection,
        provider: Box<dyn Provider>,
        tools: Vec<Box<dyn Tool>>,
        link: LinkWriter,
        cancel: Cancel,
    ) -> anyhow::Result<Runner> {
        let specs = tools.iter().map(|t| t.spec()).collect();
        let roots = Roots::new(cfg.workspace.clone());
        let claims = Claims::start(db::open(&cfg.outbound_db(), Kind::Outbound)?, CLAIM_AFTER)?;
        let view = View::new(&cfg);
        Ok(Runner {
            cfg,
            out,
            provider,
            tools,
            specs,
            link,
            cancel,
            woken: Arc::default(),
            history: None,
            roots,
            claims,
            view,
        })
    }
}

/// How the model part of a turn ended.
enum End {
    Done,
    Stopped,
    Failed(ModelError),
}

/// Runs one turn for `batch` (rows whose claims the caller holds in `r.claims`, and who read the
/// destinations and the largest inbound seq in the same view).
pub fn run(
    r: &mut Runner,
    batch: Vec<InboundRow>,
    dests: Vec<ResolvedDestination>,
    max_in: Option<i64>,
) -> anyhow::Result<()> {
    r.cancel.reset();
    let mut max_in = max_in;
    // The conversation being answered: the first message that woke the agent and has an
    // address (context rows and notes from the host ride along but do not decide it).
    let first = batch
        .iter()
        .find(|row| row.trigger && row.channel_type.is_some())
        .or_else(|| batch.iter().find(|row| row.channel_type.is_some()))
        .unwrap_or(&batch[0]);
    let origin = Address {
        channel_type: first.channel_type.clone(),
        platform_id: first.platform_id.clone(),
        thread_id: first.thread_id.clone(),
    };
    let in_reply_to = first.id.clone();
    let mut claimed: Vec<String> = batch.iter().map(|b| b.id.clone()).collect();

    let (clears, rest): (Vec<InboundRow>, Vec<InboundRow>) = batch.into_iter().partition(is_clear);
    if !clears.is_empty() {
        history::clear(&r.out, r.provider.name())?;
        r.history = Some(history::Conversation::default());
        log::info!("conversation cleared");
    }
    if rest.is_empty() {
        let row = Row {
            id: new_id("msg"),
            kind: "chat",
            to: origin.clone(),
            in_reply_to: Some(in_reply_to),
            content: json!({ "text": "Session cleared." }),
        };
        return finish(r, &[row], &claimed, "completed", false, max_in);
    }

    let provider_name = r.provider.name();
    let history = r.history.get_or_insert_with(|| {
        let mut h = history::load(&r.out, provider_name);
        history::repair(&mut h);
        h
    });
    let formatter = Formatter {
        tz_name: &r.cfg.tz,
        tz: prompt::zone(&r.cfg.tz),
        destinations: &dests,
        agent_id: &r.cfg.agent_id,
    };
    history.push(user_message(formatter.batch(&rest), &r.cfg.workspace, &rest));

    let origin_names: Vec<String> = dests
        .iter()
        .filter(|d| {
            outbox::address_of(d).channel_type == origin.channel_type
                && outbox::address_of(d).platform_id == origin.platform_id
        })
        .map(|d| d.name.clone())
        .collect();
    let is_origin = {
        let names = origin_names.clone();
        move |name: &str| names.iter().any(|n| n.eq_ignore_ascii_case(name))
    };
    let stream = new_id("stream");
    let streaming = origin.channel_type.is_some()
        && origin.platform_id.is_some()
        && origin.channel_type.as_deref() != Some("agent");
    if streaming {
        r.link.send(&ToHost::StreamStart {
            stream: stream.clone(),
            channel_type: origin.channel_type.clone().unwrap_or_default(),
            platform_id: origin.platform_id.clone().unwrap_or_default(),
        });
    }
    let tool_names: Vec<String> = r.specs.iter().map(|s| s.name.clone()).collect();
    let system = prompt::system_prompt(&r.cfg.agent_name, &r.cfg.instructions(), &dests, &tool_names);
    let mut filter = StreamFilter::new(is_origin.clone());
    let mut turn_text = String::new();
    let mut continuations = 0;
    let mut end = End::Done;
    let model = r.cfg.model.clone().unwrap_or_default();

    for call in 1..=CALLS_MAX {
        // Messages that arrive meanwhile join the turn only while a model call is left to answer
        // them; after the last one they stay pending for the next turn (claimed here, they would
        // be completed unanswered).
        let may_fold = call < CALLS_MAX;
        history::trim(history, r.cfg.context_tokens);
        let req = Request {
            model: &model,
            system: &system,
            messages: history.messages(),
            tools: &r.specs,
            max_tokens: r.cfg.max_tokens,
        };
        let mut partial = String::new();
        let mut first_delta = true;
        let link = &r.link;
        let heartbeat = r.cfg.heartbeat();
        let sep_needed = !turn_text.is_empty();
        let mut on_event = |ev: StreamEvent| {
            let StreamEvent::TextDelta(t) = ev else { return };
            partial.push_str(&t);
            beat(&heartbeat);
            let mut shown = filter.push(&t);
            if first_delta && sep_needed && !shown.is_empty() {
                shown.insert_str(0, "\n\n");
            }
            if !shown.is_empty() {
                first_delta = false;
                if streaming {
                    link.send(&ToHost::Delta { stream: stream.clone(), text: shown });
                }
            }
        };
        let cancel = r.cancel.clone();
        let mut pause = |attempt: u32, err: &ModelError, wait: Duration| {
            if streaming {
                link.send(&ToHost::Tool {
                    stream: stream.clone(),
                    name: "retry".into(),
                    state: ToolState::Start,
                    summary: format!("model unavailable ({err}); retry {attempt} in {}s", wait.as_secs()),
                    input: None,
                    output: None,
                });
            }
            provider::pause_or_cancel(&cancel, wait)
        };
        let res =
            provider::call_with_retries(r.provider.as_mut(), &req, &mut on_event, &mut pause, &r.cancel);
        beat(&r.cfg.heartbeat());
        let resp = match res {
            Ok(resp) => resp,
            Err(ModelError::Cancelled) => {
                if !partial.trim().is_empty() {
                    append_text(&mut turn_text, &partial);
                    history.push(Message::assistant_text(format!("{partial}\n[stopped by the user]")));
                }
                end = End::Stopped;
                break;
            }
            Err(e) => {
                // Text already shown stays in the reply; the error follows as a notice.
                append_text(&mut turn_text, &partial);
                end = End::Failed(e);
                break;
            }
        };
        append_text(&mut turn_text, &resp.message.text());
        let wants_tools = resp.message.tool_uses().next().is_some();
        history.push(resp.message.clone());
        if wants_tools {
            // Tools act: the rows are claimed on disk first.
            r.claims.write_now(&mut r.out)?;
            let mut actions = TurnActions {
                cfg: &r.cfg,
                out: &r.out,
                link: &r.link,
                destinations: &dests,
                origin: &origin,
                in_reply_to: &in_reply_to,
            };
            let results = ToolRound {
                tools: &r.tools,
                roots: &r.roots,
                cancel: &r.cancel,
                actions: &mut actions,
                stream: streaming.then_some(stream.as_str()),
            }
            .run(&resp.message);
            let mut content = results;
            let follow = follow_ups(
                &r.cfg,
                &mut r.out,
                &r.claims,
                &mut r.view,
                &r.woken,
                may_fold,
                &mut claimed,
                &mut max_in,
            )?;
            if !follow.is_empty() {
                content.extend(user_message(formatter.batch(&follow), &r.cfg.workspace, &follow).content);
            }
            history.push(Message { role: Role::User, content });
            if r.cancel.is_cancelled() {
                end = End::Stopped;
                break;
            }
            continue;
        }
        if resp.stop == Stop::MaxTokens && continuations < CONTINUATIONS_MAX {
            continuations += 1;
            history.push(Message::user_text(
                "[Your reply was cut off by the output limit. Continue exactly where you stopped.]",
            ));
            continue;
        }
        let follow = follow_ups(
            &r.cfg,
            &mut r.out,
            &r.claims,
            &mut r.view,
            &r.woken,
            may_fold,
            &mut claimed,
            &mut max_in,
        )?;
        if follow.is_empty() {
            break;
        }
        history.push(user_message(formatter.batch(&follow), &r.cfg.workspace, &follow));
    }
    let tail = filter.finish();
    if streaming && !tail.is_empty() {
        r.link.send(&ToHost::Delta { stream: stream.clone(), text: tail });
    }

    let rows =
        deliveries(&turn_text, &end, &is_origin, &dests, &origin, &in_reply_to, &stream, r.provider.name());
    let status = if matches!(end, End::Failed(_)) { "failed" } else { "completed" };
    history::fit_storage(history);
    let res = finish(r, &rows, &claimed, status, true, max_in);
    if streaming {
        r.link.send(&ToHost::StreamEnd { stream });
    }
    res
}

/// A batch as the model's user message: its text, then the pictures it carries.
fn user_message(mut text: String, workspace: &std::path::Path, rows: &[InboundRow]) -> Message {
    let (images, notes) = super::images::blocks(workspace, rows);
    for n in notes {
        text.push('\n');
        text.push_str(&n);
    }
    let mut content = vec![Block::Text { text }];
    content.extend(images);
    Message { role: Role::User, content }
}

fn is_clear(row: &InboundRow) -> bool {
    row.kind == "chat"
        && serde_json::from_str::<Value>(&row.content)
            .ok()
            .and_then(|c| c.get("text").and_then(Value::as_str).map(|t| t.trim_start().starts_with("/clear")))
            .unwrap_or(false)
}

fn append_text(acc: &mut String, text: &str) {
    if text.trim().is_empty() {
        return;
    }
    if !acc.is_empty() {
        acc.push_str("\n\n");
    }
    acc.push_str(text);
}

/// Writes the replies and the acknowledgements (and the conversation) in one transaction, then
/// tells the host.
fn finish(
    r: &mut Runner,
    rows: &[Row],
    claimed: &[String],
    status: &str,
    save_history: bool,
    max_in: Option<i64>,
) -> anyhow::Result<()> {
    let provider = r.provider.name();
    let ids: Vec<&str> = claimed.iter().map(String::as_str).collect();
    // A claim not yet written is replaced by this status; one being written lands first.
    r.claims.settle()?;
    db::write_tx(&mut r.out, |tx| {
        outbox::write_rows(tx, rows, max_in)?;
        outbound::set_ack(tx, &ids, status, now_ms())?;
        if let Some(h) = r.history.as_ref().filter(|_| save_history) {
            h.save(tx, provider)?;
        }
        Ok(())
    })?;
    if let Some(h) = r.history.as_mut().filter(|_| save_history) {
        h.mark_saved();
    }
    // The host first: the reply is on disk.
    r.link.send(&ToHost::Out);
    beat(&r.cfg.heartbeat());
    Ok(())
}

/// What to deliver: the parsed output, a stop note, or the error.
#[allow(clippy::too_many_arguments)]
fn deliveries(
    text: &str,
    end: &End,
    is_origin: &dyn Fn(&str) -> bool,
    dests: &[ResolvedDestination],
    origin: &Address,
    in_reply_to: &str,
    stream: &str,
    provider: &str,
) -> Vec<Row> {
    let row = |to: Address, content: Value| Row {
        id: new_id("msg"),
        kind: "chat",
        to,
        in_reply_to: Some(in_reply_to.to_string()),
        content,
    };
    let mut reply = String::new();
    let mut rows = Vec::new();
    for part in output::parse(text, is_origin) {
        match part.to.as_deref().map(|name| (name, outbox::find_destination(dests, name))) {
            None => append_text(&mut reply, &part.text),
            Some((_, Some(d))) => rows.push(row(outbox::address_of(d), json!({ "text": part.text }))),
            Some((name, None)) => {
                log::warn!("the model wrote to an unknown destination {name:?}; delivering it here");
                append_text(&mut reply, &format!("*(for {name})*\n\n{}", part.text));
            }
        }
    }
    match end {
        End::Stopped => append_text(&mut reply, "_(stopped)_"),
        End::Failed(e) => {
            let notice = format!("model error: {e}{}", hint(e, provider));
            rows.push(row(origin.clone(), json!({ "text": notice, "error": true })));
        }
        End::Done => {}
    }
    if !reply.is_empty() {
        rows.insert(0, row(origin.clone(), json!({ "text": reply, "stream_id": stream })));
    }
    rows
}

/// What to check, for the errors people can fix.
fn hint(e: &ModelError, provider: &str) -> String {
    let key = if provider == "anthropic" { "ANTHROPIC_API_KEY" } else { "OPENAI_API_KEY" };
    let model = if provider == "anthropic" { "ANTHROPIC_MODEL" } else { "OPENAI_MODEL" };
    match e {
        ModelError::Status { status: 401 | 403, .. } => format!(" (check {key})"),
        ModelError::Status { status: 404, .. } => format!(" (check {model} and the base URL)"),
        ModelError::Timeout(_) => {
            " (check the model server; PINCER_MODEL_TIMEOUT_S sets how long pincer waits)".into()
        }
        _ => String::new(),
    }
}

/// Claims inbound rows that arrived while the turn ran (and refreshes `max_in` from the same view).
/// None when `may_fold` is false: no model call is left to answer them, so they wait for the next
/// turn (and the wake stays set for the poll after this turn).
#[allow(clippy::too_many_arguments)]
fn follow_ups(
    cfg: &AgentConfig,
    out: &mut Connection,
    claims: &Claims,
    view: &mut View,
    woken: &AtomicBool,
    may_fold: bool,
    claimed: &mut Vec<String>,
    max_in: &mut Option<i64>,
) -> anyhow::Result<Vec<InboundRow>> {
    if !may_fold || !woken.swap(false, Ordering::SeqCst) {
        return Ok(Vec::new());
    }
    // The pending rows read next leave out claimed ones: the turn's own must be on disk.
    claims.write_now(out)?;
    let (rows, max) =
        view.read(|v| Ok((inbound::pending(v, now_ms(), false, cfg.max_messages)?, inbound::max_seq(v)?)))?;
    *max_in = max;
    if rows.is_empty() {
        return Ok(rows);
    }
    let ids: Vec<&str> = rows.iter().map(|r| r.id.as_str()).collect();
    outbound::set_ack(out, &ids, "processing", now_ms())?;
    claimed.extend(rows.iter().map(|r| r.id.clone()));
    log::debug!("folded {} new message(s) into the running turn", rows.len());
    Ok(rows)
}

/// One round of tool calls: everything a tool needs besides its arguments. The session's
/// files, link and configuration come with the actions.
struct ToolRound<'a, 'b> {
    tools: &'a [Box<dyn Tool>],
    roots: &'a Roots,
    cancel: &'a Cancel,
    actions: &'a mut TurnActions<'b>,
    /// The stream tool events are reported on, if the turn is streamed.
    stream: Option<&'a str>,
}

impl ToolRound<'_, '_> {
    /// Runs the tool calls of an assistant message in order; returns their results.
    fn run(&mut self, msg: &Message) -> Vec<Block> {
        let mut results = Vec::new();
        for (id, name, input) in msg.tool_uses() {
            let output = if self.cancel.is_cancelled() {
                ToolOutput::error("not run: stopped by the user")
            } else {
                match self.tools.iter().find(|t| t.spec().name == name) {
                    None => ToolOutput::error(format!("there is no tool named {name:?}")),
                    Some(_) if input.get("_invalid_json").is_some() => ToolOutput::error(
                        "the arguments were not valid JSON; call the tool again with a JSON object",
                    ),
                    Some(tool) => self.run_one(tool.as_ref(), name, input),
                }
            };
            results.push(Block::ToolResult {
                tool_use_id: id.to_string(),
                content: cap_middle(&output.content, TOOL_RESULT_BYTES_MAX),
                is_error: output.is_error,
            });
        }
        results
    }

    fn run_one(&mut self, tool: &dyn Tool, name: &str, input: &Value) -> ToolOutput {
        let (cfg, out, link) = (self.actions.cfg, self.actions.out, self.actions.link);
        let summary: String = tool.summary(input).chars().take(120).collect();
        let shown_input = super::tools::cap_middle(&input.to_string(), TOOL_DETAIL_BYTES_MAX);
        let report = |state: ToolState, summary: String, output: Option<String>| {
            if let Some(s) = self.stream {
                link.send(&ToHost::Tool {
                    stream: s.into(),
                    name: name.into(),
                    state,
                    summary,
                    input: Some(shown_input.clone()),
                    output,
                });
            }
        };
        report(ToolState::Start, summary.clone(), None);
        // The host's stuck detection waits at least as long as the tool says it may take.
        if let Err(e) =
            outbound::set_current_tool(out, Some((name, tool.declared_timeout_ms(input))), now_ms())
        {
            log::warn!("recording the running tool: {e}");
        }
        touch(&cfg.heartbeat());
        let started = Instant::now();
        let output = tool.run(
            input,
            &mut ToolCtx { roots: self.roots, cancel: self.cancel, actions: self.actions, tz: &cfg.tz },
        );
        let _ = outbound::set_current_tool(out, None, now_ms());
        touch(&cfg.heartbeat());
        log::info!(
            "tool {name} ({summary}) {} in {:?}",
            if output.is_error { "failed" } else { "ok" },
            started.elapsed()
        );
        report(
            ToolState::End,
            if output.is_error { format!("{summary} — failed") } else { summary },
            Some(super::tools::cap_middle(&output.content, TOOL_DETAIL_BYTES_MAX)),
        );
        output
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::link::LinkWriter;
    use crate::agent::model::{Response, Usage};
    use crate::db::central::ResolvedDestination;
    use crate::db::inbound::NewInbound;
    use crate::db::{self, Kind};
    use std::sync::{Arc, Mutex};

    type Step = Box<dyn FnMut(&Request<'_>) -> Result<Response, ModelError> + Send>;

    /// A provider that plays steps and records every request's messages.
    struct Scripted {
        steps: Vec<Step>,
        seen: Arc<Mutex<Vec<Vec<Message>>>>,
    }

    impl Provider for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        fn call(
            &mut self,
            req: &Request<'_>,
            on_event: &mut dyn FnMut(StreamEvent),
            _: &Cancel,
        ) -> Result<Response, ModelError> {
            self.seen.lock().unwrap().push(req.messages.to_vec());
            assert!(!self.steps.is_empty(), "unexpected model call");
            let res = (self.steps.remove(0))(req);
            if let Ok(r) = &res {
                on_event(StreamEvent::TextDelta(r.message.text()));
            }
            res
        }
    }

    fn text(t: &str, stop: Stop) -> Result<Response, ModelError> {
        Ok(Response { message: Message::assistant_text(t), stop, usage: Some(Usage::default()) })
    }

    /// The model asks for these tool calls (`(id, tool, input)`).
    fn tool_calls(calls: &[(&str, &str, Value)]) -> Result<Response, ModelError> {
        let content = calls
            .iter()
            .map(|(id, name, input)| Block::ToolUse {
                id: id.to_string(),
                name: name.to_string(),
                input: input.clone(),
            })
            .collect();
        Ok(Response { message: Message { role: Role::Assistant, content }, stop: Stop::ToolUse, usage: None })
    }

    struct Fixture {
        _dir: tempfile::TempDir,
        runner: Runner,
        seen: Arc<Mutex<Vec<Vec<Message>>>>,
    }

    /// A chat message from Ann in the home room, as the host stores it.
    fn insert_chat(path: &std::path::Path, id: &str, text: &str) {
        let inb = db::open(path, Kind::Inbound).unwrap();
        let content = serde_json::json!({ "text": text, "sender": "Ann" }).to_string();
        inbound::insert(
            &inb,
            &NewInbound {
                platform_id: Some("home"),
                content: &content,
                ..NewInbound::chat_for_tests(id, true, None)
            },
        )
        .unwrap();
    }

    fn fixture(steps: Vec<Step>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().to_path_buf();
        std::fs::create_dir_all(ws.join("agent")).unwrap();
        let inb = db::open(&ws.join("inbound.db"), Kind::Inbound).unwrap();
        inbound::write_destinations(
            &inb,
            &[
                ResolvedDestination {
                    name: "home".into(),
                    display_name: "Home".into(),
                    target_type: "channel".into(),
                    channel_type: Some("webchat".into()),
                    platform_id: Some("home".into()),
                    agent_id: None,
                },
                ResolvedDestination {
                    name: "news".into(),
                    display_name: "News room".into(),
                    target_type: "channel".into(),
                    channel_type: Some("webchat".into()),
                    platform_id: Some("news".into()),
                    agent_id: None,
                },
            ],
        )
        .unwrap();
        let out = db::open(&ws.join("outbound.db"), Kind::Outbound).unwrap();
        let cfg = AgentConfig {
            workspace: ws,
            session_id: "s1".into(),
            agent_id: "ag-1".into(),
            agent_name: "Ada".into(),
            provider: "scripted".into(),
            model: None,
            max_messages: 10,
            idle_exit: Duration::from_secs(60),
            safety_poll: Duration::from_secs(5),
            model_timeout: Duration::from_secs(600),
            tz: "UTC".into(),
            log_level: log::LevelFilter::Off,
            context_tokens: 100_000,
            max_tokens: 1000,
            mcp_servers: None,
            keep_view: true,
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let provider = Box::new(Scripted { steps, seen: seen.clone() });
        let mut tools = crate::agent::tools::builtin();
        tools.extend(crate::agent::tools::messaging::tools());
        let mut runner =
            Runner::new(cfg, out, provider, tools, LinkWriter::detached(), Cancel::default()).unwrap();
        // Claims are written only when something acts on the rows (the timer never fires here).
        let own = db::open(&runner.cfg.outbound_db(), Kind::Outbound).unwrap();
        runner.claims = Claims::start(own, Duration::from_secs(3600)).unwrap();
        Fixture { _dir: dir, runner, seen }
    }

    /// Host side: store a message, then run the runner's poll once.
    fn send(f: &mut Fixture, id: &str, text: &str) {
        insert_chat(&f.runner.cfg.inbound_db(), id, text);
        assert!(crate::agent::poll::poll_once(&mut f.runner, false).unwrap(), "a batch was processed");
    }

    /// `(platform_id, content)` of every outbound row.
    fn outbound_rows(f: &Fixture) -> Vec<(String, Value)> {
        outbound::rows_after(&f.runner.out, 0, 100)
            .unwrap()
            .into_iter()
            .map(|r| (r.platform_id.unwrap_or_default(), serde_json::from_str(&r.content).unwrap()))
            .collect()
    }

    fn acks(f: &Fixture) -> Vec<(String, String)> {
        let mut v: Vec<(String, String)> = outbound::finished_acks(&f.runner.out).unwrap();
        v.sort();
        v
    }

    #[test]
    fn plain_text_and_message_blocks_are_routed() {
        let mut f = fixture(vec![Box::new(|_| {
            text(
                "<internal>plan</internal>Hi Ann. <message to=\"news\">Breaking!</message> Bye.",
                Stop::EndTurn,
            )
        })]);
        send(&mut f, "m1", "hello");
        let rows = outbound_rows(&f);
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert_eq!(rows[0].0, "home");
        assert_eq!(rows[0].1["text"], "Hi Ann.\n\nBye.");
        assert!(rows[0].1["stream_id"].is_string());
        assert_eq!(rows[1], ("news".to_string(), serde_json::json!({ "text": "Breaking!" })));
        assert_eq!(acks(&f), vec![("m1".to_string(), "completed".to_string())]);
        let prompt = f.seen.lock().unwrap()[0].last().unwrap().text();
        assert!(prompt.contains("<message id=\"2\" from=\"home\" sender=\"Ann\""), "{prompt}");
    }

    #[test]
    fn a_message_arriving_during_the_turn_joins_it() {
        let inbound_path: Arc<Mutex<Option<std::path::PathBuf>>> = Arc::default();
        let p = inbound_path.clone();
        let woken = Arc::new(AtomicBool::new(false));
        let flag = woken.clone();
        let mut f = fixture(vec![
            Box::new(move |_| {
                let woken = &flag;
                // The host stores a second message while the model is answering the first, and
                // wakes the runner.
                insert_chat(&p.lock().unwrap().clone().unwrap(), "m2", "and another thing");
                woken.store(true, Ordering::SeqCst);
                text("First answer.", Stop::EndTurn)
            }),
            Box::new(|req| {
                assert!(req.messages.last().unwrap().text().contains("and another thing"));
                text("Second answer.", Stop::EndTurn)
            }),
        ]);
        *inbound_path.lock().unwrap() = Some(f.runner.cfg.inbound_db());
        f.runner.woken = woken;
        send(&mut f, "m1", "first");
        let rows = outbound_rows(&f);
        assert_eq!(rows.len(), 1, "one reply for the whole turn: {rows:?}");
        assert_eq!(rows[0].1["text"], "First answer.\n\nSecond answer.");
        assert_eq!(acks(&f), vec![("m1".into(), "completed".into()), ("m2".into(), "completed".into())]);
    }

    #[test]
    fn messages_arriving_at_the_last_model_call_wait_for_the_next_turn() {
        let inbound_path: Arc<Mutex<Option<std::path::PathBuf>>> = Arc::default();
        let woken = Arc::new(AtomicBool::new(false));
        // Every call of the turn sees a new message arrive, so the turn reaches its call limit.
        let steps: Vec<Step> = (0..CALLS_MAX + 1)
            .map(|i| {
                let (p, flag) = (inbound_path.clone(), woken.clone());
                Box::new(move |_: &Request<'_>| {
                    if i < CALLS_MAX {
                        insert_chat(
                            &p.lock().unwrap().clone().unwrap(),
                            &format!("n{i}"),
                            &format!("more {i}"),
                        );
                        flag.store(true, Ordering::SeqCst);
                    }
                    text(&format!("answer {i}"), Stop::EndTurn)
                }) as Step
            })
            .collect();
        let mut f = fixture(steps);
        *inbound_path.lock().unwrap() = Some(f.runner.cfg.inbound_db());
        f.runner.woken = woken;
        send(&mut f, "m1", "first");
        assert_eq!(f.seen.lock().unwrap().len(), CALLS_MAX, "the turn stops at its call limit");
        // Completed: the first message and one arrival per call but the last; each was in a prompt.
        let completed: Vec<String> = acks(&f).into_iter().map(|(id, _)| id).collect();
        assert_eq!(completed.len(), CALLS_MAX, "{completed:?}");
        assert!(!completed.contains(&format!("n{}", CALLS_MAX - 1)), "{completed:?}");
        // The message that arrived during the last call is answered by the next turn.
        assert!(crate::agent::poll::poll_once(&mut f.runner, false).unwrap());
        let prompt = f.seen.lock().unwrap().last().unwrap().last().unwrap().text();
        assert!(prompt.contains(&format!("more {}", CALLS_MAX - 1)), "{prompt}");
    }

    #[test]
    fn a_reply_cut_by_the_output_limit_is_continued() {
        let mut f = fixture(vec![
            Box::new(|_| text("Part one", Stop::MaxTokens)),
            Box::new(|req| {
                assert!(req.messages.last().unwrap().text().contains("Continue exactly where you stopped"));
                text("and part two.", Stop::EndTurn)
            }),
        ]);
        send(&mut f, "m1", "write a lot");
        assert_eq!(outbound_rows(&f)[0].1["text"], "Part one\n\nand part two.");
    }

    #[test]
    fn a_model_error_is_a_visible_notice_and_fails_the_message() {
        let mut f = fixture(vec![Box::new(|_| {
            Err(ModelError::Status { status: 401, message: "invalid x-api-key".into(), retry_after_s: None })
        })]);
        send(&mut f, "m1", "hello");
        let rows = outbound_rows(&f);
        assert_eq!(rows[0].1["text"], "model error: 401 — invalid x-api-key (check OPENAI_API_KEY)");
        assert_eq!(rows[0].1["error"], true);
        assert_eq!(acks(&f), vec![("m1".into(), "failed".into())]);
    }

    #[test]
    fn tools_run_and_their_results_go_back_to_the_model() {
        let mut f = fixture(vec![
            Box::new(|_| {
                Ok(Response {
                    message: Message {
                        role: Role::Assistant,
                        content: vec![
                            Block::Text { text: "Saving.".into() },
                            Block::ToolUse {
                                id: "t1".into(),
                                name: "write_file".into(),
                                input: serde_json::json!({"path": "a.txt", "content": "xyz"}),
                            },
                            Block::ToolUse {
                                id: "t2".into(),
                                name: "no_such_tool".into(),
                                input: serde_json::json!({}),
                            },
                            Block::ToolUse {
                                id: "t3".into(),
                                name: "send_message".into(),
                                input: serde_json::json!({"to": "news", "text": "FYI"}),
                            },
                        ],
                    },
                    stop: Stop::ToolUse,
                    usage: None,
                })
            }),
            Box::new(|req| {
                let results = &req.messages.last().unwrap().content;
                assert!(matches!(&results[0], Block::ToolResult { is_error: false, .. }), "{results:?}");
                assert!(
                    matches!(&results[1], Block::ToolResult { is_error: true, content, .. } if content.contains("no tool named"))
                );
                assert!(
                    matches!(&results[2], Block::ToolResult { content, .. } if content.starts_with("Sent (message id 3)")),
                    "{results:?}"
                );
                text("Saved.", Stop::EndTurn)
            }),
        ]);
        send(&mut f, "m1", "save xyz");
        assert_eq!(std::fs::read_to_string(f.runner.cfg.agent_dir().join("a.txt")).unwrap(), "xyz");
        let rows = outbound_rows(&f);
        assert_eq!(
            rows[0],
            ("news".to_string(), serde_json::json!({ "text": "FYI" })),
            "sent during the turn"
        );
        assert_eq!(rows[1].1["text"], "Saving.\n\nSaved.");
    }

    #[test]
    fn clear_forgets_the_conversation() {
        let mut f = fixture(vec![
            Box::new(|_| text("noted", Stop::EndTurn)),
            Box::new(|req| {
                assert_eq!(req.messages.len(), 1, "only the new message after /clear");
                text("fresh", Stop::EndTurn)
            }),
        ]);
        send(&mut f, "m1", "remember kiwi");
        send(&mut f, "m2", "/clear");
        assert_eq!(outbound_rows(&f).last().unwrap().1["text"], "Session cleared.");
        assert!(history::load(&f.runner.out, "scripted").messages().is_empty());
        send(&mut f, "m3", "what word?");
        assert_eq!(outbound_rows(&f).last().unwrap().1["text"], "fresh");
    }

    #[test]
    fn a_stop_during_a_tool_ends_the_turn_and_keeps_the_history_consistent() {
        let mut f = fixture(vec![Box::new(|_| {
            tool_calls(&[("t1", "bash", serde_json::json!({"command": "sleep 30"}))])
        })]);
        // Read the runner's link: stop when it reports the tool started (as a browser would).
        let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
        f.runner.link = LinkWriter::on(ours);
        let cancel = f.runner.cancel.clone();
        let watcher = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(theirs).lines() {
                let frame: crate::link::ToHost = serde_json::from_str(&line.unwrap()).unwrap();
                if let crate::link::ToHost::Tool { state: ToolState::Start, .. } = frame {
                    cancel.cancel();
                    return true;
                }
            }
            false
        });
        send(&mut f, "m1", "run it");
        f.runner.link = LinkWriter::detached();
        assert!(watcher.join().unwrap(), "the tool started");
        let rows = outbound_rows(&f);
        assert_eq!(rows[0].1["text"], "_(stopped)_");
        let h = f.runner.history.as_ref().unwrap().messages();
        assert!(matches!(&h.last().unwrap().content[0], Block::ToolResult { is_error: true, .. }), "{h:?}");
    }

    /// `outbound.db`'s change counter (header bytes 24..28): one more per commit.
    fn commits(f: &Fixture) -> u32 {
        let head = std::fs::read(f.runner.cfg.outbound_db()).unwrap();
        u32::from_be_bytes([head[24], head[25], head[26], head[27]])
    }

    /// The rows claimed (`processing`) on disk, read through a connection of its own.
    fn claims_on_disk(path: &std::path::Path) -> Vec<String> {
        let conn = db::open(path, Kind::Outbound).unwrap();
        outbound::processing_claims(&conn).unwrap().into_iter().map(|(id, _)| id).collect()
    }

    #[test]
    fn a_turn_answered_without_acting_is_one_commit_with_no_claim() {
        let mut f = fixture(vec![Box::new(|_| text("quick", Stop::EndTurn))]);
        let before = commits(&f);
        send(&mut f, "m1", "hello");
        assert_eq!(commits(&f), before + 1, "the reply and its status in one commit");
        assert_eq!(acks(&f), vec![("m1".to_string(), "completed".to_string())]);
    }

    #[test]
    fn rows_are_claimed_on_disk_before_a_tool_runs() {
        let path: Arc<Mutex<Option<std::path::PathBuf>>> = Arc::default();
        let p = path.clone();
        let at_tool_time: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = at_tool_time.clone();
        let mut f = fixture(vec![
            Box::new(|_| tool_calls(&[("t1", "bash", serde_json::json!({"command": "true"}))])),
            Box::new(move |_| {
                // The second call comes after the tool ran: what was on disk by then.
                *seen.lock().unwrap() = claims_on_disk(p.lock().unwrap().as_ref().unwrap());
                text("done", Stop::EndTurn)
            }),
        ]);
        *path.lock().unwrap() = Some(f.runner.cfg.outbound_db());
        assert!(claims_on_disk(&f.runner.cfg.outbound_db()).is_empty());
        send(&mut f, "m1", "run it");
        assert_eq!(*at_tool_time.lock().unwrap(), ["m1"]);
        assert_eq!(acks(&f), vec![("m1".to_string(), "completed".to_string())]);
    }
}
