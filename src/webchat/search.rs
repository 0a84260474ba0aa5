//! Search: every word of the query (the last also as a prefix) over the messages of the rooms
//! the caller may see, best matches first, with an excerpt. Secrets are masked in results as
//! everywhere else; the excerpt is cut from the masked text, so it never shows part of a secret.

use serde_json::json;

use super::Ctx;
use super::wire::{ApiError, ApiResult, Req, Resp, User};
use crate::db::central;

/// Longest query.
pub const QUERY_CHARS_MAX: usize = 200;
/// Words used from a query.
pub const WORDS_MAX: usize = 10;
/// Default and largest number of results.
pub const RESULTS_DEFAULT: i64 = 50;
pub const RESULTS_MAX: i64 = 200;

/// Characters of context on each side of the first match in an excerpt.
const SNIPPET_CONTEXT_CHARS: usize = 60;

/// An excerpt of `text` (already masked) around the first query word it contains, on one line.
fn snippet(text: &str, words: &[String]) -> String {
    let flat: Vec<char> = text.split_whitespace().collect::<Vec<_>>().join(" ").chars().collect();
    let lower: String = flat.iter().collect::<String>().to_lowercase();
    let at = words
        .iter()
        .filter_map(|w| lower.find(&w.to_lowercase()))
        .min()
        .map(|byte| lower[..byte].chars().count())
        .unwrap_or(0);
    let start = at.saturating_sub(SNIPPET_CONTEXT_CHARS);
    let end = (at + SNIPPET_CONTEXT_CHARS * 2).min(flat.len());
    let mut out: String = flat[start..end].iter().collect();
    if start > 0 {
        out.insert(0, '…');
    }
    if end < flat.len() {
        out.push('…');
    }
    out
}

/// `GET /api/search?q=TEXT&room_id=?&limit=?`.
pub fn search(ctx: &Ctx, user: &User, req: &Req) -> ApiResult {
    let q = req.query("q").unwrap_or("").trim();
    if q.is_empty() {
        return Err(ApiError::bad("give the words to look for in `q`"));
    }
    if q.chars().count() > QUERY_CHARS_MAX {
        return Err(ApiError::bad(format!("`q` is longer than {QUERY_CHARS_MAX} characters")));
    }
    let limit = match req.query("limit") {
        None => RESULTS_DEFAULT,
        Some(s) => s.parse::<i64>().ok().filter(|n| (1..=RESULTS_MAX).contains(n)).ok_or_else(|| {
            ApiError::bad(format!("invalid limit={s:?}: expected a whole number from 1 to {RESULTS_MAX}"))
        })?,
    };
    let words: Vec<String> = q.split_whitespace().take(WORDS_MAX).map(str::to_string).collect();
    let visible: Vec<String> = ctx.store.rooms_for(&user.id, user.owner)?.into_iter().map(|r| r.id).collect();
    let rooms = match req.query("room_id") {
        None => visible,
        Some(id) if visible.iter().any(|r| r == id) => vec![id.to_string()],
        Some(id) => return Err(ApiError(404, format!("no room {id:?}"))),
    };
    let mut conn = ctx.store.conn()?;
    // What was stored in the last moments waits for its batch: indexed first, so it is found.
    // If that fails (a full disk), what is indexed is still searched.
    if let Err(e) = super::indexer::index_all(&mut conn) {
        log::warn!("indexing the newest messages before a search: {e:#}");
    }
    let hits = central::search(&conn, &words, &rooms, limit)?;
    let results: Vec<_> = hits
        .iter()
        .map(|m| {
            json!({
                "room_id": m.room_id,
                "seq": m.seq,
                "snippet": snippet(&super::redact::redact(&m.text), &words),
                "message": super::redact::message(m),
            })
        })
        .collect();
    Ok(Resp::json(200, &json!({ "results": results })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_centre_on_the_first_match() {
        let words = vec!["fox".to_string()];
        assert_eq!(snippet("the quick brown fox", &words), "the quick brown fox");
        let long = format!("{} the fox {}", "a ".repeat(100), "b ".repeat(100));
        let s = snippet(&long, &words);
        assert!(s.starts_with('…') && s.ends_with('…') && s.contains("the fox"), "{s}");
        assert_eq!(snippet("no match\nhere", &words), "no match here");
        assert_eq!(snippet("Ünïcode FOX", &words), "Ünïcode FOX");
    }
}
