//! One node's memory block on disk, and a fresh one in memory.
//!
//! A block file holds one node's tensors alone (`layers.<l>.gate`,
//! `layers.<l>.up`, `layers.<l>.down`), so any block is read without the
//! others: the deep levels stay on disk and only a query's path is fetched
//! (SPECS §5, "Tiers"). Weights are stored as f16, half the bytes of f32
//! for a change far below what training resolves, and come back as f32.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use mnemos_index_core::codec::temp_path;
use mnemos_llama::{FfnUnits, UnitWeights};
use mnemos_models_core::rng::SplitMix64;

use crate::files::commit_temp;
use crate::{BankError, Result};

/// Initial weights' standard deviation (SPECS §5: truncated normal).
const INIT_STD: f64 = 0.02;
/// Initial weights are redrawn beyond this many standard deviations.
const INIT_TRUNCATE: f64 = 2.0;
/// Largest magnitude f16 holds; beyond it a stored weight would be ±∞.
const F16_MAX: f32 = 65_504.0;

/// The shape every block of one level has.
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockShape<'a> {
    pub layers: &'a [usize],
    pub units: usize,
    pub dim: usize,
}

fn name(layer: usize, part: &str) -> String {
    format!("layers.{layer}.{part}")
}

/// A block that changes nothing yet: gate and down truncated-normal, up
/// zero, so `silu(G·x) ⊙ U·x = 0` until training moves `U` (SPECS §5).
pub(crate) fn init_units(shape: BlockShape<'_>, rng: &mut SplitMix64) -> Result<FfnUnits> {
    let dev = &Device::Cpu;
    let mut truncated = |rows: usize, cols: usize| -> Result<Tensor> {
        let data: Vec<f32> = (0..rows * cols)
            .map(|_| loop {
                let z = rng.normal();
                if z.abs() <= INIT_TRUNCATE {
                    break (z * INIT_STD) as f32;
                }
            })
            .collect();
        Ok(Tensor::from_vec(data, (rows, cols), dev)?)
    };
    let (r, dim) = (shape.units, shape.dim);
    let mut layers = BTreeMap::new();
    for &l in shape.layers {
        let gate = truncated(r, dim)?;
        let down = truncated(dim, r)?;
        let up = Tensor::zeros((r, dim), DType::F32, dev)?;
        layers.insert(l, UnitWeights { gate, up, down });
    }
    Ok(FfnUnits { layers })
}

/// Checks that `units` has exactly the layers and shape of `shape`, and
/// weights that f16 can store (finite, |w| ≤ 65504).
pub(crate) fn check_units(units: &FfnUnits, shape: BlockShape<'_>) -> Result<()> {
    let bad = |m: String| Err(BankError::InvalidInput(m));
    let have: Vec<usize> = units.layers.keys().copied().collect();
    let mut want = shape.layers.to_vec();
    want.sort_unstable();
    if have != want {
        return bad(format!(
            "block has units for layers {have:?}, the bank for {want:?}"
        ));
    }
    for (l, u) in &units.layers {
        u.check(shape.dim)
            .map_err(|e| BankError::InvalidInput(format!("layer {l}: {e}")))?;
        if u.units() != shape.units {
            return bad(format!(
                "layer {l} has {} units, this level's blocks have {}",
                u.units(),
                shape.units
            ));
        }
        for (part, t) in [("gate", &u.gate), ("up", &u.up), ("down", &u.down)] {
            let values = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            if values.iter().any(|x| !x.is_finite() || x.abs() > F16_MAX) {
                return bad(format!("layer {l} {part} has weights f16 cannot store"));
            }
        }
    }
    Ok(())
}

/// Writes `units` (already checked) to `path` as f16 safetensors, durably:
/// temporary name, fsync, rename, directory fsync. Returns the file's size
/// and CRC32 for the manifest.
pub(crate) fn write_block(path: &Path, units: &FfnUnits) -> Result<(u64, u32)> {
    let mut tensors = HashMap::new();
    for (&l, u) in &units.layers {
        for (part, t) in [("gate", &u.gate), ("up", &u.up), ("down", &u.down)] {
            let stored = t
                .to_device(&Device::Cpu)?
                .to_dtype(DType::F16)?
                .contiguous()?;
            tensors.insert(name(l, part), stored);
        }
    }
    let temp = temp_path(path);
    candle_core::safetensors::save(&tensors, &temp)?;
    let bytes = fs::read(&temp).map_err(BankError::io(&temp))?;
    commit_temp(&temp, path)?;
    Ok((bytes.len() as u64, crc32fast::hash(&bytes)))
}

/// Reads the block at `path`, checking it against the size and checksum
/// the manifest recorded and against `shape`.
pub(crate) fn read_block(
    path: &Path,
    shape: BlockShape<'_>,
    len: u64,
    crc: u32,
) -> Result<FfnUnits> {
    let bytes = fs::read(path).map_err(BankError::io(path))?;
    if bytes.len() as u64 != len {
        return Err(BankError::corrupt(
            path,
            format!(
                "block file is {} bytes, the manifest says {len}",
                bytes.len()
            ),
        ));
    }
    if crc32fast::hash(&bytes) != crc {
        return Err(BankError::corrupt(path, "block file checksum mismatch"));
    }
    decode_block(&bytes, path, shape)
}

/// Parses a block file's bytes; anything but exactly the tensors of
/// `shape`, in f16 or f32, finite, is corrupt.
pub(crate) fn decode_block(bytes: &[u8], path: &Path, shape: BlockShape<'_>) -> Result<FfnUnits> {
    let bad = |m: String| BankError::corrupt(path, m);
    let mut tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| bad(format!("not a readable safetensors file: {e}")))?;
    let expected: HashSet<String> = shape
        .layers
        .iter()
        .flat_map(|&l| ["gate", "up", "down"].map(|p| name(l, p)))
        .collect();
    if let Some(extra) = tensors.keys().find(|k| !expected.contains(*k)) {
        return Err(bad(format!("unexpected tensor {extra:?}")));
    }
    let (r, dim) = (shape.units, shape.dim);
    let mut take = |l: usize, part: &str, dims: [usize; 2]| -> Result<Tensor> {
        let key = name(l, part);
        let t = tensors
            .remove(&key)
            .ok_or_else(|| bad(format!("tensor {key} is missing")))?;
        if !matches!(t.dtype(), DType::F16 | DType::F32) {
            return Err(bad(format!(
                "tensor {key} is {:?}, not f16 or f32",
                t.dtype()
            )));
        }
        if t.dims() != dims {
            return Err(bad(format!(
                "tensor {key} is {:?}, expected {dims:?}",
                t.dims()
            )));
        }
        let t = t.to_dtype(DType::F32)?;
        if t.flatten_all()?
            .to_vec1::<f32>()?
            .iter()
            .any(|x| !x.is_finite())
        {
            return Err(bad(format!("tensor {key} is not finite")));
        }
        Ok(t)
    };
    let mut layers = BTreeMap::new();
    for &l in shape.layers {
        let units = UnitWeights {
            gate: take(l, "gate", [r, dim])?,
            up: take(l, "up", [r, dim])?,
            down: take(l, "down", [dim, r])?,
        };
        layers.insert(l, units);
    }
    Ok(FfnUnits { layers })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHAPE: BlockShape<'static> = BlockShape {
        layers: &[1, 4],
        units: 3,
        dim: 8,
    };

    #[test]
    fn fresh_blocks_are_inert_and_truncated() -> Result<()> {
        let units = init_units(SHAPE, &mut SplitMix64::new(1))?;
        check_units(&units, SHAPE)?;
        for u in units.layers.values() {
            assert_eq!(u.up.abs()?.max_all()?.to_scalar::<f32>()?, 0.0);
            for t in [&u.gate, &u.down] {
                let max = t.abs()?.max_all()?.to_scalar::<f32>()?;
                assert!(max > 0.0 && max <= 0.04 + 1e-6, "{max}");
            }
        }
        Ok(())
    }

    #[test]
    fn every_truncation_and_header_damage_is_an_error() -> Result<()> {
        let dir = tempfile::tempdir().map_err(BankError::io(Path::new("tempdir")))?;
        let path = dir.path().join("b.safetensors");
        let units = init_units(SHAPE, &mut SplitMix64::new(2))?;
        let (len, crc) = write_block(&path, &units)?;
        let bytes = fs::read(&path).map_err(BankError::io(&path))?;
        assert_eq!(len, bytes.len() as u64);
        let back = read_block(&path, SHAPE, len, crc)?;
        assert_eq!(back.parameters(), units.parameters());
        for cut in 0..bytes.len() {
            let err = decode_block(&bytes[..cut], &path, SHAPE).expect_err("truncated");
            assert!(matches!(err, BankError::Corrupt { .. }), "{err}");
        }
        // Damage inside the JSON header (after its 8-byte length).
        for at in 8..40 {
            let mut damaged = bytes.clone();
            damaged[at] = b'}';
            let _ = decode_block(&damaged, &path, SHAPE); // must not panic
        }
        let other = BlockShape { units: 2, ..SHAPE };
        assert!(decode_block(&bytes, &path, other).is_err());
        let fewer = BlockShape {
            layers: &[1],
            ..SHAPE
        };
        assert!(decode_block(&bytes, &path, fewer).is_err());
        Ok(())
    }

    #[test]
    fn units_of_the_wrong_shape_are_rejected() -> Result<()> {
        let units = init_units(SHAPE, &mut SplitMix64::new(3))?;
        let fewer = BlockShape {
            layers: &[1],
            ..SHAPE
        };
        assert!(check_units(&units, fewer).is_err());
        assert!(check_units(&units, BlockShape { units: 4, ..SHAPE }).is_err());
        let mut huge = units.clone();
        if let Some(u) = huge.layers.get_mut(&1) {
            u.up = (u.up.ones_like()? * 1e6)?;
        }
        assert!(check_units(&huge, SHAPE).is_err());
        Ok(())
    }
}
