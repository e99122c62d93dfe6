//! The sender's retry schedule: plain data read from `[sender.retry]` in the serve config,
//! and the one function that turns (attempt number, the channel's advice, an rng) into the
//! wait before the next try.
//!
//! The sender owns time and state: when a send fails with a retryable outcome it asks
//! [`RetrySchedule::delay`] for the wait before retry `n`, stores the due time with the
//! outbox row and tries again then; `None` means the schedule is exhausted and the row goes
//! to the dead letters. Jitter spreads retries of many rows that failed together (one
//! outage) so they do not hit the Graph API in one burst when it comes back.

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Default waits: 1 s, 4 s, 16 s, 64 s, ~4 min, 15 min (about 21 minutes in all), long
/// enough to ride out a short Graph API outage, short enough that a conversation does not
/// go on hours later.
pub const DEFAULT_DELAYS_MS: [u64; 6] = [1_000, 4_000, 16_000, 64_000, 256_000, 900_000];

/// When to retry a failed send and when to give up.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySchedule {
    /// The wait before each retry, in order; its length is the number of retries.
    pub delays_ms: Vec<u64>,
    /// Each wait is scaled by a factor drawn uniformly from `[1 - jitter, 1 + jitter]`;
    /// `0..=1`.
    pub jitter: f64,
    /// Upper bound on the channel's advice (a `Retry-After` of an hour must not park a
    /// conversation for an hour).
    pub max_retry_after_ms: u64,
    /// Lower bound on the channel's advice (a `Retry-After: 0` must not cause a hot loop).
    pub min_retry_after_ms: u64,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule {
            delays_ms: DEFAULT_DELAYS_MS.to_vec(),
            jitter: 0.25,
            max_retry_after_ms: 300_000,
            min_retry_after_ms: 500,
        }
    }
}

impl RetrySchedule {
    /// The wait before retry number `attempt` (1-based: the first retry is attempt 1; 0 is
    /// treated as 1), or `None` when the schedule is exhausted.
    ///
    /// `advised_ms` is the channel's advice (a `Retry-After` header or the adapter's `4^n`
    /// seconds for throttling codes). It is clamped to
    /// `[min_retry_after_ms, max_retry_after_ms]` and the result is the larger of the
    /// jittered schedule entry and the clamped advice: the channel knows best when it asks
    /// for more patience, our schedule when it asks for less.
    pub fn delay(&self, attempt: u32, advised_ms: Option<u64>, rng: &mut impl Rng) -> Option<u64> {
        let index = usize::try_from(attempt.max(1) - 1).ok()?;
        let base = *self.delays_ms.get(index)?;
        let jittered = self.jittered(base, rng);
        let advice = advised_ms.map(|ms| {
            // `clamp` would panic on an inverted range; validation refuses one, but this
            // must not be the place that finds out.
            ms.max(self.min_retry_after_ms).min(self.max_retry_after_ms)
        });
        Some(advice.map_or(jittered, |advice| jittered.max(advice)))
    }

    /// How many retries the schedule allows (after the first try).
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.delays_ms.len()).unwrap_or(u32::MAX)
    }

    /// Checks the values a config file can get wrong; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.delays_ms.is_empty() {
            return Err("sender.retry.delays_ms must list at least one delay".to_string());
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(format!(
                "sender.retry.jitter must be between 0 and 1, got {}",
                self.jitter
            ));
        }
        if self.min_retry_after_ms > self.max_retry_after_ms {
            return Err(format!(
                "sender.retry.min_retry_after_ms ({}) is larger than max_retry_after_ms ({})",
                self.min_retry_after_ms, self.max_retry_after_ms
            ));
        }
        Ok(())
    }

    fn jittered(&self, base: u64, rng: &mut impl Rng) -> u64 {
        // An unvalidated NaN jitter means no jitter rather than garbage.
        let jitter = self.jitter.min(1.0);
        if jitter.is_nan() || jitter <= 0.0 || base == 0 {
            return base;
        }
        let factor = rng.random_range((1.0 - jitter)..=(1.0 + jitter));
        // `as` saturates at the u64 bounds; precision loss above 2^53 ms is irrelevant.
        (base as f64 * factor).round() as u64
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    fn rng() -> StdRng {
        StdRng::seed_from_u64(7)
    }

    #[test]
    fn defaults() {
        let s = RetrySchedule::default();
        assert_eq!(s.delays_ms, vec![1000, 4000, 16000, 64000, 256000, 900000]);
        assert_eq!(s.jitter, 0.25);
        assert_eq!(s.max_retry_after_ms, 300_000);
        assert_eq!(s.min_retry_after_ms, 500);
        assert_eq!(s.max_attempts(), 6);
        assert!(s.validate().is_ok());
    }

    #[test]
    fn jitter_stays_within_bounds_and_varies() {
        let s = RetrySchedule::default();
        let mut rng = rng();
        for (i, &base) in s.delays_ms.iter().enumerate() {
            let attempt = u32::try_from(i + 1).unwrap();
            let mut seen = std::collections::BTreeSet::new();
            for _ in 0..200 {
                let d = s.delay(attempt, None, &mut rng).unwrap();
                let lo = (base as f64 * 0.75).floor() as u64;
                let hi = (base as f64 * 1.25).ceil() as u64;
                assert!(
                    (lo..=hi).contains(&d),
                    "attempt {attempt}: {d} not in {lo}..={hi}"
                );
                seen.insert(d);
            }
            assert!(seen.len() > 10, "jitter should spread the waits");
        }
    }

    #[test]
    fn no_jitter_is_exact() {
        let s = RetrySchedule {
            jitter: 0.0,
            ..RetrySchedule::default()
        };
        let mut rng = rng();
        assert_eq!(s.delay(1, None, &mut rng), Some(1000));
        assert_eq!(s.delay(6, None, &mut rng), Some(900_000));
        // Attempt 0 is read as the first retry rather than "exhausted".
        assert_eq!(s.delay(0, None, &mut rng), Some(1000));
    }

    #[test]
    fn exhausted_after_the_last_entry() {
        let s = RetrySchedule::default();
        let mut rng = rng();
        assert!(s.delay(6, None, &mut rng).is_some());
        assert_eq!(s.delay(7, None, &mut rng), None);
        assert_eq!(s.delay(u32::MAX, Some(1000), &mut rng), None);
    }

    #[test]
    fn huge_retry_after_is_clamped() {
        let s = RetrySchedule::default();
        let mut rng = rng();
        let d = s.delay(1, Some(3_600_000), &mut rng).unwrap();
        assert_eq!(d, 300_000);
    }

    #[test]
    fn tiny_retry_after_is_raised_to_the_minimum_but_schedule_wins() {
        let s = RetrySchedule {
            delays_ms: vec![100],
            jitter: 0.0,
            ..RetrySchedule::default()
        };
        let mut rng = rng();
        assert_eq!(s.delay(1, Some(0), &mut rng), Some(500));
        // The schedule's own wait is not clamped, only the advice.
        let s = RetrySchedule {
            delays_ms: vec![600_000],
            jitter: 0.0,
            ..RetrySchedule::default()
        };
        assert_eq!(s.delay(1, Some(0), &mut rng), Some(600_000));
    }

    #[test]
    fn advice_larger_than_schedule_wins() {
        let s = RetrySchedule::default();
        let mut rng = rng();
        // Attempt 1 is at most 1250 ms; a 16 s throttling advice takes over.
        assert_eq!(s.delay(1, Some(16_000), &mut rng), Some(16_000));
        // Attempt 5 (~256 s) beats a 4 s advice.
        let d = s.delay(5, Some(4_000), &mut rng).unwrap();
        assert!(d >= 192_000, "{d}");
    }

    #[test]
    fn validation() {
        let mut s = RetrySchedule {
            delays_ms: vec![],
            ..RetrySchedule::default()
        };
        assert!(s.validate().unwrap_err().contains("delays_ms"));
        s.delays_ms = vec![1];
        s.jitter = 1.5;
        assert!(s.validate().unwrap_err().contains("jitter"));
        s.jitter = f64::NAN;
        assert!(s.validate().is_err());
        s.jitter = 0.1;
        s.min_retry_after_ms = 10;
        s.max_retry_after_ms = 5;
        assert!(s.validate().unwrap_err().contains("min_retry_after_ms"));
    }

    #[test]
    fn toml_fields_are_optional() {
        let s: RetrySchedule = toml::from_str("jitter = 0.5").unwrap();
        assert_eq!(s.jitter, 0.5);
        assert_eq!(s.delays_ms, DEFAULT_DELAYS_MS.to_vec());
        let s: RetrySchedule = toml::from_str("delays_ms = [10, 20]").unwrap();
        assert_eq!(s.max_attempts(), 2);
        assert!(toml::from_str::<RetrySchedule>("delay_ms = [10]").is_err());
    }
}
