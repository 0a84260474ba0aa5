//! The webchat as a channel adapter: agent replies and notices are stored as room messages and
//! broadcast; streaming activity is broadcast only (ephemeral).

use std::sync::Arc;

use serde_json::json;

use super::hub::Hub;
use super::message_event;
use super::store::Store;
use crate::db::central::Room;
use crate::host::channels::{Activity, Channel, DeliverError, Outgoing};
use crate::link::ToolState;

pub struct WebchatChannel {
    pub store: Arc<Store>,
    pub hub: Arc<Hub>,
}

impl Channel for WebchatChannel {
    fn channel_type(&self) -> &'static str {
        "webchat"
    }

    fn deliver(&self, msg: &Outgoing<'_>) -> Result<String, DeliverError> {
        let (stored, created) = self
            .store
            .agent_message(msg.room, &msg.agent.id, &msg.agent.name, msg.text, msg.source_id)
            .map_err(|e| DeliverError::Retry(format!("storing the message: {e:#}")))?;
        if created {
            self.hub.broadcast(&msg.room.id, &message_event(&stored, msg.stream_id), None);
        }
        Ok(stored.id)
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
