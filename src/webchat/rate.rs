//! Rate limits: token buckets, one per socket or per key (user, client address).
//!
//! A bucket holds up to `burst` tokens and refills at `per_s`; each action takes one. Time is an
//! argument, so the arithmetic is tested without waiting.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Keys a [`Limiter`] remembers before it forgets full buckets (a full bucket is the same as none).
pub const KEYS_MAX: usize = 10_000;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_s: f64,
    pub burst: f64,
}

#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub fn full(rate: Rate, now: Instant) -> Bucket {
        Bucket { tokens: rate.burst, at: now }
    }

    fn refill(&mut self, rate: Rate, now: Instant) {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * rate.per_s).min(rate.burst);
        self.at = now;
    }

    /// Takes a token, or says how long until one is there.
    pub fn take(&mut self, rate: Rate, now: Instant) -> Result<(), Duration> {
        self.refill(rate, now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(((1.0 - self.tokens) / rate.per_s).max(0.001)))
        }
    }

    fn is_full(&self, rate: Rate, now: Instant) -> bool {
        let mut b = *self;
        b.refill(rate, now);
        b.tokens >= rate.burst
    }
}

/// Buckets by key, shared between threads.
pub struct Limiter<K> {
    rate: Rate,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(rate: Rate) -> Limiter<K> {
        Limiter { rate, buckets: Mutex::new(HashMap::new()) }
    }

    pub fn take(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= KEYS_MAX && !map.contains_key(key) {
            let rate = self.rate;
            map.retain(|_, b| !b.is_full(rate, now));
        }
        map.entry(key.clone()).or_insert_with(|| Bucket::full(self.rate, now)).take(self.rate, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let rate = Rate { per_s: 2.0, burst: 3.0 };
        let t0 = Instant::now();
        let mut b = Bucket::full(rate, t0);
        for _ in 0..3 {
            assert!(b.take(rate, t0).is_ok());
        }
        let wait = b.take(rate, t0).unwrap_err();
        assert!((wait.as_secs_f64() - 0.5).abs() < 0.01, "{wait:?}");
        assert!(b.take(rate, t0 + Duration::from_millis(499)).is_err());
        assert!(b.take(rate, t0 + Duration::from_millis(501)).is_ok());
        // A long pause refills only up to the burst.
        let later = t0 + Duration::from_secs(100);
        for _ in 0..3 {
            assert!(b.take(rate, later).is_ok());
        }
        assert!(b.take(rate, later).is_err());
    }

    #[test]
    fn keys_are_limited_separately_and_forgotten_when_full() {
        let lim = Limiter::new(Rate { per_s: 1.0, burst: 1.0 });
        let t0 = Instant::now();
        assert!(lim.take(&"a", t0).is_ok());
        assert!(lim.take(&"a", t0).is_err());
        assert!(lim.take(&"b", t0).is_ok());
        let lim = Limiter::new(Rate { per_s: 1.0, burst: 1.0 });
        for i in 0..KEYS_MAX {
            lim.take(&i, t0).unwrap();
        }
        let later = t0 + Duration::from_secs(2);
        assert!(lim.take(&KEYS_MAX, later).is_ok());
        assert_eq!(lim.buckets.lock().unwrap().len(), 1, "refilled buckets are dropped");
    }
}
