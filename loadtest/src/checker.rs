//! Correctness under churn: a removed document, once its removal is
//! acknowledged, must never be served again, and an upserted document must
//! be readable once its upsert is acknowledged.
//!
//! Timing is judged conservatively, so the checker never blames the server
//! for the harness's own delays: a removal's instant is taken *after* its
//! response arrived (later than the server's acknowledgement), and a
//! search's instant is taken *before* it waited for a connection and was
//! written (earlier than it reached the server). A search counts as a
//! violation only if it was sent after the removal's instant and still
//! returned the id.
//!
//! Ids are fresh per run (`lt-<run>-<n>`) and never reused, so a removed id
//! cannot legitimately come back through a later upsert.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

/// Details of the first few violations kept for the report.
const KEEP_DETAILS: usize = 10;

/// One search response that returned an id after its removal was
/// acknowledged. Times are milliseconds since the start of the run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Violation {
    pub id: String,
    pub request: String,
    pub removed_at_ms: f64,
    pub search_sent_at_ms: f64,
}

/// The checker's findings, as they appear in the report.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Correctness {
    /// Search responses that returned an id after its removal was
    /// acknowledged. Must be 0.
    pub violations: u64,
    pub violation_details: Vec<Violation>,
    /// Upserted ids that `GET /v1/admin/documents/{id}` did not find after
    /// the upsert was acknowledged. Must be 0.
    pub missing_after_upsert: u64,
    pub missing_ids: Vec<String>,
    /// Search responses whose hits were checked (those sent after at least
    /// one removal was acknowledged).
    pub searches_checked: u64,
    /// Hits of this run's own documents in the checked responses: shows
    /// the check met the documents it guards (0 means it proved little).
    pub own_hits: u64,
    /// Ids whose upsert was acknowledged.
    pub upserts_acknowledged: u64,
    /// Ids whose visibility check answered (found or not).
    pub upserts_verified: u64,
    /// Visibility checks that failed for another reason (timeout, 5xx);
    /// those ids are never removed, so they cannot cause a violation.
    pub verify_errors: u64,
    /// Ids whose removal was acknowledged.
    pub removes_acknowledged: u64,
    /// Ids the server said did not exist when removed, although this run had
    /// seen them stored and never removed them before.
    pub remove_not_found: u64,
}

#[derive(Default)]
struct State {
    removed: HashMap<String, Instant>,
    removable: VecDeque<String>,
    report: Correctness,
}

/// Shared by every request task of a run (and across step-mode phases).
pub struct Checker {
    origin: Instant,
    /// `lt-<run>-`: the prefix of this run's document ids.
    own_prefix: String,
    any_removed: AtomicBool,
    state: Mutex<State>,
}

impl Checker {
    /// `own_prefix` is the id prefix of the run's upserted documents.
    pub fn new(origin: Instant, own_prefix: &str) -> Self {
        Self {
            origin,
            own_prefix: own_prefix.to_string(),
            any_removed: AtomicBool::new(false),
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn ms(&self, t: Instant) -> f64 {
        t.saturating_duration_since(self.origin).as_secs_f64() * 1000.0
    }

    /// Whether a search sent now must have its hits checked: only once some
    /// removal is acknowledged can a response violate anything, so until
    /// then responses are not even parsed.
    pub fn needs_check(&self) -> bool {
        self.any_removed.load(Ordering::Acquire)
    }

    /// Records that the removal of `ids` was acknowledged just now. The
    /// instant is taken under the lock, so a search checked concurrently
    /// sees either no entry or one no earlier than its own send time.
    pub fn removal_acknowledged(&self, ids: &[String]) {
        let mut s = self.lock();
        let now = Instant::now();
        self.insert_removed(&mut s, ids, now);
    }

    fn insert_removed(&self, s: &mut State, ids: &[String], at: Instant) {
        for id in ids {
            s.removed.insert(id.clone(), at);
        }
        s.report.removes_acknowledged += ids.len() as u64;
        self.any_removed.store(true, Ordering::Release);
    }

    /// Checks the hit ids of a search sent at `sent_at`; returns how many
    /// violations it found.
    pub fn check_search<'a>(
        &self,
        request: &str,
        sent_at: Instant,
        ids: impl IntoIterator<Item = &'a str>,
    ) -> u64 {
        let mut s = self.lock();
        s.report.searches_checked += 1;
        let mut found = 0;
        for id in ids {
            if id.starts_with(&self.own_prefix) {
                s.report.own_hits += 1;
            }
            let Some(&removed_at) = s.removed.get(id) else {
                continue;
            };
            if sent_at > removed_at {
                found += 1;
                s.report.violations += 1;
                if s.report.violation_details.len() < KEEP_DETAILS {
                    let v = Violation {
                        id: id.to_string(),
                        request: request.to_string(),
                        removed_at_ms: self.ms(removed_at),
                        search_sent_at_ms: self.ms(sent_at),
                    };
                    s.report.violation_details.push(v);
                }
            }
        }
        found
    }

    /// Records that an upsert of `n` ids was acknowledged.
    pub fn upsert_acknowledged(&self, n: usize) {
        self.lock().report.upserts_acknowledged += n as u64;
    }

    /// Records the visibility check of an acknowledged upsert. Only ids
    /// found become candidates for removal, so a removal can never race its
    /// own visibility check into a false "missing".
    pub fn upsert_verified(&self, id: String, found: bool) {
        let mut s = self.lock();
        s.report.upserts_verified += 1;
        if found {
            s.removable.push_back(id);
        } else {
            s.report.missing_after_upsert += 1;
            if s.report.missing_ids.len() < KEEP_DETAILS {
                s.report.missing_ids.push(id);
            }
        }
    }

    pub fn verify_failed(&self) {
        self.lock().report.verify_errors += 1;
    }

    pub fn remove_not_found(&self, n: usize) {
        self.lock().report.remove_not_found += n as u64;
    }

    /// Takes up to `n` ids for a removal, oldest first (so documents live
    /// long enough to be searched), or `None` when there are none. Taken ids
    /// never come back, whether or not the removal succeeds.
    pub fn take_removable(&self, n: usize) -> Option<Vec<String>> {
        let mut s = self.lock();
        if s.removable.is_empty() {
            return None;
        }
        let n = n.min(s.removable.len());
        Some(s.removable.drain(..n).collect())
    }

    /// Ids this run stored and did not remove (for `--cleanup`).
    pub fn leftovers(&self) -> Vec<String> {
        self.lock().removable.drain(..).collect()
    }

    pub fn report(&self) -> Correctness {
        self.lock().report.clone()
    }

    #[cfg(test)]
    fn removal_acknowledged_at(&self, ids: &[String], at: Instant) {
        let mut s = self.lock();
        self.insert_removed(&mut s, ids, at);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn served_after_acknowledged_removal_is_a_violation() {
        let t0 = Instant::now();
        let c = Checker::new(t0, "lt-a-");
        assert!(!c.needs_check());
        c.removal_acknowledged_at(&["lt-a-1".into()], t0 + ms(100));
        assert!(c.needs_check());
        // Sent after the acknowledgement and still returned: one violation.
        assert_eq!(
            c.check_search("search:bm25", t0 + ms(150), ["x", "lt-a-1"]),
            1
        );
        let r = c.report();
        assert_eq!(r.violations, 1);
        assert_eq!(
            r.violation_details[0],
            Violation {
                id: "lt-a-1".into(),
                request: "search:bm25".into(),
                removed_at_ms: 100.0,
                search_sent_at_ms: 150.0,
            }
        );
    }

    #[test]
    fn served_before_or_unrelated_is_fine() {
        let t0 = Instant::now();
        let c = Checker::new(t0, "lt-a-");
        c.removal_acknowledged_at(&["lt-a-1".into(), "lt-a-2".into()], t0 + ms(100));
        // Sent before the acknowledgement (the response may arrive later).
        assert_eq!(c.check_search("s", t0 + ms(50), ["lt-a-1", "lt-a-2"]), 0);
        // Sent at the same instant is not "after".
        assert_eq!(c.check_search("s", t0 + ms(100), ["lt-a-1"]), 0);
        // Sent later, but other ids.
        assert_eq!(c.check_search("s", t0 + ms(200), ["lt-a-3", "demo-001"]), 0);
        let r = c.report();
        assert_eq!(
            (r.violations, r.searches_checked, r.removes_acknowledged),
            (0, 3, 2)
        );
        assert_eq!(r.own_hits, 4);
    }

    #[test]
    fn only_verified_ids_are_removed_once() {
        let c = Checker::new(Instant::now(), "lt-a-");
        assert_eq!(c.take_removable(1), None);
        c.upsert_acknowledged(3);
        c.upsert_verified("a".into(), true);
        c.upsert_verified("b".into(), false);
        c.upsert_verified("c".into(), true);
        assert_eq!(c.take_removable(5).unwrap(), ["a", "c"]);
        assert_eq!(c.take_removable(1), None);
        let r = c.report();
        assert_eq!(
            (r.missing_after_upsert, r.missing_ids.clone()),
            (1, vec!["b".into()])
        );
        assert_eq!((r.upserts_acknowledged, r.upserts_verified), (3, 3));
    }
}
