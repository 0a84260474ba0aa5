//! The `mock` provider: deterministic, no network. The default while no model is configured, so a
//! fresh install answers at once, and the provider every test can rely on.
//!
//! Reply: `echo: <text>` for the triggering chat messages of the batch, one line each.

use super::{Provider, row_text};
use crate::db::inbound::InboundRow;

pub struct Mock;

impl Provider for Mock {
    fn name(&self) -> &'static str {
        "mock"
    }

    fn reply(&mut self, batch: &[InboundRow]) -> anyhow::Result<Option<String>> {
        let lines: Vec<String> = batch
            .iter()
            .filter(|r| r.trigger && r.kind == "chat")
            .map(|r| format!("echo: {}", row_text(r)))
            .collect();
        Ok((!lines.is_empty()).then(|| lines.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, text: &str, trigger: bool) -> InboundRow {
        InboundRow {
            id: id.into(),
            seq: 2,
            kind: "chat".into(),
            timestamp: 0,
            trigger,
            channel_type: Some("webchat".into()),
            platform_id: Some("r".into()),
            thread_id: None,
            content: serde_json::json!({ "text": text }).to_string(),
        }
    }

    #[test]
    fn echoes_triggering_messages() {
        let mut m = Mock;
        assert_eq!(m.reply(&[row("a", "hello", true)]).unwrap().as_deref(), Some("echo: hello"));
        let batch = [row("a", "context", false), row("b", "one", true), row("c", "two", true)];
        assert_eq!(m.reply(&batch).unwrap().as_deref(), Some("echo: one\necho: two"));
        assert_eq!(m.reply(&[row("a", "quiet", false)]).unwrap(), None);
    }
}
