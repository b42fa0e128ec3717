//! The command line, and its validation into a [`RunConfig`]. Every check
//! that can fail on user input happens here, before any connection is
//! opened, and says which flag is wrong.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::client::Target;
use crate::error::{LoadError, Result};
use crate::scenario::Scenario;
use crate::schedule::Arrival;
use crate::step::Growth;

/// Open-loop, coordinated-omission-free load generator for the mnemos
/// gateway.
#[derive(Debug, Parser)]
#[command(name = "mnemos-loadtest", version, about, long_about = None)]
pub struct Args {
    /// Base URL of the gateway, e.g. http://127.0.0.1:8080.
    #[arg(long, value_name = "URL")]
    pub target: Option<String>,
    /// Scenario file (TOML): the weighted mix of request types.
    #[arg(long, value_name = "FILE")]
    pub scenario: Option<PathBuf>,
    /// Offered rate in requests per second (open loop), or the first
    /// step's rate with --step.
    #[arg(long, value_name = "REQ_PER_S")]
    pub rate: Option<f64>,
    /// Open loop: switch to this rate at --then-after, e.g. an overload that
    /// ends, to measure how fast latency recovers.
    #[arg(long, value_name = "REQ_PER_S", requires = "then_after")]
    pub then_rate: Option<f64>,
    /// When --then-rate takes over (from the start of the run).
    #[arg(long, value_parser = parse_duration, requires = "then_rate")]
    pub then_after: Option<Duration>,
    /// How long to run, e.g. 30s, 500ms, 2m (per step: see --step-duration).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Arrival process of the open loop [default: the scenario's, else poisson].
    #[arg(long, value_enum)]
    pub arrival: Option<Arrival>,
    /// Closed loop with N workers, each sending when its previous request
    /// has answered (like wrk). Latencies then omit the waiting that a stall
    /// imposes on users; the report says "closed".
    #[arg(long, value_name = "N")]
    pub closed: Option<usize>,
    /// Keep-alive connections to the target (the most requests on the wire
    /// at once; further requests wait for a free connection).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Most requests pending at once (waiting or on the wire); arrivals
    /// beyond are dropped and counted.
    #[arg(long, default_value_t = 20_000)]
    pub max_in_flight: usize,
    /// Per-request timeout; requests that take longer count as timeouts.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// Bearer token for admin requests (upserts, removes).
    #[arg(long, env = "MNEMOS_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Queries file (BEIR queries.jsonl), overriding the scenario's.
    #[arg(long, value_name = "FILE")]
    pub queries: Option<PathBuf>,
    /// Corpus file (BEIR corpus.jsonl) for upserts, overriding the scenario's.
    #[arg(long, value_name = "FILE")]
    pub corpus: Option<PathBuf>,
    /// Write the JSON report here.
    #[arg(long, value_name = "PATH")]
    pub json_report: Option<PathBuf>,
    /// Write the Markdown summary here (it is also printed to stdout).
    #[arg(long, value_name = "PATH")]
    pub md_report: Option<PathBuf>,
    /// Write SVG plots into this directory.
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    /// Step mode: raise the rate from --rate until the SLO breaks.
    #[arg(long)]
    pub step: bool,
    /// Step mode: multiply the rate by this each step [default: 1.5].
    #[arg(long, conflicts_with = "step_increment")]
    pub step_factor: Option<f64>,
    /// Step mode: add this many requests per second each step.
    #[arg(long)]
    pub step_increment: Option<f64>,
    /// Step mode: length of each step [default: --duration].
    #[arg(long, value_parser = parse_duration)]
    pub step_duration: Option<Duration>,
    /// Step mode: the highest rate to try.
    #[arg(long, default_value_t = 1_000_000.0)]
    pub max_rate: f64,
    /// Step mode: the p99 latency objective in milliseconds.
    #[arg(long, value_name = "MS")]
    pub slo_p99_ms: Option<f64>,
    /// Seed of the arrival times and request choices [default: the
    /// scenario's, else 42].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Id of this run, in upserted ids `lt-<run-id>-<n>` [default: from the
    /// clock].
    #[arg(long)]
    pub run_id: Option<String>,
    /// Runtime worker threads [default: one per core].
    #[arg(long)]
    pub threads: Option<usize>,
    /// Remove the documents this run upserted and did not remove, at the end.
    #[arg(long)]
    pub cleanup: bool,
    /// No progress line.
    #[arg(long, short)]
    pub quiet: bool,
    /// Instead of testing, serve a trivial endpoint (any GET → 200 "ok") on
    /// this address, to measure the harness's own ceiling against it.
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["target", "scenario"])]
    pub serve_trivial: Option<SocketAddr>,
}

/// How load is generated.
#[derive(Debug, Clone, PartialEq)]
pub enum Mode {
    Open {
        rate: f64,
        /// (offset, rate): the rate from that offset on.
        then: Option<(Duration, f64)>,
    },
    Closed {
        workers: usize,
    },
    Step {
        start_rate: f64,
        growth: Growth,
        step_duration: Duration,
        max_rate: f64,
        slo_p99_ms: f64,
    },
}

/// A validated run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub target: Target,
    pub scenario: Scenario,
    pub queries: Option<PathBuf>,
    pub corpus: Option<PathBuf>,
    pub mode: Mode,
    pub duration: Duration,
    pub arrival: Arrival,
    pub connections: usize,
    pub max_in_flight: usize,
    pub timeout: Duration,
    pub admin_token: Option<String>,
    pub seed: u64,
    pub run_id: String,
    pub threads: usize,
    pub cleanup: bool,
    pub quiet: bool,
}

/// The default p99 objective of step mode, in milliseconds.
pub const DEFAULT_SLO_P99_MS: f64 = 100.0;

/// Parses `30s`, `1.5s`, `500ms`, `2m`, `1h` or a bare number of seconds.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let value: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (try 30s, 500ms, 2m)"))?;
    let secs = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3600.0,
        other => {
            return Err(format!(
                "unknown unit `{other}` in `{s}` (use ms, s, m or h)"
            ))
        }
    };
    if !(secs.is_finite() && secs > 0.0) {
        return Err(format!("`{s}` must be longer than zero"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("`{s}`: {e}"))
}

fn positive(flag: &str, v: f64) -> Result<f64> {
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err(LoadError::Config(format!(
            "{flag} must be a positive number, got {v}"
        )))
    }
}

fn default_run_id() -> String {
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!("{millis:x}{:03x}", std::process::id() & 0xfff)
}

impl RunConfig {
    /// Validates the arguments and reads the scenario file.
    pub fn from_args(a: Args) -> Result<Self> {
        let cfg = |m: &str| LoadError::Config(m.to_string());
        let target = Target::parse(a.target.as_deref().ok_or_else(|| {
            cfg("--target URL is required (e.g. --target http://127.0.0.1:8080)")
        })?)?;
        let scenario_path = a
            .scenario
            .as_deref()
            .ok_or_else(|| cfg("--scenario FILE is required (see loadtest/scenarios/)"))?;
        let scenario = Scenario::load(scenario_path)?;
        if a.connections == 0 {
            return Err(cfg("--connections must be at least 1"));
        }
        if a.max_in_flight == 0 {
            return Err(cfg("--max-in-flight must be at least 1"));
        }
        if a.threads == Some(0) {
            return Err(cfg("--threads must be at least 1"));
        }
        let step_flags = a.step_factor.is_some()
            || a.step_increment.is_some()
            || a.step_duration.is_some()
            || a.slo_p99_ms.is_some();
        if step_flags && !a.step {
            return Err(cfg(
                "--step-factor, --step-increment, --step-duration and --slo-p99-ms need --step",
            ));
        }
        if a.then_rate.is_some() && (a.closed.is_some() || a.step) {
            return Err(cfg("--then-rate applies to a plain open-loop run only"));
        }
        let mode = match (a.closed, a.step) {
            (Some(_), true) => return Err(cfg("--closed and --step cannot be combined")),
            (Some(0), _) => return Err(cfg("--closed needs at least 1 worker")),
            (Some(workers), false) => {
                if a.rate.is_some() {
                    return Err(cfg(
                        "--rate has no meaning with --closed: a closed loop sends as fast as \
                         its workers get answers",
                    ));
                }
                Mode::Closed { workers }
            }
            (None, step) => {
                let rate = positive(
                    "--rate",
                    a.rate.ok_or_else(|| {
                        cfg("--rate R is required (requests per second), or --closed N")
                    })?,
                )?;
                if step {
                    let growth = match (a.step_factor, a.step_increment) {
                        (Some(f), _) if !(f.is_finite() && f > 1.0) => {
                            return Err(cfg("--step-factor must be greater than 1"))
                        }
                        (Some(f), _) => Growth::Factor(f),
                        (None, Some(i)) => Growth::Increment(positive("--step-increment", i)?),
                        (None, None) => Growth::Factor(1.5),
                    };
                    let max_rate = positive("--max-rate", a.max_rate)?;
                    if max_rate < rate {
                        return Err(cfg("--max-rate must be at least --rate"));
                    }
                    Mode::Step {
                        start_rate: rate,
                        growth,
                        step_duration: a.step_duration.unwrap_or(a.duration),
                        max_rate,
                        slo_p99_ms: positive(
                            "--slo-p99-ms",
                            a.slo_p99_ms.unwrap_or(DEFAULT_SLO_P99_MS),
                        )?,
                    }
                } else {
                    let then = match (a.then_rate, a.then_after) {
                        (Some(r), Some(after)) => {
                            if after >= a.duration {
                                return Err(cfg("--then-after must be less than --duration"));
                            }
                            Some((after, positive("--then-rate", r)?))
                        }
                        _ => None,
                    };
                    Mode::Open { rate, then }
                }
            }
        };
        let queries = a.queries.or_else(|| scenario.queries.clone());
        let corpus = a.corpus.or_else(|| scenario.corpus.clone());
        let admin_token = a.admin_token.filter(|t| !t.trim().is_empty());
        scenario.check_runnable(
            admin_token.as_deref(),
            queries.as_deref(),
            corpus.as_deref(),
        )?;
        Ok(Self {
            target,
            queries,
            corpus,
            mode,
            duration: a.duration,
            arrival: a.arrival.or(scenario.arrival).unwrap_or(Arrival::Poisson),
            connections: a.connections,
            max_in_flight: a.max_in_flight,
            timeout: a.timeout,
            admin_token,
            seed: a.seed.or(scenario.seed).unwrap_or(42),
            run_id: a.run_id.unwrap_or_else(default_run_id),
            threads: a.threads.unwrap_or_else(|| {
                std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
            }),
            cleanup: a.cleanup,
            quiet: a.quiet,
            scenario,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        for bad in ["", "s", "0s", "-1s", "5x", "1e3s", "abc"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    fn args(extra: &[&str]) -> Result<RunConfig> {
        let trivial = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/trivial.toml");
        let mut argv = vec![
            "mnemos-loadtest",
            "--target",
            "http://127.0.0.1:1",
            "--scenario",
            trivial,
        ];
        argv.extend_from_slice(extra);
        RunConfig::from_args(Args::try_parse_from(argv).unwrap())
    }

    #[test]
    fn modes_and_their_errors() {
        assert_eq!(
            args(&["--rate", "10"]).unwrap().mode,
            Mode::Open {
                rate: 10.0,
                then: None
            }
        );
        assert_eq!(
            args(&["--closed", "4"]).unwrap().mode,
            Mode::Closed { workers: 4 }
        );
        match args(&["--rate", "10", "--step", "--step-increment", "5"])
            .unwrap()
            .mode
        {
            Mode::Step {
                growth, slo_p99_ms, ..
            } => {
                assert_eq!(growth, Growth::Increment(5.0));
                assert_eq!(slo_p99_ms, DEFAULT_SLO_P99_MS);
            }
            other => panic!("{other:?}"),
        }
        let err = |extra: &[&str]| args(extra).unwrap_err().to_string();
        assert!(err(&[]).contains("--rate R is required"));
        assert!(err(&["--rate", "0"]).contains("--rate must be a positive number"));
        assert!(err(&["--rate", "NaN"]).contains("--rate must be a positive number"));
        assert!(err(&["--closed", "2", "--step"]).contains("cannot be combined"));
        let change = ["--rate", "9", "--then-rate", "3", "--then-after", "5s"];
        assert_eq!(
            args(&change).unwrap().mode,
            Mode::Open {
                rate: 9.0,
                then: Some((Duration::from_secs(5), 3.0))
            }
        );
        assert!(
            err(&["--rate", "9", "--then-rate", "3", "--then-after", "40s"])
                .contains("less than --duration")
        );
        assert!(err(&[
            "--rate",
            "9",
            "--step",
            "--then-rate",
            "3",
            "--then-after",
            "5s"
        ])
        .contains("plain open-loop"));
        assert!(err(&["--closed", "2", "--rate", "5"]).contains("no meaning with --closed"));
        assert!(err(&["--rate", "5", "--slo-p99-ms", "9"]).contains("need --step"));
        assert!(err(&["--rate", "5", "--step", "--step-factor", "1"]).contains("greater than 1"));
        assert!(err(&["--rate", "5", "--connections", "0"]).contains("--connections"));
        assert!(err(&["--rate", "50", "--step", "--max-rate", "10"]).contains("--max-rate"));
    }
}
