//! Outbound HTTP to URLs an operator gives (model endpoints): which URLs are acceptable and a
//! resolver that refuses blocked addresses at connect time.
//!
//! Model servers usually run on the same machine or the LAN (llama.cpp, Ollama, vLLM), so
//! loopback and private addresses are allowed. What is never reached: link-local addresses
//! (169.254/16 and fe80::/10, where clouds serve instance metadata and credentials), the cloud
//! metadata host names, "this network" (0/8, `::`), multicast and broadcast. The check runs on
//! the URL when it is saved and again on every address a name resolves to when a request is made,
//! so a name that later resolves somewhere else (DNS rebinding) is refused too.

use std::net::{IpAddr, SocketAddr, ToSocketAddrs};

use ureq::http::Uri;
use ureq::unversioned::resolver::{ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// Longest URL an operator may give.
pub const URL_CHARS_MAX: usize = 2048;
/// Longest wait for a host name to resolve (the request's own deadline when shorter).
pub const RESOLVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Host names of cloud metadata services.
const BLOCKED_HOSTS: &[&str] =
    &["metadata.google.internal", "metadata.azure.com", "metadata.azure.internal", "instance-data"];

/// Why an address may not be reached, or `None` when it may.
pub fn blocked(ip: IpAddr) -> Option<&'static str> {
    match crate::net::canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if o[0] == 169 && o[1] == 254 {
                Some("a link-local address (where cloud metadata services answer)")
            } else if o[0] == 0 {
                Some("an address of \"this network\" (0.0.0.0/8)")
            } else if v4.is_multicast() || v4.is_broadcast() || o[0] >= 240 {
                Some("a multicast, broadcast or reserved address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_unspecified() {
                Some("the unspecified address ::")
            } else if s[0] & 0xffc0 == 0xfe80 {
                Some("a link-local address (fe80::/10)")
            } else if v6.is_multicast() {
                Some("a multicast address")
            } else {
                None
            }
        }
    }
}

/// An operator's URL, checked: `http` or `https`, a host, no user name or password in it, not a
/// metadata host name or a blocked address. Returns it without a trailing `/`.
pub fn check_url(url: &str) -> Result<String, String> {
    let url = url.trim();
    if url.is_empty() || url.chars().count() > URL_CHARS_MAX {
        return Err(format!("the URL must be 1-{URL_CHARS_MAX} characters"));
    }
    if url.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("the URL may not contain spaces or control characters".into());
    }
    match url.split_once("://").map(|(s, _)| s.to_ascii_lowercase()) {
        Some(s) if s == "http" || s == "https" => {}
        Some(other) => return Err(format!("only http:// and https:// URLs are allowed, not {other}://")),
        None => return Err(format!("{url:?} has no scheme: write http://{url} or https://{url}")),
    }
    let uri: Uri = url.parse().map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    let authority = uri.authority().ok_or_else(|| format!("{url:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err("put the key in the key field, not in the URL (user:password@ is not allowed)".into());
    }
    if uri.query().is_some() || url.contains('#') {
        return Err("the URL may not have a ?query or #fragment".into());
    }
    host_allowed(authority.host())?;
    Ok(url.trim_end_matches('/').to_string())
}

/// A host name or address literal that may be reached (its resolution is checked at connect).
fn host_allowed(host: &str) -> Result<(), String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let lower = bare.trim_end_matches('.').to_ascii_lowercase();
    if BLOCKED_HOSTS.contains(&lower.as_str()) {
        return Err(format!("{host} is a cloud metadata service and may not be used"));
    }
    if let Ok(ip) = bare.parse::<IpAddr>()
        && let Some(why) = blocked(ip)
    {
        return Err(format!("{host} is {why} and may not be used"));
    }
    Ok(())
}

/// Resolves like the system resolver, then drops every blocked address; refuses when none is
/// left. Address literals are not handed to the resolver at all.
#[derive(Debug, Default)]
pub struct GuardedResolver;

impl Resolver for GuardedResolver {
    fn resolve(
        &self,
        uri: &Uri,
        _config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let refuse =
            |msg: String| ureq::Error::Io(std::io::Error::new(std::io::ErrorKind::PermissionDenied, msg));
        let authority = uri.authority().ok_or_else(|| ureq::Error::BadUri(format!("{uri} has no host")))?;
        let port = authority.port_u16().unwrap_or(if uri.scheme_str() == Some("https") { 443 } else { 80 });
        let host = authority.host();
        host_allowed(host).map_err(refuse)?;
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let found: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => lookup(bare, port, (*timeout.after).min(RESOLVE_TIMEOUT))
                .map_err(|e| e.unwrap_or(ureq::Error::Timeout(timeout.reason)))?,
        };
        let mut out = ResolvedSocketAddrs::from_fn(|_| SocketAddr::from(([0, 0, 0, 0], 0)));
        let mut refused = None;
        for addr in found {
            match blocked(addr.ip()) {
                Some(why) => refused = Some(format!("{host} resolves to {}, {why}", addr.ip())),
                // Past the array's capacity the rest are dropped, as the default resolver does.
                None => {
                    let _ = out.try_push(addr);
                }
            }
        }
        if out.is_empty() {
            return Err(refused.map_or(ureq::Error::HostNotFound, refuse));
        }
        Ok(out)
    }
}

/// The system resolver within a deadline (it has none of its own): asked on a thread of its
/// own, given up on after `deadline` (`Err(None)`; the thread finishes on its own).
fn lookup(
    host: &str,
    port: u16,
    deadline: std::time::Duration,
) -> Result<Vec<SocketAddr>, Option<ureq::Error>> {
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let name = host.to_string();
    std::thread::Builder::new()
        .name("resolve".into())
        .spawn(move || {
            let _ = tx.send((name.as_str(), port).to_socket_addrs().map(Iterator::collect));
        })
        .map_err(|e| Some(ureq::Error::Io(e)))?;
    match rx.recv_timeout(deadline) {
        Ok(found) => found.map_err(|e| Some(ureq::Error::Io(e))),
        Err(_) => Err(None),
    }
}

/// An HTTP client that reaches only allowed addresses.
pub fn agent(config: ureq::config::Config) -> ureq::Agent {
    ureq::Agent::with_parts(config, DefaultConnector::default(), GuardedResolver)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_an_operator_may_give() {
        assert_eq!(check_url("http://127.0.0.1:8080/v1/").unwrap(), "http://127.0.0.1:8080/v1");
        assert_eq!(check_url(" https://api.example.com ").unwrap(), "https://api.example.com");
        assert!(check_url("http://192.168.1.20:11434").is_ok(), "LAN model servers are allowed");
        assert!(check_url("http://[::1]:8080").is_ok());
        for (bad, says) in [
            ("http://169.254.169.254/latest/meta-data", "link-local"),
            ("http://[fe80::1]/", "link-local"),
            ("http://0.0.0.0:8080", "this network"),
            ("http://[::]:80", "unspecified"),
            ("http://224.0.0.1", "multicast"),
            ("http://metadata.google.internal/computeMetadata", "metadata"),
            ("http://METADATA.AZURE.COM.", "metadata"),
            ("http://[::ffff:169.254.169.254]/", "link-local"),
            ("file:///etc/passwd", "only http"),
            ("gopher://h/", "only http"),
            ("localhost:8080", "no scheme"),
            ("http://user:pw@host/", "key field"),
            ("http://host/?x=1", "query"),
            ("http://ho st/", "spaces"),
            ("", "1-"),
        ] {
            let e = check_url(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn the_resolver_refuses_blocked_addresses() {
        let r = GuardedResolver;
        let cfg = ureq::config::Config::default();
        let resolve = |u: &str| {
            let uri: Uri = u.parse().unwrap();
            let after = ureq::unversioned::transport::time::Duration::NotHappening;
            let timeout =
                NextTimeout { after, reason: ureq::Timeout::Resolve, per_read: None, per_write: None };
            r.resolve(&uri, &cfg, timeout)
        };
        let ok = resolve("http://127.0.0.1:9/").unwrap();
        assert_eq!(&ok[..], &["127.0.0.1:9".parse::<SocketAddr>().unwrap()]);
        let https = resolve("https://[::1]/").unwrap();
        assert_eq!(https[0].port(), 443);
        let e = resolve("http://169.254.169.254/").unwrap_err().to_string();
        assert!(e.contains("link-local"), "{e}");
        let e = resolve("http://localhost:1/").map(|a| a.len());
        assert!(e.is_ok(), "localhost resolves to loopback, which is allowed: {e:?}");
    }
}
