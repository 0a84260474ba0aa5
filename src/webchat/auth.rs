//! Who is asking: identity for every HTTP request and WebSocket upgrade (CONTRACT.md §2).
//!
//! Order: the session cookie (checked by the caller against the DB), a bearer token (header in
//! any case, or WebSocket subprotocol `bearer.<token>`), a trusted proxy's identity header (only
//! from a listed proxy address; `auto`: the header pairs of Azure EasyAuth and Cloudflare
//! Access), Tailscale (`tailscale whois` of a tailnet peer, or `Tailscale-User-Login` from the
//! loopback where `tailscale serve` runs), then the loopback auto-pass — only while no explicit
//! method is configured, and only when the `Host` header names the loopback too, so a
//! DNS-rebinding page cannot borrow it. Everything else is refused. Secrets are compared in
//! constant time.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::config::WebchatConfig;
use crate::net::{Cidr, TrustedProxies, canonical};

/// `tailscale whois` may take this long.
pub const WHOIS_TIMEOUT: Duration = Duration::from_secs(3);
/// A whois answer is reused this long.
pub const WHOIS_CACHE: Duration = Duration::from_secs(60);
/// A failed whois is not asked again for this long.
pub const WHOIS_NEGATIVE_CACHE: Duration = Duration::from_secs(10);
/// Peers remembered by the whois cache.
pub const WHOIS_CACHE_MAX: usize = 4096;
/// Longest identity taken from a header or from Tailscale.
pub const IDENTITY_CHARS_MAX: usize = 200;

/// The connection a request came in on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Peer {
    pub addr: SocketAddr,
    pub tls: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub user_id: String,
    pub display_name: String,
    pub source: &'static str,
    /// Proves control of the install itself (the configured token, or the machine's own
    /// loopback): always an owner.
    pub operator: bool,
}

/// Identity from what the request carries (everything but the session cookie).
pub struct Auth {
    cfg: WebchatConfig,
    tailscale: Option<Tailscale>,
}

impl Auth {
    pub fn new(cfg: &WebchatConfig) -> Auth {
        let tailscale = cfg.tailscale.then(|| Tailscale::new(&cfg.tailscale_bin));
        Auth { cfg: cfg.clone(), tailscale }
    }

    pub fn is_trusted_proxy(&self, ip: IpAddr) -> bool {
        self.cfg.trusted_proxies.is_proxy(ip)
    }

    /// The client's address (the nearest untrusted hop behind a trusted proxy).
    pub fn client_ip(&self, peer: &Peer, header: &dyn Fn(&str) -> Option<String>) -> IpAddr {
        self.cfg.trusted_proxies.client_ip(peer.addr.ip(), header("x-forwarded-for").as_deref())
    }

    /// Whether the token is the configured one (constant time).
    pub fn token_matches(&self, offered: &str) -> bool {
        self.cfg.token.as_ref().is_some_and(|t| constant_time_eq(offered.as_bytes(), t.expose().as_bytes()))
    }

    pub fn has_token(&self) -> bool {
        self.cfg.token.is_some()
    }

    /// Resolves the identity a request carries. `header` looks up a request header
    /// (case-insensitive); `protocols` are the offered WebSocket subprotocols (empty for HTTP).
    pub fn identify(
        &self,
        peer: &Peer,
        header: &dyn Fn(&str) -> Option<String>,
        protocols: &[String],
    ) -> Option<Identity> {
        if self.cfg.token.is_some() {
            let from_header = header("authorization").and_then(|v| bearer_token(&v).map(str::to_string));
            let from_protocol = protocols.iter().find_map(|p| p.strip_prefix("bearer.").map(str::to_string));
            if from_header.or(from_protocol).is_some_and(|t| self.token_matches(&t)) {
                return Some(operator_identity());
            }
        }
        if let Some(id) = self.proxy_identity(peer, header) {
            return Some(id);
        }
        if let Some(ts) = &self.tailscale
            && let Some(id) = ts.identify(peer, header)
        {
            return Some(id);
        }
        if !self.cfg.has_explicit_auth()
            && is_loopback(peer.addr.ip())
            && header("host").is_some_and(|h| is_loopback_host(&h))
        {
            return Some(Identity {
                user_id: "webchat:local-owner".into(),
                display_name: local_user_name(),
                source: "loopback",
                operator: true,
            });
        }
        None
    }

    fn proxy_identity(&self, peer: &Peer, header: &dyn Fn(&str) -> Option<String>) -> Option<Identity> {
        let nonempty = |name: &str| header(name).map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
        let raw = match &self.cfg.trusted_proxies {
            TrustedProxies::None => return None,
            TrustedProxies::Auto => {
                // Each platform's identity header counts only with its proof header beside it.
                const PAIRS: [(&str, &str); 2] = [
                    ("x-ms-client-principal-name", "x-ms-client-principal"),
                    ("cf-access-authenticated-user-email", "cf-access-jwt-assertion"),
                ];
                PAIRS.iter().find_map(|(id, proof)| nonempty(proof).and(nonempty(id)))?
            }
            TrustedProxies::List(_) => {
                if !self.cfg.trusted_proxies.is_proxy(peer.addr.ip()) {
                    return None;
                }
                nonempty(&self.cfg.trusted_proxy_header)?
            }
        };
        let raw: String = raw.chars().take(IDENTITY_CHARS_MAX).collect();
        Some(Identity {
            user_id: format!("webchat:{}", normalize(&raw)),
            display_name: display_name(&raw),
            source: "proxy",
            operator: false,
        })
    }
}

/// The token's identity: the operator, always an owner.
pub fn operator_identity() -> Identity {
    Identity {
        user_id: "webchat:owner".into(),
        display_name: "operator".into(),
        source: "bearer",
        operator: true,
    }
}

/// Identities from Tailscale, with a short cache.
struct Tailscale {
    bin: String,
    cache: Mutex<HashMap<IpAddr, (Instant, Option<Identity>)>>,
}

/// Tailscale's address ranges: only these peers are looked up (a lookup is a process).
fn tailnet_ranges() -> [Cidr; 2] {
    [Cidr::parse("100.64.0.0/10").expect("valid"), Cidr::parse("fd7a:115c:a1e0::/48").expect("valid")]
}

impl Tailscale {
    fn new(bin: &str) -> Tailscale {
        Tailscale { bin: bin.to_string(), cache: Mutex::new(HashMap::new()) }
    }

    fn identify(&self, peer: &Peer, header: &dyn Fn(&str) -> Option<String>) -> Option<Identity> {
        let ip = canonical(peer.addr.ip());
        if is_loopback(ip) {
            // `tailscale serve` proxies from the loopback and names the user in headers.
            let login =
                header("tailscale-user-login").map(|v| v.trim().to_string()).filter(|v| !v.is_empty())?;
            let name = header("tailscale-user-name")
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| login.clone());
            return Some(tailscale_identity(&login, &name));
        }
        if !tailnet_ranges().iter().any(|r| r.contains(ip)) {
            return None;
        }
        let now = Instant::now();
        if let Some((at, id)) = self.cache.lock().unwrap_or_else(|e| e.into_inner()).get(&ip) {
            let ttl = if id.is_some() { WHOIS_CACHE } else { WHOIS_NEGATIVE_CACHE };
            if now.duration_since(*at) < ttl {
                return id.clone();
            }
        }
        let id = self.whois(ip);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= WHOIS_CACHE_MAX {
            cache.retain(|_, (at, _)| now.duration_since(*at) < WHOIS_CACHE);
        }
        cache.insert(ip, (now, id.clone()));
        id
    }

    fn whois(&self, ip: IpAddr) -> Option<Identity> {
        let out = match crate::process::run(&self.bin, &["whois", "--json", &ip.to_string()], WHOIS_TIMEOUT) {
            Ok(out) => out,
            Err(e) => {
                log::warn!("tailscale whois {ip}: {e}");
                return None;
            }
        };
        parse_whois(&out.stdout)
    }
}

/// The identity in `tailscale whois --json` output: the user's login, or for a tagged node
/// (no user) its host name.
pub fn parse_whois(json: &str) -> Option<Identity> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    let text = |p: &[&str]| {
        let mut cur = &v;
        for k in p {
            cur = cur.get(k)?;
        }
        cur.as_str().map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
    };
    let login = text(&["UserProfile", "LoginName"])
        .filter(|l| l != "tagged-devices")
        .or_else(|| text(&["Node", "Hostinfo", "Hostname"]))?;
    let name = text(&["UserProfile", "DisplayName"]).unwrap_or_else(|| login.clone());
    Some(tailscale_identity(&login, &name))
}

fn tailscale_identity(login: &str, name: &str) -> Identity {
    let login: String = login.chars().take(IDENTITY_CHARS_MAX).collect();
    Identity {
        user_id: format!("webchat:tailscale:{}", normalize(&login)),
        display_name: display_name(name),
        source: "tailscale",
        operator: false,
    }
}

/// An identity as a user id part: lowercase, anything but `a-z 0-9 . _ @ + -` becomes `-`.
pub fn normalize(s: &str) -> String {
    s.trim()
        .to_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "._@+-".contains(c) { c } else { '-' })
        .collect()
}

/// A name from outside made fit to show: no control or invisible characters, at most 64.
pub fn display_name(raw: &str) -> String {
    let cleaned: String = raw
        .chars()
        .filter(|&c| !c.is_control() && !crate::host::agents::is_hidden(c))
        .take(crate::host::agents::NAME_CHARS_MAX)
        .collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() { "user".into() } else { cleaned.to_string() }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 9110 §11.1).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

pub fn is_loopback(ip: IpAddr) -> bool {
    canonical(ip).is_loopback()
}

/// `Host` values that name this machine's loopback: `localhost`, `127.x.x.x`, `[::1]`, any port.
pub fn is_loopback_host(host: &str) -> bool {
    let name = host_name(host);
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(is_loopback)
}

/// The name part of a `Host` value, lowercased, without the port or brackets.
pub fn host_name(host: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or("").to_string();
    }
    match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h.to_string(),
        _ => host,
    }
}

fn local_user_name() -> String {
    #[allow(clippy::disallowed_methods)]
    let user = std::env::var("USER").ok().filter(|u| !u.is_empty() && u.len() <= 64);
    user.unwrap_or_else(|| "local user".into())
}

/// Compares secrets in time independent of where they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::collections::BTreeMap;

    fn auth(pairs: &[(&str, &str)]) -> Auth {
        let env: BTreeMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Auth::new(&Config::from_map(std::path::Path::new("/x"), &env).unwrap().webchat)
    }

    fn peer(ip: &str) -> Peer {
        Peer { addr: SocketAddr::new(ip.parse().unwrap(), 5555), tls: false }
    }

    fn headers(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.to_string())
    }

    const TOKEN: &str = "abcdefghijklmnopqrstuvwxyz";

    #[test]
    fn loopback_passes_only_without_explicit_auth_and_with_a_loopback_host() {
        let open = auth(&[]);
        let h = headers(&[("host", "127.0.0.1:3100")]);
        assert_eq!(open.identify(&peer("127.0.0.1"), &h, &[]).unwrap().source, "loopback");
        assert!(open.identify(&peer("::1"), &headers(&[("host", "[::1]:3100")]), &[]).is_some());
        assert!(
            open.identify(&peer("::ffff:127.0.0.1"), &headers(&[("host", "localhost:3100")]), &[]).is_some()
        );
        assert!(open.identify(&peer("192.168.1.9"), &h, &[]).is_none(), "LAN peer");
        let rebind = headers(&[("host", "evil.example:3100")]);
        assert!(open.identify(&peer("127.0.0.1"), &rebind, &[]).is_none(), "DNS rebinding");
        for explicit in [
            vec![("WEBCHAT_TOKEN", TOKEN)],
            vec![("WEBCHAT_TAILSCALE", "true")],
            vec![("WEBCHAT_TRUSTED_PROXY_IPS", "10.0.0.1")],
        ] {
            let a = auth(&explicit);
            assert!(a.identify(&peer("127.0.0.1"), &h, &[]).is_none(), "{explicit:?}: no auto-pass");
        }
    }

    #[test]
    fn bearer_by_header_in_any_case_or_subprotocol() {
        let a = auth(&[("WEBCHAT_TOKEN", TOKEN), ("WEBCHAT_HOST", "0.0.0.0")]);
        let good = headers(&[("authorization", "Bearer abcdefghijklmnopqrstuvwxyz")]);
        let id = a.identify(&peer("10.0.0.2"), &good, &[]).unwrap();
        assert_eq!((id.user_id.as_str(), id.operator), ("webchat:owner", true));
        let bad = headers(&[("authorization", "Bearer abcdefghijklmnopqrstuvwxyZ")]);
        assert!(a.identify(&peer("10.0.0.2"), &bad, &[]).is_none());
        let none = headers(&[]);
        assert!(a.identify(&peer("10.0.0.2"), &none, &[]).is_none(), "no token off the loopback");
        let protos = vec!["bearer.abcdefghijklmnopqrstuvwxyz".to_string()];
        assert!(a.identify(&peer("10.0.0.2"), &none, &protos).is_some());
        for scheme in ["bearer", "BEARER", "Bearer\t "] {
            let v = format!("{scheme} {TOKEN}");
            let h = move |n: &str| (n == "authorization").then(|| v.clone());
            assert!(a.identify(&peer("10.0.0.2"), &h, &[]).is_some(), "{scheme:?}");
        }
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn proxy_headers_count_only_from_listed_proxies() {
        let a = auth(&[("WEBCHAT_TRUSTED_PROXY_IPS", "10.0.0.1, 192.168.0.0/16, fd00::/8")]);
        let h = headers(&[("x-forwarded-user", "Alice@Example.com"), ("host", "chat")]);
        let id = a.identify(&peer("10.0.0.1"), &h, &[]).unwrap();
        assert_eq!(
            (id.user_id.as_str(), id.display_name.as_str()),
            ("webchat:alice@example.com", "Alice@Example.com")
        );
        assert!(a.identify(&peer("192.168.7.7"), &h, &[]).is_some(), "CIDR");
        assert!(a.identify(&peer("fd00::5"), &h, &[]).is_some(), "IPv6 CIDR");
        assert!(a.identify(&peer("::ffff:10.0.0.1"), &h, &[]).is_some(), "mapped");
        assert!(a.identify(&peer("10.0.0.2"), &h, &[]).is_none(), "not a proxy");
        assert!(a.identify(&peer("127.0.0.1"), &h, &[]).is_none(), "loopback is not a listed proxy");
        let empty = headers(&[("x-forwarded-user", "  ")]);
        assert!(a.identify(&peer("10.0.0.1"), &empty, &[]).is_none());
        let custom = auth(&[
            ("WEBCHAT_TRUSTED_PROXY_IPS", "10.0.0.1"),
            ("WEBCHAT_TRUSTED_PROXY_HEADER", "Remote-User"),
        ]);
        assert!(custom.identify(&peer("10.0.0.1"), &headers(&[("remote-user", "bob")]), &[]).is_some());
    }

    #[test]
    fn auto_needs_the_identity_header_and_its_proof() {
        let a = auth(&[("WEBCHAT_TRUSTED_PROXY_IPS", "auto")]);
        let cf =
            headers(&[("cf-access-authenticated-user-email", "c@x.org"), ("cf-access-jwt-assertion", "eyJ")]);
        assert_eq!(a.identify(&peer("203.0.113.5"), &cf, &[]).unwrap().user_id, "webchat:c@x.org");
        let no_proof = headers(&[("cf-access-authenticated-user-email", "c@x.org")]);
        assert!(a.identify(&peer("203.0.113.5"), &no_proof, &[]).is_none());
        let azure = headers(&[("x-ms-client-principal-name", "z@y.com"), ("x-ms-client-principal", "e30=")]);
        assert!(a.identify(&peer("203.0.113.5"), &azure, &[]).is_some());
        let generic = headers(&[("x-forwarded-user", "mallory")]);
        assert!(a.identify(&peer("203.0.113.5"), &generic, &[]).is_none(), "auto trusts no generic header");
    }

    #[test]
    fn tailscale_serve_headers_only_from_the_loopback() {
        let a = auth(&[("WEBCHAT_TAILSCALE", "true"), ("WEBCHAT_TAILSCALE_BIN", "/nonexistent/tailscale")]);
        let h = headers(&[("tailscale-user-login", "ann@github"), ("tailscale-user-name", "Ann")]);
        let id = a.identify(&peer("127.0.0.1"), &h, &[]).unwrap();
        assert_eq!((id.user_id.as_str(), id.display_name.as_str()), ("webchat:tailscale:ann@github", "Ann"));
        assert!(a.identify(&peer("192.168.1.4"), &h, &[]).is_none(), "not from the LAN");
        // A tailnet peer is looked up (here the CLI is missing: no identity, no panic).
        assert!(a.identify(&peer("100.101.102.103"), &headers(&[]), &[]).is_none());
    }

    #[test]
    fn whois_output() {
        let user = r#"{"Node":{"Name":"phone.tail.ts.net.","Hostinfo":{"Hostname":"phone"}},
            "UserProfile":{"ID":1,"LoginName":"Ann@github","DisplayName":"Ann A.","ProfilePicURL":""}}"#;
        let id = parse_whois(user).unwrap();
        assert_eq!(
            (id.user_id.as_str(), id.display_name.as_str()),
            ("webchat:tailscale:ann@github", "Ann A.")
        );
        let tagged =
            r#"{"Node":{"Hostinfo":{"Hostname":"build-box"}},"UserProfile":{"LoginName":"tagged-devices"}}"#;
        assert_eq!(parse_whois(tagged).unwrap().user_id, "webchat:tailscale:build-box");
        assert!(parse_whois("not json").is_none());
        assert!(parse_whois("{}").is_none());
    }

    #[test]
    fn names_from_outside_are_made_plain() {
        assert_eq!(normalize(" Ann Smith/Admin "), "ann-smith-admin");
        assert_eq!(display_name("A\u{202E}nn\n"), "Ann");
        assert_eq!(display_name("\u{200B}"), "user");
    }

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "localhost:3100", "127.0.0.1:1", "[::1]:80", "127.1.2.3"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["example.com", "10.0.0.1:3100", "localhost.evil.com", "[::2]:1"] {
            assert!(!is_loopback_host(h), "{h}");
        }
        assert_eq!(host_name("[fe80::1]:3100"), "fe80::1");
        assert_eq!(host_name("Chat.Example:443"), "chat.example");
    }
}
