//! Behaviour of `HypencoderIndex` through its public API: the neighbour
//! graph against brute force, removals, searches against exhaustive
//! scoring, persistence and bad input.

mod support;

use std::collections::{HashMap, HashSet};

use mnemos_hypencoder_index::{GraphParams, GraphSearch, HypencoderIndex};
use mnemos_index_core::{IndexError, IndexWrite};
use support::{entries, id, model, qnets, Embeddings};

const DIM: usize = 32;

fn index(neighbors: usize) -> HypencoderIndex {
    HypencoderIndex::new(DIM, GraphParams { neighbors }).expect("valid params")
}

fn upsert_all(index: &HypencoderIndex, ids: &[String], vectors: &[Vec<f32>]) {
    index.upsert(&entries(ids, vectors)).expect("upsert");
}

fn sq_l2(a: &[f32], b: &[f32]) -> f64 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum()
}

/// Checks every live list against brute force over `live`: the same
/// distances (to rounding), only live ids, never the owner itself.
fn assert_graph_exact(index: &HypencoderIndex, live: &HashMap<String, Vec<f32>>, k: usize) {
    for (owner, v) in live {
        let mut truth: Vec<f64> = live
            .iter()
            .filter(|(other, _)| *other != owner)
            .map(|(_, w)| sq_l2(v, w))
            .collect();
        truth.sort_by(f64::total_cmp);
        truth.truncate(k);
        let list = index.neighbors(owner).expect("live id has a list");
        assert_eq!(list.len(), truth.len(), "list length of {owner}");
        for ((neighbor, d), t) in list.iter().zip(&truth) {
            assert!(neighbor != owner, "{owner} lists itself");
            let exact = sq_l2(v, &live[neighbor]);
            assert!(
                (exact - t).abs() < 1e-4,
                "{owner}: {neighbor} at {exact}, expected {t}"
            );
            assert!(
                (f64::from(*d) - exact).abs() < 1e-4,
                "stored distance of {neighbor}"
            );
        }
    }
}

#[test]
fn graph_equals_brute_force_knn_after_inserts_of_any_batch_size() {
    let mut gen = Embeddings::new(DIM, 20, 1);
    let vectors = gen.samples(700);
    let ids: Vec<String> = (0..vectors.len()).map(id).collect();
    let index = index(12);
    let mut live = HashMap::new();
    // Single documents (plain dot products), a few (below the list
    // length), a gemm-sized batch, one larger than a link chunk, the rest.
    let mut start = 0;
    for size in [1, 1, 5, 20, 13, 400, 260] {
        let end = start + size;
        upsert_all(&index, &ids[start..end], &vectors[start..end]);
        for i in start..end {
            live.insert(ids[i].clone(), vectors[i].clone());
        }
        assert_graph_exact(&index, &live, 12);
        start = end;
    }
    assert_eq!(start, vectors.len());
    assert_eq!(index.len(), 700);
    assert_eq!(index.stats().edges, 700 * 12);
}

#[test]
fn removed_documents_leave_every_list_and_every_result() {
    let mut gen = Embeddings::new(DIM, 10, 2);
    let vectors = gen.samples(500);
    let ids: Vec<String> = (0..vectors.len()).map(id).collect();
    let index = index(10);
    upsert_all(&index, &ids, &vectors);
    let removed: Vec<&str> = ids.iter().step_by(3).map(String::as_str).collect();
    index.remove(&removed).unwrap();
    index.remove(&["doc-1", "never-there"]).unwrap();
    let gone: HashSet<&str> = removed.iter().copied().chain(["doc-1"]).collect();
    assert_eq!(index.len(), 500 - gone.len());
    for removed in &gone {
        assert!(index.neighbors(removed).is_none());
        assert!(index.get_vector(removed).is_none());
    }
    let mut short = 0;
    for id in ids.iter().filter(|id| !gone.contains(id.as_str())) {
        let list = index.neighbors(id).unwrap();
        assert!(list.iter().all(|(n, _)| !gone.contains(n.as_str())), "{id}");
        short += usize::from(list.len() < 10);
    }
    // Refills come from the removed documents' own lists: most lists are
    // whole again.
    assert!(short * 10 < index.len(), "{short} short lists");

    let model = model(DIM, 2, 3);
    let queries = qnets(&model, 6, 5, 0.5, 4);
    let all = GraphSearch {
        entry_points: 10_000,
        ..GraphSearch::default()
    };
    let small = GraphSearch {
        entry_points: 8,
        candidates: 4,
        ..GraphSearch::default()
    };
    for hits in index.search_exhaustive(&queries, 1000).unwrap() {
        assert_eq!(hits.len(), index.len());
        assert!(hits.iter().all(|h| !gone.contains(h.id.as_str())));
    }
    for search in [all, small] {
        for outcome in index.search_graph(&queries, 50, &search).unwrap() {
            assert!(outcome.hits.iter().all(|h| !gone.contains(h.id.as_str())));
        }
    }

    // A rebuild makes the graph exact again; freed slots are reused.
    index.rebuild_graph().unwrap();
    let mut live: HashMap<String, Vec<f32>> = ids
        .iter()
        .zip(&vectors)
        .filter(|(id, _)| !gone.contains(id.as_str()))
        .map(|(id, v)| (id.clone(), v.clone()))
        .collect();
    assert_graph_exact(&index, &live, 10);
    let slots = index.stats().slots;
    let fresh = gen.samples(100);
    let fresh_ids: Vec<String> = (1000..1100).map(id).collect();
    upsert_all(&index, &fresh_ids, &fresh);
    assert_eq!(index.stats().slots, slots, "freed slots reused");
    live.extend(fresh_ids.into_iter().zip(fresh));
    assert_graph_exact(&index, &live, 10);
}

#[test]
fn graph_search_with_every_document_as_entry_point_is_exhaustive() {
    let mut gen = Embeddings::new(DIM, 10, 5);
    let vectors = gen.samples(300);
    let ids: Vec<String> = (0..300).map(id).collect();
    let index = index(8);
    upsert_all(&index, &ids, &vectors);
    let model = model(DIM, 2, 6);
    let queries = qnets(&model, 4, 6, 0.5, 7);
    let exhaustive = index.search_exhaustive(&queries, 10).unwrap();
    let search = GraphSearch {
        entry_points: 300,
        ..GraphSearch::default()
    };
    let graph = index.search_graph(&queries, 10, &search).unwrap();
    for (e, g) in exhaustive.iter().zip(&graph) {
        assert_eq!(&g.hits, e);
        assert_eq!(g.scored, 300);
        for pair in e.windows(2) {
            assert!(pair[0].score >= pair[1].score, "best first");
        }
    }
}

/// Recall of graph search against exhaustive scoring on clustered vectors
/// with random (untrained) q-nets, scoring under half the collection. At
/// this size and width the walk is far from the 100k × 384 regime of
/// `examples/graph_scale.rs`; the bounds only catch a broken walk.
#[test]
fn graph_search_recovers_the_top_10_on_clustered_data() {
    let mut gen = Embeddings::new(DIM, 300, 8);
    let n = 4000;
    let vectors = gen.samples(n);
    let ids: Vec<String> = (0..n).map(id).collect();
    let index = index(32);
    upsert_all(&index, &ids, &vectors);
    let model = model(DIM, 2, 9);
    let queries = qnets(&model, 20, 8, 0.5, 10);
    let exhaustive = index.search_exhaustive(&queries, 10).unwrap();
    let search = GraphSearch {
        entry_points: 64,
        candidates: 16,
        max_rounds: 16,
        seed: 1,
    };
    let graph = index.search_graph(&queries, 10, &search).unwrap();
    let mut overlap = 0;
    let mut scored = 0;
    for (e, g) in exhaustive.iter().zip(&graph) {
        let truth: HashSet<&str> = e.iter().map(|h| h.id.as_str()).collect();
        overlap += g
            .hits
            .iter()
            .filter(|h| truth.contains(h.id.as_str()))
            .count();
        scored += g.scored;
        assert!(g.rounds <= 16);
        for pair in g.hits.windows(2) {
            assert!(pair[0].score >= pair[1].score, "best first");
        }
    }
    let recall = overlap as f64 / (10 * queries.len()) as f64;
    let mean_scored = scored as f64 / queries.len() as f64;
    assert!(recall >= 0.85, "top-10 recall {recall}");
    assert!(mean_scored < n as f64 / 2.0, "scored {mean_scored} of {n}");
}

#[test]
fn a_replaced_vector_is_the_one_scored_and_stored() {
    let mut gen = Embeddings::new(DIM, 5, 11);
    let vectors = gen.samples(200);
    let ids: Vec<String> = (0..200).map(id).collect();
    let index = index(8);
    upsert_all(&index, &ids, &vectors);
    let model = model(DIM, 2, 12);
    let queries = qnets(&model, 1, 4, 0.5, 13);
    let top = index.search_exhaustive(&queries, 1).unwrap()[0][0].clone();
    let bottom = index.search_exhaustive(&queries, 200).unwrap()[0][199].clone();
    // The worst document takes the best one's vector: it now ties for first.
    let best_vector = index.get_vector(&top.id).unwrap();
    index.upsert(&[(&bottom.id, 7, &best_vector)]).unwrap();
    assert_eq!(index.get_vector(&bottom.id).unwrap(), best_vector);
    assert_eq!(index.seq_of(&bottom.id), Some(7));
    assert_eq!(index.len(), 200);
    let hits = index.search_exhaustive(&queries, 2).unwrap().remove(0);
    let found: HashSet<&str> = hits.iter().map(|h| h.id.as_str()).collect();
    assert_eq!(found, HashSet::from([top.id.as_str(), bottom.id.as_str()]));
    assert!((hits[0].score - hits[1].score).abs() < 1e-5);
    let all = index.search_exhaustive(&queries, 1000).unwrap().remove(0);
    assert_eq!(all.len(), 200, "one version per id");
    // The duplicate is each other's nearest neighbour at distance ~0.
    let list = index.neighbors(&bottom.id).unwrap();
    assert_eq!(list[0].0, top.id);
    assert!(list[0].1 < 1e-5);

    // Repeated ids in one batch: the last wins. The same vector again only
    // updates the seq.
    let a = gen.sample();
    let b = gen.sample();
    index.upsert(&[("doc-3", 8, &a), ("doc-3", 9, &b)]).unwrap();
    assert_eq!(index.get_vector("doc-3").unwrap(), b);
    let slots = index.stats().slots;
    index.upsert(&[("doc-3", 10, &b)]).unwrap();
    assert_eq!(index.seq_of("doc-3"), Some(10));
    assert_eq!(index.stats().slots, slots);
    assert_eq!(index.indexed_versions().unwrap()["doc-3"], 10);
}

#[test]
fn persistence_round_trips_documents_graph_and_results() {
    let dir = tempfile::tempdir().unwrap();
    let mut gen = Embeddings::new(DIM, 8, 14);
    let vectors = gen.samples(300);
    let ids: Vec<String> = (0..300).map(id).collect();
    let params = GraphParams { neighbors: 10 };
    let model = model(DIM, 2, 15);
    let queries = qnets(&model, 3, 5, 0.5, 16);
    let search = GraphSearch {
        entry_points: 16,
        candidates: 4,
        ..GraphSearch::default()
    };
    let (versions, lists, results) = {
        let index = HypencoderIndex::open(dir.path(), DIM, params.clone()).unwrap();
        assert!(index.is_empty());
        upsert_all(&index, &ids, &vectors);
        index.remove(&["doc-7", "doc-8"]).unwrap();
        index.persist().unwrap();
        let lists: Vec<_> = ids.iter().map(|id| index.neighbors(id)).collect();
        let results = index.search_exhaustive(&queries, 10).unwrap();
        (index.indexed_versions().unwrap(), lists, results)
    };
    let index = HypencoderIndex::open(dir.path(), DIM, params).unwrap();
    assert_eq!(index.len(), 298);
    assert_eq!(index.indexed_versions().unwrap(), versions);
    assert_eq!(index.get_vector("doc-5").unwrap(), vectors[5]);
    let reopened: Vec<_> = ids.iter().map(|id| index.neighbors(id)).collect();
    assert_eq!(reopened, lists);
    assert_eq!(index.search_exhaustive(&queries, 10).unwrap(), results);
    // Slots are compacted on disk, so entry points differ; but the walk
    // works on the reopened graph.
    for outcome in index.search_graph(&queries, 10, &search).unwrap() {
        assert_eq!(outcome.hits.len(), 10);
    }

    // Longer lists than stored: rebuilt exactly on open. Shorter: cut.
    let wider = HypencoderIndex::open(dir.path(), DIM, GraphParams { neighbors: 14 }).unwrap();
    let live: HashMap<String, Vec<f32>> = ids
        .iter()
        .zip(&vectors)
        .filter(|(id, _)| *id != "doc-7" && *id != "doc-8")
        .map(|(id, v)| (id.clone(), v.clone()))
        .collect();
    assert_graph_exact(&wider, &live, 14);
    let narrower = HypencoderIndex::open(dir.path(), DIM, GraphParams { neighbors: 4 }).unwrap();
    assert_eq!(
        narrower.neighbors("doc-0").unwrap(),
        lists[0].clone().unwrap()[..4].to_vec()
    );
}

#[test]
fn damaged_files_are_corrupt_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let params = GraphParams { neighbors: 4 };
    {
        let index = HypencoderIndex::open(dir.path(), DIM, params.clone()).unwrap();
        let vectors = Embeddings::new(DIM, 3, 17).samples(20);
        let ids: Vec<String> = (0..20).map(id).collect();
        upsert_all(&index, &ids, &vectors);
        index.persist().unwrap();
    }
    let file = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_file())
        .expect("index file");
    let bytes = std::fs::read(&file).unwrap();
    for damaged in [bytes[..bytes.len() / 2].to_vec(), {
        let mut b = bytes.clone();
        b[bytes.len() / 3] ^= 1;
        b
    }] {
        std::fs::write(&file, &damaged).unwrap();
        match HypencoderIndex::open(dir.path(), DIM, params.clone()) {
            Err(IndexError::Corrupt(_)) => {}
            Err(other) => panic!("expected Corrupt, got {other}"),
            Ok(_) => panic!("expected Corrupt, opened"),
        }
    }
    std::fs::write(&file, &bytes).unwrap();
    assert!(matches!(
        HypencoderIndex::open(dir.path(), DIM + 1, params),
        Err(IndexError::InvalidArgument(_))
    ));
}

#[test]
fn bad_input_is_rejected_before_anything_changes() {
    let index = index(4);
    let good = vec![0.1f32; DIM];
    let mut nan = good.clone();
    nan[3] = f32::NAN;
    for bad in [&nan[..], &good[..DIM - 1]] {
        let result = index.upsert(&[("ok", 1, &good), ("bad", 1, bad)]);
        assert!(matches!(result, Err(IndexError::InvalidArgument(_))));
    }
    assert!(index.is_empty());
    assert!(HypencoderIndex::new(0, GraphParams::default()).is_err());
    assert!(HypencoderIndex::new(DIM, GraphParams { neighbors: 0 }).is_err());

    index.upsert(&[("ok", 1, &good)]).unwrap();
    let other_width = model(DIM * 2, 1, 18);
    let queries = qnets(&other_width, 1, 3, 0.5, 19);
    assert!(matches!(
        index.search_exhaustive(&queries, 1),
        Err(IndexError::InvalidArgument(_))
    ));
    let queries = qnets(&model(DIM, 1, 20), 1, 3, 0.5, 21);
    let bad = GraphSearch {
        candidates: 0,
        ..GraphSearch::default()
    };
    match index.search_graph(&queries, 1, &bad) {
        Err(IndexError::InvalidArgument(m)) => assert!(m.contains("candidates"), "{m}"),
        other => panic!("expected InvalidArgument, got {other:?}"),
    }
    assert!(index.search_exhaustive(&queries, 0).unwrap()[0].is_empty());
    let one = index
        .search_graph(&queries, 5, &GraphSearch::default())
        .unwrap();
    assert_eq!(one[0].hits.len(), 1);
}

#[test]
fn searches_run_while_documents_are_written() {
    let index = std::sync::Arc::new(index(8));
    let mut gen = Embeddings::new(DIM, 10, 22);
    let vectors = gen.samples(600);
    let ids: Vec<String> = (0..600).map(id).collect();
    upsert_all(&index, &ids[..300], &vectors[..300]);
    let model = model(DIM, 2, 23);
    let queries = qnets(&model, 2, 4, 0.5, 24);
    let writer = {
        let index = std::sync::Arc::clone(&index);
        let (ids, vectors) = (ids.clone(), vectors.clone());
        std::thread::spawn(move || {
            for start in (300..600).step_by(30) {
                upsert_all(&index, &ids[start..start + 30], &vectors[start..start + 30]);
                let old: Vec<&str> = ids[start - 300..start - 290]
                    .iter()
                    .map(String::as_str)
                    .collect();
                index.remove(&old).unwrap();
            }
        })
    };
    while !writer.is_finished() {
        let search = GraphSearch {
            entry_points: 16,
            ..GraphSearch::default()
        };
        for outcome in index.search_graph(&queries, 10, &search).unwrap() {
            let unique: HashSet<&str> = outcome.hits.iter().map(|h| h.id.as_str()).collect();
            assert_eq!(unique.len(), outcome.hits.len());
        }
    }
    writer.join().unwrap();
    assert_eq!(index.len(), 600 - 100);
}
