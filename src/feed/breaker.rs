//! What an endpoint does after a call: the circuit breaker and the retry back-off. Pure: the
//! delivery worker persists the result and the store compares times on the database's clock.
//!
//! Breaker (one per endpoint): `closed` lets calls through; after `threshold` consecutive
//! failed calls it is `open` and no call is made for `cooldown`; then the next call is the one
//! probe (`half_open`): success closes it, failure opens it again for another cool-down.
//! Back-off (per event): attempt n waits `min(max, base * 2^(n-1))`, with "equal jitter" (a
//! random point in the upper half), so endpoints that failed together do not retry together.

use std::time::Duration;

use serde::Serialize;
use utoipa::ToSchema;

/// The state of an endpoint's circuit breaker. Stored as its snake_case name; exported to
/// `/metrics` as 0, 1, 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Circuit {
    /// Calls go through.
    Closed,
    /// Too many consecutive failures: no calls until the cool-down has passed.
    Open,
    /// The cool-down passed: one probe call decides.
    HalfOpen,
}

impl Circuit {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    /// Unknown text reads as `closed`: a breaker that forgot its state only lets one more call
    /// through, which is the safe direction.
    pub fn parse(text: &str) -> Self {
        match text {
            "open" => Self::Open,
            "half_open" => Self::HalfOpen,
            _ => Self::Closed,
        }
    }

    /// The value of `reel_webhook_circuit_state`.
    pub fn gauge(self) -> f64 {
        match self {
            Self::Closed => 0.0,
            Self::Open => 1.0,
            Self::HalfOpen => 2.0,
        }
    }
}

/// The retry and breaker settings (`--webhook-*`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Calls an event gets before it goes to the dead letters (at least 1).
    pub max_attempts: u32,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    /// Consecutive failed calls that open the breaker (at least 1).
    pub threshold: u32,
    pub cooldown: Duration,
}

/// An endpoint's breaker as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Breaker {
    pub circuit: Circuit,
    /// Consecutive failed calls, whatever the events.
    pub failures: u32,
}

/// What follows a failed call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AfterFailure {
    /// The event used its last attempt: to the dead letters, and delivery moves on.
    pub dead_letter: bool,
    /// How long until the next call of this endpoint (back-off or cool-down).
    pub wait: Duration,
}

impl Breaker {
    /// Called when the worker is about to call: an open breaker whose cool-down has passed
    /// (the worker only runs then) lets this one call through as the probe.
    pub fn admit(&mut self) {
        if self.circuit == Circuit::Open {
            self.circuit = Circuit::HalfOpen;
        }
    }

    pub fn on_success(&mut self) {
        self.circuit = Circuit::Closed;
        self.failures = 0;
    }

    /// Records a failed call of an event that has now had `attempts` calls. `jitter` is a
    /// uniform random number in `[0, 1)`.
    pub fn on_failure(&mut self, policy: &Policy, attempts: u32, jitter: f64) -> AfterFailure {
        self.failures = self.failures.saturating_add(1);
        if self.circuit == Circuit::HalfOpen || self.failures >= policy.threshold.max(1) {
            self.circuit = Circuit::Open;
        }
        let dead_letter = attempts >= policy.max_attempts.max(1);
        let wait = if self.circuit == Circuit::Open {
            policy.cooldown
        } else if dead_letter {
            Duration::ZERO
        } else {
            backoff(policy, attempts, jitter)
        };
        AfterFailure { dead_letter, wait }
    }
}

/// The wait after the `attempts`-th failed call of an event, with equal jitter.
pub fn backoff(policy: &Policy, attempts: u32, jitter: f64) -> Duration {
    let doublings = attempts.saturating_sub(1).min(30);
    let full = policy
        .backoff_base
        .saturating_mul(1u32 << doublings)
        .min(policy.backoff_max);
    let jitter = jitter.clamp(0.0, 1.0);
    full / 2 + full.mul_f64(jitter / 2.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        max_attempts: 4,
        backoff_base: Duration::from_secs(1),
        backoff_max: Duration::from_secs(10),
        threshold: 3,
        cooldown: Duration::from_secs(60),
    };

    fn closed() -> Breaker {
        Breaker {
            circuit: Circuit::Closed,
            failures: 0,
        }
    }

    #[test]
    fn back_off_doubles_up_to_the_cap_and_jitters_in_the_upper_half() {
        assert_eq!(backoff(&POLICY, 1, 1.0), Duration::from_secs(1));
        assert_eq!(backoff(&POLICY, 1, 0.0), Duration::from_millis(500));
        assert_eq!(backoff(&POLICY, 3, 1.0), Duration::from_secs(4));
        assert_eq!(backoff(&POLICY, 9, 1.0), Duration::from_secs(10));
        assert_eq!(backoff(&POLICY, u32::MAX, 0.5), Duration::from_millis(7500));
    }

    #[test]
    fn the_breaker_opens_after_the_threshold_probes_once_and_closes_on_success() {
        let mut breaker = closed();
        let first = breaker.on_failure(&POLICY, 1, 1.0);
        assert_eq!(breaker.circuit, Circuit::Closed);
        assert_eq!(first.wait, Duration::from_secs(1));
        breaker.on_failure(&POLICY, 2, 1.0);
        let third = breaker.on_failure(&POLICY, 3, 1.0);
        assert_eq!(breaker.circuit, Circuit::Open);
        assert_eq!(third.wait, POLICY.cooldown);
        assert!(!third.dead_letter);

        // The cool-down passed: one probe; its failure opens the breaker again.
        breaker.admit();
        assert_eq!(breaker.circuit, Circuit::HalfOpen);
        let probe = breaker.on_failure(&POLICY, 4, 1.0);
        assert_eq!(breaker.circuit, Circuit::Open);
        assert!(probe.dead_letter, "the fourth attempt was the last");

        breaker.admit();
        breaker.on_success();
        assert_eq!(breaker, closed());
    }

    #[test]
    fn an_event_out_of_attempts_is_dead_lettered_and_the_next_goes_at_once() {
        let policy = Policy {
            max_attempts: 1,
            threshold: 100,
            ..POLICY
        };
        let mut breaker = closed();
        let after = breaker.on_failure(&policy, 1, 0.3);
        assert!(after.dead_letter);
        assert_eq!(after.wait, Duration::ZERO);
        assert_eq!(Circuit::parse("half_open"), Circuit::HalfOpen);
        assert_eq!(Circuit::parse("???"), Circuit::Closed);
        assert_eq!(Circuit::Open.gauge(), 1.0);
    }
}
