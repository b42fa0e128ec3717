//! Behaviour of the document store through its public API, including the
//! crash states a `kill -9` or power loss can leave on disk.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread;

use mnemos_index_core::{Document, Seq};
use mnemos_store::{Store, StoreError, StoreOptions, MAX_ID_BYTES};
use serde_json::json;

fn doc(id: &str, text: &str) -> Document {
    Document {
        id: id.to_string(),
        title: format!("title of {id}"),
        text: text.to_string(),
        metadata: json!({ "len": text.len() }),
    }
}

fn durable() -> StoreOptions {
    StoreOptions::default()
}

/// For tests that write a lot: a process crash (all we simulate) cannot lose
/// unsynced writes, so fsync adds nothing but time.
fn fast() -> StoreOptions {
    StoreOptions {
        fsync: false,
        ..StoreOptions::default()
    }
}

fn ids(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn wal_path(dir: &Path) -> PathBuf {
    dir.join("wal.log")
}

fn snapshot_files(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .expect("store dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "arrow"))
        .collect();
    found.sort();
    found
}

/// Everything a reader can observe, in a comparable form.
fn state(store: &Store) -> (Vec<(Document, Seq)>, Seq) {
    let docs = store
        .documents()
        .into_iter()
        .map(|(d, s)| (Document::clone(&d), s))
        .collect();
    (docs, store.last_seq())
}

/// Writes `n` single-document batches `d0..d{n-1}`, removing every third.
fn churn(store: &Store, n: usize) {
    for i in 0..n {
        store
            .upsert(vec![doc(&format!("d{i}"), &format!("text {i}"))])
            .expect("upsert");
        if i % 3 == 2 {
            store
                .remove(&ids(&[&format!("d{}", i - 1)]))
                .expect("remove");
        }
    }
}

#[test]
fn upsert_get_remove_round_trip() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), durable()).expect("open");
    assert!(store.is_empty());
    assert_eq!(store.last_seq(), 0);

    let seq = store
        .upsert(vec![doc("a", "alpha"), doc("b", "beta")])
        .expect("upsert");
    assert_eq!(seq, 1);
    let (a, version) = store.get("a").expect("a is stored");
    assert_eq!((a.text.as_str(), version), ("alpha", 1));
    assert_eq!(store.version("b"), Some(1));
    assert!(store.contains("b"));
    assert_eq!(store.len(), 2);

    assert_eq!(store.upsert(vec![doc("a", "alpha 2")]).expect("upsert"), 2);
    assert_eq!(store.version("a"), Some(2));

    let (removed, seq) = store.remove(&ids(&["a", "zzz", "a"])).expect("remove");
    assert_eq!((removed, seq), (ids(&["a"]), 3));
    assert!(store.get("a").is_none());
    assert_eq!(store.len(), 1);

    // Nothing to remove: nothing logged, the current seq comes back.
    let wal_before = store.wal_bytes();
    assert_eq!(store.remove(&ids(&["a"])).expect("remove"), (vec![], 3));
    assert_eq!(store.upsert(vec![]).expect("empty batch"), 3);
    assert_eq!(store.wal_bytes(), wal_before);

    let versions = store.versions();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions.get("b"), Some(&1));
}

#[test]
fn duplicate_ids_in_one_batch_last_wins() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), durable()).expect("open");
    store
        .upsert(vec![doc("x", "first"), doc("y", "y"), doc("x", "second")])
        .expect("upsert");
    assert_eq!(store.get("x").expect("x").0.text, "second");
    drop(store);
    let store = Store::open(dir.path(), durable()).expect("reopen");
    assert_eq!(store.get("x").expect("x").0.text, "second");
    assert_eq!(store.len(), 2);
}

#[test]
fn reopen_keeps_documents_and_seqs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), durable()).expect("open");
    churn(&store, 12);
    let before = state(&store);
    drop(store);

    let store = Store::open(dir.path(), durable()).expect("reopen");
    assert_eq!(state(&store), before);
    assert!(store.get("d1").is_none(), "removed ids stay removed");
    assert_eq!(
        store.upsert(vec![doc("new", "")]).expect("upsert"),
        before.1 + 1
    );
}

#[test]
fn a_second_store_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _store = Store::open(dir.path(), durable()).expect("open");
    let second = Store::open(dir.path(), durable());
    assert!(matches!(second, Err(StoreError::Locked(_))));
}

#[test]
fn garbage_after_the_last_record_is_a_torn_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), durable()).expect("open");
    churn(&store, 5);
    let before = state(&store);
    let wal_bytes = store.wal_bytes();
    drop(store);

    let mut wal = OpenOptions::new()
        .append(true)
        .open(wal_path(dir.path()))
        .expect("wal");
    wal.write_all(&[0x17, 0, 0, 0, 0xde, 0xad, 0xbe, 0xef, b'{', b'"'])
        .expect("append garbage");
    drop(wal);

    let store = Store::open(dir.path(), durable()).expect("torn tail is recoverable");
    assert_eq!(state(&store), before);
    assert_eq!(store.wal_bytes(), wal_bytes, "torn bytes are truncated");
    // Appending after the truncation leaves a log that opens cleanly.
    store.upsert(vec![doc("after", "")]).expect("upsert");
    drop(store);
    let store = Store::open(dir.path(), durable()).expect("reopen");
    assert!(store.contains("after"));
}

#[test]
fn a_half_written_last_record_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), durable()).expect("open");
    store.upsert(vec![doc("a", "a")]).expect("upsert");
    store.upsert(vec![doc("b", "b")]).expect("upsert");
    let acknowledged = state(&store);
    let good_len = store.wal_bytes();
    store
        .upsert(vec![doc("c", &"c".repeat(1000))])
        .expect("upsert");
    let full_len = store.wal_bytes();
    drop(store);

    let wal = OpenOptions::new()
        .write(true)
        .open(wal_path(dir.path()))
        .expect("wal");
    wal.set_len(good_len + (full_len - good_len) / 2)
        .expect("truncate mid-record");
    drop(wal);

    let store = Store::open(dir.path(), durable()).expect("torn tail is recoverable");
    assert_eq!(state(&store), acknowledged);
    assert!(!store.contains("c"));
    assert_eq!(store.wal_bytes(), good_len);
    assert_eq!(store.upsert(vec![doc("d", "")]).expect("upsert"), 3);
}

#[test]
fn a_damaged_record_before_valid_ones_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), durable()).expect("open");
    store.upsert(vec![doc("a", "a")]).expect("upsert");
    let second_record = store.wal_bytes();
    store.upsert(vec![doc("b", "bbbb")]).expect("upsert");
    store.upsert(vec![doc("c", "c")]).expect("upsert");
    drop(store);

    let path = wal_path(dir.path());
    let mut bytes = fs::read(&path).expect("wal");
    // A flipped bit in the payload of the second record.
    bytes[second_record as usize + 20] ^= 0x01;
    fs::write(&path, &bytes).expect("write wal");

    match Store::open(dir.path(), durable()) {
        Err(StoreError::Corrupt { offset, .. }) => assert_eq!(offset, second_record),
        Err(other) => panic!("expected corruption, got {other}"),
        Ok(_) => panic!("opened a log with a damaged record in the middle"),
    }
}

#[test]
fn compaction_then_reopen_is_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), durable()).expect("open");
    churn(&store, 30);
    store.remove(&ids(&["d29"])).expect("remove");
    let before = state(&store);

    store.compact().expect("compact");
    assert_eq!(state(&store), before);
    assert_eq!(store.wal_bytes(), 8, "only the log's magic is left");
    let snapshots = snapshot_files(dir.path());
    assert_eq!(snapshots.len(), 1);
    assert!(snapshots[0].ends_with(format!("snapshot-{:020}.arrow", before.1)));

    // Compacting again with nothing new is a no-op.
    store.compact().expect("compact");
    assert_eq!(snapshot_files(dir.path()), snapshots);

    store.upsert(vec![doc("late", "late")]).expect("upsert");
    let before = state(&store);
    drop(store);
    let store = Store::open(dir.path(), durable()).expect("reopen");
    assert_eq!(state(&store), before);
    assert!(!store.contains("d29"));
}

#[test]
fn crash_before_the_snapshot_rename_leaves_the_old_state() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), durable()).expect("open");
    churn(&store, 10);
    store.compact().expect("compact");
    churn(&store, 4);
    let before = state(&store);
    drop(store);

    // A compaction that died while writing its snapshot and its new log.
    let leftover = dir
        .path()
        .join(format!("snapshot-{:020}.arrow.tmp", before.1));
    fs::write(&leftover, b"ARROW1 half written").expect("temp snapshot");
    let leftover_wal = dir.path().join("wal.log.tmp");
    fs::write(&leftover_wal, b"MNMSWAL1").expect("temp wal");

    let store = Store::open(dir.path(), durable()).expect("reopen");
    assert_eq!(state(&store), before);
    assert!(!leftover.exists() && !leftover_wal.exists());
}

#[test]
fn crash_between_snapshot_and_log_trim_replays_only_newer_records() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), durable()).expect("open");
    churn(&store, 10);
    let full_wal = fs::read(wal_path(dir.path())).expect("wal");
    store.compact().expect("compact");
    let before = state(&store);
    drop(store);

    // New snapshot, but the log was never trimmed: every record in it is
    // covered by the snapshot and must not be applied twice.
    fs::write(wal_path(dir.path()), &full_wal).expect("restore full wal");
    let store = Store::open(dir.path(), durable()).expect("reopen");
    assert_eq!(state(&store), before);
    assert_eq!(
        store.upsert(vec![doc("next", "")]).expect("upsert"),
        before.1 + 1
    );
}

#[test]
fn crash_before_old_snapshots_are_deleted_uses_the_newest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), durable()).expect("open");
    churn(&store, 6);
    store.compact().expect("compact");
    let old = snapshot_files(dir.path()).remove(0);
    let old_bytes = fs::read(&old).expect("old snapshot");
    churn(&store, 9);
    store.compact().expect("compact");
    store.remove(&ids(&["d0"])).expect("remove");
    let before = state(&store);
    drop(store);

    fs::write(&old, &old_bytes).expect("resurrect old snapshot");
    let store = Store::open(dir.path(), durable()).expect("reopen");
    assert_eq!(state(&store), before);
    assert!(!old.exists(), "the older snapshot is cleaned up");
}

#[test]
fn a_snapshot_without_a_log_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), durable()).expect("open");
    churn(&store, 3);
    store.compact().expect("compact");
    drop(store);
    fs::remove_file(wal_path(dir.path())).expect("delete wal");
    assert!(matches!(
        Store::open(dir.path(), durable()),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn a_log_whose_snapshot_is_gone_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), durable()).expect("open");
    churn(&store, 3);
    store.compact().expect("compact");
    churn(&store, 2);
    drop(store);
    for snapshot in snapshot_files(dir.path()) {
        fs::remove_file(snapshot).expect("delete snapshot");
    }
    assert!(matches!(
        Store::open(dir.path(), durable()),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn a_growing_log_compacts_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = StoreOptions {
        compact_after_bytes: 4096,
        ..fast()
    };
    let store = Store::open(dir.path(), opts.clone()).expect("open");
    churn(&store, 300);
    assert!(!snapshot_files(dir.path()).is_empty(), "compaction ran");
    assert_eq!(snapshot_files(dir.path()).len(), 1);
    assert!(
        store.wal_bytes() <= 4096,
        "log trimmed: {}",
        store.wal_bytes()
    );
    let before = state(&store);
    drop(store);
    let store = Store::open(dir.path(), opts).expect("reopen");
    assert_eq!(state(&store), before);
    assert_eq!(store.len(), 200);
}

#[test]
fn readers_run_while_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(dir.path(), fast()).expect("open"));
    let writer = {
        let store = Arc::clone(&store);
        thread::spawn(move || {
            for i in 0..400 {
                let id = format!("k{}", i % 50);
                store
                    .upsert(vec![doc(&id, &format!("{i}"))])
                    .expect("upsert");
                if i % 7 == 0 {
                    store.remove(&[id]).expect("remove");
                }
            }
        })
    };
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                let mut last_seen: Seq = 0;
                for n in 0..20_000 {
                    let seq = store.last_seq();
                    assert!(seq >= last_seen, "last_seq never goes back");
                    last_seen = seq;
                    if let Some((d, version)) = store.get(&format!("k{}", (n + r) % 50)) {
                        assert!(version <= store.last_seq());
                        assert!(d.text.parse::<u64>().is_ok());
                    }
                    assert!(store.len() <= 50);
                }
            })
        })
        .collect();
    writer.join().expect("writer");
    for r in readers {
        r.join().expect("reader");
    }
    let before = state(&store);
    drop(store);
    let store = Store::open(dir.path(), fast()).expect("reopen");
    assert_eq!(state(&store), before);
}

#[test]
fn writes_during_compaction_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = StoreOptions {
        compact_after_bytes: 2048,
        ..fast()
    };
    let store = Arc::new(Store::open(dir.path(), opts.clone()).expect("open"));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                for i in 0..300 {
                    let id = format!("w{w}-{}", i % 40);
                    store
                        .upsert(vec![doc(&id, &format!("{i}"))])
                        .expect("upsert");
                    if i % 5 == 0 {
                        store.remove(&[id]).expect("remove");
                    }
                }
            })
        })
        .collect();
    let compactor = {
        let store = Arc::clone(&store);
        thread::spawn(move || {
            for _ in 0..50 {
                store.compact().expect("compact");
            }
        })
    };
    for t in writers {
        t.join().expect("writer");
    }
    compactor.join().expect("compactor");
    let before = state(&store);
    drop(store);
    let store = Store::open(dir.path(), opts).expect("reopen");
    assert_eq!(state(&store), before);
}

#[test]
fn unicode_big_texts_and_any_metadata_survive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let big = "日本語のテキスト🙂 ünïcödé \u{200b}\t\n\"quoted\" \\ ".repeat(60_000);
    let docs = vec![
        Document {
            id: "文書/ü/🙂".into(),
            title: "Ünïcode — title".into(),
            text: big.clone(),
            metadata: json!({"tags": ["a", "ß"], "nested": {"n": 1.5, "ok": true, "none": null}}),
        },
        Document {
            id: "no-metadata".into(),
            title: String::new(),
            text: String::new(),
            metadata: serde_json::Value::Null,
        },
    ];
    let store = Store::open(dir.path(), durable()).expect("open");
    store.upsert(docs.clone()).expect("upsert");
    let before = state(&store);
    assert_eq!(before.0.len(), 2);
    drop(store);

    let store = Store::open(dir.path(), durable()).expect("reopen from log");
    assert_eq!(state(&store), before);
    store.compact().expect("compact");
    drop(store);
    let store = Store::open(dir.path(), durable()).expect("reopen from snapshot");
    assert_eq!(state(&store), before);
    assert_eq!(store.get("文書/ü/🙂").expect("doc").0.text, big);
}

#[test]
fn invalid_ids_are_rejected_and_nothing_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), durable()).expect("open");
    let too_long = "x".repeat(MAX_ID_BYTES + 1);
    for bad in [
        "",
        too_long.as_str(),
        "line\nbreak",
        "nul\0",
        "bell\u{7}",
        "c1\u{85}",
    ] {
        let batch = vec![doc("fine", ""), doc(bad, "")];
        match store.upsert(batch) {
            Err(StoreError::InvalidId(_)) => {}
            other => panic!("{bad:?} was accepted: {other:?}"),
        }
    }
    assert_eq!((store.len(), store.last_seq()), (0, 0));
    let longest = "é".repeat(MAX_ID_BYTES / 2);
    store
        .upsert(vec![doc(&longest, ""), doc("with space and / : ?", "")])
        .expect("valid ids");
    assert_eq!(store.len(), 2);
}

#[test]
fn store_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Store>();
}
