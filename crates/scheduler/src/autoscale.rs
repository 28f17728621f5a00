//! `scale_settings.type: target_utilization`: decisions from the router's measurement.
//!
//! Utilisation is (requests busy + requests queued) / (replicas × slots per replica), as the
//! router sees it. Above the target the deployment scales out at once; below it, only after
//! it has stayed below for a quiet period (20 polling intervals, as Azure's azureml-fe does).
//! A pure value: time is passed in, so tests need no clock.

use std::time::Duration;

/// The scaler of one deployment.
#[derive(Clone, Debug)]
pub struct Autoscaler {
    /// Target utilisation, 0..1.
    pub target: f64,
    /// At least this many replicas.
    pub min: u32,
    /// At most this many.
    pub max: u32,
    /// How long utilisation must stay low before scaling in.
    pub quiet: Duration,
    low_since: Option<Duration>,
}

impl Autoscaler {
    /// A scaler for `target_utilization_percentage`, `min_instances`, `max_instances` and
    /// `polling_interval` seconds.
    pub fn new(target_percent: u32, min: u32, max: u32, polling_interval_secs: u64) -> Autoscaler {
        Autoscaler {
            target: f64::from(target_percent.clamp(1, 100)) / 100.0,
            min: min.max(1),
            max: max.max(min.max(1)),
            quiet: Duration::from_secs(polling_interval_secs.max(1) * 20),
            low_since: None,
        }
    }

    /// The replica count wanted now, if it differs from `replicas`. `load` is busy + queued
    /// requests; `slots` is max_concurrent_requests_per_instance; `now` is any monotonic time.
    pub fn decide(&mut self, now: Duration, replicas: u32, load: usize, slots: u32) -> Option<u32> {
        let replicas = replicas.max(1);
        let capacity = f64::from(replicas) * f64::from(slots.max(1));
        let utilization = load as f64 / capacity;
        // The fewest replicas that keep utilisation at or under the target.
        let needed = ((load as f64 / (f64::from(slots.max(1)) * self.target)).ceil() as u32)
            .clamp(self.min, self.max);
        if utilization > self.target {
            self.low_since = None;
            return (needed > replicas).then_some(needed);
        }
        if needed >= replicas {
            self.low_since = None;
            return None;
        }
        let since = *self.low_since.get_or_insert(now);
        if now.saturating_sub(since) >= self.quiet {
            self.low_since = None;
            return Some(needed);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn scales_out_at_once_within_max() {
        let mut a = Autoscaler::new(70, 1, 5, 1);
        assert_eq!(
            a.decide(secs(0), 1, 1, 1),
            Some(2),
            "100% on one replica: add one to get under 70%"
        );
        assert_eq!(a.decide(secs(1), 2, 10, 1), Some(5), "capped at max");
        assert_eq!(a.decide(secs(2), 5, 10, 1), None, "already at max");
        assert_eq!(
            a.decide(secs(3), 2, 1, 1),
            None,
            "50% is under target and needs 2"
        );
    }

    #[test]
    fn scales_in_only_after_a_quiet_period() {
        let mut a = Autoscaler::new(70, 1, 5, 1);
        assert_eq!(a.decide(secs(0), 4, 0, 1), None);
        assert_eq!(a.decide(secs(19), 4, 0, 1), None, "not quiet long enough");
        assert_eq!(
            a.decide(secs(20), 4, 0, 1),
            Some(1),
            "20 polling intervals of nothing: down to min"
        );
        assert_eq!(a.decide(secs(21), 1, 0, 1), None);
    }

    #[test]
    fn a_burst_resets_the_quiet_period() {
        let mut a = Autoscaler::new(50, 2, 6, 1);
        assert_eq!(a.decide(secs(0), 4, 1, 2), None);
        assert_eq!(a.decide(secs(15), 4, 4, 2), None, "exactly at target");
        assert_eq!(a.decide(secs(16), 4, 1, 2), None);
        assert_eq!(
            a.decide(secs(35), 4, 1, 2),
            None,
            "the quiet period restarted at 16 s"
        );
        assert_eq!(a.decide(secs(36), 4, 1, 2), Some(2), "never below min");
    }

    #[test]
    fn slots_count_in_the_capacity() {
        let mut a = Autoscaler::new(70, 1, 10, 1);
        assert_eq!(a.decide(secs(0), 1, 7, 10), None, "7 of 10 slots is 70%");
        assert_eq!(a.decide(secs(1), 1, 8, 10), Some(2));
    }
}
