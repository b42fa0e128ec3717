//! The value table read in pages through the tiers gives the layer's
//! output exactly, touching only the pages it reads.

use std::sync::Arc;

use candle_core::Device;
use mnemos_tiers::{Tiers, TiersConfig};

use crate::pkm::tests::max_diff;
use crate::rng::SplitMix64;
use crate::{MemoryConfig, MemoryLayer, MemoryVariant, PagedValues, Result};

fn layer(variant: MemoryVariant) -> Result<MemoryLayer> {
    let config = MemoryConfig {
        layers: vec![0],
        n_keys: 16,
        k: 4,
        heads: 2,
        key_dim: 8,
        query_batch_norm: false,
        variant,
    };
    MemoryLayer::new(12, &config, 3)
}

fn tiers(dir: &std::path::Path) -> Result<Tiers> {
    Tiers::new(TiersConfig::new(1 << 20, dir.to_path_buf()))
        .map_err(|e| crate::LmError::Unavailable(e.to_string()))
}

#[test]
fn paged_values_give_the_same_output_and_read_only_their_pages() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|source| crate::LmError::Io {
        path: "tempdir".into(),
        source,
    })?;
    for variant in [MemoryVariant::Pkm, MemoryVariant::MemoryPlus] {
        let mut layer = layer(variant)?;
        let x = SplitMix64::new(9).normal_tensor((1, 12), 1.0, &Device::Cpu)?;
        let want = layer.forward(&x)?;
        // 256 values in pages of 8 rows: 32 pages; one token reads H·k = 8
        // values, so at most 8 pages.
        let t = tiers(&dir.path().join(format!("{variant:?}")))?;
        let paged = PagedValues::export(&layer.value_table()?, 12, 8, t.clone(), "values", false)?;
        assert_eq!(paged.pages().len(), 32);
        layer.set_paged_values(Some(Arc::new(paged)))?;
        let got = layer.forward(&x)?;
        assert!(max_diff(&got, &want) < 1e-6, "{variant:?}");
        let s = t.summary();
        let reads = s.tiers[0].hits + s.tiers[0].misses;
        let distinct: std::collections::HashSet<u32> =
            layer.lookup(&x)?.indices.iter().map(|id| id / 8).collect();
        assert_eq!(reads as usize, distinct.len(), "one read per page touched");
        assert!(distinct.len() <= 8);
        assert_eq!(layer.degraded_lookups(), 0);
    }
    Ok(())
}

#[test]
fn a_missing_page_degrades_the_lookup_instead_of_failing_it() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|source| crate::LmError::Io {
        path: "tempdir".into(),
        source,
    })?;
    let mut layer = layer(MemoryVariant::Pkm)?;
    let x = SplitMix64::new(9).normal_tensor((1, 12), 1.0, &Device::Cpu)?;
    let want = layer.forward(&x)?;
    let t = tiers(dir.path())?;
    let paged = PagedValues::export(&layer.value_table()?, 12, 8, t, "values", false)?;
    // The page of the first value read is gone (no cold tier to refetch).
    let first = layer.lookup(&x)?.indices[0] / 8;
    let key = &paged.pages()[first as usize].key;
    std::fs::remove_file(dir.path().join(key)).expect("remove page");
    layer.set_paged_values(Some(Arc::new(paged)))?;
    let got = layer.forward(&x)?;
    assert!(
        max_diff(&got, &want) > 1e-6,
        "a missing page must change the sum"
    );
    assert_eq!(layer.degraded_lookups(), 1);
    Ok(())
}
