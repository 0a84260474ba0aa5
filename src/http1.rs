//! HTTP/1.1 message framing (RFC 9112), the one head reader of the project.
//!
//! Every HTTP speaker here reads heads through [`read_head`]: the webchat's public listener, the
//! credential proxy on each session's `model.sock`, the runner's client for that socket and the
//! scripted model server of the tests. It is strict where leniency is an attack surface (request
//! smuggling behind a proxy): a byte limit on the whole head and a count limit on its fields,
//! no whitespace before a field's colon, no obsolete line folding, no bare CR, and
//! [`request_framing`] refuses conflicting or invalid `Content-Length` and any
//! `Transfer-Encoding` other than a final `chunked`. [`Chunked`] decodes a chunked body with
//! bounded chunk-size lines and accepts (and discards) trailers.
//!
//! Deadlines are the caller's: it reads through a stream whose timeouts it controls.

use std::io::{self, BufRead, Read};

/// Field lines in one head.
pub const FIELDS_MAX: usize = 100;
/// Longest chunk-size line (hex digits plus extensions).
pub const CHUNK_LINE_BYTES_MAX: usize = 256;
/// Trailer section of a chunked body.
pub const TRAILER_BYTES_MAX: usize = 8 * 1024;

/// Why a head or body could not be read; each maps to one status a server answers with.
#[derive(Debug)]
pub enum Error {
    /// The peer closed the connection before sending anything (not an error for keep-alive).
    Closed,
    /// Reading failed (timeouts included: `io::ErrorKind::WouldBlock`/`TimedOut`).
    Io(io::Error),
    /// The head is larger than the caller's limit (431).
    HeadTooLarge,
    /// The message is malformed (400), with what was wrong.
    Malformed(&'static str),
    /// A transfer coding this implementation does not do (501).
    Unsupported(&'static str),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Closed => f.write_str("connection closed"),
            Error::Io(e) => write!(f, "{e}"),
            Error::HeadTooLarge => f.write_str("message head too large"),
            Error::Malformed(m) => write!(f, "malformed message: {m}"),
            Error::Unsupported(m) => write!(f, "not supported: {m}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

impl Error {
    /// True for a read that ran out of time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Io(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut))
    }
}

/// A message head: the start line and the fields (names lowercased, values trimmed), in order.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Head {
    pub start: String,
    pub fields: Vec<(String, String)>,
}

impl Head {
    /// The first field with this (lowercase) name.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of a field, split on commas (for list-valued fields like `Connection`).
    pub fn tokens<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(k, _)| k == name)
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .filter(|t| !t.is_empty())
    }

    /// True when the list-valued field contains `token` (case-insensitively).
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.tokens(name).any(|t| t.eq_ignore_ascii_case(token))
    }
}

/// Reads one head (through the empty line) of at most `bytes_max` bytes. Leading empty lines are
/// skipped, as RFC 9112 §2.2 allows. Bytes after the head stay in `r`.
pub fn read_head<R: BufRead>(r: &mut R, bytes_max: usize) -> Result<Head, Error> {
    let mut total = 0usize;
    let mut line = Vec::with_capacity(256);
    let mut head = Head::default();
    let mut started = false;
    loop {
        line.clear();
        let n = read_line(r, &mut line, bytes_max.saturating_sub(total))?;
        if n == 0 {
            return Err(if total == 0 {
                Error::Closed
            } else {
                Error::Malformed("connection closed mid-head")
            });
        }
        total += n;
        let text = strip_eol(&line)?;
        if text.is_empty() {
            if !started {
                continue;
            }
            return Ok(head);
        }
        let text = std::str::from_utf8(text).map_err(|_| Error::Malformed("head is not valid UTF-8"))?;
        if !started {
            head.start = text.to_string();
            started = true;
            continue;
        }
        if text.starts_with([' ', '\t']) {
            return Err(Error::Malformed("obsolete line folding in a header field"));
        }
        let (name, value) = text.split_once(':').ok_or(Error::Malformed("header field without a colon"))?;
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(Error::Malformed("invalid header field name"));
        }
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(Error::Malformed("control character in a header field value"));
        }
        if head.fields.len() >= FIELDS_MAX {
            return Err(Error::HeadTooLarge);
        }
        head.fields.push((name.to_ascii_lowercase(), value.trim_matches([' ', '\t']).to_string()));
    }
}

/// Reads up to and including `\n`, taking at most `max` bytes from `r`.
fn read_line<R: BufRead>(r: &mut R, out: &mut Vec<u8>, max: usize) -> Result<usize, Error> {
    let mut n = 0;
    loop {
        let buf = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Io(e)),
        };
        if buf.is_empty() {
            return Ok(n);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        if n + take > max {
            return Err(Error::HeadTooLarge);
        }
        out.extend_from_slice(&buf[..take]);
        r.consume(take);
        n += take;
        if done {
            return Ok(n);
        }
    }
}

/// The line without its `\r\n` (or bare `\n`); a CR anywhere else is refused.
fn strip_eol(line: &[u8]) -> Result<&[u8], Error> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.contains(&b'\r') {
        return Err(Error::Malformed("bare CR in the head"));
    }
    Ok(line)
}

/// RFC 9110 token characters.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// A request line: method, target and the minor version (`HTTP/1.x`).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestLine {
    pub method: String,
    pub target: String,
    pub minor: u8,
}

pub fn parse_request_line(start: &str) -> Result<RequestLine, Error> {
    let mut parts = start.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Error::Malformed("the request line is not `METHOD TARGET HTTP/1.1`"));
    };
    if method.is_empty() || !method.bytes().all(is_tchar) {
        return Err(Error::Malformed("invalid method"));
    }
    if target.is_empty() || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(Error::Malformed("invalid request target"));
    }
    let minor = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        _ => return Err(Error::Unsupported("only HTTP/1.0 and HTTP/1.1 are spoken here")),
    };
    Ok(RequestLine { method: method.to_string(), target: target.to_string(), minor })
}

/// The status code of a response's start line (`HTTP/1.1 200 OK`).
pub fn parse_status_line(start: &str) -> Result<u16, Error> {
    let mut parts = start.splitn(3, ' ');
    let version = parts.next().unwrap_or("");
    if !version.starts_with("HTTP/1.") {
        return Err(Error::Malformed("bad status line"));
    }
    parts
        .next()
        .filter(|s| s.len() == 3)
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(Error::Malformed("bad status code"))
}

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    Length(u64),
    Chunked,
}

/// The body framing of a request (RFC 9112 §6.3), refusing anything ambiguous.
pub fn request_framing(head: &Head) -> Result<Framing, Error> {
    let te: Vec<&str> = head.tokens("transfer-encoding").collect();
    let lengths: Vec<&str> = head
        .fields
        .iter()
        .filter(|(k, _)| k == "content-length")
        .flat_map(|(_, v)| v.split(','))
        .map(str::trim)
        .collect();
    if head.fields.iter().any(|(k, _)| k == "transfer-encoding") {
        if !lengths.is_empty() {
            return Err(Error::Malformed("both Transfer-Encoding and Content-Length are present"));
        }
        return match te.as_slice() {
            [one] if one.eq_ignore_ascii_case("chunked") => Ok(Framing::Chunked),
            [] => Err(Error::Malformed("empty Transfer-Encoding")),
            codings if codings.last().is_some_and(|c| !c.eq_ignore_ascii_case("chunked")) => {
                Err(Error::Malformed("Transfer-Encoding must end with chunked"))
            }
            _ => Err(Error::Unsupported("transfer codings other than chunked")),
        };
    }
    match lengths.as_slice() {
        [] => Ok(Framing::None),
        [first, rest @ ..] => {
            let n = parse_length(first)?;
            if rest.iter().any(|v| parse_length(v).ok() != Some(n)) {
                return Err(Error::Malformed("conflicting Content-Length values"));
            }
            Ok(if n == 0 { Framing::None } else { Framing::Length(n) })
        }
    }
}

fn parse_length(v: &str) -> Result<u64, Error> {
    if v.is_empty() || v.len() > 18 || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Error::Malformed("invalid Content-Length"));
    }
    v.parse().map_err(|_| Error::Malformed("invalid Content-Length"))
}

/// Decodes a chunked body from `r`; reading past the last chunk returns 0 (trailers are read
/// and discarded). Malformed framing is an `InvalidData` I/O error.
pub struct Chunked<R> {
    inner: R,
    /// Bytes left in the current chunk; `None` before a size line.
    left: Option<u64>,
    done: bool,
}

impl<R: BufRead> Chunked<R> {
    pub fn new(inner: R) -> Chunked<R> {
        Chunked { inner, left: None, done: false }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    pub fn inner_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    fn size_line(&mut self) -> io::Result<u64> {
        let mut line = Vec::new();
        let n = read_line(&mut self.inner, &mut line, CHUNK_LINE_BYTES_MAX).map_err(to_io)?;
        if n == 0 {
            return Err(invalid("connection closed in a chunked body"));
        }
        let text = strip_eol(&line).map_err(to_io)?;
        let size = text.split(|&b| b == b';').next().unwrap_or(b"");
        let size =
            std::str::from_utf8(size).map_err(|_| invalid("bad chunk size"))?.trim_end_matches([' ', '\t']);
        if size.is_empty() || size.len() > 15 || !size.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(invalid("bad chunk size"));
        }
        u64::from_str_radix(size, 16).map_err(|_| invalid("bad chunk size"))
    }

    fn trailers(&mut self) -> io::Result<()> {
        let mut total = 0;
        loop {
            let mut line = Vec::new();
            let n = read_line(&mut self.inner, &mut line, TRAILER_BYTES_MAX.saturating_sub(total))
                .map_err(to_io)?;
            if n == 0 {
                return Err(invalid("connection closed in the trailers"));
            }
            total += n;
            if strip_eol(&line).map_err(to_io)?.is_empty() {
                return Ok(());
            }
        }
    }

    fn crlf(&mut self) -> io::Result<()> {
        let mut line = Vec::new();
        read_line(&mut self.inner, &mut line, 2).map_err(to_io)?;
        if strip_eol(&line).map_err(to_io)?.is_empty() && line.ends_with(b"\n") {
            Ok(())
        } else {
            Err(invalid("chunk data not followed by CRLF"))
        }
    }
}

impl<R: BufRead> Read for Chunked<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            match self.left {
                None => {
                    let size = self.size_line()?;
                    if size == 0 {
                        self.trailers()?;
                        self.done = true;
                        return Ok(0);
                    }
                    self.left = Some(size);
                }
                Some(0) => {
                    self.crlf()?;
                    self.left = None;
                }
                Some(left) => {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let n = self.inner.read(&mut buf[..want])?;
                    if n == 0 {
                        return Err(invalid("connection closed in a chunk"));
                    }
                    self.left = Some(left - n as u64);
                    return Ok(n);
                }
            }
        }
    }
}

fn invalid(m: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, m.to_string())
}

fn to_io(e: Error) -> io::Error {
    match e {
        Error::Io(e) => e,
        Error::HeadTooLarge => invalid("chunk line too long"),
        other => invalid(&other.to_string()),
    }
}

/// The reason phrase for a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        303 => "See Other",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        308 => "Permanent Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        410 => "Gone",
        411 => "Length Required",
        413 => "Content Too Large",
        415 => "Unsupported Media Type",
        416 => "Range Not Satisfiable",
        422 => "Unprocessable Content",
        426 => "Upgrade Required",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        505 => "HTTP Version Not Supported",
        507 => "Insufficient Storage",
        529 => "Site Overloaded",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(raw: &[u8]) -> Result<Head, Error> {
        read_head(&mut &raw[..], 16 * 1024)
    }

    #[test]
    fn reads_a_head_and_leaves_the_body() {
        let raw = b"\r\nPOST /x?y=1 HTTP/1.1\r\nHost: a\r\nX-Multi: one, two\r\nx-multi: three\r\n\r\nBODY";
        let mut r = &raw[..];
        let h = read_head(&mut r, 1024).unwrap();
        assert_eq!(h.start, "POST /x?y=1 HTTP/1.1");
        assert_eq!(h.field("host"), Some("a"));
        assert_eq!(h.tokens("x-multi").collect::<Vec<_>>(), ["one", "two", "three"]);
        assert!(h.has_token("x-multi", "TWO"));
        assert_eq!(r, b"BODY");
        let line = parse_request_line(&h.start).unwrap();
        assert_eq!(line, RequestLine { method: "POST".into(), target: "/x?y=1".into(), minor: 1 });
    }

    #[test]
    fn refuses_ambiguous_heads() {
        let cases: &[(&[u8], &str)] = &[
            (b"GET / HTTP/1.1\r\nHost : a\r\n\r\n", "space before colon"),
            (b"GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n", "obs-fold"),
            (b"GET / HTTP/1.1\r\nNoColon\r\n\r\n", "no colon"),
            (b"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", "bare CR"),
            (b"GET / HTTP/1.1\r\nX: a\x00b\r\n\r\n", "NUL in value"),
            (b"GET / HTTP/1.1\r\nHost: a\r\n", "closed mid-head"),
        ];
        for (raw, what) in cases {
            assert!(matches!(head(raw), Err(Error::Malformed(_))), "{what}");
        }
        assert!(matches!(head(b""), Err(Error::Closed)));
        let big = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &vec![b'a'; 20_000], b"\r\n\r\n"].concat();
        assert!(matches!(head(&big), Err(Error::HeadTooLarge)));
        let many: Vec<u8> =
            [b"GET / HTTP/1.1\r\n".to_vec(), b"A: b\r\n".repeat(FIELDS_MAX + 1), b"\r\n".to_vec()].concat();
        assert!(matches!(head(&many), Err(Error::HeadTooLarge)));
        for bad in ["GET /", "GET / HTTP/2.0", "G@T / HTTP/1.1", "GET / HTTP/1.1 extra", "GET  HTTP/1.1"] {
            assert!(parse_request_line(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_status_line("HTTP/1.1 429 Too Many Requests").unwrap(), 429);
        assert!(parse_status_line("HTTP/1.1 20 OK").is_err());
    }

    #[test]
    fn framing_is_strict() {
        let framing = |fields: &[(&str, &str)]| {
            request_framing(&Head {
                start: String::new(),
                fields: fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            })
        };
        assert_eq!(framing(&[]).unwrap(), Framing::None);
        assert_eq!(framing(&[("content-length", "0")]).unwrap(), Framing::None);
        assert_eq!(framing(&[("content-length", "12")]).unwrap(), Framing::Length(12));
        assert_eq!(framing(&[("content-length", "5"), ("content-length", "5")]).unwrap(), Framing::Length(5));
        assert_eq!(framing(&[("transfer-encoding", "Chunked")]).unwrap(), Framing::Chunked);
        for (fields, what) in [
            (vec![("content-length", "5"), ("content-length", "6")], "conflicting lengths"),
            (vec![("content-length", "5, 6")], "conflicting list"),
            (vec![("content-length", "-1")], "negative"),
            (vec![("content-length", "+5")], "signed"),
            (vec![("content-length", "0x10")], "hex"),
            (vec![("content-length", "")], "empty"),
            (vec![("content-length", "99999999999999999999")], "overflow"),
            (vec![("transfer-encoding", "chunked"), ("content-length", "5")], "both"),
            (vec![("transfer-encoding", "chunked, gzip")], "chunked not last"),
            (vec![("transfer-encoding", "chunkedx")], "unknown coding"),
        ] {
            assert!(framing(&fields).is_err(), "{what}");
        }
        assert!(matches!(framing(&[("transfer-encoding", "gzip, chunked")]), Err(Error::Unsupported(_))));
    }

    #[test]
    fn decodes_chunked_bodies_with_extensions_and_trailers() {
        let raw = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: yes\r\n\r\nNEXT";
        let mut r = &raw[..];
        let mut body = String::new();
        let mut c = Chunked::new(&mut r);
        c.read_to_string(&mut body).unwrap();
        assert_eq!(body, "hello world");
        assert_eq!(r, b"NEXT", "nothing past the trailers is consumed");
        for bad in [
            &b"zz\r\nhello\r\n0\r\n\r\n"[..],
            b"5\r\nhelloXX0\r\n\r\n",
            b"5\r\nhel",
            b"ffffffffffffffffff\r\n",
            b"\r\n",
        ] {
            let mut s = Vec::new();
            assert!(Chunked::new(bad).read_to_end(&mut s).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
        let long_line = [vec![b'1'; CHUNK_LINE_BYTES_MAX + 1], b"\r\n".to_vec()].concat();
        assert!(Chunked::new(&long_line[..]).read_to_end(&mut Vec::new()).is_err());
    }
}
