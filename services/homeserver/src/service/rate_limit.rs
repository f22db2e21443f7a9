//! Rate limits per user (or client address), in buckets: the spec's
//! rate-limited endpoints and writes, lookups, and reads.

use std::{num::NonZeroU32, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter as Governor, clock::Clock};

use crate::{Error, Result, config::RateLimitConfig};

pub struct RateLimiter {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    /// For reads, which clients make many of at once (a room's history,
    /// its avatars): [`READS_FACTOR`] times the quota.
    reads: Option<DefaultKeyedRateLimiter<String>>,
}

/// How many times the configured quota reads get.
pub const READS_FACTOR: u32 = 10;

impl RateLimiter {
    pub fn new(config: &RateLimitConfig) -> Self {
        let limiter = |factor: u32| {
            config.enabled.then(|| {
                let per_second = NonZeroU32::new(config.per_second.saturating_mul(factor))
                    .unwrap_or(NonZeroU32::MIN);
                let burst =
                    NonZeroU32::new(config.burst.saturating_mul(factor)).unwrap_or(NonZeroU32::MIN);
                Governor::keyed(Quota::per_second(per_second).allow_burst(burst))
            })
        };
        Self {
            limiter: limiter(1),
            reads: limiter(READS_FACTOR),
        }
    }

    /// Counts one request for `key` (a bucket, then a user ID or a client
    /// address before login); `reads` for the reads' larger quota.
    pub fn check(&self, key: &str, reads: bool) -> Result<()> {
        let limiter = if reads { &self.reads } else { &self.limiter };
        let Some(limiter) = limiter else {
            return Ok(());
        };
        match limiter.check_key(&key.to_owned()) {
            Ok(()) => Ok(()),
            Err(not_until) => {
                let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
                Err(Error::limit_exceeded(wait.max(Duration::from_millis(100))))
            }
        }
    }

    /// Drops state for keys that are back under their limit.
    pub fn housekeeping(&self) {
        for limiter in [&self.limiter, &self.reads].into_iter().flatten() {
            limiter.retain_recent();
        }
    }
}
