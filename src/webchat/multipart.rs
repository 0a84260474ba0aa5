//! `multipart/form-data` (RFC 7578) read as a stream from any reader: part heads are parsed
//! within a bound, part bodies are copied to a writer as they arrive, so an upload of any size
//! goes to disk through a fixed 64 KiB buffer.
//!
//! The stream is read as if it began with CRLF, so the first delimiter needs no special case;
//! a preamble before it (bounded) and an epilogue after the closing delimiter are ignored.

use std::io::{self, Read, Write};

use memchr::memmem::Finder;

/// The read buffer; a part body streams through it.
const BUF_BYTES: usize = 64 * 1024;
/// Largest header block of one part.
pub const HEAD_BYTES_MAX: usize = 8 * 1024;
/// Largest preamble before the first delimiter.
const PREAMBLE_BYTES_MAX: usize = 16 * 1024;
/// Largest boundary (RFC 2046 §5.1.1).
const BOUNDARY_BYTES_MAX: usize = 70;

#[derive(Debug)]
pub enum Error {
    /// The body is not well-formed multipart; says what was wrong.
    Malformed(String),
    /// A part's body is larger than the caller allowed.
    TooLarge,
    Io(io::Error),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Malformed(m) => write!(f, "malformed multipart body: {m}"),
            Error::TooLarge => write!(f, "a part is larger than allowed"),
            Error::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

fn malformed<T>(m: &str) -> Result<T, Error> {
    Err(Error::Malformed(m.into()))
}

/// The boundary of a `multipart/form-data` Content-Type, or why there is none.
pub fn boundary(content_type: &str) -> Result<String, String> {
    let mut params = content_type.split(';');
    let kind = params.next().unwrap_or_default().trim();
    if !kind.eq_ignore_ascii_case("multipart/form-data") {
        return Err(format!("expected Content-Type multipart/form-data, got {kind:?}"));
    }
    for p in params {
        let Some((k, v)) = p.split_once('=') else { continue };
        if k.trim().eq_ignore_ascii_case("boundary") {
            let v = v.trim();
            let v = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(v);
            if v.is_empty() || v.len() > BOUNDARY_BYTES_MAX || !v.bytes().all(|b| (b' '..=b'~').contains(&b))
            {
                return Err("the multipart boundary must be 1-70 printable ASCII characters".into());
            }
            return Ok(v.to_string());
        }
    }
    Err("the multipart Content-Type has no boundary".into())
}

/// One part's head.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PartHead {
    /// The form field (`name=`).
    pub name: String,
    /// The file's name as the client sent it (`filename=`); not yet safe for any path.
    pub filename: Option<String>,
    pub content_type: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// Before the first delimiter.
    Preamble,
    /// Just after a delimiter: `--` ends, CRLF starts a part.
    Delimiter,
    /// Inside a part's body.
    Body,
    Done,
}

/// A multipart body being read.
pub struct Multipart<R> {
    r: R,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
    /// `CRLF--boundary`.
    delim: Vec<u8>,
    finder: Finder<'static>,
    state: State,
}

impl<R: Read> Multipart<R> {
    pub fn new(r: R, boundary: &str) -> Multipart<R> {
        let delim = format!("\r\n--{boundary}").into_bytes();
        let finder = Finder::new(&delim).into_owned();
        let mut buf = vec![0u8; BUF_BYTES].into_boxed_slice();
        buf[..2].copy_from_slice(b"\r\n");
        Multipart { r, buf, start: 0, end: 2, eof: false, delim, finder, state: State::Preamble }
    }

    /// Reads more bytes after what is buffered; false at the end of the stream.
    fn fill(&mut self) -> Result<bool, Error> {
        if self.eof {
            return Ok(false);
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Ok(true);
        }
        loop {
            match self.r.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.start..self.end]
    }

    /// The next part's head, or `None` after the closing delimiter. An unread rest of the
    /// previous part is skipped.
    pub fn next_part(&mut self) -> Result<Option<PartHead>, Error> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Preamble => {
                    let mut skipped = 0;
                    loop {
                        if let Some(i) = self.finder.find(self.pending()) {
                            self.start += i + self.delim.len();
                            break;
                        }
                        let keep = self.delim.len() - 1;
                        let drop = self.pending().len().saturating_sub(keep);
                        self.start += drop;
                        skipped += drop;
                        if skipped > PREAMBLE_BYTES_MAX {
                            return malformed("no boundary where the body starts");
                        }
                        if !self.fill()? {
                            return malformed("the body has no boundary");
                        }
                    }
                    self.state = State::Delimiter;
                }
                State::Body => {
                    self.copy_part(&mut io::sink(), u64::MAX)?;
                }
                State::Delimiter => {
                    // `--` closes; else optional padding and CRLF, then a head.
                    while self.pending().len() < 2 + 8 && self.fill()? {}
                    if self.pending().starts_with(b"--") {
                        self.state = State::Done;
                        return Ok(None);
                    }
                    let pad = self.pending().iter().take_while(|&&b| b == b' ' || b == b'\t').count();
                    self.start += pad;
                    if !self.pending().starts_with(b"\r\n") {
                        return malformed("a boundary line does not end with CRLF");
                    }
                    self.start += 2;
                    let head = self.head()?;
                    self.state = State::Body;
                    return Ok(Some(head));
                }
            }
        }
    }

    /// Reads a part's header block (up to and including the blank line).
    fn head(&mut self) -> Result<PartHead, Error> {
        let len = loop {
            let p = self.pending();
            if p.starts_with(b"\r\n") {
                break 0;
            }
            if let Some(i) = memchr::memmem::find(p, b"\r\n\r\n") {
                break i + 2;
            }
            if p.len() > HEAD_BYTES_MAX {
                return malformed(&format!("a part's headers are longer than {HEAD_BYTES_MAX} bytes"));
            }
            if !self.fill()? {
                return malformed("the body ended inside a part's headers");
            }
        };
        if len > HEAD_BYTES_MAX {
            return malformed(&format!("a part's headers are longer than {HEAD_BYTES_MAX} bytes"));
        }
        let block = String::from_utf8_lossy(&self.pending()[..len]).into_owned();
        self.start += len + 2;
        let mut head = PartHead::default();
        let mut disposition = false;
        for line in block.split("\r\n").filter(|l| !l.is_empty()) {
            let Some((k, v)) = line.split_once(':') else {
                return malformed(&format!("a part header without a colon: {:?}", truncate(line)));
            };
            let k = k.trim();
            if k.eq_ignore_ascii_case("content-disposition") {
                let (name, filename) = disposition_params(v)?;
                head.name = name;
                head.filename = filename;
                disposition = true;
            } else if k.eq_ignore_ascii_case("content-type") {
                head.content_type = Some(v.trim().to_string());
            }
        }
        if !disposition {
            return malformed("a part has no Content-Disposition");
        }
        Ok(head)
    }

    /// Copies the current part's body to `out`; at most `max` bytes, else [`Error::TooLarge`].
    /// Returns the bytes copied.
    pub fn copy_part(&mut self, out: &mut dyn Write, max: u64) -> Result<u64, Error> {
        if self.state != State::Body {
            return Ok(0);
        }
        let mut total: u64 = 0;
        loop {
            let found = self.finder.find(self.pending());
            let take = match found {
                Some(i) => i,
                None => self.pending().len().saturating_sub(self.delim.len() - 1),
            };
            total += take as u64;
            if total > max {
                return Err(Error::TooLarge);
            }
            out.write_all(&self.buf[self.start..self.start + take])?;
            self.start += take;
            if found.is_some() {
                self.start += self.delim.len();
                self.state = State::Delimiter;
                return Ok(total);
            }
            if !self.fill()? {
                return malformed("the body ended before the part's closing boundary");
            }
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(60).collect()
}

/// `form-data; name="x"; filename="y"` → (name, filename). Quoted values may hold `;`;
/// browsers escape `"` as `%22` and send names as UTF-8.
fn disposition_params(v: &str) -> Result<(String, Option<String>), Error> {
    let v = v.trim();
    let (kind, mut rest) = v.split_once(';').unwrap_or((v, ""));
    if !kind.trim().eq_ignore_ascii_case("form-data") {
        return malformed(&format!("a part's Content-Disposition is {:?}, not form-data", truncate(kind)));
    }
    let mut name = None;
    let mut filename = None;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ';']);
        if rest.is_empty() {
            break;
        }
        let Some((k, after)) = rest.split_once('=') else { break };
        let k = k.trim().to_ascii_lowercase();
        let after = after.trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let mut out = String::new();
            let mut chars = q.char_indices();
            let mut end = None;
            while let Some((i, c)) = chars.next() {
                match c {
                    '\\' => {
                        if let Some((_, c2)) = chars.next() {
                            out.push(c2);
                        }
                    }
                    '"' => {
                        end = Some(i + 1);
                        break;
                    }
                    c => out.push(c),
                }
            }
            let Some(end) = end else { return malformed("an unclosed quote in Content-Disposition") };
            (out, &q[end..])
        } else {
            let end = after.find(';').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        match k.as_str() {
            "name" => name = Some(value),
            "filename" => filename = Some(value.replace("%22", "\"")),
            _ => {}
        }
        rest = next;
    }
    match name {
        Some(n) => Ok((n, filename)),
        None => malformed("a part's Content-Disposition has no name"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(parts: &[(&str, Option<&str>, &[u8])], b: &str) -> Vec<u8> {
        let mut out = b"preamble to ignore\r\n".to_vec();
        for (name, file, data) in parts {
            out.extend_from_slice(format!("--{b}\r\n").as_bytes());
            match file {
                Some(f) => out.extend_from_slice(
                    format!("Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n").as_bytes(),
                ),
                None => out.extend_from_slice(format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes()),
            }
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("--{b}--\r\nepilogue").as_bytes());
        out
    }

    /// Reads one byte at a time at most `step` bytes per read: every split point is exercised.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn all(raw: &[u8], b: &str, step: usize) -> Result<Vec<(PartHead, Vec<u8>)>, Error> {
        let mut m = Multipart::new(Trickle(raw, step), b);
        let mut out = Vec::new();
        while let Some(h) = m.next_part()? {
            let mut data = Vec::new();
            m.copy_part(&mut data, u64::MAX)?;
            out.push((h, data));
        }
        Ok(out)
    }

    #[test]
    fn parts_come_out_whole_however_the_bytes_arrive() {
        // Data that nearly looks like the delimiter, and a file larger than the buffer.
        let tricky = b"line\r\n--boun\r\n-\r\n--bou--bound\n--bound\r\n".to_vec();
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let raw = body(
            &[("caption", None, b"hello"), ("file", Some("a.bin"), &tricky), ("file", Some("big"), &big)],
            "bound",
        );
        for step in [1, 2, 3, 7, 64, 4096, 1 << 20] {
            let parts = all(&raw, "bound", step).unwrap();
            assert_eq!(parts.len(), 3, "step {step}");
            assert_eq!((parts[0].0.name.as_str(), parts[0].0.filename.as_deref()), ("caption", None));
            assert_eq!(parts[0].1, b"hello");
            assert_eq!(parts[1].0.filename.as_deref(), Some("a.bin"));
            assert_eq!(parts[1].1, tricky, "step {step}");
            assert_eq!(parts[2].1, big, "step {step}");
            assert_eq!(parts[2].0.content_type.as_deref(), Some("application/octet-stream"));
        }
    }

    #[test]
    fn an_unread_part_is_skipped_and_limits_hold() {
        let raw = body(&[("file", Some("x"), &[7u8; 5000]), ("caption", None, b"hi")], "b");
        let mut m = Multipart::new(&raw[..], "b");
        assert_eq!(m.next_part().unwrap().unwrap().name, "file");
        assert_eq!(m.next_part().unwrap().unwrap().name, "caption", "the file's body skipped");
        let mut m = Multipart::new(&raw[..], "b");
        m.next_part().unwrap();
        assert!(matches!(m.copy_part(&mut Vec::new(), 4999), Err(Error::TooLarge)));
        let mut m = Multipart::new(&raw[..], "b");
        m.next_part().unwrap();
        assert_eq!(m.copy_part(&mut Vec::new(), 5000).unwrap(), 5000);
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let cut = &body(&[("file", Some("x"), b"data")], "b")[..40];
        for (raw, want) in [
            (&b"no boundary at all"[..], "no boundary"),
            (cut, "ended"),
            (b"--b\r\nContent-Type: x\r\n\r\ndata\r\n--b--", "no Content-Disposition"),
            (b"--b\r\nContent-Disposition: attachment; name=\"f\"\r\n\r\nx\r\n--b--", "not form-data"),
            (b"--b\r\nContent-Disposition: form-data; name=\"f\r\n\r\nx\r\n--b--", "unclosed quote"),
            (b"--bX\r\n", "CRLF"),
        ] {
            let e = all(raw, "b", 5).unwrap_err().to_string();
            assert!(e.contains(want), "{e} (wanted {want})");
        }
        let huge =
            format!("--b\r\nContent-Disposition: form-data; name=\"f\"\r\nX: {}\r\n\r\n", "a".repeat(9000));
        assert!(all(huge.as_bytes(), "b", 1000).unwrap_err().to_string().contains("longer than"));
    }

    #[test]
    fn content_types_and_names() {
        assert_eq!(boundary("multipart/form-data; boundary=----x1").unwrap(), "----x1");
        assert_eq!(boundary("Multipart/Form-Data; charset=utf-8; boundary=\"a b\"").unwrap(), "a b");
        assert!(boundary("application/json").unwrap_err().contains("multipart/form-data"));
        assert!(boundary("multipart/form-data").unwrap_err().contains("no boundary"));
        assert!(boundary(&format!("multipart/form-data; boundary={}", "x".repeat(71))).is_err());
        let (n, f) = disposition_params(r#"form-data; name="file"; filename="a;b %22q%22 ü.txt""#).unwrap();
        assert_eq!((n.as_str(), f.as_deref()), ("file", Some("a;b \"q\" ü.txt")));
        let (n, f) = disposition_params("form-data; name=caption").unwrap();
        assert_eq!((n.as_str(), f), ("caption", None));
    }
}
