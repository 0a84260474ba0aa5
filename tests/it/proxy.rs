//! Behind a real reverse proxy: the nginx and Caddy configurations the README shows (taken from
//! the README itself), run by the real servers (Debian packages), in front of a real pincer.
//! Checked through the proxy, over verified HTTPS: the person the proxy signed in is who pincer
//! sees (a forged header from the client changes nothing), nobody gets past the proxy without
//! signing in, WebSockets carry a chat answered by a real container, invitation links name the
//! proxy's address, and `pincer user grant` makes someone signed in through the proxy an owner.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::support::*;

const NAME: &str = "chat.example.org";

/// The fenced block of `lang` in the README.
fn readme_block(lang: &str) -> String {
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start =
        readme.find(&format!("```{lang}\n")).unwrap_or_else(|| panic!("no ```{lang} block in README.md"));
    let body = &readme[start + lang.len() + 4..];
    body[..body.find("```").unwrap()].to_string()
}

/// `s` with `from` replaced, which must occur (so the README and the test cannot drift apart).
fn subst(s: &str, from: &str, to: &str) -> String {
    assert!(s.contains(from), "the README snippet no longer contains {from:?}:\n{s}");
    s.replace(from, to)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A CA and a certificate for [`NAME`] signed by it, as PEM files in `dir`; returns the CA's PEM.
fn proxy_certificate(dir: &Path) -> Vec<u8> {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca.distinguished_name.push(rcgen::DnType::CommonName, "proxy test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf =
        rcgen::CertificateParams::new(vec![NAME.to_string()]).unwrap().signed_by(&key, &issuer).unwrap();
    std::fs::write(dir.join("site.crt"), leaf.pem()).unwrap();
    std::fs::write(dir.join("site.key"), key.serialize_pem()).unwrap();
    ca_cert.pem().into_bytes()
}

/// A TLS connection to the proxy on `port`, for [`NAME`], trusting only `ca_pem`.
fn tls(port: u16, ca_pem: &[u8]) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let config =
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(config), NAME.try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(WARM)).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")))
}

/// One HTTPS request through the proxy; returns the status and the JSON body.
fn request(
    port: u16,
    ca: &[u8],
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value) {
    let mut s = tls(port, ca);
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {NAME}:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    // A proxy may end the TLS stream without close_notify after `Connection: close`.
    let _ = s.read_to_end(&mut out);
    let text = String::from_utf8_lossy(&out).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no response: {text:?}"));
    let status: u16 = head.split(' ').nth(1).unwrap().parse().unwrap();
    let chunked = head.to_ascii_lowercase().contains("transfer-encoding: chunked");
    let body = if chunked { dechunk(rest) } else { rest.to_string() };
    (status, serde_json::from_str(&body).unwrap_or(Value::String(body)))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// Everything the proxy must carry, for one proxy on `port` in front of `host`.
fn through_the_proxy(dirs: &Dirs, host: &Host, port: u16, ca: &[u8]) {
    let alice = basic("alice", "wonderland");
    let bob = basic("bob", "builder");
    // Nobody past the proxy without signing in, whatever headers they send.
    let (status, _) = request(port, ca, "GET", "/api/auth/check", &[("X-Forwarded-User", "alice")], None);
    assert_eq!(status, 401, "the proxy asks for a sign-in");
    // The person the proxy signed in; the first on a fresh install is the owner.
    let (status, me) = request(port, ca, "GET", "/api/auth/check", &[("Authorization", &alice)], None);
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (me["userId"].as_str(), me["via"].as_str(), me["owner"].as_bool()),
        (Some("webchat:alice"), Some("proxy"), Some(true))
    );
    // A forged identity header from the client is overwritten by the proxy.
    let (_, me) = request(
        port,
        ca,
        "GET",
        "/api/auth/check",
        &[("Authorization", &bob), ("X-Forwarded-User", "alice")],
        None,
    );
    assert_eq!((me["userId"].as_str(), me["owner"].as_bool()), (Some("webchat:bob"), Some(false)), "{me}");
    // Straight to pincer from an address that is not the proxy, the header counts for nothing.
    let mut direct = connect_from("127.0.0.2", host.port);
    let (status, _) = raw_exchange(
        &mut direct,
        format!("GET /api/auth/check HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nX-Forwarded-User: alice\r\nConnection: close\r\n\r\n", host.port)
            .as_bytes(),
        WARM,
    )
    .expect("an answer");
    assert_eq!(status, 401);

    // A chat over WebSocket through the proxy, answered by the agent's container.
    let stream = tls(port, ca);
    use tungstenite::client::IntoClientRequest;
    let mut req = format!("wss://{NAME}:{port}/ws").into_client_request().unwrap();
    req.headers_mut().insert("Authorization", alice.parse().unwrap());
    req.headers_mut().insert("Origin", format!("https://{NAME}:{port}").parse().unwrap());
    let (mut ws, resp) = tungstenite::client(req, stream).expect("WebSocket through the proxy");
    assert_eq!(resp.status(), 101);
    let next = |ws: &mut tungstenite::WebSocket<_>| -> Value {
        loop {
            match ws.read().expect("frame through the proxy") {
                tungstenite::Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
                _ => continue,
            }
        }
    };
    let ready = next(&mut ws);
    assert_eq!(
        (ready["type"].as_str(), ready["user"]["id"].as_str()),
        (Some("ready"), Some("webchat:alice")),
        "{ready}"
    );
    ws.send(tungstenite::Message::text(json!({ "type": "join", "room_id": "assistant" }).to_string()))
        .unwrap();
    ws.send(tungstenite::Message::text(
        json!({ "type": "send", "room_id": "assistant", "client_id": "via-proxy-1", "text": "through the proxy" }).to_string(),
    ))
    .unwrap();
    let deadline = std::time::Instant::now() + COLD;
    loop {
        assert!(std::time::Instant::now() < deadline, "no answer through the proxy within {COLD:?}");
        let f = next(&mut ws);
        if f["type"] == "message" && f["message"]["text"] == "echo: through the proxy" {
            break;
        }
    }

    // Invitation links name the address people reach pincer by: the proxy's, over HTTPS.
    let (status, inv) = request(
        port,
        ca,
        "POST",
        "/api/invites",
        &[("Authorization", &alice), ("X-Webchat-CSRF", "1")],
        Some(json!({ "name": "Carol", "role": "member" })),
    );
    assert_eq!(status, 201, "{inv}");
    let url = inv["invite"]["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("https://{NAME}:{port}/invite/")), "{url}");

    // The command line makes someone signed in through the proxy an owner.
    let out = dirs.command(&["user", "grant", "webchat:bob", "owner"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (_, me) = request(port, ca, "GET", "/api/auth/check", &[("Authorization", &bob)], None);
    assert_eq!(me["owner"].as_bool(), Some(true), "{me}");
    let out = dirs.command(&["user", "list"]).output().unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(list.lines().any(|l| l.starts_with("webchat:bob") && l.contains("owner")), "{list}");
}

fn pincer_behind_a_proxy(dirs: &Dirs) -> Host {
    Host::start_with(dirs, &[("WEBCHAT_TRUSTED_PROXY_IPS", "127.0.0.1")])
}

#[test]
fn nginx_from_the_readme_carries_https_websockets_and_the_signed_in_person() {
    let dirs = Dirs::new();
    let host = pincer_behind_a_proxy(&dirs);
    let dir = dirs.root().join("nginx");
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    let ca = proxy_certificate(&dir);
    std::fs::write(dir.join("htpasswd"), "alice:{PLAIN}wonderland\nbob:{PLAIN}builder\n").unwrap();
    let port = free_port();
    let mut site = readme_block("nginx");
    site = subst(&site, "listen 443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"));
    site = subst(&site, "/etc/ssl/chat.example.org.crt", dir.join("site.crt").to_str().unwrap());
    site = subst(&site, "/etc/ssl/chat.example.org.key", dir.join("site.key").to_str().unwrap());
    site = subst(&site, "/etc/nginx/pincer.htpasswd", dir.join("htpasswd").to_str().unwrap());
    site = subst(&site, "127.0.0.1:3100", &format!("127.0.0.1:{}", host.port));
    let d = dir.to_str().unwrap();
    // The test's own main file: foreground, logs to stderr, everything under the test's directory.
    let main = format!(
        "daemon off;\nuser root root;\npid {d}/nginx.pid;\nerror_log stderr notice;\nevents {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/tmp/body;\n  proxy_temp_path {d}/tmp/proxy;\n  \
         fastcgi_temp_path {d}/tmp/fastcgi;\n  uwsgi_temp_path {d}/tmp/uwsgi;\n  scgi_temp_path {d}/tmp/scgi;\n{site}\n}}\n"
    );
    std::fs::write(dir.join("nginx.conf"), main).unwrap();
    let nginx = which("nginx");
    let mut cmd = std::process::Command::new(nginx);
    cmd.args(["-p", d, "-c", dir.join("nginx.conf").to_str().unwrap(), "-e", "stderr"]);
    let mut proxy = Host::spawn(cmd);
    proxy
        .wait_for_line(|l| l.contains("start worker process"), WARM)
        .unwrap_or_else(|| panic!("nginx did not start:\n{}", proxy.log_tail()));
    through_the_proxy(&dirs, &host, port, &ca);
    proxy.stop();
}

#[test]
fn caddy_from_the_readme_carries_https_websockets_and_the_signed_in_person() {
    let dirs = Dirs::new();
    let host = pincer_behind_a_proxy(&dirs);
    let dir = dirs.root().join("caddy");
    std::fs::create_dir_all(&dir).unwrap();
    let ca = proxy_certificate(&dir);
    let caddy = which("caddy");
    let hash = |password: &str| {
        let out = std::process::Command::new(caddy)
            .args(["hash-password", "--plaintext", password])
            .output()
            .unwrap();
        assert!(out.status.success(), "caddy hash-password: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let port = free_port();
    let mut site = readme_block("caddyfile");
    site = subst(
        &site,
        "alice $2a$14$replace.with.the.hash.of.alices.password",
        &format!("alice {}\n\t\tbob {}", hash("wonderland"), hash("builder")),
    );
    // The test serves its own certificate on a free port (the README's Caddy gets one itself).
    site = subst(
        &site,
        "chat.example.org {",
        &format!(
            "{NAME}:{port} {{\n\ttls {} {}",
            dir.join("site.crt").display(),
            dir.join("site.key").display()
        ),
    );
    site = subst(&site, "127.0.0.1:3100", &format!("127.0.0.1:{}", host.port));
    let global = format!(
        "{{\n\tadmin off\n\tauto_https disable_redirects\n\tstorage file_system {}\n}}\n\n",
        dir.join("storage").display()
    );
    std::fs::write(dir.join("Caddyfile"), format!("{global}{site}")).unwrap();
    let mut cmd = std::process::Command::new(caddy);
    cmd.args(["run", "--adapter", "caddyfile", "--config", dir.join("Caddyfile").to_str().unwrap()])
        .env("HOME", &dir)
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("XDG_CONFIG_HOME", dir.join("config"));
    let mut proxy = Host::spawn(cmd);
    proxy
        // Caddy has taken over 20 s to start on a busy 2-core machine (the suite runs beside it).
        .wait_for_line(|l| l.contains("serving initial configuration"), COLD)
        .unwrap_or_else(|| panic!("caddy did not start:\n{}", proxy.log_tail()));
    through_the_proxy(&dirs, &host, port, &ca);
    proxy.stop();
}

/// The path of a program the test prerequisites install (`make deps`).
fn which(program: &str) -> &'static str {
    for dir in ["/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/sbin"] {
        let p = format!("{dir}/{program}");
        if Path::new(&p).is_file() {
            return Box::leak(p.into_boxed_str());
        }
    }
    panic!("{program} is not installed: run `make deps` (it installs the test prerequisites)")
}
