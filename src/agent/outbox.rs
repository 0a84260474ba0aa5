//! Writing what the agent produces to `outbound.db`: replies, tool-sent messages and files,
//! edits, reactions, question cards and requests to the host.
//!
//! Rows get the next odd `seq` after both session DBs; files go to `/workspace/outbox/<row id>/`
//! where the host picks them up. [`TurnActions`] is the [`Actions`] the tools use during a turn.

use std::path::{Path, PathBuf};

use rusqlite::Connection;
use serde_json::{Value, json};

use super::config::AgentConfig;
use super::link::LinkWriter;
use super::tools::fs::{self, Access};
use super::tools::{Action, Actions, Roots, TaskInfo};
use crate::db::central::ResolvedDestination;
use crate::db::inbound::{self, Address};
use crate::db::outbound::{self, NewOutbound};
use crate::db::{self, Kind};
use crate::ids::{new_id, now_ms};
use crate::link::ToHost;

/// Largest file `send_file` copies.
pub const FILE_BYTES_MAX: u64 = 50 * 1024 * 1024;

/// An outbound row to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub id: String,
    pub kind: &'static str,
    pub to: Address,
    pub in_reply_to: Option<String>,
    pub content: Value,
}

/// The largest inbound `seq` (for the odd-seq rule), read through a fresh read-only connection.
fn max_in(cfg: &AgentConfig) -> anyhow::Result<Option<i64>> {
    let view = db::open_readonly(&cfg.inbound_db(), Kind::Inbound)?;
    Ok(inbound::max_seq(&view)?)
}

/// Writes rows in the caller's transaction; returns their seqs. `max_in` is the largest inbound
/// seq as recently read (the odd seq goes after both tables).
pub fn write_rows(tx: &Connection, rows: &[Row], max_in: Option<i64>) -> anyhow::Result<Vec<i64>> {
    let now = now_ms();
    let mut seqs = Vec::new();
    for r in rows {
        let content = r.content.to_string();
        seqs.push(outbound::insert(
            tx,
            &NewOutbound {
                id: &r.id,
                kind: r.kind,
                in_reply_to: r.in_reply_to.as_deref(),
                timestamp: now,
                deliver_after: None,
                channel_type: r.to.channel_type.as_deref(),
                platform_id: r.to.platform_id.as_deref(),
                thread_id: r.to.thread_id.as_deref(),
                content: &content,
            },
            max_in,
        )?);
    }
    Ok(seqs)
}

/// The address of a destination (channels by room, agents on channel `agent`).
pub fn address_of(d: &ResolvedDestination) -> Address {
    match d.target_type.as_str() {
        "agent" => {
            Address { channel_type: Some("agent".into()), platform_id: d.agent_id.clone(), thread_id: None }
        }
        _ => Address {
            channel_type: d.channel_type.clone(),
            platform_id: d.platform_id.clone(),
            thread_id: None,
        },
    }
}

/// Finds a destination by its name, or else by its display name (case-insensitive).
pub fn find_destination<'a>(dests: &'a [ResolvedDestination], name: &str) -> Option<&'a ResolvedDestination> {
    let name = name.trim();
    dests.iter().find(|d| d.name == name).or_else(|| {
        dests.iter().find(|d| d.name.eq_ignore_ascii_case(name) || d.display_name.eq_ignore_ascii_case(name))
    })
}

/// The actions of one turn.
pub struct TurnActions<'a> {
    pub cfg: &'a AgentConfig,
    pub out: &'a Connection,
    pub link: &'a LinkWriter,
    pub destinations: &'a [ResolvedDestination],
    /// The conversation being answered.
    pub origin: &'a Address,
    pub in_reply_to: &'a str,
}

impl TurnActions<'_> {
    fn write(&self, row: Row) -> Result<i64, String> {
        let res = (|| {
            let tx = self.out.unchecked_transaction()?;
            let seq = write_rows(&tx, std::slice::from_ref(&row), max_in(self.cfg)?)?[0];
            tx.commit()?;
            anyhow::Ok(seq)
        })();
        match res {
            Ok(seq) => {
                self.link.send(&ToHost::Out);
                Ok(seq)
            }
            Err(e) => Err(format!("could not write the message: {e:#}")),
        }
    }

    fn resolve(&self, to: Option<&str>) -> Result<Address, String> {
        match to {
            None => Ok(self.origin.clone()),
            Some(name) => find_destination(self.destinations, name).map(address_of).ok_or_else(|| {
                let names: Vec<&str> = self.destinations.iter().map(|d| d.name.as_str()).collect();
                format!(
                    "unknown destination {name:?}; yours are: {}",
                    if names.is_empty() { "(none)".into() } else { names.join(", ") }
                )
            }),
        }
    }

    fn row(&self, kind: &'static str, to: Address, content: Value) -> Row {
        Row { id: new_id("msg"), kind, to, in_reply_to: Some(self.in_reply_to.to_string()), content }
    }

    /// Copies files into `outbox/<row id>/`; returns their names.
    fn stage_files(&self, row_id: &str, files: &[PathBuf]) -> Result<Vec<String>, String> {
        let dir = self.cfg.workspace.join("outbox").join(row_id);
        let mut names = Vec::new();
        for f in files {
            let src = readable_file(&Roots::new(self.cfg.workspace.clone()), f)?;
            let name = src.file_name().and_then(|n| n.to_str()).unwrap_or("file").to_string();
            std::fs::create_dir_all(&dir).map_err(|e| format!("cannot stage the file: {e}"))?;
            std::fs::copy(&src, dir.join(&name)).map_err(|e| format!("cannot copy {}: {e}", f.display()))?;
            names.push(name);
        }
        Ok(names)
    }
}

/// A regular file under the agent's folder (or /workspace/extra), confined like the file tools;
/// the error says why not.
pub fn readable_file(roots: &Roots, path: &Path) -> Result<PathBuf, String> {
    let p = path.to_str().ok_or_else(|| format!("{} is not a UTF-8 path", path.display()))?;
    let canon = fs::resolve(roots, p, Access::Read).map_err(|e| e.content)?;
    let meta = std::fs::metadata(&canon).map_err(|e| e.to_string())?;
    if !meta.is_file() {
        return Err(format!("{} is not a file", path.display()));
    }
    if meta.len() > FILE_BYTES_MAX {
        return Err(format!(
            "{} is {} bytes; files up to {FILE_BYTES_MAX} bytes can be sent",
            path.display(),
            meta.len()
        ));
    }
    Ok(canon)
}

impl Actions for TurnActions<'_> {
    fn act(&mut self, action: Action) -> Result<String, String> {
        match action {
            Action::Send { to, text, files } => {
                let addr = self.resolve(to.as_deref())?;
                let mut row = self.row("chat", addr, json!({ "text": text }));
                if !files.is_empty() {
                    let names = self.stage_files(&row.id, &files)?;
                    row.content["files"] = json!(names);
                }
                let seq = self.write(row)?;
                Ok(format!("Sent (message id {seq})."))
            }
            Action::Edit { message_seq, text } => {
                let row = self.row(
                    "chat",
                    self.origin.clone(),
                    json!({ "operation": "edit", "message_seq": message_seq, "text": text }),
                );
                self.write(row)?;
                Ok(format!("Edit of message {message_seq} sent."))
            }
            Action::React { message_seq, emoji } => {
                let row = self.row(
                    "chat",
                    self.origin.clone(),
                    json!({ "operation": "reaction", "message_seq": message_seq, "emoji": emoji }),
                );
                self.write(row)?;
                Ok(format!("Reacted {emoji} to message {message_seq}."))
            }
            Action::Ask { title, question, options } => {
                let question_id = new_id("q");
                let fallback = format!(
                    "**{title}**\n{question}\n{}",
                    options.iter().map(|o| format!("- {o}")).collect::<Vec<_>>().join("\n")
                );
                let opts: Vec<Value> = options.iter().map(|o| json!({ "label": o, "value": o })).collect();
                let row = self.row(
                    "chat",
                    self.origin.clone(),
                    json!({ "type": "ask_question", "question_id": question_id, "title": title, "question": question, "options": opts, "text": fallback }),
                );
                let seq = self.write(row)?;
                Ok(format!(
                    "Question sent (message id {seq}). The answer will arrive as the user's next message; end your turn now."
                ))
            }
            Action::System { action, mut payload } => {
                payload["action"] = json!(action);
                payload["channelType"] = json!(self.origin.channel_type);
                payload["platformId"] = json!(self.origin.platform_id);
                payload["threadId"] = json!(self.origin.thread_id);
                let row = self.row("system", self.origin.clone(), payload);
                self.write(row)?;
                Ok(match action.as_str() {
                    "create_agent" | "add_mcp_server" => format!(
                        "Requested {action} from the host. If it needs approval, the owner or an admin is asked \
                         in the room; you will be told the outcome in a message."
                    ),
                    _ => format!("Requested {action} from the host; you will be told if it fails."),
                })
            }
        }
    }

    fn destinations(&self) -> Vec<String> {
        self.destinations.iter().map(|d| d.name.clone()).collect()
    }

    fn tasks(&self) -> Result<Vec<TaskInfo>, String> {
        let view = db::open_readonly(&self.cfg.inbound_db(), Kind::Inbound).map_err(|e| e.to_string())?;
        let rows = inbound::tasks(&view).map_err(|e| e.to_string())?;
        Ok(rows
            .into_iter()
            .map(|t| TaskInfo {
                prompt: serde_json::from_str::<Value>(&t.content)
                    .ok()
                    .and_then(|c| c.get("prompt").and_then(Value::as_str).map(str::to_string))
                    .unwrap_or_default(),
                series_id: t.series_id,
                status: t.status,
                process_after: t.process_after,
                recurrence: t.recurrence,
            })
            .collect())
    }
}
