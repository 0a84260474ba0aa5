//! The `mock` provider: deterministic, no network. The default while no model is configured, so a
//! fresh install answers at once, and a provider every test can rely on.
//!
//! It answers the newest user text: every `<message …>…</message>` in it becomes a line
//! `echo: <text>` (the prompt's XML is unescaped), every scheduled `<task>` a line
//! `echo: <its instructions>`, or the whole text when there are neither.

use super::Provider;
use crate::agent::model::{Block, Cancel, Message, ModelError, Request, Response, Role, Stop, StreamEvent};

pub struct Mock;

impl Provider for Mock {
    fn name(&self) -> &'static str {
        "mock"
    }

    fn call(
        &mut self,
        req: &Request<'_>,
        on_event: &mut dyn FnMut(StreamEvent),
        cancel: &Cancel,
    ) -> Result<Response, ModelError> {
        if cancel.is_cancelled() {
            return Err(ModelError::Cancelled);
        }
        let prompt = req
            .messages
            .iter()
            .rev()
            .find(|m| m.role == Role::User && m.content.iter().any(|b| matches!(b, Block::Text { .. })))
            .map(Message::text)
            .unwrap_or_default();
        let texts = message_texts(&prompt);
        let reply = if texts.is_empty() {
            format!("echo: {}", prompt.trim())
        } else {
            texts.iter().map(|t| format!("echo: {t}")).collect::<Vec<_>>().join("\n")
        };
        on_event(StreamEvent::TextDelta(reply.clone()));
        Ok(Response { message: Message::assistant_text(reply), stop: Stop::EndTurn, usage: None })
    }
}

/// The texts inside `<message …>…</message>` elements, unescaped, without quoted-message or
/// attachment decoration, and the instructions of `<task …>` elements.
fn message_texts(prompt: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = prompt;
    while let Some(start) = rest.find("<task ") {
        let after = &rest[start..];
        let Some(close) = after.find("</task>") else { break };
        let body = &after[..close];
        if let Some(i) = body.find("Instructions:\n") {
            out.push(unescape(body[i + "Instructions:\n".len()..].trim()));
        }
        rest = &after[close + "</task>".len()..];
    }
    let mut rest = prompt;
    while let Some(start) = rest.find("<message ") {
        let after = &rest[start..];
        let Some(open_end) = after.find('>') else { break };
        let body_and_more = &after[open_end + 1..];
        let Some(close) = body_and_more.find("</message>") else { break };
        let mut body = &body_and_more[..close];
        if let Some(q) = body.find("</quoted_message>") {
            body = &body[q + "</quoted_message>".len()..];
        }
        out.push(unescape(body.trim()));
        rest = &body_and_more[close + "</message>".len()..];
    }
    out
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<").replace("&gt;", ">").replace("&quot;", "\"").replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(prompt: &str) -> String {
        let msgs = [Message::user_text(prompt)];
        let req = Request { model: "m", system: "", messages: &msgs, tools: &[], max_tokens: 10 };
        let mut streamed = String::new();
        let resp = Mock
            .call(
                &req,
                &mut |e| {
                    if let StreamEvent::TextDelta(t) = e {
                        streamed.push_str(&t)
                    }
                },
                &Cancel::default(),
            )
            .unwrap();
        assert_eq!(streamed, resp.message.text(), "streams what it answers");
        resp.message.text()
    }

    #[test]
    fn echoes_each_message_of_the_prompt() {
        let prompt = "<context timezone=\"UTC\" />\n<messages>\n<message id=\"2\" from=\"room\" sender=\"Ann\">a &lt;b&gt; &amp; c</message>\n\
                      <message id=\"4\" sender=\"Bo\"><quoted_message from=\"x\">old</quoted_message>\nnew</message>\n</messages>";
        assert_eq!(call(prompt), "echo: a <b> & c\necho: new");
        assert_eq!(call("plain text"), "echo: plain text");
        let task = "<context timezone=\"UTC\" />\n<task id=\"6\" time=\"x\">Script output:\n{}\n\nInstructions:\nwater &amp; feed</task>";
        assert_eq!(call(task), "echo: water & feed");
    }
}
