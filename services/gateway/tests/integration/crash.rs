//! Crash consistency: the real binary is `kill -9`ed at random moments while
//! two writers stream document and visual-memory upserts and removals at
//! it. After every restart each acknowledged operation is checked: nothing
//! acknowledged is lost, nothing removed is served again, and every index
//! agrees with the store. The one operation in flight at the kill has an
//! unknown outcome; either its before- or its after-state is accepted, and
//! whichever the server shows becomes the expected state from then on.
//!
//! `MNEMOS_CRASH_KILLS` sets the number of kills (10 by default, the CI
//! form); `scripts/crash-test.sh` runs the long form.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mnemos_models_core::rng::SplitMix64;

use crate::common::model_dir;
use crate::server::Server;

const DOCS: usize = 24;
const ITEMS: usize = 24;
const DIM: usize = 8;
const LABELS: usize = 3;
/// Embeddings-only visual memory; no language models (their start-up,
/// embedding the memory bank, would dominate every restart).
const ENV: [(&str, &str); 3] = [
    ("MNEMOS__VISUAL__ENCODER", "false"),
    ("MNEMOS__VISUAL__DIM", "8"),
    ("MNEMOS__LM__ENABLED", "false"),
];

/// A document's expected state: its version, or removed / never written.
type DocState = Option<u64>;
/// A visual item's expected state: (version, label).
type ItemState = Option<(u64, usize)>;

/// What the server must hold, plus each writer's operation in flight.
#[derive(Default)]
struct Model {
    docs: BTreeMap<usize, DocState>,
    items: BTreeMap<usize, ItemState>,
    /// Doc ids and the state they would have if the op in flight landed.
    pending_docs: Vec<(usize, DocState)>,
    pending_items: Vec<(usize, ItemState)>,
    /// The newest versions sent per item (to probe removed ones with).
    item_versions: BTreeMap<usize, Vec<u64>>,
    acknowledged: u64,
    /// Of those, document writes.
    acknowledged_docs: u64,
}

fn doc_id(i: usize) -> String {
    format!("crash-d{i}")
}

fn item_id(i: usize) -> String {
    format!("crash-i{i}")
}

/// The one query term that finds version `v` of document `i` only.
fn token(i: usize, v: u64) -> String {
    format!("kw{i}x{v}")
}

fn doc_text(i: usize, v: u64) -> String {
    format!(
        "Crash ledger entry {i} version {v} carries the marker {}.",
        token(i, v)
    )
}

/// A unit vector for (item, version), distinct for every pair.
fn embedding(i: usize, v: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new((i as u64) << 32 | v);
    let mut e: Vec<f32> = (0..DIM)
        .map(|_| (rng.next_u64() % 2001) as f32 / 1000.0 - 1.0)
        .collect();
    let norm = e.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-3);
    e.iter_mut().for_each(|x| *x /= norm);
    e
}

/// Versions are globally increasing, so a (doc, version) pair is unique.
static VERSION: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

fn next_version() -> u64 {
    VERSION.fetch_add(1, Ordering::SeqCst)
}

/// Sends one random document write; `Err` once the server is gone.
fn doc_op(server: &Server, rng: &mut SplitMix64, model: &Mutex<Model>) -> Result<(), ()> {
    let i = rng.below(DOCS);
    let batch_remove = rng.below(6) == 0;
    let remove = !batch_remove && rng.below(3) == 0;
    let (targets, result) = if batch_remove {
        let ids: Vec<usize> = (0..3).map(|_| rng.below(DOCS)).collect();
        let pending: Vec<(usize, DocState)> = ids.iter().map(|&d| (d, None)).collect();
        model.lock().unwrap().pending_docs = pending.clone();
        let names: Vec<String> = ids.iter().map(|&d| doc_id(d)).collect();
        let body = serde_json::json!({ "ids": names });
        (
            pending,
            server.try_post("/v1/admin/documents/delete", &body, true),
        )
    } else if remove {
        model.lock().unwrap().pending_docs = vec![(i, None)];
        (
            vec![(i, None)],
            server.try_delete(&format!("/v1/admin/documents/{}", doc_id(i))),
        )
    } else {
        let v = next_version();
        model.lock().unwrap().pending_docs = vec![(i, Some(v))];
        let body = serde_json::json!({"documents": [{
            "id": doc_id(i), "title": format!("Ledger {i}"), "text": doc_text(i, v)
        }]});
        (
            vec![(i, Some(v))],
            server.try_post("/v1/admin/documents", &body, true),
        )
    };
    let (status, body) = result.map_err(|_| ())?;
    let mut m = model.lock().unwrap();
    // A single remove of an absent id is a 404: acknowledged all the same.
    assert!(
        status == 200 || (remove && status == 404),
        "write answered {status}: {body}"
    );
    for (d, state) in targets {
        m.docs.insert(d, state);
    }
    m.pending_docs.clear();
    m.acknowledged += 1;
    m.acknowledged_docs += 1;
    Ok(())
}

/// Sends one random visual-memory write; `Err` once the server is gone.
fn item_op(server: &Server, rng: &mut SplitMix64, model: &Mutex<Model>) -> Result<(), ()> {
    let i = rng.below(ITEMS);
    let choice = rng.below(10);
    let (targets, result): (Vec<(usize, ItemState)>, _) = if choice == 0 {
        // Unlearn a whole class.
        let label = rng.below(LABELS);
        let members: Vec<(usize, ItemState)> = {
            let mut m = model.lock().unwrap();
            let members: Vec<_> = m
                .items
                .iter()
                .filter(|(_, s)| matches!(s, Some((_, l)) if *l == label))
                .map(|(&k, _)| (k, None))
                .collect();
            m.pending_items = members.clone();
            members
        };
        (
            members,
            server.try_delete(&format!("/v1/admin/visual/classes/L{label}")),
        )
    } else if choice <= 3 {
        model.lock().unwrap().pending_items = vec![(i, None)];
        (
            vec![(i, None)],
            server.try_delete(&format!("/v1/admin/visual/memories/{}", item_id(i))),
        )
    } else {
        let (v, label) = (next_version(), rng.below(LABELS));
        {
            let mut m = model.lock().unwrap();
            m.pending_items = vec![(i, Some((v, label)))];
            let sent = m.item_versions.entry(i).or_default();
            sent.push(v);
            if sent.len() > 3 {
                sent.remove(0);
            }
        }
        let body = serde_json::json!({"items": [{
            "id": item_id(i), "label": format!("L{label}"), "embedding": embedding(i, v)
        }]});
        (
            vec![(i, Some((v, label)))],
            server.try_post("/v1/admin/visual/memories", &body, true),
        )
    };
    let (status, body) = result.map_err(|_| ())?;
    let mut m = model.lock().unwrap();
    assert!(
        status == 200 || (choice <= 3 && status == 404),
        "visual write answered {status}: {body}"
    );
    for (k, state) in targets {
        m.items.insert(k, state);
    }
    m.pending_items.clear();
    m.acknowledged += 1;
    Ok(())
}

/// What the server holds for document `i`: `Some(version)` or `None`.
fn served_doc(server: &Server, i: usize) -> DocState {
    let (status, body) = server.get(&format!("/v1/admin/documents/{}", doc_id(i)));
    match status {
        404 => None,
        200 => {
            let text = body["text"].as_str().unwrap_or_default();
            let v = text
                .split(" version ")
                .nth(1)
                .and_then(|t| t.split(' ').next())
                .and_then(|t| t.parse().ok());
            assert!(v.is_some(), "unexpected text for {}: {body}", doc_id(i));
            v
        }
        s => panic!("GET {} answered {s}: {body}", doc_id(i)),
    }
}

/// The nearest neighbours of `e`: (id, label, distance).
fn neighbours(server: &Server, e: &[f32], k: usize) -> Vec<(String, String, f64)> {
    let body = serde_json::json!({"embedding": e, "k": k});
    let (st, resp) = server.post("/v1/visual/classify", &body, false);
    assert_eq!(st, 200, "{resp}");
    resp["neighbors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| {
            (
                n["id"].as_str().unwrap_or_default().to_string(),
                n["label"].as_str().unwrap_or_default().to_string(),
                n["distance"].as_f64().unwrap_or(f64::MAX),
            )
        })
        .collect()
}

/// The state the server holds for item `i`, probing with the vector of
/// every version it may hold: present means that exact vector (distance
/// ~0) is stored under its id.
fn served_item(server: &Server, i: usize, versions: &[u64]) -> ItemState {
    for &v in versions {
        let hits = neighbours(server, &embedding(i, v), ITEMS);
        let mine: Vec<_> = hits.iter().filter(|h| h.0 == item_id(i)).collect();
        assert!(mine.len() <= 1, "{} served twice: {hits:?}", item_id(i));
        if let Some((_, label, d)) = mine.first() {
            if *d < 1e-4 {
                let l = label.trim_start_matches('L').parse().expect("label Ln");
                return Some((v, l));
            }
        }
    }
    None
}

/// Checks the restarted server against the model; settles the operations
/// that were in flight at the kill. Returns the number of checks made.
fn verify(server: &Server, m: &mut Model, history: &BTreeMap<usize, Vec<u64>>) -> usize {
    let mut checks = 0;
    let pending: BTreeMap<usize, DocState> = m.pending_docs.drain(..).collect();
    for i in 0..DOCS {
        let expected = m.docs.get(&i).copied().flatten();
        let got = served_doc(server, i);
        match pending.get(&i) {
            Some(after) if got == *after => {
                m.docs.insert(i, *after);
            }
            _ => assert_eq!(
                got,
                expected,
                "{}: acknowledged state lost or removed state resurrected",
                doc_id(i)
            ),
        }
        checks += 1;
        // BM25 must agree with the store: the current version is found by
        // its token, every older or removed version never.
        for &v in history.get(&i).into_iter().flatten() {
            let (ids, _) = server.search_full(&token(i, v), "bm25");
            let served = ids.contains(&doc_id(i));
            assert_eq!(
                served,
                got == Some(v),
                "bm25 for {} version {v}: served {served}, store holds {got:?}",
                doc_id(i)
            );
            checks += 1;
        }
    }
    let pending: BTreeMap<usize, ItemState> = m.pending_items.drain(..).collect();
    let mut landed = 0;
    for i in 0..ITEMS {
        let expected = m.items.get(&i).copied().flatten();
        let after = pending.get(&i).copied();
        let mut versions: Vec<u64> = [expected, after.flatten()]
            .into_iter()
            .flatten()
            .map(|(v, _)| v)
            .chain(m.item_versions.get(&i).into_iter().flatten().copied())
            .collect();
        versions.dedup();
        let got = served_item(server, i, &versions);
        match after {
            Some(a) if got == a => {
                m.items.insert(i, a);
                landed += 1;
            }
            _ => assert_eq!(
                got,
                expected,
                "{}: acknowledged visual state lost or removed state served",
                item_id(i)
            ),
        }
        checks += 1;
    }
    // A class removal is one logged edit: all of it or none.
    assert!(
        landed == 0 || landed == pending.len(),
        "class removal half applied: {landed} of {pending:?}"
    );
    let (_, stats) = server.get("/v1/stats");
    let live_docs = m.docs.values().filter(|s| s.is_some()).count();
    assert_eq!(stats["documents"], live_docs, "{stats}");
    for (backend, n) in stats["backends"].as_object().unwrap() {
        assert_eq!(n, &serde_json::json!(live_docs), "{backend}: {stats}");
    }
    let live_items = m.items.values().filter(|s| s.is_some()).count();
    assert_eq!(stats["visual"]["items"], live_items, "{stats}");
    checks + 2
}

fn kills() -> usize {
    std::env::var("MNEMOS_CRASH_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(10)
}

#[test]
fn acknowledged_writes_survive_random_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let model = Arc::new(Mutex::new(Model::default()));
    let mut history: BTreeMap<usize, Vec<u64>> = BTreeMap::new();
    let mut rng = SplitMix64::new(0x5eed);
    let mut checks = 0;
    let kills = kills();
    let started = std::time::Instant::now();
    for round in 0..kills {
        let server = Arc::new(Server::start_with(dir.path(), &ENV));
        {
            let mut m = model.lock().unwrap();
            checks += verify(&server, &mut m, &history);
        }
        let stop = Arc::new(AtomicBool::new(false));
        let writers: Vec<_> = [0u64, 1]
            .into_iter()
            .map(|w| {
                let (server, model, stop) =
                    (Arc::clone(&server), Arc::clone(&model), Arc::clone(&stop));
                let mut rng = SplitMix64::new(round as u64 * 2 + w + 1);
                std::thread::spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let sent = if w == 0 {
                            doc_op(&server, &mut rng, &model)
                        } else {
                            item_op(&server, &mut rng, &model)
                        };
                        if sent.is_err() {
                            break;
                        }
                    }
                })
            })
            .collect();
        // A random moment: most kills land mid-write.
        std::thread::sleep(Duration::from_millis(100 + rng.below(1400) as u64));
        let pid = server.pid();
        std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status()
            .unwrap();
        stop.store(true, Ordering::SeqCst);
        for w in writers {
            w.join().expect("writer thread");
        }
        drop(server);
        // The newest versions sent per document, for the stale-index checks
        // (older ones were checked in earlier rounds).
        let m = model.lock().unwrap();
        let sent = m.docs.iter().map(|(&i, &s)| (i, s));
        for (i, s) in sent.chain(m.pending_docs.iter().copied()) {
            if let Some(v) = s {
                let h = history.entry(i).or_default();
                if !h.contains(&v) {
                    h.push(v);
                }
                if h.len() > 3 {
                    h.remove(0);
                }
            }
        }
    }
    let server = Server::start_with(dir.path(), &ENV);
    let mut m = model.lock().unwrap();
    checks += verify(&server, &mut m, &history);
    server.stop();
    eprintln!(
        "crash test: {kills} kills, {} acknowledged writes ({} of documents), {checks} checks, 0 lost, 0 resurrected (dense: {}) in {:.0} s",
        m.acknowledged,
        m.acknowledged_docs,
        model_dir().is_some(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        m.acknowledged > kills as u64,
        "too few writes to prove much"
    );
}
