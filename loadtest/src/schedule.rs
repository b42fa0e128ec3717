//! Arrival schedules for open-loop runs: the instants at which requests are
//! *meant* to be sent, fixed before the run and independent of how fast the
//! server answers. Latency is measured from these instants, which is what
//! keeps a stalled server from hiding in the percentiles (coordinated
//! omission, Tene: "How NOT to measure latency").

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// How arrivals are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Arrival {
    /// Evenly spaced, `1/rate` apart.
    Constant,
    /// A Poisson process: exponential gaps with mean `1/rate`, the usual
    /// model of independent users.
    Poisson,
}

impl Arrival {
    pub fn as_str(self) -> &'static str {
        match self {
            Arrival::Constant => "constant",
            Arrival::Poisson => "poisson",
        }
    }
}

/// An endless iterator of arrival offsets from the start of a run.
#[derive(Debug)]
pub struct Schedule {
    arrival: Arrival,
    rate: f64,
    rng: StdRng,
    /// Arrivals produced so far (constant spacing is computed as `n / rate`
    /// rather than summed, so it does not drift over millions of steps).
    produced: u64,
    /// The next Poisson offset, in seconds.
    poisson_at: f64,
    /// From this offset (seconds) on, arrivals come at the second rate: an
    /// overload that ends, to see how fast the server recovers.
    change: Option<(f64, f64)>,
}

impl Schedule {
    /// `rate` is in requests per second and must be positive; `seed` makes
    /// Poisson runs repeatable.
    pub fn new(arrival: Arrival, rate: f64, seed: u64) -> Self {
        assert!(rate > 0.0 && rate.is_finite(), "rate must be positive");
        Self {
            arrival,
            rate,
            rng: StdRng::seed_from_u64(seed),
            produced: 0,
            poisson_at: 0.0,
            change: None,
        }
    }

    /// Switches to `rate` requests per second at offset `after`.
    pub fn with_change(mut self, after: Duration, rate: f64) -> Self {
        assert!(rate > 0.0 && rate.is_finite(), "rate must be positive");
        self.change = Some((after.as_secs_f64(), rate));
        self
    }

    /// The rate in force at offset `t` seconds.
    fn rate_at(&self, t: f64) -> f64 {
        match self.change {
            Some((after, rate)) if t >= after => rate,
            _ => self.rate,
        }
    }
}

impl Iterator for Schedule {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let at = match (self.arrival, self.change) {
            (Arrival::Constant, None) => self.produced as f64 / self.rate,
            (Arrival::Constant, Some((after, rate))) => {
                // Arrivals before the change, then evenly from it on.
                // `ceil` may land one past (70 ms × 100/s = 7.000…01), so
                // step back while the previous arrival is still at or
                // after the change.
                let mut before = (after * self.rate).ceil() as u64;
                while before > 0 && (before - 1) as f64 / self.rate >= after {
                    before -= 1;
                }
                if self.produced < before {
                    self.produced as f64 / self.rate
                } else {
                    after + (self.produced - before) as f64 / rate
                }
            }
            (Arrival::Poisson, _) => {
                let at = self.poisson_at;
                // Inverse-CDF sampling of Exp(rate); `1 - u` is in (0, 1].
                let u: f64 = self.rng.random();
                self.poisson_at += -(1.0 - u).ln() / self.rate_at(at);
                at
            }
        };
        self.produced += 1;
        Some(Duration::from_secs_f64(at))
    }
}

/// How many arrivals of `schedule` fall before `duration`.
pub fn count_within(schedule: Schedule, duration: Duration) -> usize {
    schedule.take_while(|t| *t < duration).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gaps(arrival: Arrival, rate: f64, n: usize) -> Vec<f64> {
        let times: Vec<f64> = Schedule::new(arrival, rate, 7)
            .take(n + 1)
            .map(|d| d.as_secs_f64())
            .collect();
        times.windows(2).map(|w| w[1] - w[0]).collect()
    }

    fn mean(v: &[f64]) -> f64 {
        v.iter().sum::<f64>() / v.len() as f64
    }

    #[test]
    fn constant_is_evenly_spaced_and_counts_exactly() {
        let g = gaps(Arrival::Constant, 200.0, 1000);
        for gap in &g {
            assert!((gap - 0.005).abs() < 1e-9, "gap {gap}");
        }
        // Arrivals at 0, 5 ms, ..., 2995 ms: exactly rate × duration.
        let n = count_within(
            Schedule::new(Arrival::Constant, 200.0, 1),
            Duration::from_secs(3),
        );
        assert_eq!(n, 600);
    }

    #[test]
    fn poisson_has_the_right_mean_and_spread() {
        let rate = 1000.0;
        let g = gaps(Arrival::Poisson, rate, 200_000);
        let m = mean(&g);
        assert!((m - 1.0 / rate).abs() / (1.0 / rate) < 0.02, "mean gap {m}");
        // Exponential gaps: standard deviation equals the mean (CV = 1).
        let var = g.iter().map(|x| (x - m).powi(2)).sum::<f64>() / g.len() as f64;
        let cv = var.sqrt() / m;
        assert!((cv - 1.0).abs() < 0.03, "coefficient of variation {cv}");
        assert!(g.iter().all(|x| *x >= 0.0));
    }

    #[test]
    fn poisson_count_matches_rate_times_duration() {
        let n = count_within(
            Schedule::new(Arrival::Poisson, 500.0, 3),
            Duration::from_secs(60),
        );
        // Poisson(30000): sd ≈ 173, so ±2% is over three sd.
        assert!((29_400..=30_600).contains(&n), "count {n}");
    }

    #[test]
    fn a_rate_change_takes_effect_at_its_offset() {
        let change =
            |arrival| Schedule::new(arrival, 300.0, 5).with_change(Duration::from_secs(10), 100.0);
        let before = |a| count_within(change(a), Duration::from_secs(10));
        let all = |a| count_within(change(a), Duration::from_secs(30));
        assert_eq!(before(Arrival::Constant), 3000);
        assert_eq!(all(Arrival::Constant), 3000 + 2000);
        let (b, a) = (before(Arrival::Poisson), all(Arrival::Poisson));
        // Poisson(3000) and Poisson(2000): ±6% is over three sd each.
        assert!((2820..=3180).contains(&b), "before {b}");
        assert!((1880..=2120).contains(&(a - b)), "after {}", a - b);
    }

    #[test]
    fn no_arrival_is_doubled_at_a_change_hit_by_rounding() {
        let times: Vec<f64> = Schedule::new(Arrival::Constant, 100.0, 1)
            .with_change(Duration::from_millis(70), 50.0)
            .take(10)
            .map(|d| d.as_secs_f64())
            .collect();
        assert!(times.windows(2).all(|w| w[1] > w[0]), "{times:?}");
        assert!((times[7] - 0.07).abs() < 1e-9 && (times[8] - 0.09).abs() < 1e-9);
    }

    #[test]
    fn same_seed_same_schedule() {
        let a: Vec<_> = Schedule::new(Arrival::Poisson, 50.0, 9).take(100).collect();
        let b: Vec<_> = Schedule::new(Arrival::Poisson, 50.0, 9).take(100).collect();
        assert_eq!(a, b);
    }
}
