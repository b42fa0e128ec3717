//! The Markdown summary of a report: one table row per request type, the
//! correctness and harness lines, the step table in step mode, warnings and
//! error samples. Printed to stdout at the end of a run.

use std::fmt::Write as _;

use crate::report::{Report, TypeReport};

impl Report {
    /// The Markdown summary.
    pub fn markdown(&self) -> String {
        let mut m = String::new();
        let _ = self.write_markdown(&mut m);
        m
    }

    fn write_markdown(&self, m: &mut String) -> std::fmt::Result {
        writeln!(
            m,
            "## mnemos-loadtest: `{}` against {}\n",
            self.scenario, self.target
        )?;
        let how = match (self.mode, self.closed_workers, self.offered_rate) {
            ("closed", Some(n), _) => format!("**closed loop**, {n} workers"),
            (_, _, Some(r)) => format!(
                "open loop ({}), offered {r:.1} req/s",
                self.arrival.unwrap_or("?")
            ),
            _ => self.mode.to_string(),
        };
        if self.interrupted {
            writeln!(m, "**Interrupted** (Ctrl-C): figures cover the time run.\n")?;
        }
        writeln!(
            m,
            "{how} for {:.1} s: achieved **{:.1} req/s**, sent {} of {} arrivals, {} ok, {} errors\n",
            self.duration_s, self.achieved_rate, self.sent, self.offered, self.ok, self.errors
        )?;
        writeln!(
            m,
            "| request | sent | ok | errors | timeouts | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | mean ms | achieved/s |"
        )?;
        writeln!(m, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")?;
        let mut rows: Vec<(&str, &TypeReport)> = self
            .requests
            .0
            .iter()
            .map(|(l, t)| (l.as_str(), t))
            .collect();
        if rows.len() > 1 {
            rows.push(("**all**", &self.totals));
        }
        for (label, t) in rows {
            writeln!(
                m,
                "| {label} | {} | {} | {} | {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.1} |",
                t.sent,
                t.ok,
                t.errors,
                t.timeouts,
                t.p50_ms,
                t.p90_ms,
                t.p99_ms,
                t.p999_ms,
                t.max_ms,
                t.mean_ms,
                t.achieved_rate
            )?;
        }
        let c = &self.correctness;
        writeln!(
            m,
            "\nCorrectness: **{} violations** (removed ids served after acknowledgement; {} \
             searches checked with {} hits of this run's documents, {} removals acknowledged), \
             **{} missing after upsert** ({} of {} upserts verified, {} checks failed)",
            c.violations,
            c.searches_checked,
            c.own_hits,
            c.removes_acknowledged,
            c.missing_after_upsert,
            c.upserts_verified,
            c.upserts_acknowledged,
            c.verify_errors
        )?;
        for v in &c.violation_details {
            writeln!(
                m,
                "- `{}` returned by `{}` sent at {:.1} ms, removal acknowledged at {:.1} ms",
                v.id, v.request, v.search_sent_at_ms, v.removed_at_ms
            )?;
        }
        let h = &self.harness;
        writeln!(
            m,
            "\nHarness: {}; lag p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; {} connections, peak \
             {} in flight",
            if h.behind_schedule {
                "**BEHIND SCHEDULE**"
            } else {
                "on schedule"
            },
            h.lag_p50_ms,
            h.lag_p99_ms,
            h.lag_max_ms,
            h.connections,
            h.peak_in_flight
        )?;
        if let Some(steps) = &self.steps {
            writeln!(
                m,
                "\n| step | offered/s | achieved/s | p50 ms | p99 ms | p99.9 ms | errors | lag p99 ms | verdict |"
            )?;
            writeln!(m, "|--:|--:|--:|--:|--:|--:|--:|--:|---|")?;
            for s in steps {
                let verdict = if s.passed {
                    "pass".to_string()
                } else {
                    format!("fail: {}", s.reasons.join("; "))
                };
                writeln!(
                    m,
                    "| {} | {:.1} | {:.1} | {:.2} | {:.2} | {:.2} | {} | {:.3} | {verdict} |",
                    s.step,
                    s.offered_rate,
                    s.achieved_rate,
                    s.p50_ms,
                    s.p99_ms,
                    s.p999_ms,
                    s.errors,
                    s.lag_p99_ms
                )?;
            }
            match self.sustainable_rate {
                Some(r) => writeln!(
                    m,
                    "\n**Sustainable rate: {r:.1} req/s** at p99 ≤ {} ms",
                    self.slo_p99_ms.unwrap_or(f64::NAN)
                )?,
                None => writeln!(m, "\n**Sustainable rate: none** (the first step failed)")?,
            }
        }
        if !h.warnings.is_empty() {
            writeln!(m, "\nWarnings:")?;
            for w in &h.warnings {
                writeln!(m, "- {w}")?;
            }
        }
        if !self.error_samples.is_empty() {
            writeln!(m, "\nError samples:")?;
            for e in &self.error_samples {
                let status = e.status.map_or("no response".into(), |s| s.to_string());
                writeln!(
                    m,
                    "- `{}` ({status}): {}",
                    e.request,
                    e.message.replace('\n', " ")
                )?;
            }
        }
        Ok(())
    }
}
