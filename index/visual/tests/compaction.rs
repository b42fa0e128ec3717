//! Log compaction alongside edits: a new log written chunk by chunk while
//! the memory is edited between chunks (or by another thread) replays to
//! exactly the live state, and an abandoned one changes nothing.

use std::sync::Arc;

use parking_lot::RwLock;

use mnemos_visual::{compact_shared, DurableMemory, NewItem, Prune, VisualParams};

const DIM: usize = 8;

fn v(seed: usize) -> Vec<f32> {
    (0..DIM)
        .map(|i| ((seed * 7919 + i * 104_729) % 1009) as f32 / 1009.0 - 0.5)
        .collect()
}

type State = Vec<(String, String, Vec<u32>, u32, Option<String>)>;

/// Everything a replay must restore, bit for bit, sorted by id.
fn state(m: &DurableMemory) -> State {
    let mut s: State = m
        .memory()
        .iter()
        .map(|(it, row)| {
            (
                it.id.clone(),
                it.label.clone(),
                row.iter().map(|x| x.to_bits()).collect(),
                it.multiplier.to_bits(),
                it.metadata.as_deref().map(str::to_owned),
            )
        })
        .collect();
    s.sort();
    s
}

fn upsert(m: &mut DurableMemory, ids: impl Iterator<Item = usize>, label: &str, seed: usize) {
    let rows: Vec<(String, Vec<f32>, String)> = ids
        .map(|i| {
            (
                format!("i{i:05}"),
                v(i + seed),
                format!("{{\"n\":{}}}", i + seed),
            )
        })
        .collect();
    let items: Vec<NewItem<'_>> = rows
        .iter()
        .map(|(id, e, meta)| NewItem {
            id,
            label,
            embedding: e,
            metadata: Some(meta),
        })
        .collect();
    m.upsert_items(&items).unwrap();
}

fn remove(m: &mut DurableMemory, ids: impl Iterator<Item = usize>) {
    let ids: Vec<String> = ids.map(|i| format!("i{i:05}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    m.remove(&refs).unwrap();
}

/// A memory of 3,000 items in three classes with soft-pruning
/// multipliers, opened so that commits leave compaction to the caller.
fn filled(dir: &std::path::Path) -> DurableMemory {
    let mut m = DurableMemory::open_deferred(dir, DIM, VisualParams::default()).unwrap();
    for (c, label) in ["a", "b", "c"].iter().enumerate() {
        upsert(&mut m, (c * 1000)..(c + 1) * 1000, label, 0);
    }
    m.prune(Prune::Soft { k: 5 }).unwrap();
    m
}

#[test]
fn edits_between_the_chunks_of_a_compaction_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = filled(dir.path());
    let mut job = m.begin_compaction().unwrap();
    assert!(m.begin_compaction().is_err(), "one compaction at a time");
    let mut chunks = 0;
    while let Some(op) = m.compaction_chunk(&mut job) {
        job.write(&op).unwrap();
        // Removals low in the table move items from the top (copied
        // already) into holes not yet copied; upserts replace items in
        // place and add new ones at the end; a prune rewrites multipliers.
        match chunks % 4 {
            0 => remove(&mut m, (chunks * 10..chunks * 10 + 40).chain(2950..2960)),
            1 => upsert(
                &mut m,
                (100..140).chain(5000 + chunks..5010 + chunks),
                "d",
                1,
            ),
            2 => {
                m.remove_class("b").unwrap();
            }
            _ => {
                m.prune(Prune::Soft { k: 3 }).unwrap();
            }
        }
        chunks += 1;
    }
    assert!(chunks >= 4, "the snapshot took {chunks} chunks");
    m.finish_compaction(job).unwrap();
    let live = state(&m);
    assert!(
        live.iter().any(|r| r.3 != 1f32.to_bits()),
        "multipliers kept"
    );
    assert!(
        live.iter().all(|r| r.1 != "b"),
        "the class removed stays removed"
    );
    // The log now starts with the snapshot; edits still append to it.
    upsert(&mut m, 9000..9003, "e", 2);
    let live = state(&m);
    drop(m);
    let m = DurableMemory::open(dir.path(), DIM).unwrap();
    assert_eq!(state(&m), live);
}

#[test]
fn an_abandoned_compaction_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = filled(dir.path());
    let log = std::fs::read(dir.path().join("visual.log")).unwrap();
    let mut job = m.begin_compaction().unwrap();
    let op = m.compaction_chunk(&mut job).unwrap();
    job.write(&op).unwrap();
    m.abandon_compaction(job);
    assert!(!dir.path().join("visual.log.tmp").exists());
    assert_eq!(std::fs::read(dir.path().join("visual.log")).unwrap(), log);
    let live = state(&m);
    m.compact().unwrap();
    drop(m);
    assert_eq!(state(&DurableMemory::open(dir.path(), DIM).unwrap()), live);
}

#[test]
fn a_compaction_on_another_thread_keeps_every_concurrent_edit() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = filled(dir.path());
    // Grow the log past the compaction threshold (twice the live state
    // plus 8 MiB): rewrite the same items with 1 KiB of metadata each.
    let meta = "m".repeat(1000);
    let vectors: Vec<Vec<f32>> = (0..3000).map(v).collect();
    let ids: Vec<String> = (0..3000).map(|i| format!("i{i:05}")).collect();
    while !m.wants_compaction() {
        let items: Vec<NewItem<'_>> = (0..3000)
            .map(|i| NewItem {
                id: &ids[i],
                label: "a",
                embedding: &vectors[i],
                metadata: Some(&meta),
            })
            .collect();
        m.upsert_items(&items).unwrap();
    }
    let grown = m.log_bytes();
    let shared = Arc::new(RwLock::new(m));
    let writer = {
        let shared = Arc::clone(&shared);
        std::thread::spawn(move || {
            for round in 0..200 {
                let mut m = shared.write();
                upsert(&mut m, 6000 + round * 5..6005 + round * 5, "w", round);
                remove(&mut m, [round * 7, 6000 + round * 5].into_iter());
            }
        })
    };
    let installed = compact_shared(|| Some(Arc::clone(&shared))).unwrap();
    writer.join().unwrap();
    assert!(installed);
    // The replaced log is deleted once the lock is let go.
    assert!(!dir.path().join("visual.log.old").exists());
    assert!(!dir.path().join("visual.log.tmp").exists());
    let m = Arc::try_unwrap(shared).unwrap().into_inner();
    assert!(!m.wants_compaction());
    assert!(m.log_bytes() < grown / 2, "{} vs {grown}", m.log_bytes());
    let live = state(&m);
    assert_eq!(live.len(), 3000 - 200 + 200 * 4);
    drop(m);
    assert_eq!(state(&DurableMemory::open(dir.path(), DIM).unwrap()), live);
}
