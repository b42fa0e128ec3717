//! Behaviour of the visual memory on synthetic clustered embeddings: each
//! class is a cloud of points around its own random centre.

use mnemos_hnsw::HnswParams;
use mnemos_visual::{Aggregation, Prune, VisualMemory, VisualParams};

const DIM: usize = 32;

/// A deterministic pseudo-random stream in [-1, 1) (64-bit LCG).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> f32 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn vector(&mut self) -> Vec<f32> {
        (0..DIM).map(|_| self.next()).collect()
    }
}

fn near(centre: &[f32], rng: &mut Lcg, spread: f32) -> Vec<f32> {
    centre.iter().map(|c| c + spread * rng.next()).collect()
}

/// `per_class` samples of each of `classes`, ids `"{label}-{i}"`; returns
/// the memory and the class centres.
fn memory(classes: &[&str], per_class: usize) -> (VisualMemory, Vec<Vec<f32>>) {
    let mut rng = Lcg(7);
    let mut m = VisualMemory::new(DIM).unwrap();
    let centres: Vec<Vec<f32>> = classes.iter().map(|_| rng.vector()).collect();
    for (label, centre) in classes.iter().zip(&centres) {
        for i in 0..per_class {
            m.upsert(&format!("{label}-{i}"), label, &near(centre, &mut rng, 0.3))
                .unwrap();
        }
    }
    (m, centres)
}

fn accuracy(m: &VisualMemory, label: &str, centre: &[f32], agg: Aggregation) -> f32 {
    let mut rng = Lcg(99);
    let n = 40;
    let right = (0..n)
        .filter(|_| {
            let q = near(centre, &mut rng, 0.3);
            m.classify(&q, 10, agg).unwrap().label.as_deref() == Some(label)
        })
        .count();
    right as f32 / n as f32
}

#[test]
fn every_aggregation_classifies_clean_clusters() {
    let classes = ["ant", "bee", "cat"];
    let (m, centres) = memory(&classes, 30);
    for agg in Aggregation::ALL {
        for (label, centre) in classes.iter().zip(&centres) {
            let acc = accuracy(&m, label, centre, agg);
            assert!(acc > 0.95, "{} on {label}: {acc}", agg.name());
        }
    }
}

#[test]
fn decisions_name_the_neighbours_that_made_them() {
    let (m, centres) = memory(&["ant", "bee"], 20);
    let d = m.classify(&centres[1], 5, Aggregation::RankVoting).unwrap();
    assert_eq!(d.label.as_deref(), Some("bee"));
    assert_eq!(d.neighbors.len(), 5);
    assert!(d
        .neighbors
        .windows(2)
        .all(|w| w[0].distance <= w[1].distance));
    assert!(d
        .neighbors
        .iter()
        .all(|v| v.id.starts_with("bee-") && v.weight > 0.0));
    let total: f32 = d.scores.iter().map(|s| s.1).sum();
    let weights: f32 = d.neighbors.iter().map(|v| v.weight).sum();
    assert!((total - weights).abs() < 1e-5);
}

#[test]
fn unlearning_a_class_is_exact_and_leaves_the_others() {
    let classes = ["ant", "bee", "cat", "dog"];
    let (mut m, centres) = memory(&classes, 25);
    let before: Vec<f32> = classes
        .iter()
        .zip(&centres)
        .map(|(l, c)| accuracy(&m, l, c, Aggregation::RankVoting))
        .collect();
    let removed = m.remove_class("cat");
    assert_eq!(removed.len(), 25);
    assert_eq!(m.len(), 75);
    for (i, (label, centre)) in classes.iter().zip(&centres).enumerate() {
        let after = accuracy(&m, label, centre, Aggregation::RankVoting);
        if *label == "cat" {
            assert_eq!(after, 0.0);
            let d = m.classify(centre, 50, Aggregation::Plurality).unwrap();
            assert!(d.scores.iter().all(|(l, _)| l != "cat"));
            assert!(d.neighbors.iter().all(|v| v.label != "cat"));
        } else {
            assert_eq!(after, before[i], "{label} moved");
        }
    }
    // A whole new class needs no training: a few samples and it is there.
    let mut rng = Lcg(3);
    let emu = rng.vector();
    for i in 0..5 {
        m.upsert(&format!("emu-{i}"), "emu", &near(&emu, &mut rng, 0.3))
            .unwrap();
    }
    let d = m.classify(&emu, 5, Aggregation::RankVoting).unwrap();
    assert_eq!(d.label.as_deref(), Some("emu"));
}

#[test]
fn removal_and_replacement_keep_every_other_item_findable() {
    let mut rng = Lcg(5);
    let mut m = VisualMemory::new(DIM).unwrap();
    let mut vectors = std::collections::HashMap::new();
    for i in 0..20 {
        let (id, v) = (format!("item-{i}"), rng.vector());
        m.upsert(&id, if i % 2 == 0 { "even" } else { "odd" }, &v)
            .unwrap();
        vectors.insert(id, v);
    }
    // Removing from the middle moves the last row into the hole.
    for id in ["item-3", "item-0", "item-19"] {
        assert!(m.remove(id));
        assert!(!m.remove(id));
        assert!(!m.contains(id));
        vectors.remove(id);
    }
    // Replacing keeps the count and takes the new label and vector.
    let v = rng.vector();
    m.upsert("item-4", "odd", &v).unwrap();
    vectors.insert("item-4".into(), v);
    assert_eq!(m.len(), 17);
    for (id, v) in &vectors {
        let hits = m.search(&m.normalised(v).unwrap(), 1, None);
        let item = m.item(hits[0].slot);
        assert_eq!(&item.id, id);
        assert!(hits[0].distance.abs() < 1e-5);
        if id == "item-4" {
            assert_eq!(item.label, "odd");
        }
    }
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let (mut m, _) = memory(&["ant"], 5);
    let ok = vec![0.5f32; DIM];
    let mut nan = ok.clone();
    nan[3] = f32::NAN;
    let mut inf = ok.clone();
    inf[0] = f32::INFINITY;
    assert!(m.upsert("x", "ant", &ok[..DIM - 1]).is_err());
    assert!(m.upsert("x", "ant", &nan).is_err());
    assert!(m.upsert("x", "ant", &inf).is_err());
    assert!(m.upsert("x", "ant", &[0.0; DIM]).is_err());
    assert!(m.upsert("", "ant", &ok).is_err());
    assert!(m.upsert("x", "", &ok).is_err());
    assert_eq!(m.len(), 5);
    assert!(m.classify(&ok, 0, Aggregation::RankVoting).is_err());
    assert!(m.classify(&nan, 3, Aggregation::RankVoting).is_err());
    assert!(m.prune(Prune::Hard { k: 0, threshold: 1 }).is_err());
    assert!(m.prune(Prune::Hard { k: 5, threshold: 0 }).is_err());
    assert_eq!(m.len(), 5);
    assert!(VisualMemory::new(0).is_err());
    let empty = VisualMemory::new(DIM).unwrap();
    let d = empty.classify(&ok, 3, Aggregation::Softmax).unwrap();
    assert_eq!(d.label, None);
}

#[test]
fn pruning_finds_the_mislabelled_samples() {
    let (mut m, centres) = memory(&["ant", "bee"], 20);
    // Two "bee"s planted at the very centre of the ant cloud, where they
    // are among the nearest neighbours of many ants (8–11 of 20 at k = 10,
    // where no ant is wrong more than twice).
    let mut rng = Lcg(11);
    for i in 0..2 {
        m.upsert(
            &format!("liar-{i}"),
            "bee",
            &near(&centres[0], &mut rng, 0.3),
        )
        .unwrap();
    }
    let mut soft = m.clone();
    let report = soft.prune(Prune::Soft { k: 10 }).unwrap();
    assert_eq!(report.examined, 42);
    let liar = report.downweighted().find(|(id, _)| id == "liar-0");
    let (_, multiplier) = liar.expect("the planted sample is down-weighted");
    assert!(*multiplier < 0.5, "multiplier {multiplier}");
    assert_eq!(soft.len(), 42);

    let report = m
        .prune(Prune::Hard {
            k: 10,
            threshold: 5,
        })
        .unwrap();
    let removed: Vec<&str> = report.removed.iter().map(|r| r.0.as_str()).collect();
    assert!(
        removed.contains(&"liar-0") && removed.contains(&"liar-1"),
        "{removed:?}"
    );
    assert!(
        removed.iter().all(|id| id.starts_with("liar-")),
        "{removed:?}"
    );
    assert!(!m.contains("liar-0"));
    assert_eq!(m.len(), 40);
}

#[test]
fn distance_range_spans_the_stored_pairs() {
    let (m, _) = memory(&["ant", "bee", "cat"], 10);
    let r = m.distance_range();
    assert!(r.min >= 0.0 && r.min < r.max && r.max <= 2.0, "{r:?}");
}

// ---- graph mode (above `ann_above`) ----

/// A small threshold, and graph search even for a few hundred items (the
/// graph index would otherwise scan them exactly).
fn graph_params(ann_above: usize) -> VisualParams {
    let defaults = VisualParams::default();
    VisualParams {
        ann_above,
        hnsw: HnswParams {
            exact_below: 0,
            ..defaults.hnsw
        },
    }
}

/// `classes` well-separated clusters `c{j}` of `per_class` items
/// `c{j}-{i}`, upserted in batches of 64; returns the memory and centres.
fn clustered(
    params: VisualParams,
    classes: usize,
    per_class: usize,
) -> (VisualMemory, Vec<Vec<f32>>) {
    let mut rng = Lcg(21);
    let centres: Vec<Vec<f32>> = (0..classes).map(|_| rng.vector()).collect();
    let mut rows = Vec::new();
    for (j, centre) in centres.iter().enumerate() {
        for i in 0..per_class {
            rows.push((
                format!("c{j}-{i}"),
                format!("c{j}"),
                near(centre, &mut rng, 0.3),
            ));
        }
    }
    let mut m = VisualMemory::with_params(DIM, params).unwrap();
    for chunk in rows.chunks(64) {
        let batch: Vec<(&str, &str, &[f32])> = chunk
            .iter()
            .map(|(id, label, v)| (id.as_str(), label.as_str(), v.as_slice()))
            .collect();
        m.upsert_batch(&batch).unwrap();
    }
    (m, centres)
}

fn ids_of(m: &VisualMemory, hits: &[mnemos_visual::Hit]) -> Vec<String> {
    hits.iter().map(|h| m.item(h.slot).id.clone()).collect()
}

#[test]
fn graph_mode_starts_at_the_threshold() {
    let mut m = VisualMemory::with_params(DIM, graph_params(200)).unwrap();
    let mut rng = Lcg(1);
    for i in 0..199 {
        m.upsert(&format!("x{i}"), "x", &rng.vector()).unwrap();
    }
    assert!(!m.is_graph());
    assert_eq!(m.stats().graph_points, 0);
    m.upsert("x199", "y", &rng.vector()).unwrap();
    let stats = m.stats();
    assert!(stats.graph && m.is_graph());
    assert_eq!(
        (stats.items, stats.classes, stats.graph_points),
        (200, 2, 200)
    );
    // Every item is still found, now through the graph.
    for (item, v) in m.iter().collect::<Vec<_>>() {
        let hits = m.search(&v, 1, None);
        assert_eq!(m.item(hits[0].slot).id, item.id);
    }

    // One batch that crosses the threshold builds the graph part-way.
    let mut rows = Vec::new();
    for i in 0..500 {
        rows.push((format!("b{i}"), rng.vector()));
    }
    let batch: Vec<(&str, &str, &[f32])> = rows
        .iter()
        .map(|(id, v)| (id.as_str(), "b", v.as_slice()))
        .collect();
    let mut m = VisualMemory::with_params(DIM, graph_params(200)).unwrap();
    m.upsert_batch(&batch).unwrap();
    assert!(m.is_graph());
    assert_eq!((m.len(), m.stats().graph_points), (500, 500));
    assert!(VisualMemory::with_params(DIM, graph_params(0))
        .unwrap()
        .is_graph());
}

#[test]
fn graph_results_match_exact_search_on_separated_clusters() {
    let (graph, centres) = clustered(graph_params(200), 20, 30);
    let (flat, _) = clustered(VisualParams::default(), 20, 30);
    assert!(graph.is_graph() && !flat.is_graph());
    let mut rng = Lcg(77);
    for (j, centre) in centres.iter().enumerate() {
        for _ in 0..3 {
            let q = graph.normalised(&near(centre, &mut rng, 0.3)).unwrap();
            let approx = ids_of(&graph, &graph.search(&q, 10, None));
            assert_eq!(approx, ids_of(&graph, &graph.search_exact(&q, 10).unwrap()));
            assert_eq!(approx, ids_of(&flat, &flat.search(&q, 10, None)));
            let g = graph.classify(&q, 10, Aggregation::RankVoting).unwrap();
            let f = flat.classify(&q, 10, Aggregation::RankVoting).unwrap();
            assert_eq!(g.label.as_deref(), Some(format!("c{j}").as_str()));
            assert_eq!(g.label, f.label);
            assert_eq!(g.neighbors.len(), 10);
            let wide = graph
                .classify_with_ef(&q, 10, Aggregation::RankVoting, Some(400))
                .unwrap();
            assert_eq!(wide.label, g.label);
        }
    }
    assert!(graph
        .classify_with_ef(&centres[0], 10, Aggregation::RankVoting, Some(0))
        .is_err());
}

#[test]
fn removed_items_and_classes_never_come_back_in_graph_mode() {
    let (mut m, centres) = clustered(graph_params(200), 20, 30);
    let all: Vec<(String, Vec<f32>)> = m
        .iter()
        .map(|(item, v)| (item.id.clone(), v.into_owned()))
        .collect();
    let gone: Vec<String> = (0..20)
        .flat_map(|j| (0..5).map(move |i| format!("c{j}-{i}")))
        .collect();
    let refs: Vec<&str> = gone.iter().map(String::as_str).collect();
    assert_eq!(m.remove_many(&refs).len(), 100);
    assert!(!m.remove("c0-0"));
    let class: Vec<String> = m.remove_class("c3");
    assert_eq!(class.len(), 25);
    assert_eq!(m.len(), 600 - 100 - 25);
    assert!(m.is_graph());
    let stats = m.stats();
    assert_eq!((stats.items, stats.classes), (475, 19));
    for (id, v) in &all {
        let hidden = gone.contains(id) || id.starts_with("c3-");
        assert_eq!(m.contains(id), !hidden, "{id}");
        for hits in [m.search(v, 50, None), m.search_exact(v, 50).unwrap()] {
            for hit in hits {
                let item = m.item(hit.slot);
                assert!(!gone.contains(&item.id) && item.label != "c3", "{id}");
            }
        }
    }
    let d = m.classify(&centres[3], 50, Aggregation::Plurality).unwrap();
    assert!(d.scores.iter().all(|(l, _)| l != "c3"));
    assert!(d.neighbors.iter().all(|v| v.label != "c3"));
}

#[test]
fn upsert_replaces_an_item_in_graph_mode() {
    let (mut m, centres) = clustered(graph_params(200), 20, 30);
    let old = m.embedding("c0-0").unwrap();
    m.upsert("c0-0", "c5", &centres[5]).unwrap();
    assert_eq!((m.len(), m.stats().classes), (600, 20));
    let q = m.normalised(&centres[5]).unwrap();
    let hits = m.search(&q, 1, None);
    let item = m.item(hits[0].slot);
    assert_eq!((item.id.as_str(), item.label.as_str()), ("c0-0", "c5"));
    assert!(hits[0].distance.abs() < 1e-5);
    assert_eq!(m.embedding("c0-0").unwrap(), q);
    // The old vector is gone: nothing sits exactly where it was.
    let hits = m.search_exact(&old, 1).unwrap();
    assert!(hits[0].distance > 1e-4, "{hits:?}");
    assert_ne!(m.item(hits[0].slot).id, "c0-0");
}

#[test]
fn pruning_finds_the_mislabelled_samples_in_graph_mode() {
    let (mut m, centres) = clustered(graph_params(200), 2, 150);
    let mut rng = Lcg(11);
    for i in 0..2 {
        m.upsert(
            &format!("liar-{i}"),
            "c1",
            &near(&centres[0], &mut rng, 0.1),
        )
        .unwrap();
    }
    assert!(m.is_graph());
    let mut soft = m.clone();
    assert!(soft.is_graph());
    let report = soft.prune(Prune::Soft { k: 10 }).unwrap();
    assert_eq!(report.examined, 302);
    let liar = report.downweighted().find(|(id, _)| id == "liar-0");
    assert!(liar.expect("the planted sample is down-weighted").1 < 0.5);

    let report = m
        .prune(Prune::Hard {
            k: 10,
            threshold: 5,
        })
        .unwrap();
    let removed: Vec<&str> = report.removed.iter().map(|r| r.0.as_str()).collect();
    assert!(
        removed.contains(&"liar-0") && removed.contains(&"liar-1"),
        "{removed:?}"
    );
    assert!(
        removed.iter().all(|id| id.starts_with("liar-")),
        "{removed:?}"
    );
    assert!(!m.contains("liar-0"));
    let d = m.classify(&centres[0], 20, Aggregation::Plurality).unwrap();
    assert!(d.neighbors.iter().all(|v| !v.id.starts_with("liar-")));
}
