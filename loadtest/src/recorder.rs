//! Recording of outcomes: an HdrHistogram of latency per request type, a
//! per-second histogram series for the plots, counters by outcome, and a
//! one-second interval histogram for the live progress line.
//!
//! Latencies are recorded in microseconds from the request's *intended*
//! send time to the end of its response body. Responses of any status and
//! timeouts (at their elapsed time) are recorded, so a server that stops
//! answering pushes the percentiles up instead of vanishing from them;
//! transport errors (refused or reset connections) are only counted.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use hdrhistogram::Histogram;

/// Largest recordable latency: one hour, in microseconds.
const MAX_US: u64 = 3_600_000_000;
/// Largest latency kept exactly in the per-second series (longer ones are
/// clamped): one minute, in microseconds.
const SERIES_MAX_US: u64 = 60_000_000;

/// A histogram for whole-run latencies: three significant digits (0.1%).
pub fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_US, 3).expect("constant histogram bounds are valid")
}

/// A histogram for one second of one type: two significant digits (1%),
/// which is plenty for a plot and keeps long runs small.
fn series_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, SERIES_MAX_US, 2).expect("constant histogram bounds are valid")
}

/// One second of one request type (by intended send time), summarised.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SeriesPoint {
    pub t_s: u32,
    pub count: u64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Of `count`, the ones that failed (error status or timeout): with
    /// admission control, the requests shed in that second.
    pub errors: u64,
}

impl SeriesPoint {
    fn of(t_s: u32, h: &Histogram<u64>, errors: u64) -> Self {
        let q = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Self {
            t_s,
            count: h.len(),
            p50_ms: q(0.5),
            p90_ms: q(0.9),
            p99_ms: q(0.99),
            max_ms: h.max() as f64 / 1000.0,
            errors,
        }
    }
}

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this status code.
    Status(u16),
    /// No response within `--timeout`.
    Timeout,
    /// Connecting, writing or reading failed.
    Transport,
}

/// Everything recorded for one request type; mergeable across step-mode
/// phases.
#[derive(Debug, Clone)]
pub struct TypeStats {
    pub hist: Histogram<u64>,
    /// Latencies of the successful (2xx) responses only: under load
    /// shedding, what the admitted requests saw.
    pub ok_hist: Histogram<u64>,
    /// Failed requests (error status or timeout) per second, by intended
    /// send time.
    pub series_errors: BTreeMap<u32, u64>,
    /// Seconds since the run's origin (by intended send time) → latencies,
    /// for seconds that may still receive responses.
    pub series: BTreeMap<u32, Histogram<u64>>,
    /// Seconds that can no longer receive responses, summarised: a long run
    /// keeps a few numbers per second rather than a histogram.
    pub points: BTreeMap<u32, SeriesPoint>,
    pub sent: u64,
    pub ok: u64,
    pub http_errors: u64,
    pub timeouts: u64,
    pub transport_errors: u64,
    /// Arrivals not sent because `--max-in-flight` requests were pending.
    pub dropped: u64,
    /// Arrivals not sent because there was nothing to do (a remove with no
    /// acknowledged upsert left to remove).
    pub skipped: u64,
    /// Responses (any status) that arrived before the phase's end: the
    /// numerator of the achieved rate.
    pub completed_in_window: u64,
    pub status_counts: BTreeMap<u16, u64>,
}

impl Default for TypeStats {
    fn default() -> Self {
        Self {
            hist: latency_histogram(),
            ok_hist: latency_histogram(),
            series_errors: BTreeMap::new(),
            series: BTreeMap::new(),
            points: BTreeMap::new(),
            sent: 0,
            ok: 0,
            http_errors: 0,
            timeouts: 0,
            transport_errors: 0,
            dropped: 0,
            skipped: 0,
            completed_in_window: 0,
            status_counts: BTreeMap::new(),
        }
    }
}

impl TypeStats {
    /// Adds another phase's numbers to these.
    pub fn merge(&mut self, o: &TypeStats) {
        // Both histograms have the same bounds, so `add` cannot fail.
        let _ = self.hist.add(&o.hist);
        let _ = self.ok_hist.add(&o.ok_hist);
        for (s, n) in &o.series_errors {
            *self.series_errors.entry(*s).or_default() += n;
        }
        // Phases do not share seconds, so summarised points never collide.
        self.points
            .extend(o.points.iter().map(|(s, p)| (*s, p.clone())));
        for (s, h) in &o.series {
            let _ = self
                .series
                .entry(*s)
                .or_insert_with(series_histogram)
                .add(h);
        }
        self.sent += o.sent;
        self.ok += o.ok;
        self.http_errors += o.http_errors;
        self.timeouts += o.timeouts;
        self.transport_errors += o.transport_errors;
        self.dropped += o.dropped;
        self.skipped += o.skipped;
        self.completed_in_window += o.completed_in_window;
        for (code, n) in &o.status_counts {
            *self.status_counts.entry(*code).or_default() += n;
        }
    }

    /// Summarises the seconds before `before`.
    fn compact(&mut self, before: u32) {
        let keep = self.series.split_off(&before);
        for (s, h) in std::mem::replace(&mut self.series, keep) {
            let errors = self.series_errors.get(&s).copied().unwrap_or(0);
            self.points.insert(s, SeriesPoint::of(s, &h, errors));
        }
    }

    /// The per-second series, in order.
    pub fn series_points(&self) -> Vec<SeriesPoint> {
        let mut all: BTreeMap<u32, SeriesPoint> = self.points.clone();
        for (s, h) in &self.series {
            let errors = self.series_errors.get(s).copied().unwrap_or(0);
            all.entry(*s)
                .or_insert_with(|| SeriesPoint::of(*s, h, errors));
        }
        all.into_values().collect()
    }

    /// Requests that did not succeed: error statuses, timeouts, transport.
    pub fn errors(&self) -> u64 {
        self.http_errors + self.timeouts + self.transport_errors
    }
}

/// What the progress line shows for the last second.
#[derive(Debug, Clone, Copy, Default)]
pub struct Tick {
    pub sent: u64,
    /// Arrivals skipped for lack of work (not a harness shortfall).
    pub skipped: u64,
    pub completed: u64,
    pub errors: u64,
    /// Completions in the last second.
    pub interval_count: u64,
    pub interval_p50_ms: f64,
    pub interval_p99_ms: f64,
}

struct Inner {
    types: Vec<TypeStats>,
    interval: Histogram<u64>,
    completed: u64,
    errors: u64,
}

/// The shared recorder of one phase (a whole run, or one step).
pub struct Recorder {
    origin: Instant,
    window_end: Instant,
    sent: Vec<AtomicU64>,
    dropped: Vec<AtomicU64>,
    skipped: Vec<AtomicU64>,
    inner: Mutex<Inner>,
}

impl Recorder {
    /// `origin` is the start of the whole run (series seconds count from
    /// it); completions after `window_end` are recorded but do not count
    /// towards the achieved rate.
    pub fn new(types: usize, origin: Instant, window_end: Instant) -> Self {
        let counters = || (0..types).map(|_| AtomicU64::new(0)).collect();
        Self {
            origin,
            window_end,
            sent: counters(),
            dropped: counters(),
            skipped: counters(),
            inner: Mutex::new(Inner {
                types: vec![TypeStats::default(); types],
                interval: latency_histogram(),
                completed: 0,
                errors: 0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn count_sent(&self, ty: usize) {
        self.sent[ty].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_dropped(&self, ty: usize) {
        self.dropped[ty].fetch_add(1, Ordering::Relaxed);
    }

    pub fn count_skipped(&self, ty: usize) {
        self.skipped[ty].fetch_add(1, Ordering::Relaxed);
    }

    /// Records one finished request of type `ty`.
    pub fn record(&self, ty: usize, intended: Instant, done: Instant, outcome: Outcome) {
        let us = (done.saturating_duration_since(intended).as_micros() as u64).max(1);
        let second = intended.saturating_duration_since(self.origin).as_secs() as u32;
        let in_window = done <= self.window_end;
        let mut g = self.lock();
        let inner = &mut *g;
        let t = &mut inner.types[ty];
        let timed = match outcome {
            Outcome::Status(code) => {
                *t.status_counts.entry(code).or_default() += 1;
                if (200..300).contains(&code) {
                    t.ok += 1;
                    t.ok_hist.saturating_record(us);
                } else {
                    t.http_errors += 1;
                    inner.errors += 1;
                    *t.series_errors.entry(second).or_default() += 1;
                }
                t.completed_in_window += u64::from(in_window);
                true
            }
            Outcome::Timeout => {
                t.timeouts += 1;
                inner.errors += 1;
                *t.series_errors.entry(second).or_default() += 1;
                true
            }
            Outcome::Transport => {
                t.transport_errors += 1;
                inner.errors += 1;
                false
            }
        };
        if timed {
            t.hist.saturating_record(us);
            // A straggler for a second already summarised stays out of the
            // series (it is in the run's histogram).
            if !t.points.contains_key(&second) {
                t.series
                    .entry(second)
                    .or_insert_with(series_histogram)
                    .saturating_record(us);
            }
            inner.interval.saturating_record(us);
        }
        inner.completed += 1;
    }

    /// Counters so far and the last interval's percentiles; starts a new
    /// interval.
    pub fn tick(&self) -> Tick {
        let sent = self.sent.iter().map(|a| a.load(Ordering::Relaxed)).sum();
        let skipped = self.skipped.iter().map(|a| a.load(Ordering::Relaxed)).sum();
        let mut g = self.lock();
        let h = &g.interval;
        let tick = Tick {
            sent,
            skipped,
            completed: g.completed,
            errors: g.errors,
            interval_count: h.len(),
            interval_p50_ms: h.value_at_quantile(0.5) as f64 / 1000.0,
            interval_p99_ms: h.value_at_quantile(0.99) as f64 / 1000.0,
        };
        g.interval.reset();
        tick
    }

    /// Summarises the per-second histograms of seconds (since the origin)
    /// before `before`, which no response can reach any more.
    pub fn compact(&self, before: u32) {
        for t in &mut self.lock().types {
            t.compact(before);
        }
    }

    /// A copy of everything recorded, counters included.
    pub fn snapshot(&self) -> Vec<TypeStats> {
        let mut types = self.lock().types.clone();
        for (i, t) in types.iter_mut().enumerate() {
            t.sent = self.sent[i].load(Ordering::Relaxed);
            t.dropped = self.dropped[i].load(Ordering::Relaxed);
            t.skipped = self.skipped[i].load(Ordering::Relaxed);
        }
        types
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn records_from_intended_time_and_classifies() {
        let t0 = Instant::now();
        let r = Recorder::new(2, t0, t0 + Duration::from_secs(10));
        r.count_sent(0);
        r.count_sent(0);
        r.count_sent(1);
        r.record(0, t0, t0 + Duration::from_millis(250), Outcome::Status(200));
        r.record(
            0,
            t0 + Duration::from_millis(1500),
            t0 + Duration::from_millis(1510),
            Outcome::Status(503),
        );
        r.record(1, t0, t0 + Duration::from_secs(11), Outcome::Timeout);
        r.record(1, t0, t0, Outcome::Transport);
        let tick = r.tick();
        assert_eq!((tick.sent, tick.completed, tick.errors), (3, 4, 3));
        let s = r.snapshot();
        assert_eq!((s[0].ok, s[0].http_errors, s[0].sent), (1, 1, 2));
        assert_eq!(s[0].status_counts[&503], 1);
        assert_eq!(s[0].completed_in_window, 2);
        assert!((249_000..=251_000).contains(&s[0].hist.max()));
        assert_eq!(s[0].series.keys().copied().collect::<Vec<_>>(), [0, 1]);
        assert_eq!((s[1].timeouts, s[1].transport_errors), (1, 1));
        // The timeout is in the histogram; the transport error is not.
        assert_eq!(s[1].hist.len(), 1);
        assert_eq!(s[1].completed_in_window, 0);
        assert_eq!(s[1].errors(), 2);
        r.compact(1);
        let s = r.snapshot();
        assert_eq!(s[0].series.keys().copied().collect::<Vec<_>>(), [1]);
        let points = s[0].series_points();
        assert_eq!((points[0].t_s, points[0].count), (0, 1));
        assert!((points[0].max_ms - 250.0).abs() < 1.0, "{points:?}");
        assert_eq!((points[1].t_s, points[1].count), (1, 1));
        let mut merged = s[0].clone();
        merged.merge(&s[0]);
        assert_eq!((merged.ok, merged.hist.len()), (2, 4));
    }
}
