//! Response rate limiting per client network (/24 for IPv4, /56 for IPv6 by default), a token
//! bucket with "slip": every n-th limited response goes out truncated (TC) so that a real
//! client behind a spoofed flood can still get through over TCP. One limiter per UDP worker,
//! no locks; time is passed in.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::config::RateLimitConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Pass,
    Slip,
    Drop,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
    limited: u32,
}

#[derive(Debug)]
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    slip: u32,
    v4_prefix: u8,
    v6_prefix: u8,
    buckets: HashMap<(bool, u128), Bucket>,
    last_sweep: Instant,
}

const SWEEP_EVERY: Duration = Duration::from_secs(10);
const MAX_BUCKETS: usize = 200_000;

impl RateLimiter {
    /// `None` when rate limiting is off.
    pub fn new(c: &RateLimitConfig, now: Instant) -> Option<RateLimiter> {
        if c.responses_per_second == 0 {
            return None;
        }
        let rate = f64::from(c.responses_per_second);
        Some(RateLimiter {
            rate,
            burst: f64::from(c.burst.unwrap_or(c.responses_per_second).max(1)),
            slip: c.slip,
            v4_prefix: c.ipv4_prefix,
            v6_prefix: c.ipv6_prefix,
            buckets: HashMap::new(),
            last_sweep: now,
        })
    }

    fn key(&self, ip: IpAddr) -> (bool, u128) {
        match ip.to_canonical() {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.v4_prefix))
                    .unwrap_or(0);
                (false, u128::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.v6_prefix))
                    .unwrap_or(0);
                (true, u128::from(a) & mask)
            }
        }
    }

    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Decision {
        if now.duration_since(self.last_sweep) >= SWEEP_EVERY || self.buckets.len() >= MAX_BUCKETS {
            let (rate, burst) = (self.rate, self.burst);
            // A bucket that would be full again carries no state.
            self.buckets
                .retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst);
            self.last_sweep = now;
        }
        let key = self.key(ip);
        let b = self.buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            last: now,
            limited: 0,
        });
        let elapsed = now.duration_since(b.last).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            return Decision::Pass;
        }
        b.limited = b.limited.wrapping_add(1);
        if self.slip > 0 && b.limited.is_multiple_of(self.slip) {
            Decision::Slip
        } else {
            Decision::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rps: u32, slip: u32) -> (RateLimiter, Instant) {
        let now = Instant::now();
        let c = RateLimitConfig {
            responses_per_second: rps,
            burst: None,
            slip,
            ..RateLimitConfig::default()
        };
        (RateLimiter::new(&c, now).unwrap(), now)
    }

    #[test]
    fn limits_per_slash24_with_slip() {
        let (mut l, now) = limiter(5, 2);
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.200".parse().unwrap();
        let other: IpAddr = "192.0.3.1".parse().unwrap();
        for _ in 0..5 {
            assert_eq!(l.check(a, now), Decision::Pass);
        }
        // same /24 shares the bucket
        assert_eq!(l.check(b, now), Decision::Drop);
        assert_eq!(l.check(a, now), Decision::Slip);
        assert_eq!(l.check(a, now), Decision::Drop);
        assert_eq!(l.check(other, now), Decision::Pass);
        // refills with time
        assert_eq!(l.check(a, now + Duration::from_millis(400)), Decision::Pass);
    }

    #[test]
    fn ipv6_uses_slash56_and_zero_disables() {
        let (mut l, now) = limiter(1, 0);
        let a: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let b: IpAddr = "2001:db8:0:2::1".parse().unwrap();
        let c: IpAddr = "2001:db8:1::1".parse().unwrap();
        assert_eq!(l.check(a, now), Decision::Pass);
        assert_eq!(l.check(b, now), Decision::Drop, "same /56");
        assert_eq!(l.check(c, now), Decision::Pass);
        let off = RateLimitConfig {
            responses_per_second: 0,
            ..RateLimitConfig::default()
        };
        assert!(RateLimiter::new(&off, now).is_none());
    }
}
