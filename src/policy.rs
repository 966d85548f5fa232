//! The rules that decide what happens to jobs: what may be dispatched, when a failure
//! is retried and after how long. Built from the config; no I/O.

use crate::config::Config;
use crate::protocol::EntityType;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct Policy {
    pub jobs_per_response: u32,
    pub entity_types: Vec<EntityType>,
    pub trusted_entity_types: Vec<EntityType>,
    pub orphan_after: Duration,
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub permanent_errors: Vec<String>,
    pub follow_up_types: Vec<EntityType>,
    pub rediscover_after: Duration,
}

impl From<&Config> for Policy {
    fn from(c: &Config) -> Self {
        Policy {
            jobs_per_response: c.dispatch.jobs_per_response,
            entity_types: c.dispatch.entity_types.clone(),
            trusted_entity_types: c.dispatch.trusted_entity_types.clone(),
            orphan_after: c.dispatch.orphan_after.0,
            max_attempts: c.retry.max_attempts,
            backoff_base: c.retry.backoff_base.0,
            backoff_max: c.retry.backoff_max.0,
            permanent_errors: c.retry.permanent_errors.clone(),
            follow_up_types: c.discovery.follow_up_types.clone(),
            rediscover_after: c.discovery.rediscover_after.0,
        }
    }
}

/// The crawler's error text for a task type it does not implement.
pub const UNKNOWN_TASK_TYPE: &str = "Unknown task type:";

impl Policy {
    /// A failure that will fail the same way again.
    pub fn is_permanent(&self, error: &str) -> bool {
        self.permanent_errors
            .iter()
            .any(|p| !p.is_empty() && error.contains(p.as_str()))
    }

    /// The wait before attempt `attempts + 1`: exponential from the base, capped at
    /// `backoff_max`, plus up to half again of random jitter (still within the cap) so
    /// retries of many jobs spread out. The jitter is on top: never sooner than the
    /// base (spec §6.2: at least 60 s).
    pub fn backoff(&self, attempts: u32) -> Duration {
        let exp = attempts.saturating_sub(1).min(30);
        let full = self
            .backoff_base
            .saturating_mul(1u32 << exp)
            .min(self.backoff_max);
        (full + full.mul_f64(fastrand::f64() / 2.0)).min(self.backoff_max.max(full))
    }

    /// Whether the capability guard may pause this type.
    pub fn may_pause(&self, t: EntityType) -> bool {
        !self.trusted_entity_types.contains(&t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let p = Policy::from(&Config::default());
        for attempts in 1..40 {
            let full = (p.backoff_base * 2u32.pow((attempts - 1).min(20))).min(p.backoff_max);
            let b = p.backoff(attempts);
            assert!(b >= full && b <= full + full / 2, "{attempts}: {b:?}");
            assert!(b >= Duration::from_secs(60), "{attempts}: {b:?}");
        }
    }

    #[test]
    fn default_permanent_errors() {
        let p = Policy::from(&Config::default());
        assert!(p.is_permanent("Unknown task type: fetch_issues"));
        assert!(p.is_permanent("undefined is not an object (evaluating 'progress.estimatedTime.estimatedTimeRemaining')"));
        assert!(!p.is_permanent("GitLab API error: 502"));
    }
}
