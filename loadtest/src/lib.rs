//! `mnemos-loadtest`: a load generator for the mnemos gateway that talks to
//! it over HTTP only.
//!
//! Design choices, and why:
//! - **Open loop by default.** Requests follow an arrival schedule fixed in
//!   advance (constant or Poisson), and each latency is measured from the
//!   request's *intended* send time. A closed loop (send, wait, send) slows
//!   down with the server and so under-samples exactly the moments users
//!   suffer most — coordinated omission. See [`runner`].
//! - **The harness watches itself.** Its scheduling lag and any arrivals it
//!   could not send are reported, and a run that fell behind says so: a
//!   harness that is the bottleneck would otherwise report its own limits
//!   as the server's.
//! - **Correctness is checked under load.** Removals and upserts are
//!   tracked, and every search sent after a removal was acknowledged is
//!   checked for the removed id. See [`checker`].
//! - **Everything is recorded in HdrHistograms** (per request type, and per
//!   second for plots), so percentiles are exact to 0.1% at any rate.

pub mod checker;
pub mod cli;
pub mod client;
pub mod data;
pub mod error;
pub mod markdown;
pub mod plots;
pub mod recorder;
pub mod report;
pub mod request;
pub mod runner;
pub mod scenario;
pub mod schedule;
pub mod step;
pub mod trivial;
pub mod visual;
pub mod workload;

use std::sync::Arc;
use std::time::Instant;

pub use cli::{Args, Mode, RunConfig};
pub use error::{LoadError, Result};
pub use report::Report;

use crate::client::Pool;
use crate::recorder::TypeStats;
use crate::report::{RunMeta, StepReport, TypeReport};
use crate::runner::{OpenPhase, PhaseResult, Shared};
use crate::step::{judge, next_rate, StepMeasure};
use crate::workload::Workload;

/// What a run produces: the report, and the merged per-type recordings the
/// plots are drawn from.
pub struct RunOutput {
    pub report: Report,
    pub types: Vec<TypeStats>,
}

/// Runs the load test described by `cfg`. Must be called on a
/// multi-threaded tokio runtime.
pub async fn run(cfg: RunConfig) -> Result<RunOutput> {
    let queries = match (&cfg.queries, cfg.scenario.needs_queries()) {
        (Some(p), true) => data::read_queries(p)?,
        _ => Vec::new(),
    };
    let corpus = match (&cfg.corpus, cfg.scenario.needs_corpus()) {
        (Some(p), true) => data::read_corpus(p, cfg.scenario.corpus_limit)?,
        _ => Vec::new(),
    };
    let workload = Workload::new(
        &cfg.scenario,
        &queries,
        corpus,
        &cfg.target,
        cfg.admin_token.as_deref(),
        &cfg.run_id,
    )?;
    let labels = workload.labels().to_vec();
    // Opening thousands of connections up front would only test the
    // listener's backlog; the rest open on demand.
    let warm = cfg.connections.min(1024);
    let pool = Pool::connect(&cfg.target, cfg.connections, warm).await?;
    let origin = Instant::now();
    let shared = Arc::new(Shared::new(workload, pool, cfg.timeout, origin, cfg.quiet));
    // Ctrl-C ends the run early but still produces every report, marked
    // `interrupted`, for the time actually run.
    let interrupt = tokio::spawn({
        let shared = Arc::clone(&shared);
        async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("interrupted: stopping; the reports cover the time run so far");
                shared.request_stop();
            }
        }
    });

    let mut steps = None;
    let phases = match &cfg.mode {
        Mode::Open { rate, then } => {
            let phase = OpenPhase {
                rate: *rate,
                then: *then,
                arrival: cfg.arrival,
                duration: cfg.duration,
                seed: cfg.seed,
                max_in_flight: cfg.max_in_flight,
                label: String::new(),
            };
            vec![runner::run_open(&shared, &phase).await]
        }
        Mode::Closed { workers } => {
            vec![runner::run_closed(&shared, *workers, cfg.duration, cfg.seed).await]
        }
        Mode::Step { .. } => {
            let (phases, reports, sustainable) = run_steps(&cfg, &shared, &labels).await;
            steps = Some((reports, sustainable));
            phases
        }
    };

    interrupt.abort();
    if cfg.cleanup {
        cleanup(&shared).await;
    }
    let meta = RunMeta {
        scenario: cfg.scenario.name.clone(),
        target: cfg.target.url.clone(),
        run_id: cfg.run_id.clone(),
        mode: if matches!(cfg.mode, Mode::Closed { .. }) {
            "closed"
        } else {
            "open"
        },
        arrival: match cfg.mode {
            Mode::Closed { .. } => None,
            _ => Some(cfg.arrival.as_str()),
        },
        closed_workers: match cfg.mode {
            Mode::Closed { workers } => Some(workers),
            _ => None,
        },
        rate: match cfg.mode {
            Mode::Open { rate, .. } => Some(rate),
            _ => None,
        },
        then_rate: match cfg.mode {
            Mode::Open {
                then: Some((_, r)), ..
            } => Some(r),
            _ => None,
        },
        then_after_s: match cfg.mode {
            Mode::Open {
                then: Some((after, _)),
                ..
            } => Some(after.as_secs_f64()),
            _ => None,
        },
        connections: cfg.connections,
        max_in_flight: cfg.max_in_flight,
        threads: cfg.threads,
        slo_p99_ms: match cfg.mode {
            Mode::Step { slo_p99_ms, .. } => Some(slo_p99_ms),
            _ => None,
        },
    };
    let types = report::merge_phases(&phases);
    let mut report = Report::build(
        &meta,
        &labels,
        &phases,
        &types,
        steps,
        shared.checker.report(),
        shared.peak_in_flight(),
        shared.error_samples(),
    );
    report.interrupted = shared.stop_requested();
    Ok(RunOutput { report, types })
}

/// Step mode: open-loop phases at rising rates until one fails the SLO.
async fn run_steps(
    cfg: &RunConfig,
    shared: &Arc<Shared>,
    labels: &[String],
) -> (Vec<PhaseResult>, Vec<StepReport>, Option<f64>) {
    let Mode::Step {
        start_rate,
        growth,
        step_duration,
        max_rate,
        slo_p99_ms,
    } = cfg.mode
    else {
        return (Vec::new(), Vec::new(), None);
    };
    let mut phases = Vec::new();
    let mut reports = Vec::new();
    let mut passed_rates = Vec::new();
    let mut rate = Some(start_rate);
    while let Some(r) = rate {
        let n = reports.len() + 1;
        let phase = OpenPhase {
            rate: r,
            arrival: cfg.arrival,
            duration: step_duration,
            then: None,
            seed: cfg.seed.wrapping_add(n as u64),
            max_in_flight: cfg.max_in_flight,
            label: format!("step {n} @ {r:.0}/s "),
        };
        let result = runner::run_open(shared, &phase).await;
        if shared.stop_requested() {
            // A step cut short by Ctrl-C proves nothing either way.
            break;
        }
        let all = report::total(&result.types);
        let secs = result.duration.as_secs_f64();
        let summary = TypeReport::from_stats(&all, secs);
        // Judged against the arrivals this step really had (a Poisson
        // second holds more or fewer than `r`), less removes skipped for
        // want of something to remove.
        let skipped: u64 = result.types.iter().map(|t| t.skipped).sum();
        let measure = StepMeasure {
            offered_rate: result.offered.saturating_sub(skipped) as f64 / secs,
            achieved_rate: summary.achieved_rate,
            p99_ms: summary.p99_ms,
            sent: all.sent,
            errors: all.errors(),
            harness_behind: result.behind_schedule(),
        };
        let verdict = judge(&measure, slo_p99_ms);
        if !cfg.quiet {
            eprintln!(
                "step {n}: offered {r:.1}/s, achieved {:.1}/s, p99 {:.2} ms, errors {} -> {}",
                summary.achieved_rate,
                summary.p99_ms,
                all.errors(),
                if verdict.passed {
                    "pass".to_string()
                } else {
                    format!("FAIL ({})", verdict.reasons.join("; "))
                }
            );
        }
        reports.push(StepReport {
            step: n,
            offered_rate: r,
            achieved_rate: summary.achieved_rate,
            duration_s: secs,
            sent: all.sent,
            ok: all.ok,
            errors: all.errors(),
            p50_ms: summary.p50_ms,
            p99_ms: summary.p99_ms,
            p999_ms: summary.p999_ms,
            max_ms: summary.max_ms,
            lag_p99_ms: result.lag_p99_ms(),
            behind_schedule: measure.harness_behind,
            passed: verdict.passed,
            reasons: verdict.reasons,
            requests: report::per_type(labels, &result.types, secs),
        });
        passed_rates.push((r, verdict.passed));
        phases.push(result);
        rate = if verdict.passed {
            next_rate(r, growth, max_rate)
        } else {
            None
        };
    }
    let sustainable = step::sustainable_rate(&passed_rates);
    (phases, reports, sustainable)
}

/// Removes the documents this run stored and did not remove (`--cleanup`);
/// not measured.
async fn cleanup(shared: &Shared) {
    let ids = shared.checker.leftovers();
    let mut removed = 0;
    for chunk in ids.chunks(1000) {
        let Ok(req) = shared.workload.remove_batch_request(chunk) else {
            continue;
        };
        match shared.pool.send(req).await {
            Ok(r) if r.status.is_success() => removed += chunk.len(),
            Ok(r) => eprintln!("cleanup: removal answered {}", r.status),
            Err(e) => eprintln!("cleanup: {e}"),
        }
    }
    if !shared.quiet && !ids.is_empty() {
        eprintln!("cleanup: removed {removed} of {} documents", ids.len());
    }
}
