//! The `web_fetch` tool: GET an http(s) URL and return readable text.
//!
//! Link-local and cloud-metadata addresses are refused twice: before each request (the host is
//! resolved and checked, for a clear message) and inside ureq's resolver, which checks the
//! addresses it is about to connect to (so DNS that changes its answer between the two, or a
//! redirect, cannot reach them). Redirects are followed here, hop by hop, so each one is checked.

use std::borrow::Cow;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, ToSocketAddrs};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ureq::http::Uri;
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

use super::fs::{cut_chars, opt_uint_arg};
use super::{Tool, ToolCtx, ToolOutput, str_arg};
use crate::agent::model::ToolSpec;

/// Time for the whole fetch, redirects and body included.
pub const WEB_TIMEOUT: Duration = Duration::from_secs(30);
/// Most bytes of a response body read.
pub const WEB_MAX_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Redirects followed.
pub const WEB_MAX_REDIRECTS: usize = 5;
/// Characters returned when the call gives no `max_chars`.
pub const WEB_DEFAULT_MAX_CHARS: u64 = 50_000;
/// Largest `max_chars` a call may ask for.
pub const WEB_MAX_CHARS: u64 = 200_000;
/// Characters of an error page shown with a non-2xx status.
const ERROR_EXCERPT_CHARS: usize = 500;
const USER_AGENT: &str = concat!("pincer-agent/", env!("CARGO_PKG_VERSION"), " (web_fetch)");
const ACCEPT: &str = "text/html,application/xhtml+xml,application/json;q=0.9,text/plain;q=0.9,*/*;q=0.5";

pub struct WebFetch {
    agent: ureq::Agent,
    timeout: Duration,
}

impl Default for WebFetch {
    fn default() -> WebFetch {
        WebFetch::new()
    }
}

impl WebFetch {
    pub fn new() -> WebFetch {
        WebFetch::with_timeout(WEB_TIMEOUT)
    }

    /// A fetcher with another overall time limit (tests use a short one).
    pub fn with_timeout(timeout: Duration) -> WebFetch {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .timeout_global(Some(timeout))
            .user_agent(USER_AGENT)
            .build();
        let agent = ureq::Agent::with_parts(config, DefaultConnector::default(), GuardedResolver::default());
        WebFetch { agent, timeout }
    }
}

/// ureq's resolver, refusing forbidden addresses right before connecting.
#[derive(Debug, Default)]
struct GuardedResolver(DefaultResolver);

impl Resolver for GuardedResolver {
    fn resolve(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let addrs = self.0.resolve(uri, config, timeout)?;
        if let Some(bad) = addrs.iter().find(|a| forbidden_ip(a.ip())) {
            return Err(ureq::Error::Io(std::io::Error::new(
                std::io::ErrorKind::PermissionDenied,
                format!(
                    "{} resolves to {}, a link-local or metadata address",
                    uri.host().unwrap_or(""),
                    bad.ip()
                ),
            )));
        }
        Ok(addrs)
    }
}

/// Link-local (169.254.0.0/16, fe80::/10), "this host" (0.0.0.0/8, ::) and cloud metadata
/// (fd00:ec2::254) addresses, also inside IPv4-mapped and NAT64 IPv6 addresses.
pub fn forbidden_ip(ip: IpAddr) -> bool {
    fn v4(ip: Ipv4Addr) -> bool {
        ip.is_link_local() || ip.octets()[0] == 0
    }
    match ip {
        IpAddr::V4(ip) => v4(ip),
        IpAddr::V6(ip) => {
            let s = ip.segments();
            let embedded = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
            ip.is_unspecified()
                || (s[0] & 0xffc0) == 0xfe80
                || ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || ip.to_ipv4_mapped().is_some_and(v4)
                || (s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] && v4(embedded))
        }
    }
}

/// Checks one URL: http(s), no credentials, a host that resolves to allowed addresses only.
/// Resolution runs on a helper thread so the fetch's time limit bounds it too.
fn check_url(url: &str, within: Duration) -> Result<Uri, String> {
    let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase()).unwrap_or_default();
    if scheme != "http" && scheme != "https" {
        return Err(if url.contains("://") {
            format!("only http:// and https:// URLs can be fetched, not `{scheme}:`")
        } else {
            format!("`{}` is not a full URL; start it with https:// (or http://)", cut_chars(url, 200))
        });
    }
    let uri: Uri = url.parse().map_err(|e| format!("`{}` is not a valid URL ({e})", cut_chars(url, 200)))?;
    let authority = uri.authority().ok_or_else(|| format!("`{}` has no host", cut_chars(url, 200)))?;
    if authority.as_str().contains('@') {
        return Err("URLs with credentials (user:password@host) are not allowed; leave them out".into());
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(format!("`{}` has no host", cut_chars(url, 200)));
    }
    let port = authority.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
    let (tx, rx) = mpsc::channel();
    let name = host.to_string();
    std::thread::Builder::new()
        .name("web-resolve".into())
        .spawn(move || {
            let _ = tx.send((name.as_str(), port).to_socket_addrs().map(Iterator::collect::<Vec<_>>));
        })
        .map_err(|e| format!("could not resolve {host}: {e}"))?;
    let addrs = match rx.recv_timeout(within) {
        Ok(Ok(addrs)) => addrs,
        Ok(Err(e)) => return Err(format!("could not resolve {host}: {e}")),
        Err(_) => return Err(format!("timed out resolving {host}")),
    };
    if addrs.is_empty() {
        return Err(format!("could not resolve {host}: no addresses"));
    }
    if let Some(bad) = addrs.iter().find(|a| forbidden_ip(a.ip())) {
        return Err(format!(
            "refusing to fetch {}: {host} is {}, a link-local or cloud-metadata address",
            cut_chars(url, 200),
            bad.ip()
        ));
    }
    Ok(uri)
}

/// Resolves a `Location` header against the URL it came from.
fn join_url(base: &Uri, location: &str) -> String {
    let location = location.trim();
    if has_scheme(location) {
        return location.to_string();
    }
    let scheme = base.scheme_str().unwrap_or("http");
    let authority = base.authority().map(|a| a.as_str()).unwrap_or("");
    if let Some(rest) = location.strip_prefix("//") {
        return format!("{scheme}://{rest}");
    }
    if location.starts_with('/') {
        return format!("{scheme}://{authority}{location}");
    }
    let path = base.path();
    if location.starts_with('?') {
        return format!("{scheme}://{authority}{path}{location}");
    }
    let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
    let dir = if dir.is_empty() { "/" } else { dir };
    format!("{scheme}://{authority}{dir}{location}")
}

enum Kind {
    Html,
    Text,
    Other,
}

fn classify(mime: Option<&str>, body: &[u8]) -> Kind {
    let mime = mime.unwrap_or("").trim().to_ascii_lowercase();
    match mime.as_str() {
        "text/html" | "application/xhtml+xml" => return Kind::Html,
        "" | "application/octet-stream" | "binary/octet-stream" => {}
        m if m.starts_with("text/")
            || m.ends_with("+json")
            || m.ends_with("+xml")
            || m.ends_with("/json")
            || m.ends_with("/xml")
            || m.ends_with("javascript")
            || m.ends_with("ecmascript")
            || m.ends_with("yaml")
            || m.ends_with("toml")
            || m.ends_with("/csv")
            || m == "application/x-ndjson" =>
        {
            return Kind::Text;
        }
        _ => return Kind::Other,
    }
    // No useful type: sniff.
    let head = &body[..body.len().min(1024)];
    if head.contains(&0) {
        return Kind::Other;
    }
    match std::str::from_utf8(head) {
        Ok(_) => {}
        Err(e) if e.error_len().is_none() => {}
        Err(_) => return Kind::Other,
    }
    let start = String::from_utf8_lossy(head).trim_start().to_ascii_lowercase();
    if start.starts_with("<!doctype html") || start.starts_with("<html") { Kind::Html } else { Kind::Text }
}

fn decode(body: &[u8], charset: Option<&str>) -> String {
    let latin1 = charset.is_some_and(|c| {
        ["iso-8859-1", "latin1", "latin-1", "windows-1252", "us-ascii", "ascii"]
            .iter()
            .any(|l| c.eq_ignore_ascii_case(l))
    });
    if latin1 {
        body.iter().map(|&b| b as char).collect()
    } else {
        String::from_utf8_lossy(body).into_owned()
    }
}

/// Cuts to `max` characters with a note.
fn cap_chars(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_string(),
        Some((i, _)) => format!(
            "{}\n[cut at {max} of {} characters; ask again with a larger max_chars (up to {WEB_MAX_CHARS}) \
             to see more]",
            &text[..i],
            text.chars().count()
        ),
    }
}

impl Tool for WebFetch {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: "web_fetch".into(),
            description: format!(
                "Fetch a web page or file over http(s) with GET and return it as text: HTML is converted \
                 to readable text (links as [text](url)), JSON and plain text come as they are, other \
                 types only as a short description. Follows up to {WEB_MAX_REDIRECTS} redirects; reads at \
                 most {} MiB; gives up after {} s. Returns at most `max_chars` characters (default \
                 {WEB_DEFAULT_MAX_CHARS}, max {WEB_MAX_CHARS}). Link-local and cloud-metadata addresses \
                 are refused.",
                WEB_MAX_BODY_BYTES / (1024 * 1024),
                self.timeout.as_secs()
            ),
            input_schema: json!({
                "type": "object",
                "properties": {
                    "url": {"type": "string", "description": "The http:// or https:// URL to fetch."},
                    "max_chars": {"type": "integer", "minimum": 1, "maximum": WEB_MAX_CHARS, "description": format!("Most characters to return. Default {WEB_DEFAULT_MAX_CHARS}.")}
                },
                "required": ["url"],
                "additionalProperties": false
            }),
        }
    }

    fn summary(&self, input: &Value) -> String {
        cut_chars(input.get("url").and_then(Value::as_str).unwrap_or(""), 120)
    }

    fn run(&self, input: &Value, ctx: &mut ToolCtx<'_>) -> ToolOutput {
        match self.fetch(input, ctx) {
            Ok(out) => ToolOutput::ok(out),
            Err(e) => ToolOutput::error(e),
        }
    }
}

impl WebFetch {
    fn fetch(&self, input: &Value, ctx: &ToolCtx<'_>) -> Result<String, String> {
        let url = str_arg(input, "url").map_err(|e| e.content)?.trim().to_string();
        let max_chars = opt_uint_arg(input, "max_chars")
            .map_err(|e| e.content)?
            .unwrap_or(WEB_DEFAULT_MAX_CHARS)
            .clamp(1, WEB_MAX_CHARS) as usize;
        let stopped = || "stopped by the user".to_string();
        let deadline = Instant::now() + self.timeout;
        let timed_out =
            || format!("timed out after {}s fetching {}", secs(self.timeout), cut_chars(&url, 200));
        let mut current = url.clone();
        let mut redirects = 0;
        loop {
            if ctx.cancel.is_cancelled() {
                return Err(stopped());
            }
            let uri = check_url(&current, deadline.saturating_duration_since(Instant::now()))?;
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(timed_out());
            }
            let response = self
                .agent
                .get(uri.clone())
                .header("Accept", ACCEPT)
                .config()
                .timeout_global(Some(left))
                .build()
                .call();
            let mut response = match response {
                Ok(r) => r,
                Err(ureq::Error::Timeout(_)) => return Err(timed_out()),
                Err(e) => return Err(format!("fetching {} failed: {e}", cut_chars(&current, 200))),
            };
            let status = response.status();
            if status.is_redirection()
                && let Some(location) = response.headers().get("location").and_then(|l| l.to_str().ok())
            {
                if redirects >= WEB_MAX_REDIRECTS {
                    return Err(format!(
                        "too many redirects (more than {WEB_MAX_REDIRECTS}); the last one pointed to {}",
                        cut_chars(location, 200)
                    ));
                }
                redirects += 1;
                current = join_url(&uri, location);
                continue;
            }
            let body = response.body_mut();
            let mime = body.mime_type().map(str::to_string);
            let charset = body.charset().map(str::to_string);
            let mut bytes = Vec::new();
            let read = body.as_reader().take(WEB_MAX_BODY_BYTES as u64 + 1).read_to_end(&mut bytes);
            if ctx.cancel.is_cancelled() {
                return Err(stopped());
            }
            if let Err(e) = read {
                if Instant::now() >= deadline {
                    return Err(timed_out());
                }
                return Err(format!("reading the response from {} failed: {e}", cut_chars(&current, 200)));
            }
            let truncated = bytes.len() > WEB_MAX_BODY_BYTES;
            bytes.truncate(WEB_MAX_BODY_BYTES);
            let kind = classify(mime.as_deref(), &bytes);
            let mime_shown = mime.as_deref().unwrap_or("no content type");
            if !status.is_success() {
                let excerpt = match kind {
                    Kind::Html => html_to_text(&decode(&bytes, charset.as_deref()), Some(&uri)),
                    Kind::Text => decode(&bytes, charset.as_deref()),
                    Kind::Other => String::new(),
                };
                let excerpt = cut_chars(excerpt.trim(), ERROR_EXCERPT_CHARS);
                return Err(format!(
                    "HTTP {} {} from {}{}{excerpt}",
                    status.as_u16(),
                    status.canonical_reason().unwrap_or(""),
                    cut_chars(&current, 200),
                    if excerpt.is_empty() { "" } else { ":\n" }
                ));
            }
            let size_note = if truncated {
                format!(
                    "\n[only the first {} MiB of the response were read]",
                    WEB_MAX_BODY_BYTES / (1024 * 1024)
                )
            } else {
                String::new()
            };
            let header = format!("{current} ({mime_shown})");
            let text = match kind {
                Kind::Html => html_to_text(&decode(&bytes, charset.as_deref()), Some(&uri)),
                Kind::Text => decode(&bytes, charset.as_deref()),
                Kind::Other => {
                    let size = if truncated {
                        format!("more than {} bytes", WEB_MAX_BODY_BYTES)
                    } else {
                        format!("{} bytes", bytes.len())
                    };
                    return Ok(format!(
                        "{header}\n\n[{mime_shown} content, {size}: not shown as text; fetch a text or HTML \
                         page instead, or download it with bash (curl) if it is needed as a file]"
                    ));
                }
            };
            return Ok(format!("{header}\n\n{}{size_note}", cap_chars(&text, max_chars)));
        }
    }
}

fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 { format!("{}", d.as_secs()) } else { format!("{:.1}", d.as_secs_f64()) }
}

// ---------------------------------------------------------------------------------------------
// HTML to text

/// Elements whose content is never text: skipped up to their end tag.
const SKIP_ELEMENTS: &[&str] =
    &["script", "style", "noscript", "template", "svg", "math", "iframe", "object", "canvas", "select"];
/// Elements that start a new line.
const BLOCK_ELEMENTS: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "body",
    "caption",
    "dd",
    "details",
    "dialog",
    "div",
    "dl",
    "dt",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "header",
    "hgroup",
    "html",
    "legend",
    "main",
    "nav",
    "ol",
    "section",
    "summary",
    "table",
    "tbody",
    "tfoot",
    "thead",
    "tr",
    "ul",
];
/// Elements set off by a blank line.
const PARAGRAPH_ELEMENTS: &[&str] = &["p", "pre", "blockquote", "table", "ul", "ol", "dl", "figure"];

struct Tag<'a> {
    name: String,
    closing: bool,
    attrs: &'a str,
    end: usize,
}

/// Parses the tag starting at `html[start] == '<'`, or `None` when it is not a tag.
fn parse_tag(html: &str, start: usize) -> Option<Tag<'_>> {
    let bytes = html.as_bytes();
    let mut i = start + 1;
    let closing = bytes.get(i) == Some(&b'/');
    if closing {
        i += 1;
    }
    let name_start = i;
    while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'-' || bytes[i] == b':') {
        i += 1;
    }
    if i == name_start || !bytes[name_start].is_ascii_alphabetic() {
        return None;
    }
    let name = html[name_start..i].to_ascii_lowercase();
    let attrs_start = i;
    let mut quote: Option<u8> = None;
    while i < bytes.len() {
        match (quote, bytes[i]) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, b'"' | b'\'') => quote = Some(bytes[i]),
            (None, b'>') => return Some(Tag { name, closing, attrs: &html[attrs_start..i], end: i + 1 }),
            (None, _) => {}
        }
        i += 1;
    }
    Some(Tag { name, closing, attrs: &html[attrs_start..], end: bytes.len() })
}

/// The value of attribute `name` in a tag's attribute text.
fn attr(attrs: &str, name: &str) -> Option<String> {
    let bytes = attrs.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'/') {
            i += 1;
        }
        let key_start = i;
        while i < bytes.len() && !bytes[i].is_ascii_whitespace() && !matches!(bytes[i], b'=' | b'>' | b'/') {
            i += 1;
        }
        let key = &attrs[key_start..i];
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = None;
        if bytes.get(i) == Some(&b'=') {
            i += 1;
            while i < bytes.len() && bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            let (v_start, v_end) = match bytes.get(i) {
                Some(&q @ (b'"' | b'\'')) => {
                    let s = i + 1;
                    let e = attrs[s..].find(q as char).map_or(attrs.len(), |p| s + p);
                    i = (e + 1).min(attrs.len());
                    (s, e)
                }
                _ => {
                    let s = i;
                    while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                        i += 1;
                    }
                    (s, i)
                }
            };
            value = Some(&attrs[v_start..v_end]);
        }
        if key.eq_ignore_ascii_case(name) {
            return value.map(|v| decode_entities(v).into_owned());
        }
        if key.is_empty() && value.is_none() {
            i += 1;
        }
    }
    None
}

/// Finds `needle` (ASCII, lowercase) in `hay` from `from`, ignoring ASCII case.
fn find_ci(hay: &str, from: usize, needle: &str) -> Option<usize> {
    let n = needle.as_bytes();
    hay.as_bytes()[from..].windows(n.len()).position(|w| w.eq_ignore_ascii_case(n)).map(|p| from + p)
}

fn named_entity(name: &str) -> Option<&'static str> {
    Some(match name {
        "amp" => "&",
        "lt" => "<",
        "gt" => ">",
        "quot" => "\"",
        "apos" => "'",
        "nbsp" | "ensp" | "emsp" | "thinsp" => " ",
        "shy" | "zwj" | "zwnj" | "lrm" | "rlm" => "",
        "ndash" => "–",
        "mdash" => "—",
        "hellip" => "…",
        "copy" => "©",
        "reg" => "®",
        "trade" => "™",
        "laquo" => "«",
        "raquo" => "»",
        "lsquo" => "‘",
        "rsquo" => "’",
        "sbquo" => "‚",
        "ldquo" => "“",
        "rdquo" => "”",
        "bdquo" => "„",
        "bull" => "•",
        "middot" => "·",
        "times" => "×",
        "divide" => "÷",
        "plusmn" => "±",
        "deg" => "°",
        "euro" => "€",
        "pound" => "£",
        "yen" => "¥",
        "cent" => "¢",
        "sect" => "§",
        "para" => "¶",
        "frac12" => "½",
        "frac14" => "¼",
        "frac34" => "¾",
        "larr" => "←",
        "rarr" => "→",
        "uarr" => "↑",
        "darr" => "↓",
        "hearts" => "♥",
        "check" => "✓",
        "aacute" => "á",
        "agrave" => "à",
        "acirc" => "â",
        "auml" => "ä",
        "aring" => "å",
        "ccedil" => "ç",
        "eacute" => "é",
        "egrave" => "è",
        "ecirc" => "ê",
        "euml" => "ë",
        "iacute" => "í",
        "icirc" => "î",
        "iuml" => "ï",
        "ntilde" => "ñ",
        "oacute" => "ó",
        "ocirc" => "ô",
        "ouml" => "ö",
        "oslash" => "ø",
        "uacute" => "ú",
        "ugrave" => "ù",
        "ucirc" => "û",
        "uuml" => "ü",
        "szlig" => "ß",
        "Auml" => "Ä",
        "Eacute" => "É",
        "Ouml" => "Ö",
        "Uuml" => "Ü",
        _ => return None,
    })
}

/// Decodes character references (`&amp;`, `&#39;`, `&#x27;` and the common named ones).
pub fn decode_entities(s: &str) -> Cow<'_, str> {
    if !s.contains('&') {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let end = rest[1..].char_indices().take(32).find(|&(_, c)| c == ';' || c == '&' || c.is_whitespace());
        let decoded = match end {
            Some((e, ';')) => {
                let name = &rest[1..1 + e];
                let text = if let Some(num) = name.strip_prefix('#') {
                    let code = match num.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok(),
                        None => num.parse::<u32>().ok(),
                    };
                    code.map(|c| char::from_u32(c).filter(|&c| c != '\0').unwrap_or('\u{fffd}').to_string())
                } else {
                    named_entity(name).map(str::to_string)
                };
                text.map(|t| (t, e + 2))
            }
            _ => None,
        };
        match decoded {
            Some((text, len)) => {
                out.push_str(&text);
                rest = &rest[len..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Builds the text while keeping whitespace tidy.
struct TextOut {
    out: String,
    /// Open links: where their text starts in `out`, and the target.
    links: Vec<(usize, Option<String>)>,
    pre: usize,
}

impl TextOut {
    fn trim_spaces(&mut self) {
        let kept = self.out.trim_end_matches([' ', '\t']).len();
        self.out.truncate(kept);
    }

    /// Ends the current line and makes sure there are `n - 1` blank lines after it.
    fn newlines(&mut self, n: usize) {
        self.trim_spaces();
        if self.out.is_empty() {
            return;
        }
        let have = self.out.len() - self.out.trim_end_matches('\n').len();
        for _ in have..n {
            self.out.push('\n');
        }
    }

    fn text(&mut self, text: &str) {
        if self.pre > 0 {
            self.out.push_str(text);
            return;
        }
        for c in text.chars() {
            if c.is_whitespace() {
                if !self.out.is_empty() && !self.out.ends_with([' ', '\n']) {
                    self.out.push(' ');
                }
            } else {
                self.out.push(c);
            }
        }
    }

    /// Starts a cell or item on the current line (`sep` unless the line is empty).
    fn separate(&mut self, sep: &str) {
        self.trim_spaces();
        if !self.out.is_empty() && !self.out.ends_with('\n') {
            self.out.push_str(sep);
        }
    }
}

/// Whether `href` starts with a scheme (`https:`, `mailto:`...).
fn has_scheme(href: &str) -> bool {
    let end = href.find([':', '/', '?', '#']).unwrap_or(0);
    end > 0
        && href.as_bytes()[end] == b':'
        && href[..end].bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
}

/// Converts HTML to readable text: script, style and the like are dropped, the `<title>` comes
/// first, block elements start new lines, headings and list items get markdown marks, links become
/// `[text](href)` (relative ones resolved against `base`), entities are decoded and blank lines
/// collapsed.
pub fn html_to_text(html: &str, base: Option<&Uri>) -> String {
    let mut t = TextOut { out: String::with_capacity(html.len() / 3), links: Vec::new(), pre: 0 };
    let mut title = String::new();
    let mut in_head = false;
    let bytes = html.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'<' {
            let next = html[i..].find('<').map_or(html.len(), |p| i + p);
            if !in_head {
                t.text(&decode_entities(&html[i..next]));
            }
            i = next;
            continue;
        }
        if html[i..].starts_with("<!--") {
            i = html[i + 4..].find("-->").map_or(html.len(), |p| i + 4 + p + 3);
            continue;
        }
        if html[i..].starts_with("<!") || html[i..].starts_with("<?") {
            i = html[i..].find('>').map_or(html.len(), |p| i + p + 1);
            continue;
        }
        let Some(tag) = parse_tag(html, i) else {
            if !in_head {
                t.text("<");
            }
            i += 1;
            continue;
        };
        i = tag.end;
        let name = tag.name.as_str();
        if tag.closing {
            match name {
                "head" => in_head = false,
                "a" => {
                    if let Some((start, href)) = t.links.pop() {
                        let empty = t.out[start..].trim().is_empty();
                        match href {
                            Some(href) if !empty => {
                                t.trim_spaces();
                                t.out.push_str(&format!("]({href})"));
                            }
                            Some(_) => {
                                t.out.truncate(start - 1);
                            }
                            None => {}
                        }
                    }
                }
                "pre" => {
                    t.pre = t.pre.saturating_sub(1);
                    t.newlines(2);
                }
                "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => t.newlines(2),
                "li" | "dt" | "dd" => t.newlines(1),
                n if PARAGRAPH_ELEMENTS.contains(&n) => t.newlines(2),
                n if BLOCK_ELEMENTS.contains(&n) => t.newlines(1),
                _ => {}
            }
            continue;
        }
        if in_head && !matches!(name, "title" | "meta" | "link" | "base") && !SKIP_ELEMENTS.contains(&name) {
            // Content without a `</head>` or `<body>`: the head is over.
            in_head = false;
        }
        match name {
            "head" => in_head = true,
            "body" => {
                in_head = false;
                t.newlines(1);
            }
            "title" => {
                let end = find_ci(html, i, "</title").unwrap_or(html.len());
                if title.is_empty() {
                    title = decode_entities(&html[i..end]).split_whitespace().collect::<Vec<_>>().join(" ");
                }
                i = html[end..].find('>').map_or(html.len(), |p| end + p + 1);
            }
            n if SKIP_ELEMENTS.contains(&n) => {
                let end = find_ci(html, i, &format!("</{n}")).unwrap_or(html.len());
                i = html[end..].find('>').map_or(html.len(), |p| end + p + 1);
            }
            "meta" | "link" | "base" if in_head => {}
            "br" => {
                t.trim_spaces();
                t.out.push('\n');
            }
            "hr" => {
                t.newlines(2);
                t.out.push_str("---");
                t.newlines(2);
            }
            "h1" | "h2" | "h3" | "h4" | "h5" | "h6" => {
                t.newlines(2);
                let level = usize::from(name.as_bytes()[1] - b'0');
                t.out.push_str(&"#".repeat(level));
                t.out.push(' ');
            }
            "li" => {
                t.newlines(1);
                t.out.push_str("- ");
            }
            "td" | "th" => t.separate(" | "),
            "pre" => {
                t.newlines(2);
                t.pre += 1;
            }
            "img" => {
                if let Some(alt) = attr(tag.attrs, "alt").filter(|a| !a.trim().is_empty()) {
                    t.text(&format!(" [image: {}] ", alt.trim()));
                }
            }
            "a" => {
                let href = attr(tag.attrs, "href")
                    .map(|h| h.trim().to_string())
                    .filter(|h| {
                        !h.is_empty()
                            && !h.starts_with('#')
                            && !h.to_ascii_lowercase().starts_with("javascript:")
                    })
                    .map(|h| match base {
                        Some(base) if !has_scheme(&h) => join_url(base, &h),
                        _ => h,
                    });
                if href.is_some() {
                    t.text(" ");
                    t.out.push('[');
                }
                t.links.push((t.out.len(), href));
            }
            "dt" | "dd" => t.newlines(1),
            n if PARAGRAPH_ELEMENTS.contains(&n) => t.newlines(2),
            n if BLOCK_ELEMENTS.contains(&n) => t.newlines(1),
            _ => {}
        }
    }
    // Tidy: no trailing spaces, at most one blank line in a row.
    let mut out = String::with_capacity(t.out.len() + title.len() + 8);
    if !title.is_empty() {
        out.push_str(&format!("# {title}\n\n"));
    }
    let mut blank = 0;
    for line in t.out.lines() {
        let line = line.trim_end();
        if line.trim().is_empty() {
            blank += 1;
            if blank > 1 {
                continue;
            }
            out.push('\n');
        } else {
            blank = 0;
            out.push_str(line);
            out.push('\n');
        }
    }
    out.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::super::Roots;
    use super::super::fs::testkit::{run, run_with};
    use super::*;
    use crate::agent::model::Cancel;
    use std::io::Write;
    use std::net::{TcpListener, TcpStream};

    fn respond(stream: &mut TcpStream, status: &str, ctype: &str, body: &[u8]) {
        let head = format!(
            "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body);
    }

    fn handle(mut stream: TcpStream) {
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match stream.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        let req = String::from_utf8_lossy(&req);
        let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
        match path.as_str() {
            "/page" => respond(
                &mut stream,
                "200 OK",
                "text/html; charset=utf-8",
                b"<!DOCTYPE html><html><head><title>The &amp; Title</title><style>body{color:red}</style>\
                  <script>var x = '<p>not text</p>';</script></head><body><h1>Hello</h1>\
                  <p>First   para\ngraph &lt;b&gt; caf&eacute; &#233; &#x2014; &nbsp;x</p>\
                  <ul><li>one</li><li>two <a href=\"/next\">next page</a> <a href='mailto:a@b.c'>mail</a><a href=\"x\"> </a></li></ul>\
                  <table><tr><td>a</td><td>b</td></tr></table>\
                  <pre>  keep\n    spacing</pre><!-- comment --><p>last<br>line</p></body></html>",
            ),
            "/json" => respond(&mut stream, "200 OK", "application/json", b"{\"a\": [1, 2], \"b\": \"<x>\"}"),
            "/missing" => respond(&mut stream, "404 Not Found", "text/plain", b"no such thing here"),
            "/big" => respond(&mut stream, "200 OK", "text/plain", &vec![b'a'; 3 * 1024 * 1024]),
            "/image" => respond(&mut stream, "200 OK", "image/png", b"\x89PNG\r\n\x1a\n\0\0\0"),
            "/redirect" => {
                let _ =
                    stream.write_all(b"HTTP/1.1 302 Found\r\nLocation: /json\r\nContent-Length: 0\r\n\r\n");
            }
            "/loop" => {
                let _ =
                    stream.write_all(b"HTTP/1.1 301 Moved\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n");
            }
            "/evil" => {
                let _ = stream.write_all(
                    b"HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\nContent-Length: 0\r\n\r\n",
                );
            }
            "/hang" => {
                // Never answer; hold the connection until the client gives up.
                let _ = stream.read(&mut buf);
            }
            _ => respond(&mut stream, "500 Internal Server Error", "text/plain", b"unexpected"),
        }
    }

    /// A tiny HTTP server on 127.0.0.1 (one thread per connection); returns its base URL.
    fn server() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || handle(stream));
            }
        });
        format!("http://{addr}")
    }

    fn roots() -> Roots {
        Roots::new("/nonexistent-workspace".into())
    }

    #[test]
    fn html_becomes_readable_text() {
        let base = server();
        let out = run(&WebFetch::new(), &roots(), json!({"url": format!("{base}/page")}));
        assert!(!out.is_error, "{}", out.content);
        let expected = format!(
            "{base}/page (text/html)\n\n# The & Title\n\n# Hello\n\nFirst para graph <b> café é — x\n\n\
             - one\n- two [next page]({base}/next) [mail](mailto:a@b.c)\n\na | b\n\n  keep\n    spacing\n\n\
             last\nline"
        );
        assert_eq!(out.content, expected);
    }

    #[test]
    fn json_passes_through_and_redirects_are_followed() {
        let base = server();
        let out = run(&WebFetch::new(), &roots(), json!({"url": format!("{base}/json")}));
        assert_eq!(
            out.content,
            format!("{base}/json (application/json)\n\n{{\"a\": [1, 2], \"b\": \"<x>\"}}")
        );
        let out = run(&WebFetch::new(), &roots(), json!({"url": format!("{base}/redirect")}));
        assert!(!out.is_error && out.content.starts_with(&format!("{base}/json ")), "{}", out.content);
        let out = run(&WebFetch::new(), &roots(), json!({"url": format!("{base}/loop")}));
        assert!(out.is_error && out.content.contains("too many redirects"), "{}", out.content);
    }

    #[test]
    fn error_statuses_big_bodies_and_binary() {
        let base = server();
        let out = run(&WebFetch::new(), &roots(), json!({"url": format!("{base}/missing")}));
        assert!(out.is_error);
        assert_eq!(out.content, format!("HTTP 404 Not Found from {base}/missing:\nno such thing here"));

        let out = run(&WebFetch::new(), &roots(), json!({"url": format!("{base}/big")}));
        assert!(!out.is_error);
        assert!(
            out.content.contains("cut at 50000 of 2097152 characters"),
            "{}",
            &out.content[out.content.len() - 300..]
        );
        assert!(out.content.ends_with("[only the first 2 MiB of the response were read]"));
        assert!(out.content.len() < 50_500);
        let out = run(&WebFetch::new(), &roots(), json!({"url": format!("{base}/big"), "max_chars": 10}));
        assert!(out.content.contains("\n\naaaaaaaaaa\n[cut at 10 of"), "{}", out.content);

        let out = run(&WebFetch::new(), &roots(), json!({"url": format!("{base}/image")}));
        assert!(
            !out.is_error && out.content.contains("[image/png content, 11 bytes: not shown"),
            "{}",
            out.content
        );
    }

    #[test]
    fn a_server_that_never_answers_times_out() {
        let base = server();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let out = run(
                &WebFetch::with_timeout(Duration::from_secs(1)),
                &roots(),
                json!({"url": format!("{base}/hang")}),
            );
            let _ = tx.send(out);
        });
        let out = rx.recv_timeout(Duration::from_secs(15)).expect("web_fetch did not time out");
        assert!(out.is_error && out.content.starts_with("timed out after 1s"), "{}", out.content);
    }

    #[test]
    fn refused_schemes_credentials_and_addresses() {
        let base = server();
        let fetch = WebFetch::new();
        let cases = [
            ("file:///etc/passwd", "only http:// and https://"),
            ("ftp://example.com/x", "only http:// and https://"),
            ("gopher://example.com/", "only http:// and https://"),
            ("example.com/page", "not a full URL"),
            ("http://169.254.169.254/latest/meta-data/", "link-local or cloud-metadata"),
            ("http://169.254.1.1:8080/", "link-local or cloud-metadata"),
            ("http://0.0.0.0/", "link-local or cloud-metadata"),
            ("http://[fe80::1]/", "link-local or cloud-metadata"),
            ("http://[::ffff:169.254.169.254]/", "link-local or cloud-metadata"),
            ("http://[fd00:ec2::254]/", "link-local or cloud-metadata"),
            ("http://user:secret@127.0.0.1/", "credentials"),
        ];
        for (url, expected) in cases {
            let out = run(&fetch, &roots(), json!({"url": url}));
            assert!(out.is_error && out.content.contains(expected), "{url}: {}", out.content);
        }
        // A redirect to the metadata address is checked like the first URL.
        let out = run(&fetch, &roots(), json!({"url": format!("{base}/evil")}));
        assert!(out.is_error && out.content.contains("169.254.169.254"), "{}", out.content);
        // ureq's own resolver refuses too, even when the first check is bypassed.
        let err = fetch.agent.get("http://169.254.169.254/").call().unwrap_err();
        assert!(err.to_string().contains("link-local"), "{err}");
        // Stopped before starting.
        let cancel = Cancel::default();
        cancel.cancel();
        let out = run_with(&fetch, &roots(), &cancel, json!({"url": format!("{base}/json")}));
        assert!(out.is_error && out.content.contains("stopped"), "{}", out.content);
    }

    #[test]
    fn forbidden_addresses() {
        for ip in [
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "fe80::1",
            "febf::1",
            "::",
            "::ffff:169.254.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(forbidden_ip(ip.parse().unwrap()), "{ip}");
        }
        for ip in
            ["127.0.0.1", "10.0.0.1", "93.184.216.34", "::1", "2001:db8::1", "fec0::1", "::ffff:127.0.0.1"]
        {
            assert!(!forbidden_ip(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn url_joining_entities_and_summary() {
        let base: Uri = "http://h:1/a/b?q=1".parse().unwrap();
        assert_eq!(join_url(&base, "/x"), "http://h:1/x");
        assert_eq!(join_url(&base, "c"), "http://h:1/a/c");
        assert_eq!(join_url(&base, "?z"), "http://h:1/a/b?z");
        assert_eq!(join_url(&base, "//other/p"), "http://other/p");
        assert_eq!(join_url(&base, "https://e.com/"), "https://e.com/");
        assert_eq!(join_url(&base, "/go?to=http://x"), "http://h:1/go?to=http://x");
        assert_eq!(decode_entities("a &amp; b &unknown; &#65;&#x42; &"), "a & b &unknown; AB &");
        assert!(
            has_scheme("mailto:x") && has_scheme("HTTPS://x") && !has_scheme("a/b:c") && !has_scheme(":x")
        );
        let page: Uri = "https://site.org/docs/intro.html".parse().unwrap();
        let text =
            html_to_text("<a href=\"guide.html\">Guide</a><a href='?p=2'>2</a><a href=x></a>", Some(&page));
        assert_eq!(
            text,
            "[Guide](https://site.org/docs/guide.html) [2](https://site.org/docs/intro.html?p=2)"
        );
        let text = html_to_text("<head><title>T</title></head><p>x &lt; y</p><script>a<b</script>", None);
        assert_eq!(text, "# T\n\nx < y");
        assert_eq!(html_to_text("<head><meta charset=utf-8><div>no body tag</div>", None), "no body tag");
        assert_eq!(WebFetch::new().summary(&json!({"url": "https://example.com/"})), "https://example.com/");
    }
}
