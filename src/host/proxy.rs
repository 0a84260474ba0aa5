//! The credential proxy: how agent containers reach a model without ever holding an API key.
//!
//! Every running session gets a Unix socket `model.sock` in its directory (`/workspace/model.sock`
//! inside). The runner sends plain HTTP requests there; the proxy accepts only the model routes
//! (`POST /anthropic/v1/messages`, `POST /openai/chat/completions`), adds the key from the host's
//! configuration, forwards to the configured endpoint (TLS via rustls) and streams the answer
//! back unchanged except that the key, should an upstream ever echo it, is replaced by
//! `[redacted]`. The socket is the credential: only that session's container can reach it, and
//! no network port is opened for containers at all. Keys are never logged.
//!
//! Which endpoint a call goes to is the host's decision, not the container's: a session whose
//! agent uses an endpoint added in the app (`model_endpoints`, looked up per call) goes there with
//! that endpoint's key; any other goes to the endpoint configured for the route's protocol.
//! Every address is checked by [`crate::egress`] when it is connected to.
//!
//! A stop closes the runner's end at once; the proxy then drops the upstream connection (which
//! makes the model stop generating) when the next bytes arrive from it — immediately in practice,
//! as a model streams tokens continuously.

use std::io::{BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rusqlite::Connection;

use super::links::ModelCalls;
use crate::config::{Config, Secret};
use crate::db::{self, endpoints};
use crate::http1;

/// Largest request the runner may send (long conversations are big).
pub const REQUEST_BYTES_MAX: usize = 32 * 1024 * 1024;
/// Largest request head.
pub const HEAD_BYTES_MAX: usize = 64 * 1024;
/// Time to receive a whole request from the runner.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// Connecting to the model endpoint.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Hard cap on one streamed response.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// Concurrent proxied calls (each holds a pool thread).
pub const CALLS_MAX: usize = 64;

/// One model endpoint.
#[derive(Debug, Clone)]
pub struct Upstream {
    /// e.g. `https://api.anthropic.com`, or `http://127.0.0.1:8080/v1` for an OpenAI server.
    pub base_url: String,
    pub key: Option<Secret>,
}

/// Where the proxy forwards, built from the host config.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub anthropic: Option<Upstream>,
    pub openai: Option<Upstream>,
    /// Until the endpoint's response head arrives (a local model may process a long prompt
    /// first): `PINCER_MODEL_TIMEOUT_S`.
    pub response_timeout: Duration,
}

impl ProxyConfig {
    pub fn from_config(cfg: &Config) -> ProxyConfig {
        let anthropic =
            (cfg.anthropic.api_key.is_some() || cfg.anthropic.base_url.is_some()).then(|| Upstream {
                // Ollama's compatible endpoint is documented both with and without /v1.
                base_url: cfg
                    .anthropic
                    .base_url
                    .as_deref()
                    .map(|b| b.trim_end_matches('/').trim_end_matches("/v1").to_string())
                    .unwrap_or_else(|| "https://api.anthropic.com".into()),
                key: cfg.anthropic.api_key.clone(),
            });
        let openai = (cfg.openai.base_url.is_some() || cfg.openai.api_key.is_some()).then(|| Upstream {
            base_url: cfg
                .openai
                .base_url
                .clone()
                .unwrap_or_else(|| "https://api.openai.com/v1".into())
                .trim_end_matches('/')
                .to_string(),
            key: cfg.openai.api_key.clone(),
        });
        ProxyConfig { anthropic, openai, response_timeout: Duration::from_secs(cfg.model_timeout_s) }
    }

    /// The upstream URL and auth header for a route, or an error response. `own` is the
    /// endpoint the session's agent was given in the app, if any.
    fn route(
        &self,
        method: &str,
        path: &str,
        own: Option<&endpoints::Endpoint>,
    ) -> Result<(String, Option<AuthHeader>), (u16, String)> {
        if method != "POST" {
            return Err((
                405,
                format!("{method} is not allowed; the model proxy only forwards POST requests"),
            ));
        }
        if let Some(e) = own {
            let key = e.api_key.as_deref();
            return match (e.kind.as_str(), path) {
                ("anthropic", "/anthropic/v1/messages") => {
                    Ok((format!("{}/v1/messages", e.base_url), key.map(|k| ("x-api-key", k.to_string()))))
                }
                ("openai", "/openai/chat/completions") => Ok((
                    format!("{}/chat/completions", e.base_url),
                    key.map(|k| ("authorization", format!("Bearer {k}"))),
                )),
                (kind, _) => Err((
                    400,
                    format!("this agent's endpoint {:?} speaks the {kind} protocol, not {path}", e.name),
                )),
            };
        }
        match path {
            "/anthropic/v1/messages" => {
                let up = self.anthropic.as_ref().ok_or((
                    503,
                    "no Anthropic model is configured: set ANTHROPIC_API_KEY (or ANTHROPIC_BASE_URL for a local server) in .env and restart pincer".to_string(),
                ))?;
                let auth = up.key.as_ref().map(|k| ("x-api-key", k.expose().to_string()));
                Ok((format!("{}/v1/messages", up.base_url), auth))
            }
            "/openai/chat/completions" => {
                let up = self.openai.as_ref().ok_or((
                    503,
                    "no OpenAI-compatible model is configured: set OPENAI_BASE_URL (and OPENAI_API_KEY if it needs one) in .env and restart pincer".to_string(),
                ))?;
                let auth = up.key.as_ref().map(|k| ("authorization", format!("Bearer {}", k.expose())));
                Ok((format!("{}/chat/completions", up.base_url), auth))
            }
            other => Err((404, format!("the model proxy has no route {other}"))),
        }
    }

    /// Every secret the proxy injects (for redaction).
    fn secrets(&self) -> Vec<String> {
        [&self.anthropic, &self.openai]
            .into_iter()
            .flatten()
            .filter_map(|u| u.key.as_ref())
            .map(|k| k.expose().to_string())
            .filter(|k| k.len() >= 4)
            .collect()
    }
}

/// The header carrying a key: name and value.
type AuthHeader = (&'static str, String);

/// Request headers the runner may pass through; everything else is dropped.
const PASS_REQUEST: &[&str] = &["content-type", "accept", "anthropic-version", "anthropic-beta"];
/// Response headers passed back to the runner.
const PASS_RESPONSE: &[&str] = &["content-type", "retry-after", "request-id", "x-request-id"];

/// The shared state of proxied calls.
pub struct Proxy {
    cfg: ProxyConfig,
    agent: ureq::Agent,
    active: Mutex<usize>,
    /// The central DB, where endpoints added in the app are (opened at the first call).
    central: PathBuf,
    registry: Mutex<Option<Connection>>,
}

impl Proxy {
    pub fn new(cfg: ProxyConfig, central: PathBuf) -> Proxy {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_recv_response(Some(cfg.response_timeout))
            .timeout_recv_body(Some(BODY_TIMEOUT))
            .max_redirects(0)
            .build();
        Proxy {
            cfg,
            agent: crate::egress::agent(config),
            active: Mutex::new(0),
            central,
            registry: Mutex::new(None),
        }
    }

    /// The endpoint added in the app that the session's agent uses, if any.
    fn own_endpoint(&self, session: &str) -> Result<Option<endpoints::Endpoint>, String> {
        let mut conn = self.registry.lock().unwrap_or_else(|e| e.into_inner());
        if conn.is_none() {
            *conn = Some(
                db::open_readonly(&self.central, db::Kind::Central)
                    .map_err(|e| format!("opening the central DB: {e:#}"))?,
            );
        }
        let c = conn.as_ref().expect("opened above");
        endpoints::of_session(c, session).map_err(|e| format!("looking up the session's endpoint: {e}"))
    }

    /// Serves one connection from a runner: one request, one (streamed) response.
    pub fn serve(&self, session: &str, mut conn: UnixStream) {
        let started = Instant::now();
        let _ = conn.set_read_timeout(Some(REQUEST_TIMEOUT));
        let res = match read_request(&mut conn) {
            Ok(req) => self.forward(session, req, &mut conn),
            Err((status, msg)) => {
                let _ = write_error(&mut conn, status, &msg);
                Ok((status, 0))
            }
        };
        match res {
            Ok((status, bytes)) => {
                log::info!("model proxy [{session}]: {status}, {bytes} bytes in {:?}", started.elapsed())
            }
            Err(e) => log::warn!("model proxy [{session}]: {e}"),
        }
    }

    fn forward(&self, session: &str, req: ProxyRequest, conn: &mut UnixStream) -> Result<(u16, u64), String> {
        let own = match self.own_endpoint(session) {
            Ok(own) => own,
            Err(e) => {
                write_error(conn, 500, &e).map_err(|e| e.to_string())?;
                return Ok((500, 0));
            }
        };
        let mut secrets = self.cfg.secrets();
        secrets.extend(own.as_ref().and_then(|e| e.api_key.clone()).filter(|k| k.len() >= 4));
        let (url, auth) = match self.cfg.route(&req.method, &req.path, own.as_ref()) {
            Ok(r) => r,
            Err((status, msg)) => {
                write_error(conn, status, &msg).map_err(|e| e.to_string())?;
                return Ok((status, 0));
            }
        };
        {
            let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
            if *active >= CALLS_MAX {
                drop(active);
                write_error(
                    conn,
                    429,
                    &format!("more than {CALLS_MAX} model calls at once; try again shortly"),
                )
                .map_err(|e| e.to_string())?;
                return Ok((429, 0));
            }
            *active += 1;
        }
        let res = self.call_upstream(session, &url, auth, &req, conn, &secrets);
        *self.active.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        res
    }

    fn call_upstream(
        &self,
        session: &str,
        url: &str,
        auth: Option<AuthHeader>,
        req: &ProxyRequest,
        conn: &mut UnixStream,
        secrets: &[String],
    ) -> Result<(u16, u64), String> {
        let mut builder = ureq::http::Request::builder().method("POST").uri(url);
        for (k, v) in &req.headers {
            if PASS_REQUEST.contains(&k.as_str()) {
                builder = builder.header(k.as_str(), v.as_str());
            }
        }
        if let Some((k, v)) = auth {
            builder = builder.header(k, v);
        }
        let http_req = builder.body(req.body.clone()).map_err(|e| format!("building the request: {e}"))?;
        let resp = match self.agent.run(http_req) {
            Ok(r) => r,
            Err(e) => {
                let msg =
                    redact(&format!("cannot reach the model endpoint {}: {e}", url_origin(url)), secrets);
                write_error(conn, 502, &msg).map_err(|e| e.to_string())?;
                return Ok((502, 0));
            }
        };
        let status = resp.status().as_u16();
        let mut head = format!("HTTP/1.1 {status} {}\r\n", resp.status().canonical_reason().unwrap_or(""));
        for (k, v) in resp.headers() {
            let name = k.as_str().to_ascii_lowercase();
            if (PASS_RESPONSE.contains(&name.as_str())
                || name.starts_with("anthropic-ratelimit-")
                || name.starts_with("x-ratelimit-"))
                && let Ok(v) = v.to_str()
            {
                head.push_str(&format!("{name}: {}\r\n", redact(v, secrets)));
            }
        }
        head.push_str("Connection: close\r\n\r\n");
        conn.write_all(head.as_bytes()).map_err(|e| format!("runner went away: {e}"))?;
        let mut body = resp.into_body().into_reader();
        let mut redactor = Redactor::new(secrets.to_vec());
        let mut buf = vec![0u8; 16 * 1024];
        let mut total = 0u64;
        loop {
            let n = match body.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    log::warn!("model proxy [{session}]: upstream stream broke: {e}");
                    break;
                }
            };
            total += n as u64;
            let out = redactor.push(&buf[..n]);
            // A write error means the runner closed the socket (a stop): dropping the upstream
            // reader here closes that connection too, so the model stops generating.
            conn.write_all(&out)
                .map_err(|e| format!("runner closed the stream ({e}); upstream call aborted"))?;
        }
        conn.write_all(&redactor.finish()).map_err(|e| e.to_string())?;
        Ok((status, total))
    }
}

struct ProxyRequest {
    method: String,
    path: String,
    /// Names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn read_request(conn: &mut UnixStream) -> Result<ProxyRequest, (u16, String)> {
    let bad = |m: String| (400, m);
    let mut r = BufReader::new(conn.try_clone().map_err(|e| bad(e.to_string()))?);
    let head = match http1::read_head(&mut r, HEAD_BYTES_MAX) {
        Ok(h) => h,
        Err(http1::Error::HeadTooLarge) => return Err((431, "request head too large".into())),
        Err(e) => return Err(bad(format!("reading the request: {e}"))),
    };
    let line = http1::parse_request_line(&head.start).map_err(|e| bad(e.to_string()))?;
    let len = match http1::request_framing(&head).map_err(|e| bad(e.to_string()))? {
        http1::Framing::None if head.field("content-length").is_none() => {
            return Err((411, "Content-Length is required".to_string()));
        }
        http1::Framing::None => 0,
        http1::Framing::Length(n) => n,
        http1::Framing::Chunked => return Err((411, "send the request with a Content-Length".to_string())),
    };
    if len > REQUEST_BYTES_MAX as u64 {
        return Err((413, format!("request body of {len} bytes exceeds {REQUEST_BYTES_MAX}")));
    }
    let mut body = vec![0u8; len as usize];
    r.read_exact(&mut body).map_err(|e| bad(format!("reading the request body: {e}")))?;
    Ok(ProxyRequest { method: line.method, path: line.target, headers: head.fields, body })
}

/// An error answer in the shape both model APIs use: `{"error": {"type", "message"}}`.
fn write_error(conn: &mut UnixStream, status: u16, message: &str) -> std::io::Result<()> {
    let body = serde_json::json!({ "type": "error", "error": { "type": "proxy_error", "message": message } })
        .to_string();
    let head = format!(
        "HTTP/1.1 {status} Error\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    conn.write_all(body.as_bytes())
}

/// `scheme://host[:port]` of a URL (what error messages may show).
fn url_origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    url[after_scheme..].find('/').map_or(url, |i| &url[..after_scheme + i])
}

/// Replaces every secret in `s` with `[redacted]`.
pub fn redact(s: &str, secrets: &[String]) -> String {
    secrets.iter().fold(s.to_string(), |acc, k| acc.replace(k.as_str(), "[redacted]"))
}

/// Streaming redaction: holds back only a tail that could be the start of a secret (so a secret
/// split across two reads is still caught), never bytes that cannot be — a stream is not delayed.
pub struct Redactor {
    secrets: Vec<Vec<u8>>,
    carry: Vec<u8>,
}

impl Redactor {
    pub fn new(secrets: Vec<String>) -> Redactor {
        Redactor {
            secrets: secrets.into_iter().map(String::into_bytes).filter(|s| !s.is_empty()).collect(),
            carry: Vec::new(),
        }
    }

    /// Feeds bytes; returns what can be passed on now.
    pub fn push(&mut self, bytes: &[u8]) -> Vec<u8> {
        if self.secrets.is_empty() {
            return bytes.to_vec();
        }
        self.carry.extend_from_slice(bytes);
        let mut data = std::mem::take(&mut self.carry);
        for s in &self.secrets {
            data = replace_all(&data, s, b"[redacted]");
        }
        let keep = self
            .secrets
            .iter()
            .flat_map(|s| (1..s.len()).rev().filter(|&k| data.ends_with(&s[..k])).take(1))
            .max()
            .unwrap_or(0);
        let split = data.len() - keep;
        self.carry = data.split_off(split);
        data
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let mut data = std::mem::take(&mut self.carry);
        for s in &self.secrets {
            data = replace_all(&data, s, b"[redacted]");
        }
        data
    }
}

fn replace_all(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Idle proxy threads end after this long.
pub const THREAD_IDLE_EXIT: Duration = Duration::from_secs(120);

/// Threads beyond [`CALLS_MAX`]: calls over the limit are still read and answered 429 (which the
/// runner retries later); past these too, a connection is closed unread.
const REFUSING_THREADS: usize = 8;

/// The handler for accepted `model.sock` connections: each call is served on a thread of a
/// bounded pool, reused while calls keep coming (no thread is started per call on a busy host).
pub fn handler(proxy: Arc<Proxy>) -> ModelCalls {
    let pool = super::workers::Workers::new("model-proxy", CALLS_MAX + REFUSING_THREADS, THREAD_IDLE_EXIT);
    Box::new(move |session: &str, stream: UnixStream| {
        let proxy = proxy.clone();
        let session = session.to_string();
        if let Err(refused) = pool.run(move || proxy.serve(&session, stream)) {
            drop(refused);
            log::warn!(
                "model proxy: more than {} connections at once; one closed unread",
                CALLS_MAX + REFUSING_THREADS
            );
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn redaction_catches_secrets_split_across_reads() {
        let mut r = Redactor::new(vec!["sk-secret-123".into()]);
        let input = b"error: invalid key sk-secret-123 and again sk-secr".to_vec();
        let mut out = r.push(&input);
        out.extend(r.push(b"et-123!"));
        out.extend(r.finish());
        assert_eq!(String::from_utf8(out).unwrap(), "error: invalid key [redacted] and again [redacted]!");
        let mut none = Redactor::new(vec![]);
        assert_eq!(none.push(b"as is"), b"as is");
        // Nothing that cannot start a secret is held back: a streamed event passes at once.
        let mut r = Redactor::new(vec!["sk-secret-123".into()]);
        assert_eq!(r.push(b"data: {\"delta\": \"hi\"}\n\n"), b"data: {\"delta\": \"hi\"}\n\n");
        assert_eq!(r.push(b"ends with sk-se"), b"ends with ");
        assert_eq!(r.push(b"quel"), b"sk-sequel");
    }

    #[test]
    fn routes_and_auth_headers() {
        let cfg = ProxyConfig {
            anthropic: Some(Upstream {
                base_url: "https://api.anthropic.com".into(),
                key: Some(secret("sk-ant")),
            }),
            openai: None,
            response_timeout: Duration::from_secs(600),
        };
        let (url, auth) = cfg.route("POST", "/anthropic/v1/messages", None).unwrap();
        assert_eq!(url, "https://api.anthropic.com/v1/messages");
        assert_eq!(auth, Some(("x-api-key", "sk-ant".to_string())));
        let (status, msg) = cfg.route("POST", "/openai/chat/completions", None).unwrap_err();
        assert_eq!(status, 503);
        assert!(msg.contains("OPENAI_BASE_URL"));
        assert_eq!(cfg.route("GET", "/anthropic/v1/messages", None).unwrap_err().0, 405);
        assert_eq!(cfg.route("POST", "/anthropic/v1/files", None).unwrap_err().0, 404);
        // An endpoint added in the app wins over the configured one, with its own key, and only
        // for its own protocol.
        let own = endpoints::Endpoint {
            id: "ep-1".into(),
            name: "Box".into(),
            kind: "openai".into(),
            base_url: "http://10.0.0.5:8080/v1".into(),
            api_key: Some("sk-own".into()),
            default_model: None,
            created_at: 0,
        };
        let (url, auth) = cfg.route("POST", "/openai/chat/completions", Some(&own)).unwrap();
        assert_eq!(url, "http://10.0.0.5:8080/v1/chat/completions");
        assert_eq!(auth, Some(("authorization", "Bearer sk-own".to_string())));
        assert_eq!(cfg.route("POST", "/anthropic/v1/messages", Some(&own)).unwrap_err().0, 400);
        assert_eq!(url_origin("https://h.example:8443/v1/messages"), "https://h.example:8443");
    }

    fn secret(s: &str) -> Secret {
        let env = [("ANTHROPIC_API_KEY".to_string(), s.to_string())].into_iter().collect();
        Config::from_map(Path::new("/x"), &env).unwrap().anthropic.api_key.unwrap()
    }

    #[test]
    fn base_urls_from_config() {
        let load = |pairs: &[(&str, &str)]| {
            let env = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            ProxyConfig::from_config(&Config::from_map(Path::new("/x"), &env).unwrap())
        };
        let c = load(&[
            ("ANTHROPIC_BASE_URL", "http://localhost:11434/v1/"),
            ("OPENAI_BASE_URL", "http://127.0.0.1:8080/v1"),
        ]);
        assert_eq!(c.anthropic.unwrap().base_url, "http://localhost:11434");
        assert_eq!(c.openai.unwrap().base_url, "http://127.0.0.1:8080/v1");
        let none = load(&[]);
        assert!(none.anthropic.is_none() && none.openai.is_none());
    }
}
