//! Model providers behind one trait, chosen per agent by name.
//!
//! The spine has only `mock`; the network providers plug in here with the same trait.

pub mod mock;

use anyhow::bail;

use crate::db::inbound::InboundRow;

/// Produces the agent's reply to a batch of inbound rows.
pub trait Provider: Send {
    fn name(&self) -> &'static str;

    /// The reply text for the batch, or `None` when the agent stays silent.
    fn reply(&mut self, batch: &[InboundRow]) -> anyhow::Result<Option<String>>;
}

/// The provider registered under `name`.
pub fn create(name: &str) -> anyhow::Result<Box<dyn Provider>> {
    match name {
        "mock" => Ok(Box::new(mock::Mock)),
        other => bail!("unknown provider {other:?}: expected mock"),
    }
}

/// The text of a chat row's JSON content (`{"text": ...}`); non-JSON content is the text itself.
pub fn row_text(row: &InboundRow) -> String {
    match serde_json::from_str::<serde_json::Value>(&row.content) {
        Ok(v) => v.get("text").and_then(|t| t.as_str()).unwrap_or_default().to_string(),
        Err(_) => row.content.clone(),
    }
}
