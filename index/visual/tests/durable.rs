//! The durable visual memory: acknowledged edits survive reopening, bad
//! batches change nothing, a torn final record is cut off, corruption is
//! refused, and a second process is locked out.

use std::io::Write;

use mnemos_visual::{Aggregation, DurableMemory, Prune, VisualError};

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
    let mut m = DurableMemory::open(dir.path(), DIM).unwrap();
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
        .downweighted
        .iter()
        .find(|(id, _)| id == "liar")
        .unwrap()
        .1;
    let m = DurableMemory::open(dir.path(), DIM).unwrap();
    let item = m.memory().iter().find(|(it, _)| it.id == "liar").unwrap().0;
    assert_eq!(item.multiplier, liar);
    assert!(liar < 1.0);
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
