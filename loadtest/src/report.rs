//! The run's reports: a JSON document with a stable, versioned schema for
//! machines, and a Markdown summary for people. Field names are part of the
//! contract (`schema_version` 1); additions are allowed, renames are not.

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::ser::{Serialize, SerializeMap, Serializer};

use crate::checker::Correctness;
pub use crate::recorder::SeriesPoint;
use crate::recorder::TypeStats;
use crate::runner::{ErrorSample, PhaseResult};

/// Version of the JSON report's schema.
pub const SCHEMA_VERSION: u32 = 1;

/// Pairs that serialise as a JSON object in their given order (scenario
/// order reads better than alphabetical).
#[derive(Debug, Clone)]
pub struct Labeled<T>(pub Vec<(String, T)>);

impl<T: Serialize> Serialize for Labeled<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

fn ms(us: u64) -> f64 {
    us as f64 / 1000.0
}

fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        ms(h.value_at_quantile(q))
    }
}

/// Numbers for one request type (or all together). Latencies are in
/// milliseconds from the intended send time; `errors` counts error
/// statuses, timeouts and transport errors together.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TypeReport {
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub http_errors: u64,
    pub timeouts: u64,
    pub transport_errors: u64,
    pub dropped: u64,
    pub skipped: u64,
    pub status_counts: BTreeMap<String, u64>,
    pub achieved_rate: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub mean_ms: f64,
    /// Latency of the successful (2xx) responses only.
    pub ok_p50_ms: f64,
    pub ok_p99_ms: f64,
    pub ok_max_ms: f64,
}

impl TypeReport {
    pub fn from_stats(t: &TypeStats, duration_s: f64) -> Self {
        let h = &t.hist;
        Self {
            sent: t.sent,
            ok: t.ok,
            errors: t.errors(),
            http_errors: t.http_errors,
            timeouts: t.timeouts,
            transport_errors: t.transport_errors,
            dropped: t.dropped,
            skipped: t.skipped,
            status_counts: t
                .status_counts
                .iter()
                .map(|(c, n)| (c.to_string(), *n))
                .collect(),
            achieved_rate: t.completed_in_window as f64 / duration_s.max(1e-9),
            p50_ms: quantile_ms(h, 0.5),
            p90_ms: quantile_ms(h, 0.9),
            p99_ms: quantile_ms(h, 0.99),
            p999_ms: quantile_ms(h, 0.999),
            max_ms: if h.is_empty() { 0.0 } else { ms(h.max()) },
            mean_ms: if h.is_empty() { 0.0 } else { h.mean() / 1000.0 },
            ok_p50_ms: quantile_ms(&t.ok_hist, 0.5),
            ok_p99_ms: quantile_ms(&t.ok_hist, 0.99),
            ok_max_ms: if t.ok_hist.is_empty() {
                0.0
            } else {
                ms(t.ok_hist.max())
            },
        }
    }
}

/// How the harness itself did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HarnessReport {
    /// Actual minus intended send time (open loop).
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
    pub behind_schedule: bool,
    /// Seconds in which the scheduler's lag p99 exceeded the warning level.
    pub seconds_lagging: u64,
    pub warnings: Vec<String>,
    pub connections: usize,
    pub max_in_flight: usize,
    pub peak_in_flight: usize,
    pub dropped_max_in_flight: u64,
    pub not_sent_behind_schedule: u64,
    pub abandoned_in_flight: usize,
    pub threads: usize,
}

/// One step of step mode.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepReport {
    pub step: usize,
    pub offered_rate: f64,
    pub achieved_rate: f64,
    pub duration_s: f64,
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub lag_p99_ms: f64,
    pub behind_schedule: bool,
    pub passed: bool,
    pub reasons: Vec<String>,
    pub requests: Labeled<TypeReport>,
}

/// Facts about the run that the phases do not carry.
#[derive(Debug, Clone)]
pub struct RunMeta {
    pub scenario: String,
    pub target: String,
    pub run_id: String,
    /// `open` or `closed`.
    pub mode: &'static str,
    pub arrival: Option<&'static str>,
    pub closed_workers: Option<usize>,
    /// The configured rate (open loop without steps).
    pub rate: Option<f64>,
    /// `--then-rate` and `--then-after`: the rate from that offset on.
    pub then_rate: Option<f64>,
    pub then_after_s: Option<f64>,
    pub connections: usize,
    pub max_in_flight: usize,
    pub threads: usize,
    pub slo_p99_ms: Option<f64>,
}

/// The JSON report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub tool: String,
    pub scenario: String,
    pub target: String,
    pub run_id: String,
    pub mode: &'static str,
    pub arrival: Option<&'static str>,
    pub closed_workers: Option<usize>,
    /// Requests per second offered: the configured rate; in step mode all
    /// steps' arrivals over all steps' time; `null` in closed loop. With
    /// `--then-rate`, the rate before the change.
    pub offered_rate: Option<f64>,
    /// `--then-rate` from `--then-after` seconds on (else `null`).
    pub then_rate: Option<f64>,
    pub then_after_s: Option<f64>,
    /// Responses (any status) received within the run's duration, per
    /// second.
    pub achieved_rate: f64,
    pub duration_s: f64,
    /// The run was cut short by Ctrl-C; `duration_s` is the time it ran.
    pub interrupted: bool,
    pub offered: u64,
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub violations: u64,
    pub missing_after_upsert: u64,
    pub correctness: Correctness,
    pub harness: HarnessReport,
    pub requests: Labeled<TypeReport>,
    pub totals: TypeReport,
    pub series: Labeled<Vec<SeriesPoint>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepReport>>,
    pub slo_p99_ms: Option<f64>,
    pub sustainable_rate: Option<f64>,
    pub error_samples: Vec<ErrorSample>,
}

/// Per-type stats of several phases added up.
pub fn merge_phases(phases: &[PhaseResult]) -> Vec<TypeStats> {
    let mut out: Vec<TypeStats> = Vec::new();
    for p in phases {
        if out.is_empty() {
            out = p.types.clone();
        } else {
            for (o, t) in out.iter_mut().zip(&p.types) {
                o.merge(t);
            }
        }
    }
    out
}

/// All types of one phase (or run) added up.
pub fn total(types: &[TypeStats]) -> TypeStats {
    let mut all = TypeStats::default();
    for t in types {
        all.merge(t);
    }
    all
}

/// Per-type reports in scenario order.
pub fn per_type(labels: &[String], types: &[TypeStats], duration_s: f64) -> Labeled<TypeReport> {
    Labeled(
        labels
            .iter()
            .cloned()
            .zip(types.iter().map(|t| TypeReport::from_stats(t, duration_s)))
            .collect(),
    )
}

impl Report {
    /// Builds the report of a run made of `phases` (one, or one per step),
    /// whose per-type stats added up are `types` ([`merge_phases`]).
    #[allow(clippy::too_many_arguments)]
    pub fn build(
        meta: &RunMeta,
        labels: &[String],
        phases: &[PhaseResult],
        types: &[TypeStats],
        steps: Option<(Vec<StepReport>, Option<f64>)>,
        correctness: Correctness,
        peak_in_flight: usize,
        error_samples: Vec<ErrorSample>,
    ) -> Self {
        let all = total(types);
        let duration_s: f64 = phases.iter().map(|p| p.duration.as_secs_f64()).sum();
        let offered: u64 = phases.iter().map(|p| p.offered).sum();
        let mut lag = crate::recorder::latency_histogram();
        for p in phases {
            let _ = lag.add(&p.lag);
        }
        let behind = phases.iter().any(PhaseResult::behind_schedule);
        let not_sent: u64 = phases.iter().map(|p| p.not_sent).sum();
        let abandoned: usize = phases.iter().map(|p| p.abandoned).sum();
        let mut warnings = Vec::new();
        let lag_p99 = quantile_ms(&lag, 0.99);
        if meta.mode == "open" && lag_p99 > crate::runner::LAG_WARN_MS {
            warnings.push(format!(
                "harness behind schedule: scheduler lag p99 {lag_p99:.2} ms > {} ms; \
                 latencies are still measured from the intended send times, but the offered \
                 load was not delivered as scheduled",
                crate::runner::LAG_WARN_MS
            ));
        }
        if not_sent > 0 {
            warnings.push(format!(
                "{not_sent} arrivals were not sent: the scheduler was still behind when the \
                 duration ended"
            ));
        }
        if all.dropped > 0 {
            warnings.push(format!(
                "{} arrivals were dropped because {} requests were already in flight \
                 (--max-in-flight)",
                all.dropped, meta.max_in_flight
            ));
        }
        if behind && warnings.is_empty() {
            warnings.push(format!(
                "harness behind schedule: sent fewer than {:.0}% of the offered arrivals",
                crate::runner::SENT_WARN_RATIO * 100.0
            ));
        }
        if abandoned > 0 {
            warnings.push(format!(
                "{abandoned} requests were still in flight when the run stopped waiting"
            ));
        }
        // HTTP/1.1 carries one request per connection at a time: beyond
        // `connections` in flight, requests queue in the harness. Sent on
        // schedule by the clock, they are late on the wire, and the wait is
        // in their latencies (from the intended send time), not the server.
        if meta.mode == "open" && peak_in_flight > meta.connections {
            warnings.push(format!(
                "{peak_in_flight} requests were in flight at the peak on {} connections: \
                 requests waited in the harness for a free connection, and their latencies \
                 include that wait; raise --connections",
                meta.connections
            ));
        }
        let (steps, sustainable_rate) = match steps {
            Some((s, r)) => (Some(s), r),
            None => (None, None),
        };
        let offered_rate = match (meta.mode, &steps) {
            ("closed", _) => None,
            (_, Some(_)) => Some(offered as f64 / duration_s.max(1e-9)),
            _ => meta.rate,
        };
        Self {
            schema_version: SCHEMA_VERSION,
            tool: format!("mnemos-loadtest {}", env!("CARGO_PKG_VERSION")),
            scenario: meta.scenario.clone(),
            target: meta.target.clone(),
            run_id: meta.run_id.clone(),
            mode: meta.mode,
            arrival: meta.arrival,
            closed_workers: meta.closed_workers,
            offered_rate,
            then_rate: meta.then_rate,
            then_after_s: meta.then_after_s,
            achieved_rate: all.completed_in_window as f64 / duration_s.max(1e-9),
            duration_s,
            interrupted: false,
            offered,
            sent: all.sent,
            ok: all.ok,
            errors: all.errors(),
            violations: correctness.violations,
            missing_after_upsert: correctness.missing_after_upsert,
            correctness,
            harness: HarnessReport {
                lag_p50_ms: quantile_ms(&lag, 0.5),
                lag_p99_ms: lag_p99,
                lag_max_ms: if lag.is_empty() { 0.0 } else { ms(lag.max()) },
                behind_schedule: behind,
                seconds_lagging: phases.iter().map(|p| p.lagging_seconds).sum(),
                warnings,
                connections: meta.connections,
                max_in_flight: meta.max_in_flight,
                peak_in_flight,
                dropped_max_in_flight: all.dropped,
                not_sent_behind_schedule: not_sent,
                abandoned_in_flight: abandoned,
                threads: meta.threads,
            },
            requests: per_type(labels, types, duration_s),
            totals: TypeReport::from_stats(&all, duration_s),
            series: Labeled(
                labels
                    .iter()
                    .cloned()
                    .zip(types.iter().map(TypeStats::series_points))
                    .collect(),
            ),
            steps,
            slo_p99_ms: meta.slo_p99_ms,
            sustainable_rate,
            error_samples,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recorder::{Outcome, Recorder};
    use std::time::{Duration, Instant};

    fn phase() -> PhaseResult {
        let t0 = Instant::now();
        let r = Recorder::new(1, t0, t0 + Duration::from_secs(2));
        for i in 0..10u64 {
            r.count_sent(0);
            let at = t0 + Duration::from_millis(100 * i);
            r.record(0, at, at + Duration::from_millis(5), Outcome::Status(200));
        }
        PhaseResult {
            types: r.snapshot(),
            lag: crate::recorder::latency_histogram(),
            offered: 10,
            not_sent: 0,
            lagging_seconds: 0,
            duration: Duration::from_secs(2),
            abandoned: 0,
        }
    }

    fn meta() -> RunMeta {
        RunMeta {
            scenario: "s".into(),
            target: "http://x:1".into(),
            run_id: "r".into(),
            mode: "open",
            arrival: Some("constant"),
            closed_workers: None,
            rate: Some(5.0),
            then_rate: None,
            then_after_s: None,
            connections: 4,
            max_in_flight: 100,
            threads: 2,
            slo_p99_ms: None,
        }
    }

    /// An open-loop run of one phase whose peak was `peak_in_flight`.
    fn open_run(peak_in_flight: usize) -> Report {
        Report::build(
            &meta(),
            &["search:bm25".into()],
            &[phase()],
            &merge_phases(&[phase()]),
            None,
            Correctness::default(),
            peak_in_flight,
            Vec::new(),
        )
    }

    /// The field names are the contract of `schema_version` 1.
    #[test]
    fn json_has_the_contract_fields() {
        let report = open_run(3);
        let v = serde_json::to_value(&report).unwrap();
        for key in [
            "schema_version",
            "mode",
            "offered_rate",
            "achieved_rate",
            "duration_s",
            "violations",
            "missing_after_upsert",
            "harness",
            "requests",
            "series",
            "sustainable_rate",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["schema_version"], 1);
        assert_eq!(v["mode"], "open");
        assert_eq!(v["offered_rate"], 5.0);
        assert_eq!(v["achieved_rate"], 5.0);
        assert!(v.get("steps").is_none());
        assert_eq!(v["harness"]["behind_schedule"], false);
        assert!(v["harness"]["lag_p99_ms"].is_number());
        let t = &v["requests"]["search:bm25"];
        for key in [
            "sent",
            "ok",
            "errors",
            "timeouts",
            "status_counts",
            "p50_ms",
            "p90_ms",
            "p99_ms",
            "p999_ms",
            "max_ms",
            "mean_ms",
        ] {
            assert!(t.get(key).is_some(), "missing requests.*.{key}");
        }
        assert_eq!(t["sent"], 10);
        assert_eq!(t["status_counts"]["200"], 10);
        assert!((t["p50_ms"].as_f64().unwrap() - 5.0).abs() < 0.01);
        assert_eq!(v["series"]["search:bm25"][0]["t_s"], 0);
        assert!(report.markdown().contains("| search:bm25 | 10 | 10 | 0 |"));
        assert!(
            report.harness.warnings.is_empty(),
            "{:?}",
            report.harness.warnings
        );
    }

    /// More requests in flight than connections: they queued in the
    /// harness, which the report must say.
    #[test]
    fn requests_beyond_the_connections_are_flagged() {
        let report = open_run(5);
        assert!(
            report
                .harness
                .warnings
                .iter()
                .any(|w| w.contains("5 requests were in flight at the peak on 4 connections")),
            "{:?}",
            report.harness.warnings
        );
    }

    #[test]
    fn closed_and_step_reports_label_themselves() {
        let closed = Report::build(
            &RunMeta {
                mode: "closed",
                arrival: None,
                closed_workers: Some(8),
                rate: None,
                ..meta()
            },
            &["a".into()],
            &[phase()],
            &merge_phases(&[phase()]),
            None,
            Correctness::default(),
            8,
            Vec::new(),
        );
        let v = serde_json::to_value(&closed).unwrap();
        assert_eq!(v["mode"], "closed");
        assert!(v["offered_rate"].is_null());
        assert!(closed.markdown().contains("closed loop"));

        let stepped = Report::build(
            &RunMeta {
                rate: None,
                slo_p99_ms: Some(50.0),
                ..meta()
            },
            &["a".into()],
            &[phase(), phase()],
            &merge_phases(&[phase(), phase()]),
            Some((Vec::new(), Some(5.0))),
            Correctness::default(),
            1,
            Vec::new(),
        );
        let v = serde_json::to_value(&stepped).unwrap();
        assert!(v["steps"].is_array());
        assert_eq!(v["sustainable_rate"], 5.0);
        assert_eq!(v["offered_rate"], 5.0);
        assert_eq!(v["duration_s"], 4.0);
    }
}
