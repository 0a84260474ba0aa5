//! The webchat as a channel adapter: agent replies and notices are stored as room messages and
//! broadcast; streaming activity is broadcast only (ephemeral).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::json;

use super::hub::Hub;
use super::message_event;
use super::redact::StreamRedactor;
use super::store::Store;
use crate::db::central::Room;
use crate::host::channels::{Activity, Body, Channel, DeliverError, Outgoing};
use crate::link::ToolState;

/// Longest reply stored as message text; a longer one is attached as a file.
pub const TEXT_SHOWN_BYTES_MAX: usize = 128 * 1024;
/// How much of an attached long reply the message shows.
pub const LONG_REPLY_PREVIEW_BYTES: usize = 8 * 1024;

pub struct WebchatChannel {
    pub store: Arc<Store>,
    pub hub: Arc<Hub>,
    /// `data/webchat/uploads`.
    pub uploads: PathBuf,
    /// Streams in flight (secrets masked per stream) and streams already completed.
    pub streams: Mutex<Streams>,
    /// Tells people who are not looking.
    pub notifier: Option<Arc<super::push::Notifier>>,
}

/// `{"type":"update","room_id","message":Message}`: a stored message changed (edit, reaction).
pub fn update_event(m: &crate::db::central::RoomMessage) -> String {
    json!({ "type": "update", "room_id": m.room_id, "message": super::redact::message(m) }).to_string()
}

/// Streams whose text is being redacted at once (more end the oldest).
pub const STREAMS_REDACTED_MAX: usize = 256;
/// Completed streams remembered, so their late activity is dropped.
pub const STREAMS_ENDED_MAX: usize = 256;

/// The streams of replies. A stream's activity and its final message travel different paths
/// (the link, the outbound database), so the message can overtake the last deltas: once the
/// message is out, the stream is over for the browser, and what arrives later is dropped.
/// Clients thus never see a stream frame after the message that completes it.
#[derive(Default)]
pub struct Streams {
    /// Per open stream: the agent's name and the text held back.
    open: HashMap<String, (String, StreamRedactor)>,
    ended: std::collections::VecDeque<String>,
    /// Per stream: the tools it showed finishing (`{"name", "summary"}`), kept with its message.
    tools: HashMap<String, Vec<serde_json::Value>>,
}

/// Tools remembered per stream.
const TOOLS_PER_STREAM_MAX: usize = 100;
/// Tool arguments and output kept with one message; past it only names and summaries.
const TOOL_DETAILS_KEPT_BYTES_MAX: usize = 64 * 1024;

impl Streams {
    fn is_ended(&self, stream: &str) -> bool {
        self.ended.iter().any(|s| s == stream)
    }

    /// Marks the stream completed; true if it was still open (a `stream_end` is then due).
    fn end(&mut self, stream: &str) -> bool {
        if self.is_ended(stream) {
            return false;
        }
        if self.ended.len() >= STREAMS_ENDED_MAX {
            self.ended.pop_front();
        }
        self.ended.push_back(stream.to_string());
        self.open.remove(stream);
        true
    }
}

impl Channel for WebchatChannel {
    fn channel_type(&self) -> &'static str {
        "webchat"
    }

    fn deliver(&self, msg: &Outgoing<'_>) -> Result<String, DeliverError> {
        let retry = |what: &str, e: anyhow::Error| DeliverError::Retry(format!("{what}: {e:#}"));
        match &msg.body {
            Body::Message { text, files, card, notice } => {
                // Stored names carry a tag derived from the source id, so a retry overwrites the
                // same files instead of adding copies.
                let tag = &sha1_smol::Sha1::from(msg.source_id).digest().to_string()[..10];
                let mut entries = Vec::new();
                for f in files.iter() {
                    entries.push(
                        super::files::store(&self.uploads, &msg.room.id, tag, f)
                            .map_err(|e| retry("storing a file", e))?,
                    );
                }
                // A reply too long to show as one message is attached whole, with its start shown.
                let shown;
                let text: &str = if text.len() > TEXT_SHOWN_BYTES_MAX {
                    entries.push(
                        super::files::store_bytes(
                            &self.uploads,
                            &msg.room.id,
                            tag,
                            "reply.md",
                            text.as_bytes(),
                        )
                        .map_err(|e| retry("storing a long reply", e))?,
                    );
                    let mut end = LONG_REPLY_PREVIEW_BYTES;
                    while !text.is_char_boundary(end) {
                        end -= 1;
                    }
                    shown = format!(
                        "{}\n\n…\n\n_(The whole reply, {} KiB, is attached as reply.md.)_",
                        &text[..end],
                        text.len() / 1024
                    );
                    &shown
                } else {
                    text
                };
                let files = serde_json::Value::Array(entries);
                let tools = msg
                    .stream_id
                    .and_then(|sid| self.streams.lock().unwrap_or_else(|e| e.into_inner()).tools.remove(sid));
                let (mut stored, created) = self
                    .store
                    .agent_message(
                        msg.room,
                        &msg.agent.id,
                        &msg.agent.name,
                        text,
                        msg.source_id,
                        &files,
                        *card,
                        *notice,
                    )
                    .map_err(|e| retry("storing the message", e))?;
                if let Some(tools) = tools.filter(|t| !t.is_empty())
                    && let Ok(Some(with)) = self.store.set_tools(&stored.id, &serde_json::Value::Array(tools))
                {
                    stored = with;
                }
                if let Some(sid) = msg.stream_id {
                    // The stream's held-back text goes out before its end and the message, even
                    // when the message is delivered before the stream's own end arrives.
                    let (rest, was_open) = {
                        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
                        let rest = streams.open.remove(sid).map(|(agent, mut r)| (agent, r.finish()));
                        (rest, streams.end(sid))
                    };
                    if let Some((agent, rest)) = rest.filter(|(_, r)| !r.is_empty()) {
                        let ev = json!({ "type": "stream", "room_id": msg.room.id, "stream_id": sid, "agent": agent, "delta": rest });
                        self.hub.broadcast(&msg.room.id, &ev.to_string(), None);
                    }
                    if was_open {
                        let ev = json!({ "type": "stream_end", "room_id": msg.room.id, "stream_id": sid });
                        self.hub.broadcast(&msg.room.id, &ev.to_string(), None);
                    }
                }
                if created {
                    let notify = self
                        .notifier
                        .as_ref()
                        .filter(|_| !*notice)
                        .map(|n| (n, self.hub.looking_at(&msg.room.id)));
                    self.hub.broadcast(&msg.room.id, &message_event(&stored, msg.stream_id), None);
                    if let Some((n, looking)) = notify {
                        n.message(msg.room, &stored, looking);
                    }
                }
                Ok(stored.id)
            }
            Body::Edit { target, text } => {
                let updated = self.store.edit(target, text).map_err(|e| retry("editing the message", e))?;
                let m = updated
                    .ok_or_else(|| DeliverError::Permanent(format!("message {target} no longer exists")))?;
                self.hub.broadcast(&msg.room.id, &update_event(&m), None);
                Ok(m.id)
            }
            Body::Reaction { target, emoji } => {
                let updated = self
                    .store
                    .react(target, emoji, &msg.agent.name, "agent")
                    .map_err(|e| retry("adding the reaction", e))?;
                let m = updated
                    .ok_or_else(|| DeliverError::Permanent(format!("message {target} no longer exists")))?;
                self.hub.broadcast(&msg.room.id, &update_event(&m), None);
                Ok(m.id)
            }
        }
    }

    fn notice(&self, room: &Room, text: &str) -> anyhow::Result<()> {
        let stored = self.store.notice(room, text)?;
        self.hub.broadcast(&room.id, &message_event(&stored, None), None);
        Ok(())
    }

    fn update_card(&self, room: &Room, message_id: &str, card: &serde_json::Value) {
        match self.store.set_card(message_id, card) {
            Ok(Some(m)) => self.hub.broadcast(&room.id, &update_event(&m), None),
            Ok(None) => {}
            Err(e) => log::error!("updating the card of message {message_id}: {e:#}"),
        }
    }

    fn activity(&self, room: &Room, activity: &Activity<'_>) {
        let ev = match activity {
            Activity::Delta { stream, agent, text } => {
                let shown = {
                    let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
                    if streams.is_ended(stream) {
                        return;
                    }
                    if streams.open.len() >= STREAMS_REDACTED_MAX && !streams.open.contains_key(*stream) {
                        streams.open.clear();
                    }
                    streams
                        .open
                        .entry((*stream).to_string())
                        .or_insert_with(|| ((*agent).to_string(), StreamRedactor::default()))
                        .1
                        .push(text)
                };
                if shown.is_empty() {
                    return;
                }
                json!({ "type": "stream", "room_id": room.id, "stream_id": stream, "agent": agent, "delta": shown })
            }
            Activity::Tool { stream, .. } | Activity::StreamEnd { stream }
                if self.streams.lock().unwrap_or_else(|e| e.into_inner()).is_ended(stream) =>
            {
                return;
            }
            Activity::Tool { stream, name, state, summary, input, output } => {
                // Arguments and output are shown to people: masked like message text.
                let input = input.map(|t| super::redact::redact(t).into_owned());
                let output = output.map(|t| super::redact::redact(t).into_owned());
                let summary = super::redact::redact(summary);
                if matches!(state, ToolState::End) {
                    let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
                    if streams.tools.len() >= STREAMS_REDACTED_MAX && !streams.tools.contains_key(*stream) {
                        streams.tools.clear();
                    }
                    let list = streams.tools.entry((*stream).to_string()).or_default();
                    if list.len() < TOOLS_PER_STREAM_MAX {
                        let mut entry = json!({ "name": name, "summary": summary });
                        let kept: usize = list.iter().map(|t| t.to_string().len()).sum();
                        let detail =
                            input.as_ref().map_or(0, String::len) + output.as_ref().map_or(0, String::len);
                        if kept + detail <= TOOL_DETAILS_KEPT_BYTES_MAX {
                            if let Some(i) = &input {
                                entry["input"] = json!(i);
                            }
                            if let Some(o) = &output {
                                entry["output"] = json!(o);
                            }
                        }
                        list.push(entry);
                    }
                }
                json!({
                    "type": "tool",
                    "room_id": room.id,
                    "stream_id": stream,
                    "name": name,
                    "state": match state { ToolState::Start => "start", ToolState::End => "end" },
                    "summary": summary,
                    "input": input,
                    "output": output,
                })
            }
            Activity::StreamEnd { stream } => {
                let rest = {
                    let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
                    let rest = streams.open.remove(*stream).map(|(agent, mut r)| (agent, r.finish()));
                    streams.end(stream);
                    rest
                };
                if let Some((agent, rest)) = rest.filter(|(_, r)| !r.is_empty()) {
                    let ev = json!({ "type": "stream", "room_id": room.id, "stream_id": stream, "agent": agent, "delta": rest });
                    self.hub.broadcast(&room.id, &ev.to_string(), None);
                }
                json!({ "type": "stream_end", "room_id": room.id, "stream_id": stream })
            }
        };
        self.hub.broadcast(&room.id, &ev.to_string(), None);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::db::central::{self, Agent};

    /// A channel on a fresh central DB with one room and agent, and one socket in the room.
    fn setup() -> (tempfile::TempDir, WebchatChannel, Room, Agent, Arc<super::super::hub::Outbox>, mio::Poll)
    {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pincer.db");
        let conn = crate::db::open(&path, crate::db::Kind::Central).unwrap();
        let room = Room::webchat_for_tests("r1");
        central::insert_room(&conn, &room).unwrap();
        let agent = Agent {
            id: "ag-1".into(),
            name: "Agent".into(),
            folder: "agent".into(),
            provider: None,
            model: None,
            max_messages_per_prompt: None,
            mcp_servers: "{}".into(),
            created_at: 1,
        };
        central::insert_agent(&conn, &agent).unwrap();
        let hub = Arc::new(Hub::default());
        let poll = mio::Poll::new().unwrap();
        let bell = super::super::hub::Bell::new(mio::Waker::new(poll.registry(), mio::Token(0)).unwrap());
        let outbox = Arc::new(super::super::hub::Outbox::new(Arc::new(bell), 1));
        let id = hub.register("webchat:u", None, outbox.clone());
        hub.join(id, "r1");
        let channel = WebchatChannel {
            store: Arc::new(Store::new(&path)),
            hub,
            uploads: dir.path().join("uploads"),
            streams: Default::default(),
            notifier: None,
        };
        (dir, channel, room, agent, outbox, poll)
    }

    fn frames(outbox: &super::super::hub::Outbox) -> Vec<(String, String)> {
        outbox
            .take(usize::MAX)
            .iter()
            .map(|f| {
                let v: serde_json::Value = serde_json::from_str(f).unwrap();
                (v["type"].as_str().unwrap().to_string(), v["delta"].as_str().unwrap_or("").to_string())
            })
            .collect()
    }

    #[test]
    fn no_stream_frame_follows_the_message_that_completes_the_stream() {
        let (_dir, ch, room, agent, outbox, _poll) = setup();
        ch.activity(&room, &Activity::Delta { stream: "s1", agent: "Agent", text: "hello " });
        let body = Body::Message { text: "hello world", files: &[], card: None, notice: false };
        let out = Outgoing { room: &room, agent: &agent, source_id: "sess/1", stream_id: Some("s1"), body };
        ch.deliver(&out).unwrap();
        // The last delta, a tool chip and the end overtaken by the message: all dropped.
        ch.activity(&room, &Activity::Delta { stream: "s1", agent: "Agent", text: "world" });
        ch.activity(
            &room,
            &Activity::Tool {
                stream: "s1",
                name: "bash",
                state: ToolState::End,
                summary: "ls",
                input: None,
                output: None,
            },
        );
        ch.activity(&room, &Activity::StreamEnd { stream: "s1" });
        let types: Vec<String> = frames(&outbox).into_iter().map(|(t, _)| t).collect();
        assert_eq!(types, ["stream", "stream_end", "message"]);
        // A retried delivery of the same message adds nothing.
        ch.deliver(&out).unwrap();
        assert!(frames(&outbox).is_empty());
    }

    #[test]
    fn a_stream_that_ends_before_its_message_ends_once() {
        let (_dir, ch, room, agent, outbox, _poll) = setup();
        ch.activity(&room, &Activity::Delta { stream: "s2", agent: "Agent", text: "all of it" });
        ch.activity(&room, &Activity::StreamEnd { stream: "s2" });
        let body = Body::Message { text: "all of it", files: &[], card: None, notice: false };
        ch.deliver(&Outgoing {
            room: &room,
            agent: &agent,
            source_id: "sess/2",
            stream_id: Some("s2"),
            body,
        })
        .unwrap();
        let got = frames(&outbox);
        let types: Vec<&str> = got.iter().map(|(t, _)| t.as_str()).filter(|t| *t != "stream").collect();
        assert_eq!(types, ["stream_end", "message"], "one end, then the message: {got:?}");
        let text: String = got.iter().map(|(_, d)| d.as_str()).collect();
        assert_eq!(text, "all of it", "every delta shown, the held-back end included");
    }

    /// A tool's arguments and output reach the room live and stay with the reply, masked like
    /// message text.
    #[test]
    fn tool_arguments_and_output_are_shown_masked_and_kept() {
        let (_dir, ch, room, agent, outbox, _poll) = setup();
        let secret = "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789";
        let input = format!(r#"{{"command":"curl -H 'x-api-key: {secret}' example.org"}}"#);
        let tool = |state, output| Activity::Tool {
            stream: "s3",
            name: "bash",
            state,
            summary: "curl example.org",
            input: Some(&input),
            output,
        };
        ch.activity(&room, &tool(ToolState::Start, None));
        ch.activity(&room, &tool(ToolState::End, Some("<html>ok</html>")));
        let live: Vec<serde_json::Value> =
            outbox.take(usize::MAX).iter().map(|f| serde_json::from_str(f).unwrap()).collect();
        assert_eq!(live.len(), 2);
        assert!(live[0]["input"].as_str().unwrap().contains("curl -H"), "{}", live[0]);
        assert!(!live[0].to_string().contains(secret), "masked: {}", live[0]);
        assert_eq!(
            (live[0]["output"].clone(), live[1]["output"].as_str()),
            (serde_json::Value::Null, Some("<html>ok</html>"))
        );
        ch.activity(&room, &Activity::StreamEnd { stream: "s3" });
        let body = Body::Message { text: "done", files: &[], card: None, notice: false };
        ch.deliver(&Outgoing {
            room: &room,
            agent: &agent,
            source_id: "sess/3",
            stream_id: Some("s3"),
            body,
        })
        .unwrap();
        let msg = outbox
            .take(usize::MAX)
            .iter()
            .map(|f| serde_json::from_str::<serde_json::Value>(f).unwrap())
            .find(|v| v["type"] == "message")
            .unwrap();
        let kept = &msg["message"]["tools"][0];
        assert_eq!(
            (kept["name"].as_str(), kept["output"].as_str()),
            (Some("bash"), Some("<html>ok</html>")),
            "{msg}"
        );
        assert!(kept["input"].as_str().unwrap().contains("example.org") && !msg.to_string().contains(secret));
    }
}
