//! The cold tier against a real S3 server (SeaweedFS on loopback), stopped
//! and restarted mid-run.

use std::time::{Duration, Instant};

use bytes::Bytes;
use mnemos_tiers::seaweed::Seaweed;
use mnemos_tiers::{BlockSpec, Tier, TierError, Tiers, TiersConfig};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

#[test]
fn reads_survive_an_s3_outage_and_recover() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let mut server = Seaweed::start(&dir.path().join("seaweed"))?;
    let cold = server.store("mnemos", "bank")?;
    let warm = dir.path().join("warm");
    let mut config = TiersConfig::new(1 << 20, warm.clone());
    config.cold = Some(cold);
    config.fetch_timeout = Duration::from_secs(1);
    let t = Tiers::new(config)?;
    let specs: Vec<BlockSpec> = (0..6)
        .map(|i| {
            let data: Vec<u8> = (0..50_000).map(|j| (i * 13 + j) as u8).collect();
            let spec = BlockSpec::of(format!("blocks/n{i}.safetensors"), &data);
            t.publish(&spec.key, Bytes::from(data)).map(|()| spec)
        })
        .collect::<std::result::Result<_, _>>()?;
    for spec in &specs[..3] {
        assert_eq!(t.get(spec)?.tier, Tier::Cold);
    }
    server.stop();
    // Blocks already fetched are still served; the others fail fast.
    for spec in &specs[..3] {
        assert_eq!(t.get(spec)?.tier, Tier::Hot);
    }
    for spec in &specs[3..] {
        let started = Instant::now();
        let e = t.get(spec).unwrap_err();
        assert!(e.is_fetch_failure(), "{e}");
        assert!(
            matches!(e, TierError::Unavailable { .. } | TierError::Timeout { .. }),
            "{e}"
        );
        assert!(
            started.elapsed() < Duration::from_millis(1500),
            "{:?}",
            started.elapsed()
        );
    }
    server.restart()?;
    for spec in &specs[3..] {
        let got = t.get(spec)?;
        assert_eq!(got.tier, Tier::Cold);
        assert_eq!(got.bytes.len(), 50_000);
    }
    let s = t.summary();
    assert!(s.failures.unavailable + s.failures.timeouts >= 3, "{s:?}");
    assert!(s.tiers[2].fetch_p99_ms > 0.0);
    Ok(())
}
