//! Behaviour of the visual memory on synthetic clustered embeddings: each
//! class is a cloud of points around its own random centre.

use mnemos_visual::{Aggregation, Prune, VisualMemory};

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

fn accuracy(m: &mut VisualMemory, label: &str, centre: &[f32], agg: Aggregation) -> f32 {
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
    let (mut m, centres) = memory(&classes, 30);
    for agg in Aggregation::ALL {
        for (label, centre) in classes.iter().zip(&centres) {
            let acc = accuracy(&mut m, label, centre, agg);
            assert!(acc > 0.95, "{} on {label}: {acc}", agg.name());
        }
    }
}

#[test]
fn decisions_name_the_neighbours_that_made_them() {
    let (mut m, centres) = memory(&["ant", "bee"], 20);
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
        .map(|(l, c)| accuracy(&mut m, l, c, Aggregation::RankVoting))
        .collect();
    let removed = m.remove_class("cat");
    assert_eq!(removed.len(), 25);
    assert_eq!(m.len(), 75);
    for (i, (label, centre)) in classes.iter().zip(&centres).enumerate() {
        let after = accuracy(&mut m, label, centre, Aggregation::RankVoting);
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
    let mut empty = VisualMemory::new(DIM).unwrap();
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
    let liar = report.downweighted.iter().find(|(id, _)| id == "liar-0");
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
    let (mut m, _) = memory(&["ant", "bee", "cat"], 10);
    let r = m.distance_range();
    assert!(r.min >= 0.0 && r.min < r.max && r.max <= 2.0, "{r:?}");
}
