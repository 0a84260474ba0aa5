//! Signing in: session cookies backed by the `auth_sessions` table, invitation secrets, and the
//! per-address limit on sign-in attempts.
//!
//! A browser signs in with the token (`POST /api/login`) or an invitation link, and gets a
//! random 256-bit secret in an HttpOnly, SameSite=Strict cookie (Secure under TLS); the DB keeps
//! only its SHA-256, with the device, expiry and last use, and a session can be revoked at once.
//! Failed sign-ins are counted per client address: after [`FREE_FAILURES`] each further one
//! locks the address out for twice as long as the last, up to [`LOCKOUT_MAX`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;

/// A signed-in session lasts this long.
pub const SESSION_TTL_MS: i64 = 30 * 24 * 3600 * 1000;
/// A session's last use is written at most this often.
pub const SESSION_TOUCH_MS: i64 = 60 * 1000;
/// Ended sessions are deleted after this long.
pub const SESSION_KEEP_MS: i64 = 7 * 24 * 3600 * 1000;
/// An invitation works this long unless asked otherwise...
pub const INVITE_TTL_MS: i64 = 7 * 24 * 3600 * 1000;
/// ...and at most this long.
pub const INVITE_TTL_MAX_MS: i64 = 30 * 24 * 3600 * 1000;
/// Failed sign-ins from one address before lockouts start.
pub const FREE_FAILURES: u32 = 5;
/// Longest lockout of an address.
pub const LOCKOUT_MAX: Duration = Duration::from_secs(15 * 60);
/// Addresses tracked by the sign-in guard.
pub const GUARD_ADDRESSES_MAX: usize = 10_000;
/// Longest device label kept.
pub const DEVICE_CHARS_MAX: usize = 120;

/// A fresh 256-bit secret, URL-safe.
pub fn new_secret() -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(crate::ids::random_bytes::<32>())
}

/// SHA-256 of a secret, hex: what the DB stores.
pub fn hash(secret: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, secret.as_bytes());
    d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// The session cookie's name: per install, so two pincer hosts on one machine (cookies do not
/// care about ports) never take each other's.
pub fn cookie_name(install: &str) -> String {
    format!("pincer_{install}")
}

/// `Set-Cookie` for a new session.
pub fn session_cookie(name: &str, secret: &str, tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!("{name}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{secure}", SESSION_TTL_MS / 1000)
}

/// `Set-Cookie` that removes the session cookie.
pub fn clear_cookie(name: &str, tls: bool) -> String {
    let secure = if tls { "; Secure" } else { "" };
    format!("{name}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}")
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').map(str::trim).find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"')).filter(|v| !v.is_empty())
    })
}

/// A device label from a User-Agent: the browser and the system, not the whole string.
pub fn device_label(user_agent: Option<&str>) -> String {
    let ua = user_agent.unwrap_or("");
    let browser = ["Edg/", "Firefox/", "Chrome/", "Safari/", "curl/"].iter().find(|b| ua.contains(*b)).map(
        |b| match *b {
            "Edg/" => "Edge",
            "Firefox/" => "Firefox",
            "Chrome/" => "Chrome",
            "Safari/" => "Safari",
            _ => "curl",
        },
    );
    let system = ["Android", "iPhone", "iPad", "Mac OS X", "Windows", "Linux"]
        .iter()
        .find(|s| ua.contains(*s))
        .map(|s| if *s == "Mac OS X" { "macOS" } else { s });
    let label = match (browser, system) {
        (Some(b), Some(s)) => format!("{b} on {s}"),
        (Some(b), None) => b.to_string(),
        (None, Some(s)) => s.to_string(),
        (None, None) => ua.chars().filter(|c| !c.is_control()).take(DEVICE_CHARS_MAX).collect(),
    };
    if label.is_empty() { "unknown device".into() } else { label }
}

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    until: Option<Instant>,
    last: Instant,
}

/// Failed sign-ins per client address.
#[derive(Default)]
pub struct LoginGuard {
    map: Mutex<HashMap<IpAddr, Failures>>,
}

impl LoginGuard {
    /// `Err(wait)` while the address is locked out.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(&ip).and_then(|f| f.until) {
            Some(until) if until > now => Err(until - now),
            _ => Ok(()),
        }
    }

    /// Records a failure; returns how many in a row.
    pub fn failed(&self, ip: IpAddr, now: Instant) -> u32 {
        let mut map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= GUARD_ADDRESSES_MAX && !map.contains_key(&ip) {
            map.retain(|_, f| now.duration_since(f.last) < LOCKOUT_MAX);
        }
        let f = map.entry(ip).or_insert(Failures { count: 0, until: None, last: now });
        f.count += 1;
        f.last = now;
        if f.count > FREE_FAILURES {
            let exp = (f.count - FREE_FAILURES - 1).min(20);
            let wait = Duration::from_secs(1 << exp).min(LOCKOUT_MAX);
            f.until = Some(now + wait);
        }
        f.count
    }

    pub fn succeeded(&self, ip: IpAddr) {
        self.map.lock().unwrap_or_else(|e| e.into_inner()).remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_random_and_stored_hashed() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert_eq!(hash("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn cookies() {
        let c = session_cookie("pincer_ab", "s3cret", true);
        assert!(c.starts_with("pincer_ab=s3cret; Path=/; HttpOnly; SameSite=Strict; Max-Age="));
        assert!(c.ends_with("; Secure"));
        assert!(!session_cookie("n", "v", false).contains("Secure"));
        assert!(clear_cookie("n", false).contains("Max-Age=0"));
        assert_eq!(cookie_value("a=1; pincer_ab=xyz; b=2", "pincer_ab"), Some("xyz"));
        assert_eq!(cookie_value("pincer_abc=xyz", "pincer_ab"), None);
        assert_eq!(cookie_value("pincer_ab=", "pincer_ab"), None);
    }

    #[test]
    fn devices() {
        let android =
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/131.0 Mobile Safari/537.36";
        assert_eq!(device_label(Some(android)), "Chrome on Android");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) AppleWebKit/605.1.15 Version/18.0 Mobile/15E148 Safari/604.1";
        assert_eq!(device_label(Some(iphone)), "Safari on iPhone");
        assert_eq!(device_label(None), "unknown device");
    }

    #[test]
    fn failures_lock_an_address_out_longer_each_time() {
        let g = LoginGuard::default();
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let other: IpAddr = "10.0.0.10".parse().unwrap();
        let t0 = Instant::now();
        for _ in 0..FREE_FAILURES {
            assert!(g.check(ip, t0).is_ok());
            g.failed(ip, t0);
        }
        assert!(g.check(ip, t0).is_ok(), "the free failures do not lock");
        g.failed(ip, t0);
        assert_eq!(g.check(ip, t0).unwrap_err(), Duration::from_secs(1));
        let t1 = t0 + Duration::from_secs(1);
        assert!(g.check(ip, t1).is_ok());
        g.failed(ip, t1);
        assert_eq!(g.check(ip, t1).unwrap_err(), Duration::from_secs(2));
        assert!(g.check(other, t1).is_ok(), "per address");
        for _ in 0..40 {
            g.failed(ip, t1);
        }
        assert_eq!(g.check(ip, t1).unwrap_err(), LOCKOUT_MAX);
        g.succeeded(ip);
        assert!(g.check(ip, t1).is_ok());
    }
}
