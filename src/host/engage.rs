//! Which agents of a room take part in a message: a pure function of the room's settings, its
//! wirings and the text, so the rules are tested as tables.
//!
//! - `@folder` (any case, as a word) mentions an agent: mentioned agents answer.
//! - A message that mentions nobody goes to the room's prime agent when it has one (still wired);
//!   otherwise to every agent (`broadcast`) or to none (`mention-only`).
//! - Per wiring: `mention` answers only when mentioned; `mention-sticky` also keeps answering
//!   after being mentioned (instead of the prime), until another agent is mentioned; `pattern`
//!   with a pattern of its own answers when the pattern matches (whatever was mentioned);
//!   `pattern` with `.` (the default) follows the room's rules above.

use crate::db::central::{Engagement, Wiring};

/// A wiring and its agent's folder (what `@` mentions).
pub struct Member<'a> {
    pub wiring: &'a Wiring,
    pub folder: &'a str,
}

/// What the room decided for a message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Decision {
    /// Agents that answer, by id.
    pub engaged: Vec<String>,
    /// The room's sticky agent after this message, if it changed (`Some(None)`: cleared).
    pub sticky: Option<Option<String>>,
}

/// `@folder` in `text`, case-insensitive, as a whole word.
pub fn mentions(text: &str, folder: &str) -> bool {
    let lower = text.to_lowercase();
    let needle = format!("@{folder}");
    lower.match_indices(&needle).any(|(i, _)| {
        let before_ok = i == 0 || !lower[..i].chars().next_back().is_some_and(|c| c.is_alphanumeric());
        let after = &lower[i + needle.len()..];
        let after_ok = !after.chars().next().is_some_and(|c| c.is_alphanumeric() || c == '-' || c == '_');
        before_ok && after_ok
    })
}

fn own_pattern(w: &Wiring) -> Option<&str> {
    match w.engage_pattern.as_deref() {
        None | Some("") | Some(".") => None,
        Some(p) => Some(p),
    }
}

/// Decides a message. `matches(pattern, text)` evaluates a wiring's own pattern.
pub fn decide(
    room: &Engagement,
    members: &[Member<'_>],
    text: &str,
    matches: &mut dyn FnMut(&str, &str) -> bool,
) -> Decision {
    let mentioned: Vec<&Member<'_>> = members.iter().filter(|m| mentions(text, m.folder)).collect();
    let is_mentioned = |id: &str| mentioned.iter().any(|m| m.wiring.agent_id == id);
    let prime = room.prime_agent_id.as_deref().filter(|p| members.iter().any(|m| m.wiring.agent_id == *p));
    let sticky = room.sticky_agent_id.as_deref().filter(|s| {
        members.iter().any(|m| m.wiring.agent_id == *s && m.wiring.engage_mode == "mention-sticky")
    });
    let mut engaged = Vec::new();
    for m in members {
        let id = m.wiring.agent_id.as_str();
        let yes = match m.wiring.engage_mode.as_str() {
            "mention" => is_mentioned(id),
            "mention-sticky" => is_mentioned(id) || (mentioned.is_empty() && sticky == Some(id)),
            _ => match own_pattern(m.wiring) {
                Some(p) => matches(p, text),
                None if !mentioned.is_empty() => is_mentioned(id),
                // A sticky conversation has the unaddressed messages.
                None if sticky.is_some() => false,
                None => match prime {
                    Some(p) => p == id,
                    None => room.engage_default != "mention-only",
                },
            },
        };
        if yes {
            engaged.push(id.to_string());
        }
    }
    // A mention moves the sticky conversation: to a sticky agent mentioned, else away.
    let sticky_change = if mentioned.is_empty() {
        None
    } else {
        let next = mentioned
            .iter()
            .find(|m| m.wiring.engage_mode == "mention-sticky")
            .map(|m| m.wiring.agent_id.clone());
        (next.as_deref() != room.sticky_agent_id.as_deref()).then_some(next)
    };
    Decision { engaged, sticky: sticky_change }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wiring(agent: &str, mode: &str, pattern: &str) -> Wiring {
        Wiring {
            id: format!("w-{agent}"),
            room_id: "r".into(),
            agent_id: agent.into(),
            engage_mode: mode.into(),
            engage_pattern: Some(pattern.into()),
            sender_scope: "all".into(),
            ignored_message_policy: "drop".into(),
            session_mode: "shared".into(),
            priority: 0,
        }
    }

    fn room(prime: Option<&str>, default: &str, sticky: Option<&str>) -> Engagement {
        Engagement {
            prime_agent_id: prime.map(str::to_string),
            engage_default: default.into(),
            sticky_agent_id: sticky.map(str::to_string),
        }
    }

    /// `pattern` wirings match a test pattern `has:<word>`.
    fn run(room: &Engagement, wirings: &[Wiring], text: &str) -> Decision {
        let members: Vec<Member<'_>> =
            wirings.iter().map(|w| Member { wiring: w, folder: &w.agent_id }).collect();
        decide(room, &members, text, &mut |p, t| p.strip_prefix("has:").is_some_and(|w| t.contains(w)))
    }

    #[test]
    fn the_room_decides_who_answers() {
        let two = [wiring("ann", "pattern", "."), wiring("bob", "pattern", ".")];
        // (prime, default, text) → engaged
        let table: &[(Option<&str>, &str, &str, &[&str])] = &[
            (None, "broadcast", "hello", &["ann", "bob"]),
            (None, "mention-only", "hello", &[]),
            (None, "mention-only", "hi @bob", &["bob"]),
            (None, "broadcast", "hi @BOB and @ann", &["ann", "bob"]),
            (Some("ann"), "broadcast", "hello", &["ann"]),
            (Some("ann"), "mention-only", "hello", &["ann"]),
            (Some("ann"), "broadcast", "@bob what do you think?", &["bob"]),
            (Some("ann"), "broadcast", "@ann and @bob", &["ann", "bob"]),
            (Some("gone"), "mention-only", "hello", &[]),
            (None, "broadcast", "mail me at x@bobby.org", &["ann", "bob"]),
            (None, "mention-only", "email@bob", &[]),
        ];
        for (prime, default, text, want) in table {
            let d = run(&room(*prime, default, None), &two, text);
            assert_eq!(d.engaged, *want, "prime {prime:?}, {default}, {text:?}");
        }
    }

    #[test]
    fn wirings_with_their_own_rules() {
        let w = [
            wiring("ann", "pattern", "."),
            wiring("watch", "pattern", "has:alert"),
            wiring("quiet", "mention", "."),
        ];
        let r = room(Some("ann"), "broadcast", None);
        assert_eq!(run(&r, &w, "hello").engaged, ["ann"]);
        assert_eq!(run(&r, &w, "an alert!").engaged, ["ann", "watch"], "a pattern of its own matches");
        assert_eq!(
            run(&r, &w, "@quiet an alert").engaged,
            ["watch", "quiet"],
            "mentioning one takes it from the prime"
        );
    }

    #[test]
    fn a_sticky_agent_keeps_the_conversation_until_someone_else_is_mentioned() {
        let w = [wiring("ann", "pattern", "."), wiring("tut", "mention-sticky", ".")];
        let r0 = room(Some("ann"), "broadcast", None);
        let d = run(&r0, &w, "@tut teach me");
        assert_eq!(
            (d.engaged.as_slice(), d.sticky.clone()),
            (&["tut".to_string()][..], Some(Some("tut".into())))
        );
        let r1 = room(Some("ann"), "broadcast", Some("tut"));
        let d = run(&r1, &w, "and then?");
        assert_eq!(
            (d.engaged.as_slice(), d.sticky.clone()),
            (&["tut".to_string()][..], None),
            "not the prime too"
        );
        let d = run(&r1, &w, "@ann thanks");
        assert_eq!(
            (d.engaged.as_slice(), d.sticky),
            (&["ann".to_string()][..], Some(None)),
            "mentioning another ends it"
        );
    }

    #[test]
    fn mention_detection() {
        assert!(mentions("hey @assistant, hi", "assistant"));
        assert!(mentions("@Assistant", "assistant"));
        assert!(!mentions("hey @assistants", "assistant"));
        assert!(!mentions("mail me at x@assistant", "assistant"));
        assert!(!mentions("hey assistant", "assistant"));
    }
}
