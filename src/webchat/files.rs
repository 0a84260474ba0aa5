//! Files in rooms: what agents send (copied from their session's outbox) lives in
//! `data/webchat/uploads/<room>/` and is served by `GET /api/files/<room>/<name>` to people with
//! access to the room, with headers that keep a hostile file inert (nosniff, a sandboxing CSP,
//! download rather than display for active types).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

pub use crate::ids::{FILE_NAME_CHARS_MAX as NAME_CHARS_MAX, is_plain_file_name as safe_name};

/// A name made safe for storing and for URLs: `[A-Za-z0-9._-]`, others become `_`.
pub fn sanitize(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' || c == '_' { c } else { '_' })
        .take(NAME_CHARS_MAX)
        .collect();
    let s = s.trim_start_matches('.').to_string();
    if s.is_empty() { "file".into() } else { s }
}

/// A file name from a person, made fit to show: no path, no control or invisible characters
/// (bidirectional overrides could disguise `exe.pdf`), no leading dots, at most 100 characters.
pub fn display_name(original: &str) -> String {
    let base = original.rsplit(['/', '\\']).next().unwrap_or_default();
    let s: String = base
        .chars()
        .filter(|&c| !c.is_control() && !crate::host::agents::is_hidden(c))
        .take(UPLOAD_NAME_CHARS_MAX)
        .collect();
    let s = s.trim().trim_start_matches('.').trim();
    if s.is_empty() { "file".into() } else { s.to_string() }
}

/// Longest name of an uploaded file (its stored name adds an 11-character tag).
pub const UPLOAD_NAME_CHARS_MAX: usize = 100;

/// The MIME type for a file name, and whether a browser may show it inline.
pub fn mime_of(name: &str) -> (&'static str, bool) {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "png" => ("image/png", true),
        "jpg" | "jpeg" => ("image/jpeg", true),
        "gif" => ("image/gif", true),
        "webp" => ("image/webp", true),
        "avif" => ("image/avif", true),
        "pdf" => ("application/pdf", true),
        "txt" | "log" => ("text/plain; charset=utf-8", true),
        "md" => ("text/markdown; charset=utf-8", true),
        "csv" => ("text/csv; charset=utf-8", true),
        "json" => ("application/json", true),
        "mp3" => ("audio/mpeg", true),
        "wav" => ("audio/wav", true),
        "mp4" => ("video/mp4", true),
        "webm" => ("video/webm", true),
        "zip" => ("application/zip", false),
        "gz" | "tgz" => ("application/gzip", false),
        // SVG and HTML can carry script: always a download, never rendered in our origin.
        "svg" => ("image/svg+xml", false),
        "html" | "htm" => ("text/html; charset=utf-8", false),
        _ => ("application/octet-stream", false),
    }
}

/// The room's upload directory.
pub fn room_dir(uploads: &Path, room_id: &str) -> PathBuf {
    uploads.join(sanitize(room_id))
}

/// Writes `bytes` into the room as `<tag>-<name>` and returns its `files` entry (idempotent per
/// tag, like [`store`]).
pub fn store_bytes(
    uploads: &Path,
    room_id: &str,
    tag: &str,
    name: &str,
    bytes: &[u8],
) -> anyhow::Result<Value> {
    let stored = format!("{tag}-{}", sanitize(name));
    let dir = room_dir(uploads, room_id);
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(&stored), bytes)?;
    let (mime, _) = mime_of(&stored);
    Ok(json!({
        "name": name,
        "url": format!("/api/files/{}/{stored}", sanitize(room_id)),
        "mime": mime,
        "size": bytes.len(),
    }))
}

/// Copies an agent's staged file into the room under a name unique to the message (`tag`), and
/// returns its `files` entry. Copying again with the same tag overwrites (retries are idempotent).
pub fn store(uploads: &Path, room_id: &str, tag: &str, src: &Path) -> anyhow::Result<Value> {
    let original = src.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let stored = format!("{tag}-{}", sanitize(original));
    let dir = room_dir(uploads, room_id);
    std::fs::create_dir_all(&dir)?;
    let size = std::fs::copy(src, dir.join(&stored))?;
    let (mime, _) = mime_of(&stored);
    Ok(json!({
        "name": original,
        "url": format!("/api/files/{}/{stored}", sanitize(room_id)),
        "mime": mime,
        "size": size,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in ["report.pdf", "a b.txt", "ünïcode.md"] {
            assert!(safe_name(ok), "{ok}");
        }
        for bad in ["", ".", "..", "../x", "a/b", "a\\b", ".hidden", "a\nb"] {
            assert!(!safe_name(bad), "{bad:?}");
        }
        assert_eq!(sanitize("../My Report (1).pdf"), "_My_Report__1_.pdf");
        assert_eq!(sanitize("..."), "file");
        assert_eq!(mime_of("x.PNG"), ("image/png", true));
        assert!(!mime_of("evil.svg").1);
        assert!(!mime_of("page.html").1);
    }

    #[test]
    fn uploaded_names_are_shown_plainly() {
        assert_eq!(display_name("C:\\Users\\me\\Report (final).pdf"), "Report (final).pdf");
        assert_eq!(display_name("../../etc/passwd"), "passwd");
        assert_eq!(display_name("photo\u{202E}gpj.exe"), "photogpj.exe");
        assert_eq!(display_name("..."), "file");
        assert_eq!(display_name("ünïcode <b>.md"), "ünïcode <b>.md");
        assert_eq!(display_name(&"x".repeat(300)).chars().count(), UPLOAD_NAME_CHARS_MAX);
        let stored =
            format!("{}-{}", crate::ids::random_base36(10), sanitize(&display_name(&"ü".repeat(300))));
        assert!(safe_name(&stored), "a stored name is always servable: {stored}");
    }

    #[test]
    fn stores_with_a_tag_and_serves_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("chart.png");
        std::fs::write(&src, b"png bytes").unwrap();
        let entry = store(&dir.path().join("uploads"), "room-1", "abc123", &src).unwrap();
        assert_eq!(
            entry,
            json!({"name": "chart.png", "url": "/api/files/room-1/abc123-chart.png", "mime": "image/png", "size": 9})
        );
        assert!(dir.path().join("uploads/room-1/abc123-chart.png").is_file());
    }
}
