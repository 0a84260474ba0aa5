//! HTTP/1.1 to the host's credential proxy over the session's Unix socket (`/workspace/model.sock`).
//!
//! The proxy is pincer's own, so this side stays small: one request per connection, the proxy
//! answers with a status line, headers and `Connection: close`, and the body runs to EOF. A stall
//! watchdog (a read timeout per read) ends a stream that goes silent; a stop shuts the socket down,
//! which ends a blocked read at once.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::Value;

use crate::agent::model::{Cancel, HookGuard, ModelError};
use crate::http1;

/// A stream with no bytes for this long is considered dead (local models may think for minutes
/// before their first token on a long prompt).
pub const STALL_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest response head.
pub const HEAD_BYTES_MAX: usize = 64 * 1024;
/// Largest error body kept for the message.
pub const ERROR_BODY_BYTES_MAX: u64 = 64 * 1024;

#[derive(Debug, Clone)]
pub struct ProxyHttp {
    socket: PathBuf,
    stall: Duration,
}

pub struct HttpResponse {
    pub status: u16,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: BufReader<UnixStream>,
    _cancel_hook: HookGuard,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The body of an error response, bounded, as text.
    pub fn error_text(mut self) -> String {
        let mut buf = Vec::new();
        let _ = (&mut self.body).take(ERROR_BODY_BYTES_MAX).read_to_end(&mut buf);
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// `retry-after` in whole seconds, if the server sent one.
    pub fn retry_after_s(&self) -> Option<u64> {
        self.header("retry-after")
            .and_then(|v| v.trim().parse::<f64>().ok())
            .map(|s| s.ceil().max(0.0) as u64)
    }
}

impl ProxyHttp {
    pub fn new(socket: PathBuf) -> ProxyHttp {
        ProxyHttp { socket, stall: STALL_TIMEOUT }
    }

    /// A client with a shorter stall watchdog (tests).
    pub fn with_stall(mut self, stall: Duration) -> ProxyHttp {
        self.stall = stall;
        self
    }

    /// `POST path` with a JSON body. Returns the response with its body unread; transport
    /// failures are [`ModelError::Transport`] (or `Cancelled` after a stop).
    pub fn post_json(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: &Value,
        cancel: &Cancel,
    ) -> Result<HttpResponse, ModelError> {
        let stall = self.stall;
        let transport = |what: &str, e: std::io::Error| {
            if cancel.is_cancelled() {
                ModelError::Cancelled
            } else if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
                ModelError::Timeout(format!("{what}: nothing within {} s", stall.as_secs()))
            } else {
                ModelError::Transport(format!("{what}: {e}"))
            }
        };
        let mut stream = UnixStream::connect(&self.socket)
            .map_err(|e| transport(&format!("connecting to the model proxy {}", self.socket.display()), e))?;
        stream.set_read_timeout(Some(self.stall)).map_err(|e| transport("socket", e))?;
        let closer = stream.try_clone().map_err(|e| transport("socket", e))?;
        let hook = cancel.on_cancel(move || {
            let _ = closer.shutdown(std::net::Shutdown::Both);
        });
        let body = serde_json::to_vec(body).expect("JSON values serialise");
        let mut head = format!(
            "POST {path} HTTP/1.1\r\nHost: pincer-proxy\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("Connection: close\r\n\r\n");
        stream
            .write_all(head.as_bytes())
            .and_then(|()| stream.write_all(&body))
            .map_err(|e| transport("sending the request", e))?;
        let mut reader = BufReader::new(stream);
        let (status, headers) = read_head(&mut reader).map_err(|e| transport("reading the response", e))?;
        Ok(HttpResponse { status, headers, body: reader, _cancel_hook: hook })
    }
}

fn read_head(r: &mut impl BufRead) -> std::io::Result<(u16, Vec<(String, String)>)> {
    let bad = |m: String| std::io::Error::new(std::io::ErrorKind::InvalidData, m);
    let head = match http1::read_head(r, HEAD_BYTES_MAX) {
        Ok(h) => h,
        Err(http1::Error::Io(e)) => return Err(e),
        Err(http1::Error::Closed) => {
            return Err(bad("connection closed before the response head ended".into()));
        }
        Err(e) => return Err(bad(format!("response head: {e}"))),
    };
    let status = http1::parse_status_line(&head.start).map_err(|e| bad(e.to_string()))?;
    Ok((status, head.fields))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixListener;

    fn serve_once(response: &'static [u8]) -> (tempfile::TempDir, PathBuf, std::thread::JoinHandle<String>) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let t = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let mut r = BufReader::new(s.try_clone().unwrap());
            let mut req = String::new();
            loop {
                let mut l = String::new();
                r.read_line(&mut l).unwrap();
                req.push_str(&l);
                if l == "\r\n" {
                    break;
                }
            }
            let len: usize =
                req.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap().trim().parse().unwrap();
            let mut body = vec![0; len];
            r.read_exact(&mut body).unwrap();
            s.write_all(response).unwrap();
            req + &String::from_utf8(body).unwrap()
        });
        (dir, path, t)
    }

    #[test]
    fn posts_json_and_reads_status_headers_and_body() {
        let (_d, path, t) = serve_once(
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 2.5\r\nConnection: close\r\n\r\n{\"error\":1}",
        );
        let http = ProxyHttp::new(path);
        let resp = http
            .post_json(
                "/openai/chat/completions",
                &[("X-Extra", "1")],
                &serde_json::json!({"a": 1}),
                &Cancel::default(),
            )
            .unwrap();
        assert_eq!(resp.status, 429);
        assert_eq!(resp.retry_after_s(), Some(3));
        assert_eq!(resp.error_text(), "{\"error\":1}");
        let req = t.join().unwrap();
        assert!(req.starts_with("POST /openai/chat/completions HTTP/1.1\r\n"), "{req}");
        assert!(req.contains("X-Extra: 1\r\n") && req.ends_with("{\"a\":1}"), "{req}");
    }

    #[test]
    fn a_missing_proxy_is_a_transport_error() {
        let http = ProxyHttp::new("/nonexistent/model.sock".into());
        let err = http.post_json("/x", &[], &serde_json::json!({}), &Cancel::default()).err().unwrap();
        assert!(matches!(err, ModelError::Transport(ref m) if m.contains("model proxy")), "{err:?}");
    }
}
