//! Rate limits on the endpoints the spec marks as rate-limited.

use std::{num::NonZeroU32, time::Duration};

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter as Governor, clock::Clock};

use crate::{Error, Result, config::RateLimitConfig};

pub struct RateLimiter {
    limiter: Option<DefaultKeyedRateLimiter<String>>,
}

impl RateLimiter {
    pub fn new(config: &RateLimitConfig) -> Self {
        let limiter = config.enabled.then(|| {
            let per_second = NonZeroU32::new(config.per_second).unwrap_or(NonZeroU32::MIN);
            let burst = NonZeroU32::new(config.burst).unwrap_or(NonZeroU32::MIN);
            Governor::keyed(Quota::per_second(per_second).allow_burst(burst))
        });
        Self { limiter }
    }

    /// Counts one request for `key` (a user ID, or a client address before login).
    pub fn check(&self, key: &str) -> Result<()> {
        let Some(limiter) = &self.limiter else {
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
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
        }
    }
}
