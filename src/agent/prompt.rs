//! What the model reads: inbound rows as XML (`<context timezone>` then `<message>`s, tasks and
//! webhooks), and the system prompt (who the agent is, its instructions, where it can send).

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::Value;

use crate::db::central::ResolvedDestination;
use crate::db::inbound::InboundRow;

/// Escapes `& < > "` for XML text and attributes.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

/// `Jan 5, 2026, 9:05 PM` in the zone.
pub fn local_time(ms: i64, tz: &TimeZone) -> String {
    match Timestamp::from_millisecond(ms) {
        Ok(ts) => ts.to_zoned(tz.clone()).strftime("%b %-d, %Y, %-I:%M %p").to_string(),
        Err(_) => String::from("unknown time"),
    }
}

/// The zone named `tz`, or UTC when unknown.
pub fn zone(tz: &str) -> TimeZone {
    TimeZone::get(tz).unwrap_or(TimeZone::UTC)
}

/// How inbound rows are rendered.
pub struct Formatter<'a> {
    pub tz_name: &'a str,
    pub tz: TimeZone,
    pub destinations: &'a [ResolvedDestination],
    /// The agent's own id: notes from the host arrive on channel `agent` with this id.
    pub agent_id: &'a str,
}

impl Formatter<'_> {
    /// The destination name a row came from.
    fn origin_attr(&self, row: &InboundRow) -> Option<String> {
        let (ct, pid) = (row.channel_type.as_deref(), row.platform_id.as_deref());
        if ct == Some("agent") && pid == Some(self.agent_id) {
            return Some("system".into());
        }
        let found = self.destinations.iter().find(|d| match (ct, d.target_type.as_str()) {
            (Some("agent"), "agent") => d.agent_id.as_deref() == pid,
            (Some(ct), "channel") => d.channel_type.as_deref() == Some(ct) && d.platform_id.as_deref() == pid,
            _ => false,
        });
        match (found, ct, pid) {
            (Some(d), _, _) => Some(d.name.clone()),
            (None, None, None) => None,
            (None, ct, pid) => Some(format!("unknown:{}:{}", ct.unwrap_or(""), pid.unwrap_or(""))),
        }
    }

    fn chat(&self, row: &InboundRow, content: &Value) -> String {
        let text = content.get("text").and_then(Value::as_str).unwrap_or_default();
        let sender = ["sender", "senderName"]
            .iter()
            .find_map(|k| content.get(*k).and_then(Value::as_str).filter(|s| !s.is_empty()))
            .unwrap_or("Unknown");
        let mut attrs = format!("id=\"{}\"", row.seq);
        if let Some(from) = self.origin_attr(row) {
            attrs.push_str(&format!(" from=\"{}\"", escape(&from)));
        }
        attrs.push_str(&format!(
            " sender=\"{}\" time=\"{}\"",
            escape(sender),
            escape(&local_time(row.timestamp, &self.tz))
        ));
        let reply = content.get("replyTo");
        if let Some(id) = reply
            .and_then(|r| r.get("id"))
            .and_then(|v| v.as_str().map(str::to_string).or(v.as_i64().map(|n| n.to_string())))
        {
            attrs.push_str(&format!(" reply_to=\"{}\"", escape(&id)));
        }
        let mut body = String::new();
        if let (Some(qs), Some(qt)) = (
            reply.and_then(|r| r.get("sender")).and_then(Value::as_str),
            reply.and_then(|r| r.get("text")).and_then(Value::as_str),
        ) {
            body.push_str(&format!(
                "\n  <quoted_message from=\"{}\">{}</quoted_message>\n",
                escape(qs),
                escape(qt)
            ));
        }
        body.push_str(&escape(text));
        for f in content.get("files").and_then(Value::as_array).into_iter().flatten() {
            let name = f.get("name").and_then(Value::as_str).unwrap_or("file");
            let line = match (f.get("path").and_then(Value::as_str), f.get("url").and_then(Value::as_str)) {
                (Some(path), _) => format!("[file: {name} — saved to {path}]"),
                (None, Some(url)) => format!("[file: {name} ({url})]"),
                _ => format!("[file: {name}]"),
            };
            body.push('\n');
            body.push_str(&escape(&line));
        }
        format!("<message {attrs}>{body}</message>")
    }

    fn task(&self, row: &InboundRow, content: &Value) -> String {
        let prompt = content.get("prompt").and_then(Value::as_str).unwrap_or_default();
        let mut body = String::new();
        if let Some(out) = content.get("scriptOutput") {
            body.push_str(&format!(
                "Script output:\n{}\n\n",
                serde_json::to_string_pretty(out).unwrap_or_default()
            ));
        }
        if let Some(n) = content.get("missedRuns").and_then(Value::as_u64) {
            body.push_str(&format!(
                "Note: {n} earlier run(s) of this task were missed while the host was not running; this run stands for them.\n\n"
            ));
        }
        body.push_str("Instructions:\n");
        body.push_str(prompt);
        let from = self.origin_attr(row).map(|f| format!(" from=\"{}\"", escape(&f))).unwrap_or_default();
        format!(
            "<task id=\"{}\"{from} time=\"{}\">{}</task>",
            row.seq,
            escape(&local_time(row.timestamp, &self.tz)),
            escape(&body)
        )
    }

    fn webhook(&self, row: &InboundRow, content: &Value) -> String {
        let attr = |k: &str| escape(content.get(k).and_then(Value::as_str).unwrap_or("unknown"));
        let payload = content.get("payload").unwrap_or(content);
        let from = self.origin_attr(row).map(|f| format!(" from=\"{}\"", escape(&f))).unwrap_or_default();
        format!(
            "<webhook id=\"{}\"{from} source=\"{}\" event=\"{}\">{}</webhook>",
            row.seq,
            attr("source"),
            attr("event"),
            escape(&serde_json::to_string_pretty(payload).unwrap_or_default())
        )
    }

    /// The prompt for a batch: the zone header, then chats (wrapped in `<messages>` when several),
    /// tasks and webhooks.
    pub fn batch(&self, rows: &[InboundRow]) -> String {
        let parsed: Vec<(&InboundRow, Value)> = rows
            .iter()
            .map(|r| {
                (
                    r,
                    serde_json::from_str(&r.content)
                        .unwrap_or_else(|_| serde_json::json!({ "text": r.content })),
                )
            })
            .collect();
        let mut parts = vec![format!("<context timezone=\"{}\" />", escape(self.tz_name))];
        let chats: Vec<String> =
            parsed.iter().filter(|(r, _)| r.kind == "chat").map(|(r, c)| self.chat(r, c)).collect();
        match chats.len() {
            0 => {}
            1 => parts.push(chats[0].clone()),
            _ => parts.push(format!("<messages>\n{}\n</messages>", chats.join("\n"))),
        }
        parts.extend(parsed.iter().filter(|(r, _)| r.kind == "task").map(|(r, c)| self.task(r, c)));
        parts.extend(parsed.iter().filter(|(r, _)| r.kind == "webhook").map(|(r, c)| self.webhook(r, c)));
        parts.join("\n")
    }
}

/// The system prompt: how pincer works for the agent, its identity and instructions, and where it
/// can send.
pub fn system_prompt(
    name: &str,
    instructions: &str,
    destinations: &[ResolvedDestination],
    tool_names: &[String],
) -> String {
    let mut s = format!(
        "# You are {name}\n\
         You are {name}, an AI agent running in pincer, a personal agent host. People talk to you in chat \
         rooms; each of their messages reaches you as XML: `<message id=\"…\" from=\"…\" sender=\"…\" time=\"…\">text</message>`, \
         after a `<context timezone=\"…\" />` line giving the user's time zone. `from` names the destination the \
         message came from. Answer in the user's language. Chat output is rendered as Markdown.\n\n\
         ## Replying\n\
         Your final text is delivered to the conversation you are answering. To send to another destination, \
         wrap that part in `<message to=\"NAME\">…</message>` (several blocks are fine), or call send_message. \
         Put private reasoning in `<internal>…</internal>`: it is never shown to anyone.\n\n"
    );
    s.push_str("## Destinations\n");
    if destinations.is_empty() {
        s.push_str("You have no configured destinations besides the conversation you are answering.\n");
    } else {
        for d in destinations {
            if d.display_name != d.name {
                s.push_str(&format!("- `{}` ({})\n", d.name, d.display_name));
            } else {
                s.push_str(&format!("- `{}`\n", d.name));
            }
        }
    }
    s.push_str(
        "\n## Your workspace\n\
         Your working folder is /workspace/agent: files you create there persist between conversations and are \
         yours. Use your tools when they help; say so when you are unsure. To send a file to the user, save it \
         in your folder and call send_file.\n",
    );
    if !tool_names.is_empty() {
        s.push_str(&format!("Tools available: {}.\n", tool_names.join(", ")));
    }
    let instructions = instructions.trim();
    if !instructions.is_empty() {
        s.push_str("\n## Instructions\n");
        s.push_str(instructions);
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(seq: i64, kind: &str, content: Value, ct: &str, pid: &str) -> InboundRow {
        InboundRow {
            id: format!("m{seq}"),
            seq,
            kind: kind.into(),
            timestamp: 1_767_647_100_000, // 2026-01-05T21:05:00Z
            trigger: true,
            channel_type: Some(ct.into()),
            platform_id: Some(pid.into()),
            thread_id: None,
            content: content.to_string(),
        }
    }

    fn dests() -> Vec<ResolvedDestination> {
        vec![ResolvedDestination {
            name: "home".into(),
            display_name: "Home room".into(),
            target_type: "channel".into(),
            channel_type: Some("webchat".into()),
            platform_id: Some("r1".into()),
            agent_id: None,
        }]
    }

    #[test]
    fn formats_one_and_several_chats() {
        let d = dests();
        let f = Formatter { tz_name: "UTC", tz: zone("UTC"), destinations: &d, agent_id: "ag-1" };
        let one = f.batch(&[row(
            2,
            "chat",
            serde_json::json!({"text": "a < b & \"c\"", "sender": "Ann"}),
            "webchat",
            "r1",
        )]);
        assert_eq!(
            one,
            "<context timezone=\"UTC\" />\n<message id=\"2\" from=\"home\" sender=\"Ann\" time=\"Jan 5, 2026, 9:05 PM\">a &lt; b &amp; &quot;c&quot;</message>"
        );
        let two = f.batch(&[
            row(2, "chat", serde_json::json!({"text": "x"}), "webchat", "r1"),
            row(4, "chat", serde_json::json!({"text": "y", "senderName": "Bo"}), "webchat", "elsewhere"),
        ]);
        assert!(two.contains("<messages>\n<message id=\"2\" from=\"home\" sender=\"Unknown\""), "{two}");
        assert!(two.contains("from=\"unknown:webchat:elsewhere\" sender=\"Bo\""), "{two}");
        assert!(two.ends_with("</messages>"));
    }

    #[test]
    fn local_time_follows_the_zone() {
        let ms = 1_767_647_100_000;
        assert_eq!(local_time(ms, &zone("UTC")), "Jan 5, 2026, 9:05 PM");
        assert_eq!(local_time(ms, &zone("Europe/Berlin")), "Jan 5, 2026, 10:05 PM");
        assert_eq!(local_time(ms, &zone("America/New_York")), "Jan 5, 2026, 4:05 PM");
        assert_eq!(
            local_time(ms, &zone("Not/AZone")),
            "Jan 5, 2026, 9:05 PM",
            "unknown zones fall back to UTC"
        );
    }

    #[test]
    fn host_notes_tasks_quotes_and_files() {
        let d = dests();
        let f = Formatter { tz_name: "UTC", tz: zone("UTC"), destinations: &d, agent_id: "ag-1" };
        let note = f.batch(&[row(
            6,
            "chat",
            serde_json::json!({"text": "failed", "sender": "system"}),
            "agent",
            "ag-1",
        )]);
        assert!(note.contains("from=\"system\" sender=\"system\""), "{note}");
        let task =
            f.batch(&[row(8, "task", serde_json::json!({"prompt": "water the plants"}), "webchat", "r1")]);
        assert!(
            task.contains("<task id=\"8\" from=\"home\"")
                && task.contains("Instructions:\nwater the plants</task>"),
            "{task}"
        );
        let quoted = f.batch(&[row(
            10,
            "chat",
            serde_json::json!({"text": "yes", "replyTo": {"id": "4", "sender": "Bo", "text": "ok?"}, "files": [{"name": "a.png", "url": "/api/files/r1/a.png"}]}),
            "webchat",
            "r1",
        )]);
        assert!(quoted.contains("reply_to=\"4\">\n  <quoted_message from=\"Bo\">ok?</quoted_message>\nyes\n[file: a.png (/api/files/r1/a.png)]</message>"), "{quoted}");
    }

    #[test]
    fn system_prompt_lists_destinations_and_instructions() {
        let s = system_prompt("Ada", "Be brief.", &dests(), &["bash".into()]);
        assert!(s.starts_with("# You are Ada\n"));
        assert!(s.contains("- `home` (Home room)") && s.contains("## Instructions\nBe brief."), "{s}");
        assert!(s.contains("<internal>") && s.contains("Tools available: bash."));
        assert!(system_prompt("Ada", "", &[], &[]).contains("no configured destinations"));
    }
}
