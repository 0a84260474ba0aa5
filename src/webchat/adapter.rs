//! The webchat as a channel adapter: agent replies and notices are stored as room messages and
//! broadcast; streaming activity is broadcast only (ephemeral).

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::json;

use super::hub::Hub;
use super::message_event;
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
}

/// `{"type":"update","room_id","message":Message}`: a stored message changed (edit, reaction).
pub fn update_event(m: &crate::db::central::RoomMessage) -> String {
    json!({ "type": "update", "room_id": m.room_id, "message": m }).to_string()
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
                let (stored, created) = self
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
                if created {
                    self.hub.broadcast(&msg.room.id, &message_event(&stored, msg.stream_id), None);
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

    fn activity(&self, room: &Room, activity: &Activity<'_>) {
        let ev = match activity {
            Activity::Delta { stream, agent, text } => {
                json!({ "type": "stream", "room_id": room.id, "stream_id": stream, "agent": agent, "delta": text })
            }
            Activity::Tool { stream, name, state, summary } => json!({
                "type": "tool",
                "room_id": room.id,
                "stream_id": stream,
                "name": name,
                "state": match state { ToolState::Start => "start", ToolState::End => "end" },
                "summary": summary,
            }),
            Activity::StreamEnd { stream } => {
                json!({ "type": "stream_end", "room_id": room.id, "stream_id": stream })
            }
        };
        self.hub.broadcast(&room.id, &ev.to_string(), None);
    }
}
