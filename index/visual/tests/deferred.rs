//! Building the graph off the write lock (`mnemos_visual::deferred`): the
//! memory stays exact past the threshold, edits made while a job builds
//! are caught up on installation, and nothing removed comes back.

use mnemos_visual::{DurableMemory, VisualMemory, VisualParams};

const DIM: usize = 16;

/// A deterministic stream in [-1, 1) (64-bit LCG).
struct Lcg(u64);

impl Lcg {
    fn vector(&mut self) -> Vec<f32> {
        (0..DIM)
            .map(|_| {
                self.0 = self
                    .0
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }
}

fn params() -> VisualParams {
    VisualParams {
        ann_above: 50,
        ..VisualParams::default()
    }
}

/// `n` items `i{j}` labelled `l{j % 5}`.
fn items(rng: &mut Lcg, n: usize) -> Vec<(String, String, Vec<f32>)> {
    (0..n)
        .map(|j| (format!("i{j}"), format!("l{}", j % 5), rng.vector()))
        .collect()
}

fn upsert(m: &mut VisualMemory, items: &[(String, String, Vec<f32>)]) {
    let batch: Vec<(&str, &str, &[f32])> = items
        .iter()
        .map(|(id, label, v)| (id.as_str(), label.as_str(), v.as_slice()))
        .collect();
    m.upsert_batch(&batch).unwrap();
}

/// Every item's id and its 10 nearest ids, for comparing two memories.
fn answers(m: &VisualMemory, queries: &[Vec<f32>]) -> Vec<Vec<(String, String)>> {
    queries
        .iter()
        .map(|q| {
            let q = m.normalised(q).unwrap();
            m.search(&q, 10, None)
                .iter()
                .map(|h| (m.item(h.slot).id.clone(), m.item(h.slot).label.clone()))
                .collect()
        })
        .collect()
}

#[test]
fn edits_during_a_build_are_caught_up_and_removals_stay_removed() {
    let mut rng = Lcg(3);
    let base = items(&mut rng, 60);
    let mut m = VisualMemory::with_params(DIM, params()).unwrap();
    m.defer_graph_builds(true);
    upsert(&mut m, &base);
    assert!(
        !m.is_graph(),
        "past the threshold, still exact: no build in the upsert"
    );
    assert!(m.wants_graph());

    let job = m.graph_job().expect("a job");
    assert_eq!(job.len(), 60);
    assert!(
        !m.wants_graph() && m.graph_job().is_none(),
        "one job at a time"
    );

    // Edits while the job builds: a new item, a replaced one (new vector
    // and label), a removed one, and one added then removed again.
    let (new_v, moved_v) = (rng.vector(), rng.vector());
    m.upsert("n1", "l9", &new_v).unwrap();
    m.upsert("i3", "l8", &moved_v).unwrap();
    let old_i5 = base[5].2.clone();
    assert!(m.remove("i5"));
    m.upsert("tmp", "l7", &rng.vector()).unwrap();
    assert!(m.remove("tmp"));
    let flat = m.clone();

    let built = job.build().unwrap();
    assert!(m.install_graph(built).unwrap());
    assert!(m.is_graph() && !m.wants_graph());
    assert_eq!(m.len(), 60);
    let stats = m.stats();
    assert_eq!(
        stats.graph_points - stats.dead_points,
        60,
        "live in the graph: not i5, nor tmp, nor i3's old vector"
    );

    // The graph index scans exactly below `exact_below`, so its answers
    // must equal the flat memory's, edit for edit.
    let mut queries: Vec<Vec<f32>> = (0..20).map(|_| rng.vector()).collect();
    queries.extend([new_v.clone(), moved_v.clone(), old_i5.clone()]);
    assert_eq!(answers(&m, &queries), answers(&flat, &queries));
    let top = |q: &[f32]| answers(&m, &[q.to_vec()])[0][0].clone();
    assert_eq!(top(&new_v), ("n1".into(), "l9".into()));
    assert_eq!(
        top(&moved_v),
        ("i3".into(), "l8".into()),
        "the replaced vector"
    );
    let near_old_i5 = answers(&m, &[old_i5]);
    assert!(near_old_i5[0]
        .iter()
        .all(|(id, _)| id != "i5" && id != "tmp"));
    assert_eq!(m.embedding("i3").unwrap(), m.normalised(&moved_v).unwrap());
}

/// Edits drained and caught up outside the lock, in rounds, then more
/// edits (to the same ids too) before the switch: the graph ends up
/// holding exactly the memory's items.
#[test]
fn edits_caught_up_in_rounds_end_as_the_memory_stands() {
    let mut rng = Lcg(11);
    let base = items(&mut rng, 60);
    let mut m = VisualMemory::with_params(DIM, params()).unwrap();
    m.defer_graph_builds(true);
    upsert(&mut m, &base);
    let job = m.graph_job().unwrap();
    let built = job.build().unwrap();
    assert!(m.drain_graph_edits().is_empty());
    let (a1, a2) = (rng.vector(), rng.vector());
    m.upsert("a", "la", &a1).unwrap();
    m.upsert("i2", "l2", &rng.vector()).unwrap();
    assert!(m.remove("i4"));
    let round = m.drain_graph_edits();
    assert_eq!(round.len(), 3);
    built.catch_up(&round).unwrap();
    // After the round: `a` moves again, `i2` goes, `i4` comes back.
    m.upsert("a", "la", &a2).unwrap();
    assert!(m.remove("i2"));
    m.upsert("i4", "l4", &base[4].2).unwrap();
    let flat = m.clone();
    assert!(m.install_graph(built).unwrap());
    let stats = m.stats();
    assert_eq!(stats.graph_points - stats.dead_points, 60);
    let mut queries: Vec<Vec<f32>> = (0..20).map(|_| rng.vector()).collect();
    queries.extend([a1, a2.clone(), base[2].2.clone(), base[4].2.clone()]);
    assert_eq!(answers(&m, &queries), answers(&flat, &queries));
    assert_eq!(m.embedding("a").unwrap(), m.normalised(&a2).unwrap());
    assert!(m.embedding("i2").is_none());
}

#[test]
fn an_abandoned_job_installs_nothing_and_a_new_one_can_start() {
    let mut rng = Lcg(5);
    let mut m = VisualMemory::with_params(DIM, params()).unwrap();
    m.defer_graph_builds(true);
    upsert(&mut m, &items(&mut rng, 55));
    let job = m.graph_job().unwrap();
    m.abandon_graph_job();
    assert!(m.wants_graph());
    assert!(
        !m.install_graph(job.build().unwrap()).unwrap(),
        "no job is out"
    );
    assert!(!m.is_graph());
    let job = m.graph_job().unwrap();
    assert!(m.install_graph(job.build().unwrap()).unwrap());
    assert!(m.is_graph());
}

#[test]
fn without_deferral_the_upsert_builds_the_graph_as_before() {
    let mut rng = Lcg(7);
    let mut m = VisualMemory::with_params(DIM, params()).unwrap();
    upsert(&mut m, &items(&mut rng, 55));
    assert!(m.is_graph() && !m.wants_graph() && m.graph_job().is_none());
}

#[test]
fn a_deferred_reopen_replays_into_exact_search_and_builds_on_request() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = Lcg(9);
    let rows = items(&mut rng, 70);
    {
        let mut d = DurableMemory::open_deferred(dir.path(), DIM, params()).unwrap();
        let batch: Vec<(&str, &str, &[f32])> = rows
            .iter()
            .map(|(id, label, v)| (id.as_str(), label.as_str(), v.as_slice()))
            .collect();
        d.upsert(&batch).unwrap();
        assert!(!d.memory().is_graph());
        d.remove(&["i0"]).unwrap();
    }
    let mut d = DurableMemory::open_deferred(dir.path(), DIM, params()).unwrap();
    assert!(!d.memory().is_graph(), "replay leaves the graph to a job");
    assert_eq!(d.memory().len(), 69);
    let job = d.graph_job().unwrap();
    d.remove(&["i1"]).unwrap();
    assert!(d.install_graph(job.build().unwrap()).unwrap());
    assert!(d.memory().is_graph());
    assert_eq!(d.memory().len(), 68);
    let q = d.memory().normalised(&rows[1].2).unwrap();
    let hits = d.memory().search(&q, 5, None);
    assert!(hits.iter().all(|h| d.memory().item(h.slot).id != "i1"));
}
