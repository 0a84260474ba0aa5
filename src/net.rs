//! Addresses: CIDR ranges (IPv4 and IPv6, with IPv4-mapped IPv6 seen as IPv4), the trusted
//! proxy list, and the client address behind a trusted proxy.

use std::net::{IpAddr, Ipv6Addr};

/// One address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub bits: u8,
}

/// `::ffff:a.b.c.d` as `a.b.c.d`; everything else unchanged.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl Cidr {
    /// `10.0.0.1`, `10.0.0.0/8`, `fd00::/8`, `::ffff:10.0.0.1`.
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, bits) = match s.split_once('/') {
            Some((ip, bits)) => (ip, Some(bits)),
            None => (s, None),
        };
        let addr = canonical(ip.trim().parse().ok()?);
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => max,
            Some(b) => {
                let b: u8 = b.trim().parse().ok()?;
                // A mapped IPv4 range given in IPv6 form (`::ffff:10.0.0.0/104`) counts as IPv4.
                let b = if ip.contains(':') && addr.is_ipv4() { b.checked_sub(96)? } else { b };
                if b > max {
                    return None;
                }
                b
            }
        };
        Some(Cidr { addr, bits })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = if self.bits == 0 { 0 } else { u32::MAX << (32 - u32::from(self.bits)) };
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = if self.bits == 0 { 0 } else { u128::MAX << (128 - u32::from(self.bits)) };
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl std::fmt::Display for Cidr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

/// `WEBCHAT_TRUSTED_PROXY_IPS`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum TrustedProxies {
    #[default]
    None,
    /// Cloud identity front ends recognised by their header pairs (Azure EasyAuth, Cloudflare
    /// Access), from any address.
    Auto,
    List(Vec<Cidr>),
}

impl TrustedProxies {
    /// Parses the setting; the error names the entry that is wrong.
    pub fn parse(s: &str) -> Result<TrustedProxies, String> {
        let s = s.trim();
        if s.is_empty() {
            return Ok(TrustedProxies::None);
        }
        if s == "auto" {
            return Ok(TrustedProxies::Auto);
        }
        let mut list = Vec::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            list.push(
                Cidr::parse(item).ok_or_else(|| format!("{item:?} is not an IP address or CIDR range"))?,
            );
        }
        if list.is_empty() {
            return Err("no addresses".into());
        }
        Ok(TrustedProxies::List(list))
    }

    pub fn is_set(&self) -> bool {
        *self != TrustedProxies::None
    }

    /// The peer is a listed proxy (headers from it are believed). `auto` lists no address.
    pub fn is_proxy(&self, ip: IpAddr) -> bool {
        match self {
            TrustedProxies::List(list) => list.iter().any(|c| c.contains(ip)),
            _ => false,
        }
    }

    /// The client's address: the peer, or, when the peer is a trusted proxy, the nearest
    /// address in `X-Forwarded-For` that is not itself a trusted proxy. A non-proxy's
    /// `X-Forwarded-For` is never believed.
    pub fn client_ip(&self, peer: IpAddr, forwarded_for: Option<&str>) -> IpAddr {
        if !self.is_proxy(peer) {
            return canonical(peer);
        }
        let Some(xff) = forwarded_for else { return canonical(peer) };
        let hops: Vec<IpAddr> = xff.split(',').filter_map(|h| h.trim().parse().ok()).map(canonical).collect();
        hops.iter().rev().find(|ip| !self.is_proxy(**ip)).copied().unwrap_or(canonical(peer))
    }
}

/// The IPv6 /64 of an address (for counting per household).
pub fn prefix64(v6: Ipv6Addr) -> Ipv6Addr {
    let s = v6.segments();
    Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_of_both_families_and_mapped_addresses() {
        let cases = [
            ("10.0.0.0/8", "10.200.3.4", true),
            ("10.0.0.0/8", "11.0.0.1", false),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("192.168.1.7", "192.168.1.7", true),
            ("192.168.1.7", "192.168.1.8", false),
            ("::ffff:192.168.1.0/120", "192.168.1.99", true),
            ("fd00::/8", "fd12:3456::1", true),
            ("fd00::/8", "fe80::1", false),
            ("::1", "::1", true),
            ("0.0.0.0/0", "8.8.8.8", true),
            ("0.0.0.0/0", "::1", false),
        ];
        for (net, addr, want) in cases {
            assert_eq!(Cidr::parse(net).unwrap().contains(ip(addr)), want, "{net} ∋ {addr}");
        }
        for bad in ["10.0.0.0/33", "fd00::/129", "10.0.0", "nope", "10.0.0.0/x", "::ffff:1.2.3.4/95"] {
            assert!(Cidr::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn proxy_lists_and_forwarded_for() {
        assert_eq!(TrustedProxies::parse("auto").unwrap(), TrustedProxies::Auto);
        assert!(TrustedProxies::parse("10.0.0.1, bogus").unwrap_err().contains("bogus"));
        let p = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8, fd00::/8").unwrap();
        assert!(p.is_proxy(ip("::ffff:127.0.0.1")));
        assert!(!p.is_proxy(ip("192.168.1.2")));
        // From a proxy: the nearest untrusted hop.
        assert_eq!(p.client_ip(ip("127.0.0.1"), Some("203.0.113.9, 10.1.1.1")), ip("203.0.113.9"));
        // Spoofed from a non-proxy: ignored.
        assert_eq!(p.client_ip(ip("192.168.1.2"), Some("1.2.3.4")), ip("192.168.1.2"));
        assert_eq!(p.client_ip(ip("127.0.0.1"), Some("garbage")), ip("127.0.0.1"));
        assert!(!TrustedProxies::Auto.is_proxy(ip("127.0.0.1")));
    }
}
