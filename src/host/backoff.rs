//! The one backoff rule of the host: a base delay doubling with each failure, up to a cap, with
//! an optional number of tries after which one gives up. Each user names its own [`Policy`].

/// Delays of `base_ms · 2^attempt`, at most `cap_ms`; `tries_max` attempts in all (`None`: never
/// give up).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    pub base_ms: i64,
    pub cap_ms: i64,
    pub tries_max: Option<u32>,
}

/// A container that failed to start: 1, 2, 4 … s, at most 5 min (giving up is the sweep's call).
pub const CONTAINER_START: Policy = Policy { base_ms: 1000, cap_ms: 300_000, tries_max: None };
/// The docker engine is unreachable: look again after 2, 4 … s, at most 30 s.
pub const ENGINE: Policy = Policy { base_ms: 2000, cap_ms: 30_000, tries_max: None };
/// A message whose container stopped mid-turn: 5, 10, 20, 40, 80 s, then it fails.
pub const INBOUND_RETRY: Policy = Policy { base_ms: 5000, cap_ms: 80_000, tries_max: Some(6) };
/// A delivery the channel asked to retry: 2, 4 s, then it fails.
pub const DELIVERY_RETRY: Policy = Policy { base_ms: 2000, cap_ms: 60_000, tries_max: Some(3) };
/// Routing a stored message into sessions: 1, 2, 4, 8 s, then it is given up with a notice.
pub const ROUTING: Policy = Policy { base_ms: 1000, cap_ms: 10_000, tries_max: Some(5) };

impl Policy {
    /// The delay before the next try after `failures` failed ones (`failures` ≥ 1), or `None`
    /// when the tries are used up.
    pub fn delay_ms(&self, failures: u32) -> Option<i64> {
        if self.tries_max.is_some_and(|max| failures >= max) {
            return None;
        }
        let exp = failures.saturating_sub(1).min(30);
        Some(self.base_ms.saturating_mul(1i64 << exp).min(self.cap_ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_policy_doubles_caps_and_gives_up_as_named() {
        let seq = |p: Policy| (1..=10).map(|n| p.delay_ms(n)).collect::<Vec<_>>();
        let s = |v: &[i64]| v.iter().map(|&d| Some(d)).collect::<Vec<_>>();
        assert_eq!(
            seq(INBOUND_RETRY)[..7],
            [Some(5000), Some(10_000), Some(20_000), Some(40_000), Some(80_000), None, None]
        );
        assert_eq!(seq(DELIVERY_RETRY)[..3], [Some(2000), Some(4000), None]);
        assert_eq!(seq(ROUTING)[..5], [Some(1000), Some(2000), Some(4000), Some(8000), None]);
        assert_eq!(
            seq(CONTAINER_START),
            s(&[1000, 2000, 4000, 8000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000])
        );
        assert_eq!(seq(ENGINE)[..5], s(&[2000, 4000, 8000, 16_000, 30_000]));
        assert_eq!(CONTAINER_START.delay_ms(u32::MAX), Some(300_000), "no overflow");
    }
}
