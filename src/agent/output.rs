//! From what the model wrote to what gets delivered.
//!
//! `<message to="NAME">…</message>` blocks go to that destination, `<internal>…</internal>` is
//! dropped, and — unlike a scratchpad design — the remaining plain text is delivered to the
//! conversation being answered, so a reply never vanishes. [`StreamFilter`] applies the same rules
//! incrementally to the text streamed to the browser.

/// One delivery decided from the model's output.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// `None`: the conversation being answered.
    pub to: Option<String>,
    pub text: String,
}

/// Splits the model's final text into deliveries. `is_origin(name)` says whether a destination
/// name means the conversation being answered (its text then joins the reply).
pub fn parse(text: &str, is_origin: &dyn Fn(&str) -> bool) -> Vec<Part> {
    let text = strip_internal(text);
    let mut reply = Vec::new();
    let mut others = Vec::new();
    let mut plain = String::new();
    let mut rest = text.as_str();
    while let Some(start) = rest.find("<message") {
        let Some((to, open_len)) = open_tag(&rest[start..]) else {
            // Not a well-formed opening tag: keep it as text.
            let cut = start + "<message".len();
            plain.push_str(&rest[..cut]);
            rest = &rest[cut..];
            continue;
        };
        plain.push_str(&rest[..start]);
        reply.push(std::mem::take(&mut plain));
        let body_start = start + open_len;
        let (body, after) = match rest[body_start..].find("</message>") {
            Some(end) => (&rest[body_start..body_start + end], body_start + end + "</message>".len()),
            None => (&rest[body_start..], rest.len()),
        };
        if is_origin(&to) {
            reply.push(body.to_string());
        } else {
            others.push(Part { to: Some(to), text: body.trim().to_string() });
        }
        rest = &rest[after..];
    }
    plain.push_str(rest);
    reply.push(plain);
    let reply_text =
        reply.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect::<Vec<_>>().join("\n\n");
    let mut out = Vec::new();
    if !reply_text.is_empty() {
        out.push(Part { to: None, text: reply_text });
    }
    out.extend(others.into_iter().filter(|p| !p.text.is_empty()));
    out
}

/// `<message to="NAME">` at the start of `s`: the name and the tag's length.
fn open_tag(s: &str) -> Option<(String, usize)> {
    let end = s.find('>')?;
    let inner = s[..end].strip_prefix("<message")?;
    if !inner.starts_with(char::is_whitespace) {
        return None;
    }
    let inner = inner.trim();
    let value = inner.strip_prefix("to")?.trim_start().strip_prefix('=')?.trim_start();
    let (quote, value) = match value.chars().next()? {
        q @ ('"' | '\'') => (q, &value[1..]),
        _ => return None,
    };
    let close = value.find(quote)?;
    if !value[close + 1..].trim().is_empty() {
        return None;
    }
    let name = value[..close].trim();
    (!name.is_empty()).then(|| (name.to_string(), end + 1))
}

/// Removes `<internal>…</internal>` (an unclosed one hides the rest).
pub fn strip_internal(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("<internal>") {
        out.push_str(&rest[..start]);
        match rest[start..].find("</internal>") {
            Some(end) => rest = &rest[start + end + "</internal>".len()..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// Filters streamed text like [`parse`] does the final text: hides `<internal>` and blocks for
/// other destinations, drops the tags of blocks for the conversation being answered. A `<` is
/// held back until it is clear whether it starts one of those tags.
pub struct StreamFilter {
    held: String,
    state: State,
    is_origin: Box<dyn Fn(&str) -> bool + Send>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Text,
    Internal,
    /// Inside a `<message>` block; `shown` when it is for the conversation being answered.
    Message {
        shown: bool,
    },
}

/// Longest tag held back before giving up and showing it as text.
const TAG_CHARS_MAX: usize = 200;

impl StreamFilter {
    pub fn new(is_origin: impl Fn(&str) -> bool + Send + 'static) -> StreamFilter {
        StreamFilter { held: String::new(), state: State::Text, is_origin: Box::new(is_origin) }
    }

    /// Feeds a delta; returns the text to show now.
    pub fn push(&mut self, delta: &str) -> String {
        self.held.push_str(delta);
        let mut out = String::new();
        loop {
            let Some(lt) = self.held.find('<') else {
                if self.visible() {
                    out.push_str(&self.held);
                }
                self.held.clear();
                return out;
            };
            if self.visible() {
                out.push_str(&self.held[..lt]);
            }
            self.held.drain(..lt);
            match self.tag() {
                Tag::Incomplete => return out,
                Tag::Known(len, next) => {
                    self.held.drain(..len);
                    self.state = next;
                }
                Tag::Not => {
                    if self.visible() {
                        out.push('<');
                    }
                    self.held.drain(..1);
                }
            }
        }
    }

    /// Whatever is held back at the end of the stream.
    pub fn finish(&mut self) -> String {
        let rest = std::mem::take(&mut self.held);
        if self.visible() { rest } else { String::new() }
    }

    fn visible(&self) -> bool {
        matches!(self.state, State::Text | State::Message { shown: true })
    }

    /// Classifies the `<…` at the start of `held`.
    fn tag(&self) -> Tag {
        let h = self.held.as_str();
        let candidates: &[&str] = match self.state {
            State::Text => &["<internal>", "<message"],
            State::Internal => &["</internal>"],
            State::Message { .. } => &["</message>"],
        };
        for c in candidates {
            if h.len() < c.len() {
                if c.starts_with(h) {
                    return Tag::Incomplete;
                }
                continue;
            }
            if !h.starts_with(c) {
                continue;
            }
            return match *c {
                "<internal>" => Tag::Known(c.len(), State::Internal),
                "</internal>" | "</message>" => Tag::Known(c.len(), State::Text),
                _ => match h.find('>') {
                    None if h.len() > TAG_CHARS_MAX => Tag::Not,
                    None => Tag::Incomplete,
                    Some(end) => match open_tag(&h[..=end]) {
                        Some((to, len)) => Tag::Known(len, State::Message { shown: (self.is_origin)(&to) }),
                        None => Tag::Not,
                    },
                },
            };
        }
        Tag::Not
    }
}

enum Tag {
    Incomplete,
    Known(usize, State),
    Not,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(name: &str) -> bool {
        name == "here"
    }

    fn parts(text: &str) -> Vec<(Option<String>, String)> {
        parse(text, &origin).into_iter().map(|p| (p.to, p.text)).collect()
    }

    #[test]
    fn parsing_table() {
        type Case<'a> = (&'a str, Vec<(Option<&'a str>, &'a str)>);
        let cases: Vec<Case<'_>> = vec![
            ("plain answer", vec![(None, "plain answer")]),
            ("<internal>thinking</internal>The answer.", vec![(None, "The answer.")]),
            ("<message to=\"here\">hi there</message>", vec![(None, "hi there")]),
            ("<message to=\"other\">for them</message>", vec![(Some("other"), "for them")]),
            (
                "Intro\n<message to=\"other\">x</message>\n<message to=\"here\">y</message>\nOutro",
                vec![(None, "Intro\n\ny\n\nOutro"), (Some("other"), "x")],
            ),
            ("<internal>all hidden</internal>", vec![]),
            ("<internal>unclosed hides the rest", vec![]),
            ("<message to='other'>single quotes</message>", vec![(Some("other"), "single quotes")]),
            ("<message to=\"other\">unclosed block", vec![(Some("other"), "unclosed block")]),
            ("a <messagebox> is not a tag", vec![(None, "a <messagebox> is not a tag")]),
            ("<message from=\"x\">no to</message>", vec![(None, "<message from=\"x\">no to</message>")]),
            ("<message to=\"other\">  </message>", vec![]),
            ("2 < 3 and <b>bold</b>", vec![(None, "2 < 3 and <b>bold</b>")]),
        ];
        for (input, want) in cases {
            let want: Vec<(Option<String>, String)> =
                want.into_iter().map(|(t, s)| (t.map(str::to_string), s.to_string())).collect();
            assert_eq!(parts(input), want, "input: {input:?}");
        }
    }

    fn stream(chunks: &[&str]) -> String {
        let mut f = StreamFilter::new(origin);
        let mut out: String = chunks.iter().map(|c| f.push(c)).collect();
        out.push_str(&f.finish());
        out
    }

    #[test]
    fn stream_filter_matches_the_final_parse_whatever_the_chunking() {
        let text = "Hi <internal>secret plan</internal>there. 2 < 3. <message to=\"other\">not here</message>\
                    <message to=\"here\">shown</message> end <messagex";
        let expected = "Hi there. 2 < 3. shown end <messagex";
        assert_eq!(stream(&[text]), expected);
        // Every split point, and char-by-char.
        for i in 0..text.len() {
            if text.is_char_boundary(i) {
                assert_eq!(stream(&[&text[..i], &text[i..]]), expected, "split at {i}");
            }
        }
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let refs: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(stream(&refs), expected);
    }

    #[test]
    fn stream_filter_gives_up_on_overlong_tags() {
        let long = format!("<message {}", "x".repeat(300));
        assert_eq!(stream(&[&long]), long);
    }
}
