//! The access phase: a host with `WEBCHAT_TLS=auto` and a token. Measured: a sign-in over a new
//! TLS connection (handshake plus `POST /api/login`), a WebSocket opened over a new TLS
//! connection with the session cookie (handshake, upgrade, `ready` frame), and the host's memory
//! with many idle signed-in WebSocket clients. Baseline: a bare rustls handshake over loopback
//! against an in-process rustls server with the same kind of certificate (ECDSA P-256).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail, ensure};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::host::Host;

const TOKEN: &str = "bench-token-0123456789abcdefghij";
const TIMEOUT: Duration = Duration::from_secs(10);
/// Loopback source addresses the idle clients come from (the host allows 64 per address).
const SOURCES: u8 = 10;

pub(crate) struct Access {
    pub(crate) tls_handshake: Vec<Duration>,
    pub(crate) login: Vec<Duration>,
    pub(crate) ws_open: Vec<Duration>,
    pub(crate) rss_idle_mb: f64,
    pub(crate) rss_clients_mb: f64,
    pub(crate) clients: usize,
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

fn client_config(ca_pem: &[u8]) -> anyhow::Result<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c?)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}

/// A TCP connection from `source` to `port` with a completed TLS handshake for `localhost`.
fn connect(config: &Arc<rustls::ClientConfig>, source: &str, port: u16) -> anyhow::Result<Tls> {
    let tcp = crate::net::tcp_from(source, port, TIMEOUT)?;
    let conn = rustls::ClientConnection::new(config.clone(), "localhost".try_into()?)?;
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).context("TLS handshake")?;
    }
    Ok(s)
}

/// The baseline: handshakes of a bare rustls client with an in-process rustls server.
fn raw_handshakes(n: usize) -> anyhow::Result<Vec<Duration>> {
    let key = rcgen::KeyPair::generate()?;
    let cert = rcgen::CertificateParams::new(vec!["localhost".to_string()])?.self_signed(&key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::from_pem_slice(key.serialize_pem().as_bytes())?,
            )?,
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(n) {
            let Ok(mut tcp) = stream else { continue };
            let _ = tcp.set_nodelay(true);
            let Ok(mut conn) = rustls::ServerConnection::new(server.clone()) else { continue };
            while conn.is_handshaking() {
                if conn.complete_io(&mut tcp).is_err() {
                    break;
                }
            }
            // Until the client hangs up (it has what it needs).
            let _ = conn.complete_io(&mut tcp);
        }
    });
    let config = client_config(cert.pem().as_bytes())?;
    (0..n)
        .map(|_| {
            let started = Instant::now();
            let s = connect(&config, "127.0.0.1", port)?;
            let took = started.elapsed();
            drop(s);
            Ok(took)
        })
        .collect()
}

/// One HTTP request on an open TLS stream; returns the status and the head.
fn exchange(s: &mut Tls, request: &str) -> anyhow::Result<(u16, String)> {
    s.write_all(request.as_bytes())?;
    s.flush()?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    while !raw.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf)?;
        ensure!(n > 0, "the connection closed before a response");
        raw.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text.split(' ').nth(1).and_then(|s| s.parse().ok()).context("bad status line")?;
    Ok((status, text))
}

fn login(config: &Arc<rustls::ClientConfig>, port: u16) -> anyhow::Result<(Duration, String)> {
    let started = Instant::now();
    let mut s = connect(config, "127.0.0.1", port)?;
    let body = format!(r#"{{"token":"{TOKEN}"}}"#);
    let (status, head) = exchange(
        &mut s,
        &format!(
            "POST /api/login HTTP/1.1\r\nHost: localhost:{port}\r\nX-Webchat-CSRF: 1\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    )?;
    let took = started.elapsed();
    ensure!(status == 200, "login answered {status}");
    let cookie = head
        .lines()
        .find_map(|l| l.strip_prefix("Set-Cookie: ").or_else(|| l.strip_prefix("set-cookie: ")))
        .and_then(|c| c.split(';').next())
        .context("no session cookie")?
        .to_string();
    Ok((took, cookie))
}

/// Opens a WebSocket over a new TLS connection from `source` with the cookie; returns it once
/// the `ready` frame has arrived.
fn open_ws(
    config: &Arc<rustls::ClientConfig>,
    source: &str,
    port: u16,
    cookie: &str,
) -> anyhow::Result<tungstenite::WebSocket<Tls>> {
    use tungstenite::client::IntoClientRequest;
    let s = connect(config, source, port)?;
    let mut req = format!("wss://localhost:{port}/ws").into_client_request()?;
    req.headers_mut().insert("Cookie", cookie.parse()?);
    req.headers_mut().insert("Origin", format!("https://localhost:{port}").parse()?);
    let (mut ws, _) = tungstenite::client(req, s).map_err(|e| anyhow!("WSS handshake: {e}"))?;
    loop {
        match ws.read()? {
            tungstenite::Message::Text(t) if t.as_str().contains(r#""type":"ready""#) => return Ok(ws),
            tungstenite::Message::Close(c) => bail!("closed before ready: {c:?}"),
            _ => {}
        }
    }
}

pub(crate) fn phase(
    dir: &std::path::Path,
    image: &str,
    samples: usize,
    clients: usize,
) -> anyhow::Result<Access> {
    let tls_handshake = raw_handshakes(samples)?;
    let host = Host::start(dir, image, &[("WEBCHAT_TLS", "auto"), ("WEBCHAT_TOKEN", TOKEN)], TIMEOUT * 3)?;
    let config = client_config(&std::fs::read(host.data_dir.join("tls/ca.crt"))?)?;
    let mut login_times = Vec::with_capacity(samples);
    let mut cookie = String::new();
    for _ in 0..samples {
        let (took, c) = login(&config, host.port)?;
        login_times.push(took);
        cookie = c;
    }
    let mut ws_open = Vec::with_capacity(samples);
    for _ in 0..samples {
        let started = Instant::now();
        let ws = open_ws(&config, "127.0.0.1", host.port, &cookie)?;
        ws_open.push(started.elapsed());
        drop(ws);
    }
    let rss_idle_mb = host.rss_mb()?;
    let mut open = Vec::with_capacity(clients);
    for i in 0..clients {
        let source = format!("127.0.0.{}", 2 + (i % usize::from(SOURCES)));
        open.push(open_ws(&config, &source, host.port, &cookie).with_context(|| format!("idle client {i}"))?);
    }
    let rss_clients_mb = host.rss_mb()?;
    drop(open);
    Ok(Access { tls_handshake, login: login_times, ws_open, rss_idle_mb, rss_clients_mb, clients })
}
