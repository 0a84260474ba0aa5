//! Who is asking: identity for every HTTP request and WebSocket upgrade (CONTRACT.md §2).
//!
//! Order: a bearer token (header, or WebSocket subprotocol `bearer.<token>`), then the loopback
//! auto-pass — only while no explicit method is configured, and only when the `Host` header names
//! the loopback too, so a DNS-rebinding page cannot borrow it. Everything else is refused.

use std::net::{IpAddr, SocketAddr};

use crate::config::WebchatConfig;

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

/// Resolves the identity of a request. `header` looks up a request header (case-insensitive);
/// `protocols` are the offered WebSocket subprotocols (empty for HTTP).
pub fn identify(
    cfg: &WebchatConfig,
    peer: &Peer,
    header: &dyn Fn(&str) -> Option<String>,
    protocols: &[String],
) -> Option<Identity> {
    if let Some(token) = &cfg.token {
        let from_header = header("authorization").and_then(|v| bearer_token(&v).map(str::to_string));
        let from_protocol = protocols.iter().find_map(|p| p.strip_prefix("bearer.").map(str::to_string));
        let offered = from_header.or(from_protocol);
        if offered.is_some_and(|t| constant_time_eq(t.as_bytes(), token.expose().as_bytes())) {
            return Some(Identity {
                user_id: "webchat:owner".into(),
                display_name: "operator".into(),
                source: "bearer",
                operator: true,
            });
        }
    }
    if !cfg.has_explicit_auth()
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

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 9110 §11.1).
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

pub fn is_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    }
}

/// `Host` values that name this machine's loopback: `localhost`, `127.x.x.x`, `[::1]`, any port.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim().to_ascii_lowercase();
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host.as_str(), |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host.as_str() }
        })
    };
    name == "localhost" || name.parse::<IpAddr>().is_ok_and(is_loopback)
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

    fn cfg(pairs: &[(&str, &str)]) -> WebchatConfig {
        let env: BTreeMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_map(std::path::Path::new("/x"), &env).unwrap().webchat
    }

    fn peer(ip: &str) -> Peer {
        Peer { addr: SocketAddr::new(ip.parse().unwrap(), 5555), tls: false }
    }

    fn headers(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.to_string())
    }

    #[test]
    fn loopback_passes_only_without_explicit_auth_and_with_a_loopback_host() {
        let open = cfg(&[]);
        let h = headers(&[("host", "127.0.0.1:3100")]);
        assert_eq!(identify(&open, &peer("127.0.0.1"), &h, &[]).unwrap().source, "loopback");
        assert!(identify(&open, &peer("::1"), &headers(&[("host", "[::1]:3100")]), &[]).is_some());
        assert!(
            identify(&open, &peer("::ffff:127.0.0.1"), &headers(&[("host", "localhost:3100")]), &[])
                .is_some()
        );
        assert!(identify(&open, &peer("192.168.1.9"), &h, &[]).is_none(), "LAN peer");
        let rebind = headers(&[("host", "evil.example:3100")]);
        assert!(identify(&open, &peer("127.0.0.1"), &rebind, &[]).is_none(), "DNS rebinding");
        let token = "t".repeat(24);
        let locked = cfg(&[("WEBCHAT_TOKEN", &token)]);
        assert!(identify(&locked, &peer("127.0.0.1"), &h, &[]).is_none(), "token set: no auto-pass");
    }

    #[test]
    fn bearer_by_header_or_subprotocol() {
        let token = "abcdefghijklmnopqrstuvwxyz";
        let c = cfg(&[("WEBCHAT_TOKEN", token)]);
        let good = headers(&[("authorization", "Bearer abcdefghijklmnopqrstuvwxyz")]);
        assert_eq!(identify(&c, &peer("10.0.0.2"), &good, &[]).unwrap().user_id, "webchat:owner");
        let bad = headers(&[("authorization", "Bearer abcdefghijklmnopqrstuvwxyZ")]);
        assert!(identify(&c, &peer("10.0.0.2"), &bad, &[]).is_none());
        let none = headers(&[]);
        let protos = vec!["bearer.abcdefghijklmnopqrstuvwxyz".to_string()];
        assert!(identify(&c, &peer("10.0.0.2"), &none, &protos).is_some());
        for scheme in ["bearer", "BEARER", "Bearer\t "] {
            let v = format!("{scheme} abcdefghijklmnopqrstuvwxyz");
            let h = move |n: &str| (n == "authorization").then(|| v.clone());
            assert!(identify(&c, &peer("10.0.0.2"), &h, &[]).is_some(), "{scheme:?}");
        }
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "localhost:3100", "127.0.0.1:1", "[::1]:80", "127.1.2.3"] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in ["example.com", "10.0.0.1:3100", "localhost.evil.com", "[::2]:1"] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }
}
