//! The tier manager over a real warm directory and a real local-folder
//! object store (object_store's LocalFileSystem).

use std::net::TcpListener;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use bytes::Bytes;
use mnemos_tiers::{BlockSpec, ColdOptions, ColdStore, Tier, TierError, Tiers, TiersConfig};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn block(i: usize, len: usize) -> Vec<u8> {
    (0..len).map(|j| (i * 31 + j * 7) as u8).collect()
}

/// A cold folder holding `n` blocks of `len` bytes, and their specs.
fn cold_with_blocks(
    dir: &std::path::Path,
    n: usize,
    len: usize,
) -> Result<(ColdStore, Vec<BlockSpec>)> {
    let cold = ColdStore::open(
        &format!("file://{}", dir.display()),
        &ColdOptions::default(),
    )?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut specs = Vec::new();
    for i in 0..n {
        let data = block(i, len);
        let spec = BlockSpec::of(format!("blocks/b{i}.bin"), &data);
        rt.block_on(cold.put(&spec.key, Bytes::from(data)))?;
        specs.push(spec);
    }
    Ok((cold, specs))
}

fn tiers(warm: &std::path::Path, cold: Option<ColdStore>, budget: u64) -> Result<Tiers> {
    let mut config = TiersConfig::new(budget, warm.to_path_buf());
    config.cold = cold;
    Ok(Tiers::new(config)?)
}

#[test]
fn a_cold_block_moves_up_to_warm_and_hot() -> Result<()> {
    let (c, w) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (cold, specs) = cold_with_blocks(c.path(), 3, 4096)?;
    let t = tiers(w.path(), Some(cold), 1 << 20)?;
    let first = t.get(&specs[0])?;
    assert_eq!(first.tier, Tier::Cold);
    assert_eq!(&first.bytes[..], &block(0, 4096)[..]);
    assert!(
        w.path().join("blocks/b0.bin").is_file(),
        "cached in the warm tier"
    );
    // Admitted to RAM on the way (room to spare): the next read is hot.
    let again = t.get(&specs[0])?;
    assert_eq!(again.tier, Tier::Hot);
    assert_eq!(again.bytes, first.bytes);
    // A fresh manager over the same warm directory reads it there.
    let t2 = tiers(w.path(), None, 1 << 20)?;
    assert_eq!(t2.get(&specs[0])?.tier, Tier::Warm);
    // Without a cold tier an uncached block is simply not found.
    assert!(matches!(t2.get(&specs[1]), Err(TierError::NotFound { .. })));
    let s = t.summary();
    assert_eq!((s.tiers[0].hits, s.tiers[2].hits), (1, 1));
    assert_eq!(s.warm_blocks, 1);
    Ok(())
}

#[test]
fn damaged_blocks_are_never_served() -> Result<()> {
    let (c, w) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (cold, specs) = cold_with_blocks(c.path(), 2, 1000)?;
    // The cold copy of b0 damaged (same size, one byte flipped).
    let mut bad = block(0, 1000);
    bad[10] ^= 0xff;
    std::fs::write(c.path().join("blocks/b0.bin"), &bad)?;
    let t = tiers(w.path(), Some(cold), 1 << 20)?;
    let e = t.get(&specs[0]).unwrap_err();
    assert!(
        matches!(
            e,
            TierError::Corrupt {
                tier: Tier::Cold,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.is_fetch_failure());
    assert!(!w.path().join("blocks/b0.bin").exists(), "not cached");
    // A damaged warm copy is dropped and fetched again from cold.
    t.get(&specs[1])?;
    t.invalidate(&specs[1].key);
    let mut bad1 = block(1, 1000);
    bad1[0] ^= 1;
    std::fs::write(w.path().join("blocks/b1.bin"), &bad1)?;
    let got = t.get(&specs[1])?;
    assert_eq!(got.tier, Tier::Cold);
    assert_eq!(&got.bytes[..], &block(1, 1000)[..]);
    assert_eq!(t.summary().failures.corrupt, 2);
    // A reader expecting another version never gets this one.
    let stale = BlockSpec {
        crc32: specs[1].crc32 ^ 1,
        ..specs[1].clone()
    };
    assert!(matches!(t.get(&stale), Err(TierError::Corrupt { .. })));
    Ok(())
}

#[test]
fn concurrent_readers_share_one_fetch() -> Result<()> {
    let (c, w) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (cold, specs) = cold_with_blocks(c.path(), 1, 1 << 20)?;
    let t = tiers(w.path(), Some(cold), 64 << 20)?;
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (t, spec, barrier) = (t.clone(), specs[0].clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                t.get(&spec).map(|f| f.bytes.len())
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().expect("reader thread")?, 1 << 20);
    }
    let s = t.summary();
    assert_eq!(
        s.tiers[2].hits, 1,
        "one cold fetch for eight readers: {s:?}"
    );
    Ok(())
}

#[test]
fn the_hot_budget_holds_the_most_read_blocks() -> Result<()> {
    let (c, w) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (cold, specs) = cold_with_blocks(c.path(), 40, 1000)?;
    // Room for 8 of 40 blocks.
    let t = tiers(w.path(), Some(cold), 8000)?;
    // Blocks 32..40 fill RAM first; then blocks 0..8 are read 20 times
    // each and the rest twice, interleaved.
    for spec in &specs[32..] {
        assert!(t.get(spec)?.tier == Tier::Cold);
    }
    for round in 0..20 {
        for (i, spec) in specs.iter().enumerate() {
            if i < 8 || round < 2 {
                t.get(spec)?;
                assert!(t.summary().hot_resident_bytes <= 8000);
            }
        }
    }
    let s = t.summary();
    let mut resident: Vec<String> = s.hottest.iter().map(|p| p.key.clone()).collect();
    resident.sort();
    let mut want: Vec<String> = specs[..8].iter().map(|s| s.key.clone()).collect();
    want.sort();
    assert_eq!(resident, want);
    assert!(s.tiers[0].evictions > 0);
    // The last rounds read only blocks 0..8, all from RAM.
    t.reset_counters();
    for spec in &specs[..8] {
        assert_eq!(t.get(spec)?.tier, Tier::Hot);
    }
    assert_eq!(t.summary().hot_hit_rate, 1.0);
    Ok(())
}

#[test]
fn pinned_blocks_stay_and_prefetch_warms() -> Result<()> {
    let (c, w) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (cold, specs) = cold_with_blocks(c.path(), 10, 1000)?;
    let t = tiers(w.path(), Some(cold), 3000)?;
    t.pin(&specs[0])?;
    for _ in 0..5 {
        for spec in &specs[1..] {
            t.get(spec)?;
        }
    }
    assert_eq!(t.get(&specs[0])?.tier, Tier::Hot);
    let s = t.summary();
    assert_eq!((s.pinned_blocks, s.pinned_bytes), (1, 1000));
    // Pins beyond the budget are refused with a clear error.
    let big = tiers(w.path(), None, 1500)?;
    big.pin(&specs[0])?;
    assert!(matches!(big.pin(&specs[1]), Err(TierError::Budget(_))));

    let (c2, w2) = (tempfile::tempdir()?, tempfile::tempdir()?);
    let (cold2, specs2) = cold_with_blocks(c2.path(), 4, 1000)?;
    let t2 = tiers(w2.path(), Some(cold2), 1 << 20)?;
    t2.prefetch(&specs2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !specs2.iter().all(|s| w2.path().join(&s.key).is_file()) {
        assert!(Instant::now() < deadline, "prefetch did not land");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(t2.get(&specs2[3])?.tier, Tier::Warm);
    assert_eq!(t2.summary().failures.prefetches, 4);
    Ok(())
}

#[test]
fn a_silent_object_store_costs_a_deadline_not_a_hang() -> Result<()> {
    // An "S3 server" that accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0")?;
    let port = silent.local_addr()?.port();
    let options = ColdOptions {
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        access_key_id: Some("k".into()),
        secret_access_key: Some("s".into()),
        request_timeout: Duration::from_secs(30),
        ..ColdOptions::default()
    };
    let cold = ColdStore::open("s3://bucket/bank", &options)?;
    let w = tempfile::tempdir()?;
    let t = tiers(w.path(), Some(cold), 1 << 20)?;
    let spec = BlockSpec::of("blocks/x.bin", b"x");
    let started = Instant::now();
    let e = t.get_within(&spec, Duration::from_millis(200)).unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(e, TierError::Timeout { .. }), "{e}");
    assert!(e.is_fetch_failure());
    assert!(waited < Duration::from_secs(2), "waited {waited:?}");
    // A second reader joins the fetch in flight rather than start another.
    assert!(t.get_within(&spec, Duration::from_millis(50)).is_err());
    let s = t.summary();
    assert_eq!(s.failures.timeouts, 2);
    assert_eq!(s.failures.shared_fetches, 1);
    assert_eq!(s.fetches_in_flight, 1);
    // Nothing listening at all: refused at once, reported as unavailable.
    drop(silent);
    let closed = ColdStore::open(
        "s3://bucket/bank",
        &ColdOptions {
            endpoint: Some(format!("http://127.0.0.1:{port}")),
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
            ..ColdOptions::default()
        },
    )?;
    let w2 = tempfile::tempdir()?;
    let t2 = tiers(w2.path(), Some(closed), 1 << 20)?;
    let e = t2.get_within(&spec, Duration::from_secs(5)).unwrap_err();
    assert!(matches!(e, TierError::Unavailable { .. }), "{e}");
    Ok(())
}

#[test]
fn keys_are_checked_before_any_file_is_touched() -> Result<()> {
    let w = tempfile::tempdir()?;
    let t = tiers(&w.path().join("warm"), None, 1000)?;
    for key in ["../escape", "/etc/passwd", "a/../../b", "a\0b"] {
        let spec = BlockSpec::of(key, b"x");
        assert!(
            matches!(t.get(&spec), Err(TierError::InvalidKey { .. })),
            "{key:?}"
        );
    }
    Ok(())
}
