//! HTTPS and WSS on the public port, with real clients: `WEBCHAT_TLS=auto` (pincer's own CA,
//! trusted by curl and by a rustls client; the enrolment page over plain HTTP on the same
//! port), PEM files reloaded on SIGHUP, and clear start-up errors for files that cannot work.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use serde_json::json;

use crate::support::*;

/// A TLS client trusting only `ca_pem`; returns the stream and the served certificate's
/// fingerprint.
fn tls_connect(
    port: u16,
    ca_pem: &[u8],
    name: &str,
) -> (rustls::StreamOwned<rustls::ClientConnection, TcpStream>, String) {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem) {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let conn = rustls::ClientConnection::new(Arc::new(config), name.to_string().try_into().unwrap()).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(WARM)).unwrap();
    let mut s = rustls::StreamOwned::new(conn, tcp);
    while s.conn.is_handshaking() {
        s.conn.complete_io(&mut s.sock).expect("TLS handshake");
    }
    let der = s.conn.peer_certificates().unwrap()[0].to_vec();
    (s, pincer::webchat::tls::fingerprint(&der))
}

fn curl(args: &[&str]) -> (i32, String) {
    let out = std::process::Command::new("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl");
    (
        out.status.code().unwrap_or(-1),
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
    )
}

#[test]
fn https_and_wss_on_one_port_with_pincers_own_ca() {
    let dirs = Dirs::new();
    let token = "tls-test-token-0123456789abcdef";
    let host = Host::start_with(&dirs, &[("WEBCHAT_TLS", "auto"), ("WEBCHAT_TOKEN", token)]);
    assert!(host.log_tail().contains("webchat listening on https://"), "{}", host.log_tail());
    let ca = dirs.data().join("tls/ca.crt");
    let ca_pem = std::fs::read(&ca).unwrap();
    let base = format!("https://localhost:{}", host.port);
    // curl trusting the CA: the page and the API over HTTPS.
    let (rc, out) = curl(&[
        "--cacert",
        ca.to_str().unwrap(),
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        &format!("{base}/health"),
    ]);
    assert_eq!((rc, out.as_str()), (0, "200"));
    let (rc, out) = curl(&["-o", "/dev/null", &format!("{base}/health")]);
    assert_ne!(rc, 0, "without the CA the certificate is not trusted: {out}");
    // Signing in over HTTPS: the cookie is Secure.
    let (rc, out) = curl(&[
        "--cacert",
        ca.to_str().unwrap(),
        "-i",
        "-X",
        "POST",
        "-H",
        "X-Webchat-CSRF: 1",
        "-H",
        "Content-Type: application/json",
        "--data",
        &json!({ "token": token }).to_string(),
        &format!("{base}/api/login"),
    ]);
    assert_eq!(rc, 0, "{out}");
    let set =
        out.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).expect(&out).to_string();
    assert!(set.contains("; Secure") && set.contains("HttpOnly"), "{set}");
    // WSS with the bearer subprotocol, a message answered by a real container.
    let (stream, served) = tls_connect(host.port, &ca_pem, "localhost");
    let leaf = std::fs::read(dirs.data().join("tls/leaf.crt")).unwrap();
    use rustls::pki_types::pem::PemObject;
    let leaf_der = rustls::pki_types::CertificateDer::pem_slice_iter(&leaf).next().unwrap().unwrap();
    assert_eq!(served, pincer::webchat::tls::fingerprint(&leaf_der));
    use tungstenite::client::IntoClientRequest;
    let mut req = format!("wss://localhost:{}/ws", host.port).into_client_request().unwrap();
    req.headers_mut().insert("Sec-WebSocket-Protocol", format!("bearer.{token}").parse().unwrap());
    let (mut ws, resp) = tungstenite::client(req, stream).expect("WSS handshake");
    assert_eq!(resp.status(), 101);
    let ready = read_json(&mut ws);
    assert_eq!(ready["type"], "ready", "{ready}");
    ws.send(tungstenite::Message::text(json!({ "type": "join", "room_id": "assistant" }).to_string()))
        .unwrap();
    ws.send(tungstenite::Message::text(
        json!({ "type": "send", "room_id": "assistant", "client_id": "wss-1", "text": "over wss" })
            .to_string(),
    ))
    .unwrap();
    loop {
        let f = read_json(&mut ws);
        if f["type"] == "message" && f["message"]["text"] == "echo: over wss" {
            break;
        }
    }
    // Plain HTTP on the same port: the enrolment page and the CA, everything else to HTTPS.
    let (status, _, page) = http_raw(host.port, "GET", "/trust", None, &[]);
    let page = String::from_utf8_lossy(&page).into_owned();
    assert_eq!(status, 200);
    let ca_der = rustls::pki_types::CertificateDer::pem_slice_iter(&ca_pem).next().unwrap().unwrap();
    assert!(
        page.contains(&pincer::webchat::tls::fingerprint(&ca_der)),
        "the page shows the CA's fingerprint"
    );
    for os in ["Android", "iPhone", "macOS", "Windows"] {
        assert!(page.contains(os), "steps for {os}");
    }
    let (status, head, pem) = http_raw(host.port, "GET", "/trust/ca.crt", None, &[]);
    assert_eq!(status, 200);
    assert_eq!(pem, ca_pem);
    assert!(head.iter().any(|(k, v)| k == "content-type" && v == "application/x-x509-ca-cert"));
    let (status, head, _) = http_raw(host.port, "GET", "/api/rooms", None, &[]);
    assert_eq!(status, 308);
    let location = head.iter().find(|(k, _)| k == "location").unwrap().1.clone();
    assert_eq!(location, format!("https://127.0.0.1:{}/api/rooms", host.port));
}

fn read_json<S: Read + Write>(ws: &mut tungstenite::WebSocket<S>) -> serde_json::Value {
    loop {
        match ws.read().expect("wss read") {
            tungstenite::Message::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            _ => continue,
        }
    }
}

fn cert_set(dir: &Path, ip: &str) {
    let names = pincer::webchat::tls::Names {
        dns: vec!["localhost".into()],
        ips: vec!["127.0.0.1".parse().unwrap(), ip.parse().unwrap()],
    };
    pincer::webchat::tls::ensure_auto(dir, &names, pincer::ids::now_ms() / 1000).unwrap();
}

#[test]
fn certificate_files_reload_on_sighup_and_bad_ones_stop_start_up() {
    let dirs = Dirs::new();
    let (a, b) = (dirs.root().join("a"), dirs.root().join("b"));
    cert_set(&a, "10.1.1.1");
    cert_set(&b, "10.2.2.2");
    let live = dirs.root().join("live");
    std::fs::create_dir_all(&live).unwrap();
    let install = |from: &Path| {
        std::fs::copy(from.join("leaf.crt"), live.join("cert.pem")).unwrap();
        std::fs::copy(from.join("leaf.key"), live.join("key.pem")).unwrap();
    };
    install(&a);
    let cert = live.join("cert.pem");
    let key = live.join("key.pem");
    let env = [("WEBCHAT_TLS_CERT", cert.to_str().unwrap()), ("WEBCHAT_TLS_KEY", key.to_str().unwrap())];
    let mut host = Host::start_with(&dirs, &env);
    let fp = |dir: &Path| {
        use rustls::pki_types::pem::PemObject;
        let leaf = std::fs::read(dir.join("leaf.crt")).unwrap();
        pincer::webchat::tls::fingerprint(
            &rustls::pki_types::CertificateDer::pem_slice_iter(&leaf).next().unwrap().unwrap(),
        )
    };
    let (_, served) = tls_connect(host.port, &std::fs::read(a.join("ca.crt")).unwrap(), "localhost");
    assert_eq!(served, fp(&a));
    install(&b);
    let status = std::process::Command::new("kill").args(["-HUP", &host.pid().to_string()]).status().unwrap();
    assert!(status.success());
    let line = host.wait_for_line(|l| l.contains("reloaded the TLS certificate"), WARM);
    assert!(line.is_some_and(|l| l.contains("10.2.2.2")), "{}", host.log_tail());
    let (_, served) = tls_connect(host.port, &std::fs::read(b.join("ca.crt")).unwrap(), "localhost");
    assert_eq!(served, fp(&b), "the new certificate is served without a restart");
    // A broken file on reload keeps the working certificate.
    std::fs::write(&cert, "garbage").unwrap();
    std::process::Command::new("kill").args(["-HUP", &host.pid().to_string()]).status().unwrap();
    assert!(host.wait_for_line(|l| l.contains("the previous one stays in use"), WARM).is_some());
    let (_, served) = tls_connect(host.port, &std::fs::read(b.join("ca.crt")).unwrap(), "localhost");
    assert_eq!(served, fp(&b));
    host.stop();
    // Start-up refuses files that cannot work, naming them.
    for (cert_file, key_file, needle) in [
        (b.join("leaf.crt"), a.join("leaf.key"), "does not belong to the certificate"),
        (dirs.root().join("nope.pem"), b.join("leaf.key"), "cannot read WEBCHAT_TLS_CERT"),
    ] {
        let mut cmd = dirs.command(&["run"]);
        cmd.env("WEBCHAT_TLS_CERT", &cert_file).env("WEBCHAT_TLS_KEY", &key_file);
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(needle), "{err}");
    }
}

/// The LAN story of the README: pincer on all addresses with its own CA; on this machine the
/// owner makes an invitation, whose link names the LAN address (not `localhost`), and a device
/// elsewhere opens it over verified HTTPS and is signed in; without it, that device is not.
#[test]
fn a_device_on_the_lan_joins_by_an_invitation_made_on_this_machine() {
    let dirs = Dirs::new();
    let host = Host::start_with(&dirs, &[("WEBCHAT_HOST", "0.0.0.0"), ("WEBCHAT_TLS", "auto")]);
    let ca = dirs.data().join("tls/ca.crt");
    let ca = ca.to_str().unwrap();
    let (rc, out) = curl(&[
        "--cacert",
        ca,
        "-X",
        "POST",
        "-H",
        "X-Webchat-CSRF: 1",
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"name": "Phone", "role": "admin"}"#,
        &format!("https://localhost:{}/api/invites", host.port),
    ]);
    assert_eq!(rc, 0, "{out}");
    let invite: serde_json::Value = serde_json::from_str(&out).expect(&out);
    let url = invite["invite"]["url"].as_str().expect(&out).to_string();
    let authority = url.strip_prefix("https://").and_then(|r| r.split('/').next()).expect(&url).to_string();
    let (ip, port) = authority.rsplit_once(':').unwrap();
    let ip: std::net::IpAddr = ip.trim_matches(['[', ']']).parse().expect(&url);
    assert!(!ip.is_loopback() && port == host.port.to_string(), "a LAN address in {url}");

    // The device: a peer that is not the loopback, checking the certificate against the CA.
    let jar = dirs.root().join("phone-cookies");
    let jar = jar.to_str().unwrap();
    let check = |cookies: bool| {
        let mut args = vec!["--cacert", ca, "-o", "/dev/null", "-w", "%{http_code}"];
        if cookies {
            args.extend(["-b", jar]);
        }
        let target = format!("https://{authority}/api/auth/check");
        args.push(&target);
        curl(&args)
    };
    assert_eq!(check(false), (0, "401".to_string()), "from the LAN, nobody is signed in automatically");
    let (rc, out) = curl(&["--cacert", ca, "-i", "-c", jar, "-X", "POST", "-H", "X-Webchat-CSRF: 1", &url]);
    assert_eq!(rc, 0, "{out}");
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    let set = out.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).expect(&out);
    assert!(set.contains("; Secure") && set.contains("HttpOnly"), "{set}");
    assert_eq!(check(true), (0, "200".to_string()), "the invitation signed the device in");
    let (rc, out) = curl(&["--cacert", ca, "-b", jar, &format!("https://{authority}/api/auth/check")]);
    assert_eq!(rc, 0);
    let me: serde_json::Value = serde_json::from_str(&out).expect(&out);
    assert_eq!(
        (me["displayName"].as_str(), me["admin"].as_bool(), me["via"].as_str()),
        (Some("Phone"), Some(true), Some("session"))
    );
}
