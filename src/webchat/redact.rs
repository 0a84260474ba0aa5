//! Secrets masked in everything sent to browsers and push services: messages (text and HTML)
//! in live events, history, the API and notifications. The DB keeps the raw text; an agent
//! that pasted a key into a reply does not show it to every device in the room.
//!
//! What is recognised: Anthropic and OpenAI-style keys, GitHub, AWS, Slack and Discord tokens,
//! Azure client secrets, PEM private keys, passwords in connection strings, `NAME=value` for
//! names that say password, secret, token or key, and "password: value" in prose. A match
//! becomes `[LABEL:<first 4>****<last 2>]` (a PEM block just `[PRIVATE_KEY]`).
//!
//! Cost: one linear pass of a lazy DFA over the text for all rules together (a history page
//! is masked at hundreds of MB/s), so masking is no lever for making the server work hard.

use std::borrow::Cow;
use std::sync::LazyLock;

use crate::db::central::RoomMessage;

/// Every rule in one multi-pattern regex (a lazy DFA: linear time, one pass over the text).
/// Word boundaries are ASCII ones, which the DFA handles; all secrets here are ASCII.
struct Rules {
    re: regex_automata::meta::Regex,
    /// Per pattern: its label, and the capture group holding the secret (0: the whole match).
    rules: Vec<(&'static str, usize)>,
}

static RULES: LazyLock<Rules> = LazyLock::new(|| {
    let list: [(&'static str, &str, usize); 11] = [
        ("PRIVATE_KEY", r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----", 0),
        ("ANTHROPIC_KEY", r"\bsk-ant-[a-z]+\d*-[A-Za-z0-9_\-]{20,}", 0),
        ("API_KEY", r"\bsk-(?:proj-|svcacct-|or-v1-)?[A-Za-z0-9_\-]{20,}", 0),
        ("GITHUB_TOKEN", r"\b(?:gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,})", 0),
        ("AWS_KEY", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", 0),
        ("SLACK_TOKEN", r"\bxox[bpras]-[A-Za-z0-9\-]{10,}", 0),
        ("DISCORD_TOKEN", r"\b[MNO][A-Za-z\d]{23,25}\.[\w\-]{6}\.[\w\-]{27,}", 0),
        ("AZURE_SECRET", r"\b[A-Za-z0-9_~.\-]{3}\dQ~[A-Za-z0-9_~.\-]{31,34}", 0),
        ("PASSWORD", r"\b[a-z][a-z0-9+.\-]*://[^\s:/@]+:([^\s@/]{3,})@", 1),
        (
            "SECRET",
            r"(?i)\b[A-Z0-9_]*(?:PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY)[A-Z0-9_]*\s*[=:]\s*[\x22']?([^\s\x22'<]{6,})",
            1,
        ),
        (
            "PASSWORD",
            r"(?i)\b(?:password|passwd|passcode|pin code)\s*(?:is|:)\s*[\x22']?([^\s\x22'<]{4,})",
            1,
        ),
    ];
    let patterns: Vec<String> = list.iter().map(|(_, p, _)| p.replace(r"\b", r"(?-u:\b)")).collect();
    Rules {
        re: regex_automata::meta::Regex::new_many(&patterns).expect("redaction patterns compile"),
        rules: list.iter().map(|&(label, _, group)| (label, group)).collect(),
    }
});

/// The text with secrets masked (borrowed when there are none). All rules look at the original
/// text; where matches overlap, the rule listed first wins.
pub fn redact(text: &str) -> Cow<'_, str> {
    let spans = spans(text);
    if spans.is_empty() {
        return Cow::Borrowed(text);
    }
    Cow::Owned(render(text, 0, &spans))
}

/// The secrets in `text`: (start, end, label), in order, not overlapping. Matches are leftmost;
/// where several rules match at one place, the one listed first wins.
fn spans(text: &str) -> Vec<(usize, usize, &'static str)> {
    use regex_automata::{Anchored, Input};
    let mut out = Vec::new();
    let mut caps = RULES.re.create_captures();
    // Finding is the fast path; groups are resolved only within a match (rarely).
    for m in RULES.re.find_iter(text) {
        let (label, group) = RULES.rules[m.pattern().as_usize()];
        if group == 0 {
            out.push((m.start(), m.end(), label));
            continue;
        }
        let input = Input::new(text).range(m.range()).anchored(Anchored::Pattern(m.pattern()));
        RULES.re.search_captures(&input, &mut caps);
        if let Some(span) = caps.get_group(group) {
            out.push((span.start, span.end, label));
        }
    }
    out
}

/// `text[from..]` with the spans masked; a span that starts before `from` is masked whole.
fn render(text: &str, from: usize, spans: &[(usize, usize, &'static str)]) -> String {
    let mut out = String::with_capacity(text.len() - from);
    let mut last = from;
    for &(start, end, label) in spans {
        if end <= from {
            continue;
        }
        out.push_str(&text[last..start.max(last)]);
        out.push_str(&mask(label, &text[start..end]));
        last = end;
    }
    out.push_str(&text[last..]);
    out
}

fn mask(label: &str, secret: &str) -> String {
    if label == "PRIVATE_KEY" {
        return "[PRIVATE_KEY]".into();
    }
    let chars: Vec<char> = secret.chars().collect();
    if chars.len() < 10 {
        return format!("[{label}:****]");
    }
    let head: String = chars[..4].iter().collect();
    let tail: String = chars[chars.len() - 2..].iter().collect();
    format!("[{label}:{head}****{tail}]")
}

/// A message as a browser or push service may see it.
pub fn message(m: &RoomMessage) -> Cow<'_, RoomMessage> {
    let text = redact(&m.text);
    let html = redact(&m.html);
    let raw_tools = m.tools.as_ref().map(|t| t.to_string());
    let masked_tools = raw_tools.as_deref().map(redact);
    let tools_changed = matches!(masked_tools, Some(Cow::Owned(_)));
    let tools = masked_tools.map(Cow::into_owned);
    if matches!((&text, &html), (Cow::Borrowed(_), Cow::Borrowed(_))) && !tools_changed {
        return Cow::Borrowed(m);
    }
    let mut shown = m.clone();
    shown.text = text.into_owned();
    shown.html = html.into_owned();
    if tools_changed {
        // Masking works on the JSON text; a mask never breaks its syntax, else the list is dropped.
        shown.tools = tools.and_then(|t| serde_json::from_str(&t).ok());
    }
    Cow::Owned(shown)
}

/// Messages as a browser may see them.
pub fn messages(list: &[RoomMessage]) -> Vec<Cow<'_, RoomMessage>> {
    list.iter().map(message).collect()
}

/// Whether an unfinished word could still turn into something the rules mask: anything but
/// plain letters, a long run, or a word right after "password".
fn might_be_secret(word: &str, before: &str) -> bool {
    if word.chars().count() > 12 || !word.chars().all(char::is_alphabetic) {
        return true;
    }
    let tail: String = before
        .chars()
        .rev()
        .take(24)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect::<String>()
        .to_lowercase();
    ["password", "passwd", "passcode", "pin code"].iter().any(|k| tail.contains(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_summaries_of_a_message_are_masked_too() {
        let m = RoomMessage {
            id: "m".into(),
            seq: 1,
            room_id: "r".into(),
            sender: "A".into(),
            sender_id: None,
            sender_type: "agent".into(),
            text: "done".into(),
            html: "<p>done</p>".into(),
            files: serde_json::json!([]),
            created_at: 0,
            client_id: None,
            card: None,
            reactions: serde_json::json!([]),
            edited_at: None,
            deleted_at: None,
            tools: Some(
                serde_json::json!([{ "name": "bash", "summary": "curl -H 'x-api-key: sk-ant-api03-AAAAbbbbCCCCddddEEEEffff1234'" }]),
            ),
        };
        let shown = message(&m);
        let summary = shown.tools.as_ref().unwrap()[0]["summary"].as_str().unwrap().to_string();
        assert!(summary.contains("[ANTHROPIC_KEY:sk-a****34]") && !summary.contains("EEEEffff"), "{summary}");
        let plain = RoomMessage { tools: Some(serde_json::json!([{ "name": "ls", "summary": "." }])), ..m };
        assert!(matches!(message(&plain), Cow::Borrowed(_)), "nothing to mask: no copy");
    }

    #[test]
    fn streamed_secrets_are_masked_however_they_are_split() {
        let text = "Here: export API_TOKEN=abcdef123456 and sk-ant-api03-AAAAbbbbCCCCddddEEEEffff1234 done.\n\
                    -----BEGIN PRIVATE KEY-----\nMIIEvQIBADAN\n-----END PRIVATE KEY-----\nbye";
        let want = redact(text).into_owned();
        for step in [1, 2, 3, 5, 7, 11, 64] {
            let mut r = StreamRedactor::default();
            let chars: Vec<char> = text.chars().collect();
            let mut shown = String::new();
            for piece in chars.chunks(step) {
                shown.push_str(&r.push(&piece.iter().collect::<String>()));
            }
            shown.push_str(&r.finish());
            for secret in ["abcdef123456", "AAAAbbbbCCCC", "MIIEvQIBADAN"] {
                assert!(!shown.contains(secret), "step {step}: {secret} shown in {shown:?}");
            }
            assert!(
                shown.starts_with("Here: export API_TOKEN=") && shown.ends_with("bye"),
                "step {step}: {shown:?}"
            );
            if step == 64 {
                assert_eq!(shown, want);
            }
        }
        // Plain words flow at once; only what could become a secret waits for the next piece.
        let mut r = StreamRedactor::default();
        assert_eq!(r.push("Hello wor"), "Hello wor");
        assert_eq!(r.push("ld, and sk-an"), "ld, and ");
        assert_eq!(r.push("t-api03-AAAAbbbbCCCCddddEEEEffff1234 ok"), "[ANTHROPIC_KEY:sk-a****34] ok");
        assert_eq!(r.push(" the password is hunter"), " the password is ");
        assert_eq!(r.finish(), "[PASSWORD:****]");
    }

    #[test]
    fn secrets_are_masked_and_the_rest_kept() {
        let cases = [
            ("key sk-ant-api03-AAAAbbbbCCCCddddEEEEffff1234 ok", "key [ANTHROPIC_KEY:sk-a****34] ok"),
            ("oauth sk-ant-oat01-abcdefghijklmnopqrstuvwx", "oauth [ANTHROPIC_KEY:sk-a****wx]"),
            ("openai sk-proj-abcdefghijklmnopqrstuvwxyz", "openai [API_KEY:sk-p****yz]"),
            ("gh ghp_abcdefghijklmnopqrstuvwxyz0123456789", "gh [GITHUB_TOKEN:ghp_****89]"),
            ("aws AKIAABCDEFGHIJKLMNOP end", "aws [AWS_KEY:AKIA****OP] end"),
            ("slack xoxb-1234567890-abcdef", "slack [SLACK_TOKEN:xoxb****ef]"),
            ("postgres://app:hunter2secret@db:5432/x", "postgres://app:[PASSWORD:hunt****et]@db:5432/x"),
            ("DB_PASSWORD=correcthorse", "DB_PASSWORD=[SECRET:corr****se]"),
            ("export GITHUB_TOKEN='abcdefghijkl'", "export GITHUB_TOKEN='[SECRET:abcd****kl]'"),
            ("my password is swordfish12", "my password is [PASSWORD:swor****12]"),
            ("-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----", "[PRIVATE_KEY]"),
            ("password: short", "password: [PASSWORD:****]"),
        ];
        for (input, want) in cases {
            assert_eq!(redact(input), want, "{input:?}");
        }
        for plain in ["hello world", "skip this", "the token bucket fills", "sk-short", "ask-ant-x"] {
            assert!(matches!(redact(plain), Cow::Borrowed(_)), "{plain:?} is not a secret");
        }
    }
}

/// Longest text held back while a streamed PEM block is open.
pub const HELD_BYTES_MAX: usize = 16 * 1024;
/// Text already shown that a new piece is read together with (so "password is" shown earlier
/// still masks what follows).
const CONTEXT_CHARS: usize = 64;

/// Masks secrets in streamed model text, where a secret may arrive in pieces: the last,
/// unfinished word is held back until the next piece (or the end), an open private-key block
/// until it closes, and each piece is read with the end of what was shown before it.
#[derive(Default)]
pub struct StreamRedactor {
    pending: String,
    context: String,
}

impl StreamRedactor {
    /// Feeds a delta; returns what may be shown now.
    pub fn push(&mut self, delta: &str) -> String {
        self.pending.push_str(delta);
        // An open private-key block waits for its whole END line.
        let closed = |p: &str| p.find("-----END").is_some_and(|i| p[i..].contains("KEY-----"));
        let in_key = self.pending.contains("-----BEGIN") && !closed(&self.pending);
        if in_key && self.pending.len() < HELD_BYTES_MAX {
            return String::new();
        }
        let key_end = self
            .pending
            .find("-----END")
            .and_then(|i| self.pending[i..].find("KEY-----").map(|j| i + j + "KEY-----".len()))
            .filter(|_| self.pending.contains("-----BEGIN"));
        let space = self
            .pending
            .rfind(char::is_whitespace)
            .map(|i| i + self.pending[i..].chars().next().map_or(1, char::len_utf8));
        // A last word that cannot be (the start of) a secret need not wait for the next piece.
        let word_start = space.unwrap_or(0);
        let word = &self.pending[word_start..];
        let recent = format!("{}{}", self.context, &self.pending[..word_start]);
        let space = if !word.is_empty() && !might_be_secret(word, &recent) {
            Some(self.pending.len())
        } else {
            space
        };
        let cut = match (space, key_end) {
            _ if in_key => self.pending.len(),
            (Some(s), Some(k)) => s.max(k),
            (None, Some(k)) => k,
            (Some(s), None) => s,
            (None, None) if self.pending.len() >= HELD_BYTES_MAX => self.pending.len(),
            (None, None) => return String::new(),
        };
        let chunk: String = self.pending.drain(..cut).collect();
        self.show(&chunk)
    }

    /// The end of the stream: everything left.
    pub fn finish(&mut self) -> String {
        let chunk = std::mem::take(&mut self.pending);
        self.show(&chunk)
    }

    fn show(&mut self, chunk: &str) -> String {
        if chunk.is_empty() {
            return String::new();
        }
        let joined = format!("{}{chunk}", self.context);
        let shown = render(&joined, self.context.len(), &spans(&joined));
        let keep = joined.char_indices().rev().nth(CONTEXT_CHARS - 1).map_or(0, |(i, _)| i);
        self.context = joined[keep..].to_string();
        shown
    }
}
