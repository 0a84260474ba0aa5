//! Markdown to sanitised HTML for stored messages (the `html` field of a `Message`).
//!
//! pulldown-cmark renders, ammonia keeps only safe tags and attributes: no scripts, no event
//! handlers, no `javascript:` links. `class` survives on `code` so the client can highlight
//! `language-xxx` blocks. Raw HTML in a message is escaped text, never markup.

use std::sync::LazyLock;

use pulldown_cmark::{Event, Options, Parser, html};

static CLEANER: LazyLock<ammonia::Builder<'static>> = LazyLock::new(|| {
    let mut b = ammonia::Builder::default();
    b.add_tag_attributes("code", &["class"])
        .add_tag_attributes("input", &["type", "checked", "disabled"])
        .add_tags(&["input"])
        .link_rel(Some("noopener noreferrer nofollow"))
        .url_schemes(["http", "https", "mailto"].into_iter().collect());
    b
});

/// Renders a message's markdown as safe HTML.
pub fn markdown_to_html(text: &str) -> String {
    let opts = Options::ENABLE_TABLES | Options::ENABLE_STRIKETHROUGH | Options::ENABLE_TASKLISTS;
    // Raw HTML in the source becomes visible text instead of markup.
    let parser = Parser::new_ext(text, opts).map(|ev| match ev {
        Event::Html(s) | Event::InlineHtml(s) => Event::Text(s),
        other => other,
    });
    let mut out = String::with_capacity(text.len() + text.len() / 2 + 16);
    html::push_html(&mut out, parser);
    CLEANER.clean(&out).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_markdown() {
        assert_eq!(markdown_to_html("**hi** `x`"), "<p><strong>hi</strong> <code>x</code></p>\n");
        let code = markdown_to_html("```rust\nfn main() {}\n```");
        assert!(code.contains(r#"<code class="language-rust">"#), "{code}");
        let table = markdown_to_html("| a | b |\n|---|---|\n| 1 | 2 |");
        assert!(table.contains("<table>") && table.contains("<td>1</td>"), "{table}");
    }

    #[test]
    fn neutralises_hostile_input() {
        for (input, forbidden) in [
            ("<script>alert(1)</script>", "<script"),
            ("<img src=x onerror=alert(1)>", "<img"),
            ("[click](javascript:alert(1))", "javascript:"),
            ("<a href=\"javascript:alert(1)\">x</a>", "<a"),
            ("![x](javascript:alert(1))", "javascript:"),
            ("<iframe src=//evil></iframe>", "<iframe"),
            ("<svg onload=alert(1)>", "<svg"),
        ] {
            let out = markdown_to_html(input);
            assert!(!out.contains(forbidden), "{input:?} rendered as {out:?}");
        }
        let escaped = markdown_to_html("<b>bold?</b>");
        assert!(escaped.contains("&lt;b&gt;"), "{escaped}");
        let link = markdown_to_html("[ok](https://example.com)");
        assert!(link.contains(r#"href="https://example.com""#) && link.contains("noopener"), "{link}");
    }
}
