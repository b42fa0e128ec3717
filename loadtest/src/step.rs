//! Step mode: raise the open-loop rate step by step until the service
//! level objective breaks, and report the highest rate that met it — the
//! sustainable throughput.
//!
//! A step meets the objective when, over that step, the p99 latency of all
//! requests together is within `--slo-p99-ms`, the achieved rate is at
//! least 95% of the offered one (a server that quietly falls behind builds
//! a queue that latency alone reveals only later), and at most 1% of
//! requests failed. A step in which the harness itself fell behind schedule
//! also fails: beyond that rate the numbers describe the harness, not the
//! server.

/// How the rate grows from one step to the next.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Growth {
    /// Multiply by this factor (> 1).
    Factor(f64),
    /// Add this many requests per second (> 0).
    Increment(f64),
}

/// Least achieved/offered ratio of a passing step.
pub const MIN_ACHIEVED_RATIO: f64 = 0.95;
/// Largest error share of a passing step.
pub const MAX_ERROR_RATIO: f64 = 0.01;

/// The rate after `rate`, or `None` when `max_rate` has been run. A step
/// that would overshoot `max_rate` runs at `max_rate` itself, so the limit
/// given is always tried.
pub fn next_rate(rate: f64, growth: Growth, max_rate: f64) -> Option<f64> {
    if rate >= max_rate * (1.0 - 1e-9) {
        return None;
    }
    let next = match growth {
        Growth::Factor(f) => rate * f,
        Growth::Increment(i) => rate + i,
    };
    Some(next.min(max_rate))
}

/// What a step's verdict depends on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepMeasure {
    pub offered_rate: f64,
    pub achieved_rate: f64,
    pub p99_ms: f64,
    /// Requests sent in the step.
    pub sent: u64,
    /// Error statuses, timeouts and transport errors.
    pub errors: u64,
    pub harness_behind: bool,
}

/// Whether a step met the objective, and if not, why.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub passed: bool,
    pub reasons: Vec<String>,
}

/// Judges one step against a p99 objective in milliseconds.
pub fn judge(m: &StepMeasure, slo_p99_ms: f64) -> Verdict {
    let mut reasons = Vec::new();
    if m.p99_ms > slo_p99_ms {
        reasons.push(format!("p99 {:.1} ms > SLO {slo_p99_ms} ms", m.p99_ms));
    }
    if m.achieved_rate < MIN_ACHIEVED_RATIO * m.offered_rate {
        reasons.push(format!(
            "achieved {:.1}/s < {:.0}% of offered {:.1}/s",
            m.achieved_rate,
            MIN_ACHIEVED_RATIO * 100.0,
            m.offered_rate
        ));
    }
    if m.sent == 0 {
        reasons.push("no request was sent".into());
    } else if m.errors as f64 > MAX_ERROR_RATIO * m.sent as f64 {
        reasons.push(format!(
            "error rate {:.2}% > {:.0}%",
            100.0 * m.errors as f64 / m.sent as f64,
            MAX_ERROR_RATIO * 100.0
        ));
    }
    if m.harness_behind {
        reasons.push("the harness fell behind schedule".into());
    }
    Verdict {
        passed: reasons.is_empty(),
        reasons,
    }
}

/// The highest rate of the passing steps before the first failing one.
pub fn sustainable_rate(steps: &[(f64, bool)]) -> Option<f64> {
    steps
        .iter()
        .take_while(|(_, passed)| *passed)
        .map(|(rate, _)| *rate)
        .fold(None, |best: Option<f64>, r| {
            Some(best.map_or(r, |b| b.max(r)))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> StepMeasure {
        StepMeasure {
            offered_rate: 100.0,
            achieved_rate: 99.0,
            p99_ms: 20.0,
            sent: 1000,
            errors: 0,
            harness_behind: false,
        }
    }

    #[test]
    fn rates_grow_and_stop_at_the_limit() {
        let mut rates = vec![100.0];
        while let Some(r) = next_rate(*rates.last().unwrap(), Growth::Factor(2.0), 1000.0) {
            rates.push(r);
        }
        assert_eq!(rates, [100.0, 200.0, 400.0, 800.0, 1000.0]);
        assert_eq!(next_rate(50.0, Growth::Increment(25.0), 100.0), Some(75.0));
        assert_eq!(next_rate(100.0, Growth::Increment(25.0), 100.0), None);
    }

    #[test]
    fn judges_each_objective() {
        assert!(judge(&good(), 50.0).passed);
        let v = judge(
            &StepMeasure {
                p99_ms: 80.0,
                ..good()
            },
            50.0,
        );
        assert!(
            !v.passed && v.reasons[0].contains("p99 80.0 ms > SLO 50 ms"),
            "{v:?}"
        );
        let v = judge(
            &StepMeasure {
                achieved_rate: 90.0,
                ..good()
            },
            50.0,
        );
        assert!(!v.passed && v.reasons[0].contains("achieved"), "{v:?}");
        // 1% errors pass, more do not.
        assert!(
            judge(
                &StepMeasure {
                    errors: 10,
                    ..good()
                },
                50.0
            )
            .passed
        );
        let v = judge(
            &StepMeasure {
                errors: 11,
                ..good()
            },
            50.0,
        );
        assert!(!v.passed && v.reasons[0].contains("error rate"), "{v:?}");
        let v = judge(
            &StepMeasure {
                harness_behind: true,
                ..good()
            },
            50.0,
        );
        assert!(!v.passed && v.reasons[0].contains("harness"), "{v:?}");
        assert!(!judge(&StepMeasure { sent: 0, ..good() }, 50.0).passed);
    }

    #[test]
    fn sustainable_is_the_last_pass_before_a_failure() {
        assert_eq!(sustainable_rate(&[]), None);
        assert_eq!(sustainable_rate(&[(100.0, false)]), None);
        assert_eq!(
            sustainable_rate(&[(100.0, true), (200.0, true), (400.0, false)]),
            Some(200.0)
        );
        // A lucky pass after a failure does not count.
        assert_eq!(
            sustainable_rate(&[(100.0, true), (200.0, false), (400.0, true)]),
            Some(100.0)
        );
    }
}
