//! A memory layer's value table read in pages through the memory tiers
//! (SPECS §6), for tables too large to hold in RAM: rows are grouped into
//! pages of `rows_per_page` rows (one checksummed block each), and a lookup
//! fetches only the pages holding the rows it reads — from RAM when they
//! are hot, a mapped file when warm, object storage when cold.
//!
//! A page that cannot be fetched in time contributes nothing (its rows
//! read as zero) and is counted in [`PageReads::missing`]: the answer is
//! degraded, never delayed without bound.

use std::collections::HashMap;

use mnemos_tiers::{BlockSpec, Tiers};

use crate::bag::bag_sum;
use crate::error::{LmError, Result};

/// What one lookup read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PageReads {
    /// Distinct pages read.
    pub pages: usize,
    /// Pages that could not be fetched (their rows read as zero).
    pub missing: usize,
}

/// A `(rows, dim)` f32 table stored as pages in the tiers.
#[derive(Debug, Clone)]
pub struct PagedValues {
    tiers: Tiers,
    dim: usize,
    rows: usize,
    rows_per_page: usize,
    pages: Vec<BlockSpec>,
}

impl PagedValues {
    /// Splits `table` (`rows × dim`, row-major) into pages of
    /// `rows_per_page` rows, writes them to the tiers' warm directory as
    /// `{prefix}/page-{i}.f32` (little-endian f32) and, when the tiers
    /// have a cold store and `publish` is set, uploads them there too.
    pub fn export(
        table: &[f32],
        dim: usize,
        rows_per_page: usize,
        tiers: Tiers,
        prefix: &str,
        publish: bool,
    ) -> Result<Self> {
        if dim == 0 || rows_per_page == 0 || !table.len().is_multiple_of(dim) {
            return Err(LmError::InvalidInput(format!(
                "a value table of {} floats cannot be paged by {rows_per_page} rows of {dim}",
                table.len()
            )));
        }
        let rows = table.len() / dim;
        let mut pages = Vec::with_capacity(rows.div_ceil(rows_per_page));
        for (i, chunk) in table.chunks(rows_per_page * dim).enumerate() {
            let bytes: Vec<u8> = chunk.iter().flat_map(|v| v.to_le_bytes()).collect();
            let spec = BlockSpec::of(format!("{prefix}/page-{i}.f32"), &bytes);
            let path = tiers.config().warm_dir.join(&spec.key);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(|source| LmError::Io {
                    path: parent.to_path_buf(),
                    source,
                })?;
            }
            std::fs::write(&path, &bytes).map_err(|source| LmError::Io {
                path: path.clone(),
                source,
            })?;
            if publish && tiers.has_cold() {
                tiers
                    .publish(&spec.key, bytes.into())
                    .map_err(|e| LmError::Unavailable(e.to_string()))?;
            }
            pages.push(spec);
        }
        Ok(Self {
            tiers,
            dim,
            rows,
            rows_per_page,
            pages,
        })
    }

    pub fn rows(&self) -> usize {
        self.rows
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn pages(&self) -> &[BlockSpec] {
        &self.pages
    }

    pub fn tiers(&self) -> &Tiers {
        &self.tiers
    }

    /// `out (T, dim) = Σ_p w · V[id]` as [`bag_sum`], reading only the
    /// pages that hold the ids' rows (each once per call).
    pub fn bag_sum(&self, ids: &[u32], weights: &[f32], out: &mut [f32]) -> Result<PageReads> {
        let dim = self.dim;
        // The distinct rows read, gathered into a small dense table.
        let mut slot_of: HashMap<u32, u32> = HashMap::with_capacity(ids.len());
        let mut wanted: Vec<u32> = Vec::new();
        let local: Vec<u32> = ids
            .iter()
            .map(|&id| {
                *slot_of.entry(id).or_insert_with(|| {
                    wanted.push(id);
                    (wanted.len() - 1) as u32
                })
            })
            .collect();
        let mut by_page: HashMap<usize, Vec<usize>> = HashMap::new();
        for (slot, &id) in wanted.iter().enumerate() {
            if (id as usize) < self.rows {
                by_page
                    .entry(id as usize / self.rows_per_page)
                    .or_default()
                    .push(slot);
            }
        }
        let mut gathered = vec![0f32; wanted.len() * dim];
        let mut reads = PageReads {
            pages: by_page.len(),
            missing: 0,
        };
        for (page, slots) in by_page {
            let bytes = match self.tiers.get(&self.pages[page]) {
                Ok(f) => f.bytes,
                Err(e) if e.is_fetch_failure() => {
                    tracing::warn!(page, error = %e, "value page unavailable; its rows read as zero");
                    reads.missing += 1;
                    continue;
                }
                Err(e) => return Err(LmError::Unavailable(e.to_string())),
            };
            let first_row = page * self.rows_per_page;
            for slot in slots {
                let row = wanted[slot] as usize - first_row;
                let src = &bytes[row * dim * 4..(row + 1) * dim * 4];
                for (d, v) in gathered[slot * dim..(slot + 1) * dim]
                    .iter_mut()
                    .zip(src.chunks_exact(4))
                {
                    *d = f32::from_le_bytes([v[0], v[1], v[2], v[3]]);
                }
            }
        }
        bag_sum(&gathered, dim, &local, weights, out);
        Ok(reads)
    }
}

#[cfg(test)]
#[path = "paged_tests.rs"]
mod tests;
