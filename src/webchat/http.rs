//! The tiny_http side: a server on an internal loopback port whose worker threads turn relayed
//! requests into [`Req`]s for the API and its [`Resp`]s back into responses.
//!
//! Connections that did not come through the front relay have no recorded peer and are refused,
//! so the internal port grants nothing by itself.

use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use anyhow::Context;

use super::Ctx;
use super::api::{self, Req, Resp};

/// Threads answering HTTP requests.
pub const WORKERS: usize = 4;

pub struct HttpServer {
    pub port: u16,
    server: Arc<tiny_http::Server>,
    workers: Vec<JoinHandle<()>>,
}

pub fn start(ctx: Arc<Ctx>) -> anyhow::Result<HttpServer> {
    let server = tiny_http::Server::http("127.0.0.1:0")
        .map_err(|e| anyhow::anyhow!("starting the internal HTTP server: {e}"))?;
    let port = server.server_addr().to_ip().context("internal HTTP server has no IP address")?.port();
    let server = Arc::new(server);
    let mut workers = Vec::new();
    for i in 0..WORKERS {
        let server = server.clone();
        let ctx = ctx.clone();
        workers.push(
            std::thread::Builder::new()
                .name(format!("http-{i}"))
                .spawn(move || {
                    while let Ok(rq) = server.recv() {
                        serve(&ctx, rq);
                    }
                })
                .context("starting an HTTP worker")?,
        );
    }
    Ok(HttpServer { port, server, workers })
}

impl HttpServer {
    pub fn stop(&mut self) {
        for _ in 0..self.workers.len() {
            self.server.unblock();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn serve(ctx: &Ctx, mut rq: tiny_http::Request) {
    let started = Instant::now();
    let peer = rq
        .remote_addr()
        .and_then(|a| ctx.peers.lock().unwrap_or_else(|e| e.into_inner()).get(&a.port()).copied());
    let method = rq.method().as_str().to_string();
    let url = rq.url().to_string();
    let resp = match peer {
        None => Resp::error(403, "connect through the public webchat port"),
        Some(peer) => match read_request(&mut rq, &method, &url, peer) {
            Ok(req) => catch_unwind(AssertUnwindSafe(|| api::handle(ctx, &req))).unwrap_or_else(|_| {
                log::error!("panic while handling {method} {url}");
                Resp::error(500, "internal error; the host log has the details")
            }),
            Err(resp) => resp,
        },
    };
    let status = resp.status;
    respond(rq, resp);
    let path = url.split('?').next().unwrap_or("");
    log::debug!("{method} {path} {status} {:?}", started.elapsed());
}

fn read_request(
    rq: &mut tiny_http::Request,
    method: &str,
    url: &str,
    peer: super::auth::Peer,
) -> Result<Req, Resp> {
    let limit = api::JSON_BODY_BYTES_MAX;
    if rq.body_length().is_some_and(|n| n > limit) {
        return Err(Resp::error(413, &format!("request body is larger than {limit} bytes")));
    }
    let mut body = Vec::new();
    if let Err(e) = rq.as_reader().take(limit as u64 + 1).read_to_end(&mut body) {
        return Err(Resp::error(400, &format!("reading the request body: {e}")));
    }
    if body.len() > limit {
        return Err(Resp::error(413, &format!("request body is larger than {limit} bytes")));
    }
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let Some(path) = percent_decode(path) else {
        return Err(Resp::error(400, "the request path is not valid percent-encoded UTF-8"));
    };
    let query = query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Some((percent_decode(&k.replace('+', " "))?, percent_decode(&v.replace('+', " "))?))
        })
        .collect();
    let headers = rq
        .headers()
        .iter()
        .map(|h| (h.field.as_str().as_str().to_ascii_lowercase(), h.value.as_str().to_string()))
        .collect();
    Ok(Req { method: method.to_string(), path, query, headers, body, peer })
}

fn respond(rq: tiny_http::Request, resp: Resp) {
    if let Some(path) = &resp.file {
        match std::fs::File::open(path) {
            Ok(f) => {
                let mut out = tiny_http::Response::from_file(f).with_status_code(resp.status);
                add_headers(&mut out, &resp.headers);
                if let Err(e) = rq.respond(out) {
                    log::debug!("writing a file response: {e}");
                }
            }
            Err(e) => {
                log::warn!("opening {}: {e}", path.display());
                respond(rq, Resp::error(404, "no such file"));
            }
        }
        return;
    }
    let mut out = tiny_http::Response::from_data(resp.body).with_status_code(resp.status);
    add_headers(&mut out, &resp.headers);
    if let Err(e) = rq.respond(out) {
        log::debug!("writing a response: {e}");
    }
}

fn add_headers<R: Read>(out: &mut tiny_http::Response<R>, headers: &[(String, String)]) {
    let security = [
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "no-referrer"),
        ("X-Frame-Options", "DENY"),
    ];
    let all = headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain(security);
    for (k, v) in all {
        if let Ok(h) = tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()) {
            out.add_header(h);
        }
    }
}

/// Decodes `%XX` escapes; `None` for bad escapes or invalid UTF-8.
pub fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_escapes() {
        assert_eq!(percent_decode("/api/rooms/a%20b").as_deref(), Some("/api/rooms/a b"));
        assert_eq!(percent_decode("%E2%9C%93").as_deref(), Some("✓"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
        assert_eq!(percent_decode("%4"), None);
    }
}
