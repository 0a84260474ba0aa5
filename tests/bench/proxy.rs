//! The credential proxy's cost: time to the first byte of a streamed model answer through the
//! proxy (a fresh `model.sock`-style connection, as the runner makes one per call, handed to the
//! host's own handler) against the same request sent straight to the same fake model over TCP,
//! alternating, in the same run.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use pincer::host::proxy::{self, Proxy, ProxyConfig, Upstream};
use pincer::testing::{FakeModel, openai};

const SAMPLES: usize = 200;
const TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) struct Proxied {
    pub(crate) through_proxy: Vec<Duration>,
    pub(crate) direct: Vec<Duration>,
}

fn request(path: &str) -> Vec<u8> {
    request_with(path, r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"hi"}]}"#)
}

fn request_with(path: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// One whole call straight to the fake model over a fresh TCP connection (what an instant model
/// costs by itself): the request with `body` (the one the agent sent, instructions, tools and
/// conversation) written to the answer read to its end.
pub(crate) fn direct_call(fake: &FakeModel, body: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut s = TcpStream::connect(fake.addr())?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_nodelay(true)?;
    s.write_all(&request_with("/v1/chat/completions", body))?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    ensure!(!answer.is_empty(), "no answer");
    Ok(started.elapsed())
}

/// Writes the request and waits for the first byte of the answer; reads the rest away.
fn first_byte(mut s: impl Read + Write, req: &[u8]) -> anyhow::Result<Duration> {
    let started = Instant::now();
    s.write_all(req)?;
    let mut one = [0u8; 1];
    ensure!(s.read(&mut one)? == 1, "no answer");
    let took = started.elapsed();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)?;
    Ok(took)
}

pub(crate) fn phase(dir: &std::path::Path) -> anyhow::Result<Proxied> {
    let fake = FakeModel::start();
    let central = dir.join("pincer.db");
    drop(pincer::db::open(&central, pincer::db::Kind::Central)?);
    let cfg = ProxyConfig {
        anthropic: None,
        openai: Some(Upstream { base_url: format!("{}/v1", fake.url()), key: None }),
        response_timeout: TIMEOUT,
    };
    let calls = proxy::handler(Arc::new(Proxy::new(cfg, central)));
    let via = request("/openai/chat/completions");
    let direct_req = request("/v1/chat/completions");
    let mut out = Proxied { through_proxy: Vec::new(), direct: Vec::new() };
    for i in 0..SAMPLES * 2 {
        fake.reply(openai::text(&["hi"], "stop"));
        if i % 2 == 0 {
            let (mine, theirs) = UnixStream::pair()?;
            mine.set_read_timeout(Some(TIMEOUT))?;
            calls("bench-session", theirs);
            out.through_proxy.push(first_byte(mine, &via)?);
        } else {
            let s = TcpStream::connect(fake.addr())?;
            s.set_read_timeout(Some(TIMEOUT))?;
            s.set_nodelay(true)?;
            out.direct.push(first_byte(s, &direct_req)?);
        }
        ensure!(fake.next_request(TIMEOUT).is_some(), "the fake model saw no request");
    }
    Ok(out)
}
