//! Identifiers and clocks shared by host and agent.
//!
//! Ids look like `<prefix>-<epoch ms>-<6 base36>`: sortable by creation time, unique enough for
//! one install, and safe to use in file names and container names.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch. The only place that reads the wall clock for ids and rows;
/// logic that decides on time takes `now` as an argument instead.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// `n` random bytes from the OS.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the OS random source failed");
    buf
}

/// A new id `<prefix>-<ms>-<6 base36>`.
pub fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}-{}", now_ms(), random_base36(6))
}

/// `len` random characters from `[0-9a-z]`.
pub fn random_base36(len: usize) -> String {
    const ALPHABET: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = String::with_capacity(len);
    while out.len() < len {
        for b in random_bytes::<16>() {
            // Reject the top of the range so every character is equally likely.
            if b < 252 && out.len() < len {
                out.push(ALPHABET[(b % 36) as usize] as char);
            }
        }
    }
    out
}

/// A random token of `2 * N` lowercase hex characters.
pub fn random_hex<const N: usize>() -> String {
    random_bytes::<N>().iter().map(|b| format!("{b:02x}")).collect()
}

/// `normalize_name("Hello World!") == "hello-world"`: lowercase, runs of anything outside
/// `[a-z0-9]` become `-`, trimmed, at most 48 characters, `unnamed` when nothing is left.
pub fn normalize_name(s: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in s.chars().flat_map(char::to_lowercase) {
        if c.is_ascii_lowercase() || c.is_ascii_digit() {
            if dash && !out.is_empty() {
                out.push('-');
            }
            dash = false;
            out.push(c);
        } else {
            dash = true;
        }
        if out.len() >= 48 {
            break;
        }
    }
    let out = out.trim_end_matches('-').to_string();
    if out.is_empty() { "unnamed".to_string() } else { out }
}

/// True for names that are safe as a single path component and in a container name.
/// Longest file name taken from an agent or a user.
pub const FILE_NAME_CHARS_MAX: usize = 128;

/// A plain file name: no path separators, no leading dot, no control characters, not `.`/`..`.
pub fn is_plain_file_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= FILE_NAME_CHARS_MAX
        && !name.starts_with('.')
        && !name.contains(['/', '\\'])
        && !name.chars().any(char::is_control)
}

pub fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_have_the_documented_shape() {
        let id = new_id("sess");
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(parts[0], "sess");
        assert!(parts[1].parse::<i64>().unwrap() > 1_700_000_000_000);
        assert_eq!(parts[2].len(), 6);
        assert!(parts[2].bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
        assert_ne!(new_id("x"), new_id("x"));
    }

    #[test]
    fn normalizes_names() {
        assert_eq!(normalize_name("Hello World!"), "hello-world");
        assert_eq!(normalize_name("  --Ünïcode__Bot 2 "), "n-code-bot-2");
        assert_eq!(normalize_name("!!!"), "unnamed");
        assert!(is_slug(&normalize_name("Any Name At All")));
        assert!(!is_slug("../etc"));
        assert!(!is_slug("-x"));
    }
}
