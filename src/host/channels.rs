//! Channel adapters: how messages leave pincer for a room on some channel (the webchat now,
//! other chat platforms later), and how ephemeral events (model deltas, tool activity) reach it.
//!
//! Delivery calls [`Channel::deliver`] for each outbound row after it has re-validated the
//! destination. An adapter returns an error rather than pretending: a row is only marked delivered
//! when the adapter stored or sent it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;

use crate::db::central::{Agent, Room};
use crate::link::ToolState;

/// One thing an agent sends to a room.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub room: &'a Room,
    pub agent: &'a Agent,
    /// `<session>/<outbound id>`: stable across retries, so an adapter can store it exactly once.
    pub source_id: &'a str,
    /// The stream whose deltas this final message completes, if it was streamed.
    pub stream_id: Option<&'a str>,
    pub body: Body<'a>,
}

#[derive(Debug, Clone)]
pub enum Body<'a> {
    /// A message: text, files the agent staged (host paths), an optional question card;
    /// `notice` when it reports a problem (shown as a notice, not as the agent speaking).
    Message { text: &'a str, files: &'a [PathBuf], card: Option<&'a Value>, notice: bool },
    /// New text for a message the agent sent before (`target`: the adapter's message id).
    Edit { target: &'a str, text: &'a str },
    /// A reaction to a message in the room (`target`: the adapter's message id).
    Reaction { target: &'a str, emoji: &'a str },
}

/// Why a delivery did not happen.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliverError {
    /// Worth another try later (e.g. the database was busy).
    Retry(String),
    /// Will never work (e.g. the room is gone); the row is marked failed with this reason.
    Permanent(String),
}

/// Ephemeral activity of a running turn.
#[derive(Debug, Clone, PartialEq)]
pub enum Activity<'a> {
    Delta {
        stream: &'a str,
        agent: &'a str,
        text: &'a str,
    },
    Tool {
        stream: &'a str,
        name: &'a str,
        state: ToolState,
        summary: &'a str,
        /// The arguments (JSON) and, at the end, the output, both cut for reading.
        input: Option<&'a str>,
        output: Option<&'a str>,
    },
    StreamEnd {
        stream: &'a str,
    },
}

pub trait Channel: Send + Sync {
    fn channel_type(&self) -> &'static str;

    /// Stores or sends an agent's message; returns the platform's message id.
    fn deliver(&self, msg: &Outgoing<'_>) -> Result<String, DeliverError>;

    /// A notice from pincer itself (failures the user must see).
    fn notice(&self, room: &Room, text: &str) -> anyhow::Result<()>;

    /// Ephemeral activity; adapters without live updates ignore it.
    fn activity(&self, _room: &Room, _activity: &Activity<'_>) {}

    /// Replaces the card of a message this adapter delivered (e.g. an approval that was
    /// decided); adapters without cards ignore it.
    fn update_card(&self, _room: &Room, _message_id: &str, _card: &serde_json::Value) {}
}

/// The adapters by channel type.
#[derive(Default, Clone)]
pub struct Channels {
    map: HashMap<&'static str, Arc<dyn Channel>>,
}

impl Channels {
    pub fn register(&mut self, adapter: Arc<dyn Channel>) {
        let kind = adapter.channel_type();
        assert!(self.map.insert(kind, adapter).is_none(), "two adapters for channel type {kind}");
    }

    pub fn get(&self, channel_type: &str) -> Option<&Arc<dyn Channel>> {
        self.map.get(channel_type)
    }

    /// Posts a notice from pincer in a room (failures are logged: a notice is itself the report
    /// of a failure).
    pub fn notice_room(&self, room: &Room, text: &str) {
        match self.get(&room.channel_type) {
            Some(adapter) => {
                if let Err(e) = adapter.notice(room, text) {
                    log::error!("posting a notice in room {}: {e:#}", room.id);
                }
            }
            None => log::error!("no adapter for room {} to post: {text}", room.id),
        }
    }

    /// Posts a notice in the room of a session, if it has one.
    pub fn notice_session(&self, central: &crate::db::Connection, session_id: &str, text: &str) {
        let room = crate::db::central::session(central, session_id)
            .ok()
            .flatten()
            .and_then(|s| s.room_id)
            .and_then(|id| crate::db::central::room(central, &id).ok().flatten());
        match room {
            Some(room) => self.notice_room(&room, text),
            None => log::warn!("session {session_id} has no room for the notice: {text}"),
        }
    }
}
