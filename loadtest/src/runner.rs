//! The two ways of generating load.
//!
//! *Open loop* (the default): a dedicated scheduler thread walks the arrival
//! schedule, sleeps until each intended instant and spawns that request as
//! its own task on the multi-threaded runtime, whether or not earlier
//! requests have answered. A slow server therefore meets the same arrivals
//! a real user population would send, and every latency is taken from the
//! intended instant. The scheduler is an OS thread rather than a task so
//! that its wake-ups are not quantised to tokio's 1 ms timer and are not
//! delayed behind busy worker threads; how late it actually sends is
//! recorded as *lag* and reported.
//!
//! *Closed loop* (`--closed N`): N workers, each sending its next request
//! when the previous one has answered — what `wrk` does. It measures peak
//! throughput, but a stall delays the requests that would have been sent,
//! so its latencies understate what users see; reports label it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use rand::rngs::StdRng;
use rand::SeedableRng;

use crate::recorder::{latency_histogram, Recorder, TypeStats};
use crate::request::execute;
pub use crate::request::{ErrorSample, Shared};
use crate::schedule::{Arrival, Schedule};
use crate::workload::Skip;

/// Scheduler lag p99 above which the harness is "behind schedule".
pub const LAG_WARN_MS: f64 = 5.0;
/// Share of offered arrivals below which the harness is "behind schedule".
pub const SENT_WARN_RATIO: f64 = 0.97;
/// How late past the end of a phase the scheduler may still send an
/// arrival that was due before the end (waking from the last sleep takes a
/// little while); beyond this it is behind and stops.
const STOP_LATE: Duration = Duration::from_millis(100);

/// The outcome of one phase: a whole run, or one step of step mode.
#[derive(Debug, Clone)]
pub struct PhaseResult {
    pub types: Vec<TypeStats>,
    /// Scheduler lag (actual − intended send), open loop only.
    pub lag: Histogram<u64>,
    /// Arrivals scheduled within the duration (open loop), or sent (closed).
    pub offered: u64,
    /// Arrivals not sent because the scheduler was still behind at the end.
    pub not_sent: u64,
    /// Seconds in which the progress line warned about lag.
    pub lagging_seconds: u64,
    pub duration: Duration,
    /// Requests still unanswered when the phase stopped waiting.
    pub abandoned: usize,
}

impl PhaseResult {
    pub fn sent(&self) -> u64 {
        self.types.iter().map(|t| t.sent).sum()
    }

    pub fn lag_p99_ms(&self) -> f64 {
        self.lag.value_at_quantile(0.99) as f64 / 1000.0
    }

    /// Whether the harness itself could not keep up with the schedule.
    pub fn behind_schedule(&self) -> bool {
        let skipped: u64 = self.types.iter().map(|t| t.skipped).sum();
        let expected = self.offered.saturating_sub(skipped) as f64;
        self.lag_p99_ms() > LAG_WARN_MS || (self.sent() as f64) < SENT_WARN_RATIO * expected
    }
}

/// Open-loop settings of one phase.
#[derive(Debug, Clone)]
pub struct OpenPhase {
    pub rate: f64,
    /// (offset, rate): the rate from that offset on.
    pub then: Option<(Duration, f64)>,
    pub arrival: Arrival,
    pub duration: Duration,
    pub seed: u64,
    pub max_in_flight: usize,
    /// Prefix of the progress line (e.g. `step 3 `).
    pub label: String,
}

/// Live numbers the scheduler thread publishes for the progress line.
#[derive(Default)]
struct Live {
    lag_p99_us: AtomicU64,
    lagging_seconds: AtomicU64,
}

/// Runs one open-loop phase and waits for its requests to finish.
pub async fn run_open(shared: &Arc<Shared>, phase: &OpenPhase) -> PhaseResult {
    let n = shared.workload.labels().len();
    // Start a moment ahead so the scheduler thread is up before the first
    // intended instant.
    let start = Instant::now() + Duration::from_millis(20);
    let end = start + phase.duration;
    let recorder = Arc::new(Recorder::new(n, shared.origin, end));
    let live = Arc::new(Live::default());
    let handle = tokio::runtime::Handle::current();
    let scheduler = {
        let (shared, recorder, live, phase) = (
            Arc::clone(shared),
            Arc::clone(&recorder),
            Arc::clone(&live),
            phase.clone(),
        );
        std::thread::Builder::new()
            .name("lt-scheduler".into())
            .spawn(move || schedule(&shared, &recorder, &live, &handle, &phase, start))
    };
    let ticker = tokio::spawn(progress(
        Arc::clone(shared),
        Arc::clone(&recorder),
        Some(Arc::clone(&live)),
        start,
        Some(phase.rate),
        phase.label.clone(),
    ));
    let (lag, offered, not_sent) = match scheduler {
        Ok(thread) => tokio::task::spawn_blocking(move || thread.join())
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_else(|| (latency_histogram(), 0, 0)),
        Err(e) => {
            eprintln!("error: cannot start the scheduler thread: {e}");
            (latency_histogram(), 0, 0)
        }
    };
    let abandoned = drain(shared).await;
    ticker.abort();
    PhaseResult {
        types: recorder.snapshot(),
        lag,
        offered,
        not_sent,
        lagging_seconds: live.lagging_seconds.load(Ordering::Relaxed),
        duration: ran_for(shared, start, phase.duration),
        abandoned,
    }
}

/// The scheduler thread: returns the lag histogram, the number of arrivals
/// in the duration, and how many it could not send before the end.
fn schedule(
    shared: &Arc<Shared>,
    recorder: &Arc<Recorder>,
    live: &Live,
    rt: &tokio::runtime::Handle,
    phase: &OpenPhase,
    start: Instant,
) -> (Histogram<u64>, u64, u64) {
    let mut rng = StdRng::seed_from_u64(phase.seed ^ 0x5eed_1e55);
    let mut lag = latency_histogram();
    let mut lag_second = latency_histogram();
    let mut second = 0u64;
    let mut offered = 0u64;
    let end = start + phase.duration;
    let mut schedule = Schedule::new(phase.arrival, phase.rate, phase.seed);
    if let Some((after, rate)) = phase.then {
        schedule = schedule.with_change(after, rate);
    }
    let mut arrivals = schedule
        .take_while(|t| *t < phase.duration)
        .map(|t| start + t);
    for intended in arrivals.by_ref() {
        if shared.stop_requested() {
            break;
        }
        offered += 1;
        let now = Instant::now();
        if now < intended {
            // Linux sleeps ~50 µs past the deadline (timer slack); when the
            // gaps are shorter than that, the arrivals that fall due while
            // sleeping go out together on waking, each measured from its
            // own intended instant.
            std::thread::sleep(intended - now);
        }
        let now = Instant::now();
        if now >= end + STOP_LATE {
            // Too far behind to catch up within the duration: the rest are
            // reported as not sent rather than fired late in a burst.
            let rest = arrivals.count() as u64;
            return (lag, offered + rest, rest + 1);
        }
        let late = (now.saturating_duration_since(intended).as_micros() as u64).max(1);
        lag.saturating_record(late);
        let s = intended.saturating_duration_since(start).as_secs();
        if s != second {
            publish_lag(live, &mut lag_second);
            second = s;
        }
        lag_second.saturating_record(late);

        let planned = match shared.workload.pick(&mut rng, &shared.checker) {
            Ok(p) => p,
            Err(Skip::NothingToRemove(ty)) => {
                recorder.count_skipped(ty);
                continue;
            }
        };
        if shared.in_flight() >= phase.max_in_flight {
            recorder.count_dropped(planned.ty);
            continue;
        }
        shared.enter();
        recorder.count_sent(planned.ty);
        rt.spawn(execute(
            Arc::clone(shared),
            Arc::clone(recorder),
            planned,
            intended,
        ));
    }
    publish_lag(live, &mut lag_second);
    (lag, offered, 0)
}

fn publish_lag(live: &Live, lag_second: &mut Histogram<u64>) {
    let p99 = lag_second.value_at_quantile(0.99);
    live.lag_p99_us.store(p99, Ordering::Relaxed);
    if p99 as f64 / 1000.0 > LAG_WARN_MS {
        live.lagging_seconds.fetch_add(1, Ordering::Relaxed);
    }
    lag_second.reset();
}

/// Runs one closed-loop phase with `workers` concurrent workers.
pub async fn run_closed(
    shared: &Arc<Shared>,
    workers: usize,
    duration: Duration,
    seed: u64,
) -> PhaseResult {
    let n = shared.workload.labels().len();
    let start = Instant::now();
    let end = start + duration;
    let recorder = Arc::new(Recorder::new(n, shared.origin, end));
    let ticker = tokio::spawn(progress(
        Arc::clone(shared),
        Arc::clone(&recorder),
        None,
        start,
        None,
        String::new(),
    ));
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..workers {
        let (shared, recorder) = (Arc::clone(shared), Arc::clone(&recorder));
        tasks.spawn(async move {
            let mut rng = StdRng::seed_from_u64(seed.wrapping_add(w as u64));
            while Instant::now() < end && !shared.stop_requested() {
                // A closed loop has no schedule to keep: a remove with
                // nothing to remove is simply drawn again.
                let Ok(planned) = shared.workload.pick(&mut rng, &shared.checker) else {
                    tokio::task::yield_now().await;
                    continue;
                };
                shared.enter();
                recorder.count_sent(planned.ty);
                execute(
                    Arc::clone(&shared),
                    Arc::clone(&recorder),
                    planned,
                    Instant::now(),
                )
                .await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    ticker.abort();
    let types = recorder.snapshot();
    let sent = types.iter().map(|t| t.sent).sum();
    PhaseResult {
        types,
        lag: latency_histogram(),
        offered: sent,
        not_sent: 0,
        lagging_seconds: 0,
        duration: ran_for(shared, start, duration),
        abandoned: 0,
    }
}

/// The phase's length: as planned, or up to the Ctrl-C that cut it short.
fn ran_for(shared: &Shared, start: Instant, planned: Duration) -> Duration {
    if shared.stop_requested() {
        start.elapsed().min(planned)
    } else {
        planned
    }
}

/// Waits for the requests still in flight, at most a little longer than a
/// request (plus its follow-up lookups) can take; returns how many are left.
async fn drain(shared: &Shared) -> usize {
    let deadline = Instant::now() + shared.timeout * 3 + Duration::from_secs(1);
    while shared.in_flight() > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    shared.in_flight()
}

/// Prints one progress line per second to stderr.
async fn progress(
    shared: Arc<Shared>,
    recorder: Arc<Recorder>,
    live: Option<Arc<Live>>,
    start: Instant,
    rate: Option<f64>,
    label: String,
) {
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::from_std(start + Duration::from_secs(1)),
        Duration::from_secs(1),
    );
    let mut last_completed = 0;
    loop {
        tick.tick().await;
        let t = recorder.tick();
        // A response arrives at most its scheduling lag plus the timeout
        // after its intended second; a generous margin covers the lag.
        let horizon = shared.timeout + Duration::from_secs(30);
        let since_origin = shared.origin.elapsed().saturating_sub(horizon);
        recorder.compact(since_origin.as_secs() as u32);
        if shared.quiet {
            continue;
        }
        let elapsed = start.elapsed().as_secs_f64();
        let rps = t.completed - last_completed;
        last_completed = t.completed;
        let mut warn = String::new();
        let mut lag_text = String::new();
        if let Some(live) = &live {
            let lag_ms = live.lag_p99_us.load(Ordering::Relaxed) as f64 / 1000.0;
            lag_text = format!(" | lag p99 {lag_ms:.2} ms");
            if lag_ms > LAG_WARN_MS {
                warn.push_str(" | WARNING: harness behind schedule (lag)");
            }
        }
        if let Some(rate) = rate {
            // Poisson counts wander by about √n, so allow three of those.
            let expected = rate * elapsed;
            let handled = (t.sent + t.skipped) as f64;
            if elapsed >= 2.0 && handled < SENT_WARN_RATIO * expected - 3.0 * expected.sqrt() {
                warn.push_str(&format!(
                    " | WARNING: harness behind schedule (sent {:.0}% of offered)",
                    100.0 * handled / expected
                ));
            }
        }
        eprintln!(
            "[{label}{elapsed:6.1}s] sent {} | {rps} resp/s | last 1s p50 {:.2} ms p99 {:.2} ms \
             | in-flight {} | errors {}{lag_text}{warn}",
            t.sent,
            t.interval_p50_ms,
            t.interval_p99_ms,
            shared.in_flight(),
            t.errors,
        );
    }
}
