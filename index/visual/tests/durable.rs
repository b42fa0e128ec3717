//! The durable visual memory: acknowledged edits survive reopening, bad
//! batches change nothing, a torn final record is cut off, corruption is
//! refused, and a second process is locked out.

use std::io::Write;

use mnemos_hnsw::HnswParams;
use mnemos_visual::{Aggregation, DurableMemory, Prune, VisualError, VisualParams};

const DIM: usize = 8;

fn v(seed: usize) -> Vec<f32> {
    (0..DIM)
        .map(|i| ((seed * 31 + i * 7) % 13) as f32 - 6.0)
        .collect()
}

fn ids(m: &DurableMemory) -> Vec<String> {
    let mut ids: Vec<String> = m.memory().iter().map(|(it, _)| it.id.clone()).collect();
    ids.sort();
    ids
}

#[test]
fn acknowledged_edits_survive_reopening() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut m = DurableMemory::open(dir.path(), DIM).unwrap();
        let (a, b, c, d) = (v(1), v(2), v(3), v(4));
        m.upsert(&[("a", "ant", &a), ("b", "bee", &b), ("c", "cat", &c)])
            .unwrap();
        m.upsert(&[("d", "cat", &d)]).unwrap();
        assert_eq!(m.remove(&["a", "zzz"]).unwrap(), ["a"]);
        assert_eq!(m.remove_class("cat").unwrap().len(), 2);
        m.upsert(&[("e", "emu", &v(5)), ("b", "ant", &v(6))])
            .unwrap();
    }
    let m = DurableMemory::open(dir.path(), DIM).unwrap();
    assert_eq!(ids(&m), ["b", "e"]);
    let d = m.classify(&v(6), 1, Aggregation::RankVoting).unwrap();
    assert_eq!(d.label.as_deref(), Some("ant"));
    assert!(m
        .classify(&v(3), 5, Aggregation::Plurality)
        .unwrap()
        .scores
        .iter()
        .all(|(l, _)| l != "cat"));
}

#[test]
fn a_bad_batch_changes_nothing_on_disk_or_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut m = DurableMemory::open(dir.path(), DIM).unwrap();
    m.upsert(&[("a", "ant", &v(1))]).unwrap();
    let bytes = m.log_bytes();
    let mut nan = v(2);
    nan[1] = f32::NAN;
    let long = "x".repeat(2000);
    for bad in [
        vec![("b", "bee", v(2).as_slice()), ("c", "cat", nan.as_slice())],
        vec![("b", "bee", &v(2)[..DIM - 1])],
        vec![(long.as_str(), "bee", v(2).as_slice())],
        vec![("b", "", v(2).as_slice())],
    ] {
        let err = m.upsert(&bad).unwrap_err();
        assert!(matches!(err, VisualError::InvalidInput(_)), "{err}");
    }
    assert_eq!(m.log_bytes(), bytes);
    drop(m);
    let m = DurableMemory::open(dir.path(), DIM).unwrap();
    assert_eq!(ids(&m), ["a"]);
}

#[test]
fn pruning_is_logged_before_it_is_applied() {
    let dir = tempfile::tempdir().unwrap();
    let report = {
        let mut m = DurableMemory::open(dir.path(), DIM).unwrap();
        for i in 0..6 {
            let mut x = v(1);
            x[i % DIM] += 0.1;
            m.upsert(&[(&format!("ant-{i}"), "ant", &x)]).unwrap();
        }
        // A "bee" sitting among the ants.
        m.upsert(&[("liar", "bee", &v(1))]).unwrap();
        m.prune(Prune::Soft { k: 3 }).unwrap()
    };
    let liar = report
        .downweighted()
        .find(|(id, _)| id == "liar")
        .unwrap()
        .1;
    let m = DurableMemory::open(dir.path(), DIM).unwrap();
    let item = m.memory().iter().find(|(it, _)| it.id == "liar").unwrap().0;
    assert_eq!(item.multiplier, liar);
    assert!(liar < 1.0);
    // SPECS §3: every item is reweighted, a clean one to 1.75.
    let ant = m.memory().get("ant-0").unwrap();
    assert_eq!(ant.multiplier, 1.75);
    assert_eq!(report.multipliers.len(), m.memory().len());
}

#[test]
fn a_torn_final_record_is_cut_off_and_corruption_refused() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut m = DurableMemory::open(dir.path(), DIM).unwrap();
        m.upsert(&[("a", "ant", &v(1))]).unwrap();
        m.upsert(&[("b", "bee", &v(2))]).unwrap();
    }
    let log = dir.path().join("visual.log");
    let good = std::fs::read(&log).unwrap();
    // A crash in the middle of appending a third record.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 1, 1]).unwrap();
    drop(f);
    {
        let mut m = DurableMemory::open(dir.path(), DIM).unwrap();
        assert_eq!(ids(&m), ["a", "b"]);
        assert_eq!(std::fs::read(&log).unwrap(), good, "torn bytes cut off");
        // Appends after the cut are well-formed.
        m.upsert(&[("c", "cat", &v(3))]).unwrap();
    }
    assert_eq!(
        ids(&DurableMemory::open(dir.path(), DIM).unwrap()),
        ["a", "b", "c"]
    );

    // A crash after the file was extended but before the data landed
    // leaves zeros: a torn tail, not corruption.
    let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
    f.write_all(&[0u8; 64]).unwrap();
    drop(f);
    assert_eq!(
        ids(&DurableMemory::open(dir.path(), DIM).unwrap()),
        ["a", "b", "c"]
    );

    // A flipped byte inside the first record, with good records after it.
    let mut bytes = std::fs::read(&log).unwrap();
    bytes[12 + 8 + 3] ^= 0x55;
    std::fs::write(&log, &bytes).unwrap();
    let err = DurableMemory::open(dir.path(), DIM).unwrap_err();
    assert!(matches!(err, VisualError::Corrupt(_)), "{err}");
    // So is a first record whose length field is damaged: the records
    // after it must not be cut off as a torn tail.
    bytes[12 + 8 + 3] ^= 0x55;
    bytes[12] ^= 0x40;
    std::fs::write(&log, &bytes).unwrap();
    let err = DurableMemory::open(dir.path(), DIM).unwrap_err();
    assert!(matches!(err, VisualError::Corrupt(_)), "{err}");
    assert_eq!(std::fs::read(&log).unwrap(), bytes, "nothing cut off");
}

#[test]
fn compaction_keeps_exactly_the_live_state() {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let mut m = DurableMemory::open(dir.path(), DIM).unwrap();
        for round in 0..20 {
            m.upsert(&[("a", "ant", &v(round)), ("b", "bee", &v(round + 1))])
                .unwrap();
        }
        m.remove(&["b"]).unwrap();
        m.upsert(&[("c", "cat", &v(7))]).unwrap();
        let grown = m.log_bytes();
        m.compact().unwrap();
        assert!(m.log_bytes() < grown / 5, "{} vs {grown}", m.log_bytes());
        ids(&m)
    };
    let m = DurableMemory::open(dir.path(), DIM).unwrap();
    assert_eq!(ids(&m), before);
    assert_eq!(before, ["a", "c"]);
}

#[test]
fn one_process_per_directory_and_one_dimension_per_memory() {
    let dir = tempfile::tempdir().unwrap();
    let m = DurableMemory::open(dir.path(), DIM).unwrap();
    let err = DurableMemory::open(dir.path(), DIM).unwrap_err();
    assert!(matches!(err, VisualError::Locked(_)), "{err}");
    drop(m);
    let err = DurableMemory::open(dir.path(), DIM + 1).unwrap_err();
    assert!(err.to_string().contains("8-dimensional"), "{err}");
}

/// Classes `g{j}` around well-separated centres in 16 dimensions.
fn clustered(n: usize) -> Vec<(String, String, Vec<f32>)> {
    const WIDE: usize = 16;
    let centre = |j: usize| -> Vec<f32> {
        (0..WIDE)
            .map(|i| (((j * 7919 + i * 104_729) % 1000) as f32 / 500.0) - 1.0)
            .collect()
    };
    (0..n)
        .map(|i| {
            let j = i % 10;
            let v: Vec<f32> = centre(j)
                .iter()
                .enumerate()
                .map(|(d, c)| c + 0.05 * (((i * 31 + d * 17) % 97) as f32 / 97.0 - 0.5))
                .collect();
            (format!("item-{i}"), format!("g{j}"), v)
        })
        .collect()
}

fn decisions(m: &DurableMemory, queries: &[Vec<f32>]) -> Vec<(Option<String>, Vec<String>)> {
    queries
        .iter()
        .map(|q| {
            let d = m.classify(q, 10, Aggregation::RankVoting).unwrap();
            (d.label, d.neighbors.into_iter().map(|v| v.id).collect())
        })
        .collect()
}

#[test]
fn a_memory_above_the_threshold_reopens_with_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let params = VisualParams {
        ann_above: 200,
        hnsw: HnswParams {
            exact_below: 0,
            ..VisualParams::default().hnsw
        },
    };
    let rows = clustered(600);
    let queries: Vec<Vec<f32>> = rows.iter().step_by(37).map(|r| r.2.clone()).collect();
    let before = {
        let mut m = DurableMemory::open_with(dir.path(), 16, params.clone()).unwrap();
        for chunk in rows.chunks(100) {
            let batch: Vec<(&str, &str, &[f32])> = chunk
                .iter()
                .map(|(id, label, v)| (id.as_str(), label.as_str(), v.as_slice()))
                .collect();
            m.upsert(&batch).unwrap();
        }
        assert!(m.memory().is_graph());
        m.remove(&["item-0", "item-1"]).unwrap();
        m.remove_class("g9").unwrap();
        m.upsert(&[("item-2", "g5", &rows[5].2)]).unwrap();
        m.prune(Prune::Soft { k: 5 }).unwrap();
        decisions(&m, &queries)
    };
    let reopened = DurableMemory::open_with(dir.path(), 16, params.clone()).unwrap();
    assert!(reopened.memory().is_graph());
    assert_eq!(reopened.memory().len(), 600 - 2 - 60);
    assert_eq!(decisions(&reopened, &queries), before);
    assert!(!reopened.memory().contains("item-0"));
    drop(reopened);

    // Compaction writes the live state from the graph's own vectors.
    let mut m = DurableMemory::open_with(dir.path(), 16, params.clone()).unwrap();
    m.compact().unwrap();
    drop(m);
    let m = DurableMemory::open_with(dir.path(), 16, params).unwrap();
    assert_eq!(decisions(&m, &queries), before);
    let (item, v) = m.memory().iter().find(|(i, _)| i.id == "item-2").unwrap();
    assert_eq!(item.label, "g5");
    assert_eq!(v.as_ref(), m.memory().normalised(&rows[5].2).unwrap());
    drop(m);

    // Exact search over the same log agrees (the default threshold is far
    // above 600 items).
    let flat = DurableMemory::open(dir.path(), 16).unwrap();
    assert!(!flat.memory().is_graph());
    assert_eq!(decisions(&flat, &queries), before);
}

#[test]
fn metadata_is_logged_with_its_item_and_survives_compaction() {
    use mnemos_visual::NewItem;
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (v(1), v(2));
    {
        let mut m = DurableMemory::open(dir.path(), DIM).unwrap();
        m.upsert_items(&[
            NewItem {
                id: "a",
                label: "ant",
                embedding: &a,
                metadata: Some(r#"{"src":"cam-1"}"#),
            },
            NewItem {
                id: "b",
                label: "bee",
                embedding: &b,
                metadata: None,
            },
        ])
        .unwrap();
        let too_big = "x".repeat(mnemos_visual::log::MAX_METADATA + 1);
        let err = m
            .upsert_items(&[NewItem {
                id: "c",
                label: "cat",
                embedding: &a,
                metadata: Some(&too_big),
            }])
            .unwrap_err();
        assert!(matches!(err, VisualError::InvalidInput(_)), "{err}");
        assert!(!m.memory().contains("c"));
    }
    let meta = |m: &DurableMemory, id: &str| {
        m.memory()
            .get(id)
            .unwrap()
            .metadata
            .as_deref()
            .map(str::to_owned)
    };
    let mut m = DurableMemory::open(dir.path(), DIM).unwrap();
    assert_eq!(meta(&m, "a").as_deref(), Some(r#"{"src":"cam-1"}"#));
    assert_eq!(meta(&m, "b"), None);
    m.compact().unwrap();
    // Replacing an item without metadata clears it.
    m.upsert(&[("a", "ant", &a)]).unwrap();
    drop(m);
    let m = DurableMemory::open(dir.path(), DIM).unwrap();
    assert_eq!(meta(&m, "a"), None);
    assert_eq!(ids(&m), ["a", "b"]);
}
