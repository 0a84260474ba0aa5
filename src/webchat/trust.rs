//! The enrolment page of `WEBCHAT_TLS=auto`: how to make a phone or computer trust pincer's own
//! CA, so the app gets a secure context on a bare LAN. `GET /trust` (also over plain HTTP on the
//! same port, before the device trusts anything), `GET /trust/ca.crt` (PEM) and
//! `GET /trust/ca.der` (DER, for systems that want it). No identity is needed: the CA
//! certificate is public, and its fingerprint on the page lets a person check what they install.

use std::net::IpAddr;

use super::tls::{self, Ca};
use super::wire::Resp;

/// The enrolment page. `lan_url` is the address a phone on the LAN reaches this server by.
pub fn page(ca: &Ca, lan_url: &str) -> Resp {
    let qr = qr_svg(&format!("{lan_url}/trust"));
    let qr_img = format!(
        "data:image/svg+xml;charset=utf-8,{}",
        qr.bytes()
            .map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") })
            .collect::<String>()
    );
    let esc =
        |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;");
    let body = format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Trust pincer on this device</title>
<link rel="stylesheet" href="/style.css">
</head>
<body class="trust-page">
<main class="trust">
<h1>Trust pincer on this device</h1>
<p>pincer serves HTTPS with a certificate from its own certificate authority, made on this
machine. Install that authority once on each phone or computer you use; after that the app opens
at <a href="{https}">{https}</a> without warnings, and can be installed, send notifications and use
the microphone.</p>
<p><a class="btn btn-primary" href="/trust/ca.crt" download="pincer-ca.crt">Download the certificate</a></p>
<p>Check that what you install has this SHA-256 fingerprint:</p>
<p class="fingerprint"><code>{fingerprint}</code></p>
<p>Valid until {until}. To open this page on a phone, scan:</p>
<img class="trust-qr" src="{qr_img}" width="220" height="220" alt="QR code of {lan}/trust">
<p class="muted">{lan}/trust</p>
<h2>Android</h2>
<ol>
<li>Download the certificate (above).</li>
<li>Settings → Security &amp; privacy → More security settings → Encryption &amp; credentials →
Install a certificate → <b>CA certificate</b> → Install anyway → choose <code>pincer-ca.crt</code>.</li>
<li>Open <a href="{https}">{https}</a>.</li>
</ol>
<h2>iPhone and iPad</h2>
<ol>
<li>Open this page in <b>Safari</b> and download the certificate; allow the profile download.</li>
<li>Settings → General → VPN &amp; Device Management → <b>pincer local CA</b> → Install.</li>
<li>Settings → General → About → Certificate Trust Settings → turn on full trust for
<b>pincer local CA</b>.</li>
<li>Open <a href="{https}">{https}</a> in Safari, then Share → Add to Home Screen.</li>
</ol>
<h2>macOS</h2>
<ol>
<li>Download the certificate and open it: Keychain Access adds it to the <b>System</b> keychain.</li>
<li>Double-click <b>pincer local CA</b> → Trust → When using this certificate: <b>Always Trust</b>.</li>
</ol>
<h2>Windows</h2>
<ol>
<li>Download the certificate and open it → Install Certificate → <b>Local Machine</b>.</li>
<li>Place all certificates in the following store → <b>Trusted Root Certification Authorities</b> → Finish.</li>
</ol>
<h2>Linux (Chrome, Chromium)</h2>
<ol>
<li>Settings → Privacy and security → Security → Manage certificates → Authorities → Import →
<code>pincer-ca.crt</code> → trust it for identifying websites.</li>
</ol>
<p class="muted">The authority can only vouch for this pincer: its key never leaves
<code>data/tls/</code> on the machine that runs it. To stop trusting it, remove
“pincer local CA” from the device's certificates.</p>
</main>
</body>
</html>
"#,
        https = esc(&lan_url.replacen("http://", "https://", 1)),
        lan = esc(lan_url),
        fingerprint = esc(&ca.info.fingerprint),
        until = tls::date(ca.info.not_after),
    );
    let mut resp = Resp {
        status: 200,
        headers: vec![
            ("Content-Type".into(), "text/html; charset=utf-8".into()),
            ("Cache-Control".into(), "no-store".into()),
            (
                "Content-Security-Policy".into(),
                "default-src 'none'; style-src 'self'; img-src data:; base-uri 'none'; frame-ancestors 'none'".into(),
            ),
        ],
        body: body.into_bytes(),
        file: None,
    };
    resp.headers.push(("X-Robots-Tag".into(), "noindex".into()));
    resp
}

/// The CA certificate, PEM (`der`: DER).
pub fn certificate(ca: &Ca, der: bool) -> Resp {
    let (mime, body) = if der {
        ("application/pkix-cert", ca.der.clone())
    } else {
        ("application/x-x509-ca-cert", ca.pem.clone().into_bytes())
    };
    let name = if der { "pincer-ca.der" } else { "pincer-ca.crt" };
    Resp {
        status: 200,
        headers: vec![
            ("Content-Type".into(), mime.into()),
            ("Content-Disposition".into(), format!("attachment; filename=\"{name}\"")),
            ("Cache-Control".into(), "no-store".into()),
        ],
        body,
        file: None,
    }
}

/// `http://<address>:<port>` a phone on the LAN can reach: the host the request named when it is
/// not the loopback, else this machine's first LAN address.
pub fn lan_url(host_header: Option<&str>, port: u16, machine_ips: &[IpAddr]) -> String {
    if let Some(h) = host_header
        && !super::auth::is_loopback_host(h)
    {
        let name = super::auth::host_name(h);
        return if name.contains(':') {
            format!("http://[{name}]:{port}")
        } else {
            format!("http://{name}:{port}")
        };
    }
    let ip = machine_ips
        .iter()
        .find(|ip| ip.is_ipv4() && !ip.is_loopback())
        .or_else(|| machine_ips.iter().find(|ip| !ip.is_loopback()))
        .copied();
    match ip {
        Some(IpAddr::V6(v6)) => format!("http://[{v6}]:{port}"),
        Some(ip) => format!("http://{ip}:{port}"),
        None => format!("http://localhost:{port}"),
    }
}

/// A QR code of `text`, as an SVG document.
pub fn qr_svg(text: &str) -> String {
    match qrcode::QrCode::new(text.as_bytes()) {
        Ok(code) => {
            code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(220, 220).quiet_zone(true).build()
        }
        Err(e) => {
            log::warn!("QR code of a {}-byte text: {e}", text.len());
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lan_urls() {
        let ips: Vec<IpAddr> =
            ["127.0.0.1", "::1", "192.168.1.20", "fd00::5"].iter().map(|s| s.parse().unwrap()).collect();
        assert_eq!(lan_url(Some("localhost:3100"), 3100, &ips), "http://192.168.1.20:3100");
        assert_eq!(lan_url(Some("pi.local:3100"), 3100, &ips), "http://pi.local:3100");
        assert_eq!(lan_url(Some("[fd00::5]:3100"), 3100, &ips), "http://[fd00::5]:3100");
        assert_eq!(lan_url(None, 3100, &ips[..2]), "http://localhost:3100");
    }
}
