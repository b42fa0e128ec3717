//! Linking new documents into the neighbour graph, exactly, with blocked
//! matrix products.
//!
//! For a chunk of `m` new documents, one pass over the document matrix
//! computes the `m × slots` dot products block by block (candle's matmul:
//! gemm with AVX-512 and all cores) and turns each product entry into a
//! squared distance `|a|² + |b|² − 2·a·b`. Every entry is used twice:
//! - **row side**: the new document's own list, a bounded top-`k` over all
//!   candidate columns (live documents and the other new ones);
//! - **column side**: an *offer* to an existing document whose farthest
//!   kept neighbour is farther than the new one (or whose list has room).
//!
//! Applying the lists and the offers ([`apply`]) leaves every list exactly
//! the `k` nearest of the old documents and the new ones, so the graph
//! stays exact under inserts. Building a whole graph is the same thing,
//! chunk after chunk, each chunk against the documents linked before it:
//! each pair's product is computed once, half the work of a row-by-row
//! all-pairs pass.
//!
//! The selection loop is one subtraction and two comparisons per entry
//! (almost all fail), split across threads by rows; the products dominate.
//! A chunk of fewer than [`DIRECT_BELOW`] documents (a single upsert) skips
//! candle: copying column blocks into tensors would cost more than the
//! arithmetic, so plain dot products stream the matrix once instead.

use candle_core::{CpuStorage, Device, Storage, Tensor};
use mnemos_index_core::vector::dot;
use mnemos_index_core::{IndexError, Result};

use crate::docs::DocTable;
use crate::graph::NeighborGraph;
use crate::topk::SmallestK;

/// Columns (documents) per product block: a 1024 × 2048 product is 8 MiB,
/// and copying 2048 columns into a tensor costs ~1% of multiplying them.
const COLUMN_BLOCK: usize = 2048;
/// Chunks of fewer new documents use plain dot products instead of gemm.
pub(crate) const DIRECT_BELOW: usize = 16;
/// Product entries screened together by the selection loop.
const LANES: usize = 16;
/// Product blocks smaller than this are selected on one thread.
const PARALLEL_ABOVE: usize = 1 << 18;

/// What linking a chunk of new documents changes, computed without
/// changing anything (so searches can run meanwhile).
pub(crate) struct Links {
    /// Each new slot's neighbour list, nearest first.
    lists: Vec<Vec<(f32, u32)>>,
    /// `(existing slot, new slot, distance)`: new documents nearer than the
    /// existing slot's current bound.
    offers: Vec<(u32, u32, f32)>,
}

/// Computes the [`Links`] of the documents in slots `new` (whose vectors
/// are already in `docs`) against each other and against every slot for
/// which `existing` holds. `graph` supplies the existing slots' bounds.
pub(crate) fn link(
    docs: &DocTable,
    graph: &NeighborGraph,
    new: &[u32],
    existing: &dyn Fn(u32) -> bool,
) -> Result<Links> {
    let dim = docs.dim();
    let slots = docs.slots();
    let m = new.len();
    let norms = docs.sq_norms();
    // Per column: its squared norm if it is a candidate neighbour, else
    // infinity (the distance is then infinite and never kept); and the
    // bound below which it takes an offer, −infinity for new columns.
    let mut column_norm = vec![f32::INFINITY; slots];
    let mut offer_bound = vec![f32::NEG_INFINITY; slots];
    for slot in 0..slots as u32 {
        if existing(slot) {
            column_norm[slot as usize] = norms[slot as usize];
            offer_bound[slot as usize] = graph.bound(slot);
        }
    }
    let mut rows = Vec::with_capacity(m * dim);
    for &slot in new {
        column_norm[slot as usize] = norms[slot as usize];
        rows.extend_from_slice(docs.row(slot));
    }
    let row_norms: Vec<f32> = new.iter().map(|&s| norms[s as usize]).collect();
    let lhs = if m >= DIRECT_BELOW {
        Some(Tensor::from_slice(&rows, (m, dim), &Device::Cpu).map_err(candle)?)
    } else {
        None
    };

    let mut heaps: Vec<SmallestK> = (0..m).map(|_| SmallestK::new(graph.k())).collect();
    let mut offers = Vec::new();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut start = 0;
    while start < slots {
        let end = (start + COLUMN_BLOCK).min(slots);
        let block = Block {
            start,
            len: end - start,
            new,
            row_norms: &row_norms,
            column_norm: &column_norm[start..end],
            offer_bound: &offer_bound[start..end],
        };
        start = end;
        if block.column_norm.iter().all(|n| n.is_infinite()) {
            continue;
        }
        let columns = &docs.vectors()[block.start * dim..end * dim];
        match &lhs {
            Some(lhs) => {
                let rhs =
                    Tensor::from_slice(columns, (block.len, dim), &Device::Cpu).map_err(candle)?;
                let product = lhs.matmul(&rhs.t().map_err(candle)?).map_err(candle)?;
                let (storage, layout) = product.storage_and_layout();
                let data = match (&*storage, layout.contiguous_offsets()) {
                    (Storage::Cpu(CpuStorage::F32(data)), Some((a, b))) => &data[a..b],
                    _ => return Err(backend("matmul gave no contiguous f32 product".into())),
                };
                block.select(data, &mut heaps, &mut offers, threads);
            }
            None => {
                let mut data = vec![0f32; m * block.len];
                for (j, column) in columns.chunks_exact(dim).enumerate() {
                    if block.column_norm[j].is_finite() {
                        for (i, row) in rows.chunks_exact(dim).enumerate() {
                            data[i * block.len + j] = dot(row, column);
                        }
                    }
                }
                block.select(&data, &mut heaps, &mut offers, 1);
            }
        }
    }
    let lists = heaps
        .into_iter()
        .map(|heap| {
            heap.into_sorted()
                .into_iter()
                .map(|kept| (kept.key, kept.slot))
                .collect()
        })
        .collect();
    Ok(Links { lists, offers })
}

/// Writes `links` (computed by [`link`] for `new`) into `graph`, whose
/// bounds must not have grown since: nothing but other offers of the same
/// links may have changed it.
pub(crate) fn apply(graph: &mut NeighborGraph, new: &[u32], links: Links) {
    for (&slot, list) in new.iter().zip(links.lists) {
        graph.set(slot, list.into_iter());
    }
    for (slot, neighbor, distance) in links.offers {
        graph.insert(slot, neighbor, distance);
    }
}

/// One block of columns `start..start + len` against every new row.
struct Block<'a> {
    start: usize,
    len: usize,
    new: &'a [u32],
    row_norms: &'a [f32],
    column_norm: &'a [f32],
    offer_bound: &'a [f32],
}

impl Block<'_> {
    /// Feeds the row-major `m × len` dot products `data` into the new rows'
    /// heaps and collects offers, on up to `threads` threads (by rows).
    fn select(
        &self,
        data: &[f32],
        heaps: &mut [SmallestK],
        offers: &mut Vec<(u32, u32, f32)>,
        threads: usize,
    ) {
        let m = heaps.len();
        let threads = if m * self.len >= PARALLEL_ABOVE {
            threads.clamp(1, m)
        } else {
            1
        };
        if threads == 1 {
            self.select_rows(0, data, heaps, offers);
            return;
        }
        let per = m.div_ceil(threads);
        std::thread::scope(|scope| {
            let handles: Vec<_> = heaps
                .chunks_mut(per)
                .enumerate()
                .map(|(t, chunk)| {
                    let first = t * per;
                    scope.spawn(move || {
                        let mut found = Vec::new();
                        self.select_rows(first, data, chunk, &mut found);
                        found
                    })
                })
                .collect();
            for handle in handles {
                match handle.join() {
                    Ok(found) => offers.extend(found),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        });
    }

    /// Rows `first..first + heaps.len()` of the block.
    ///
    /// Entries are screened [`LANES`] at a time with branch-free
    /// comparisons that the compiler vectorises; only a group holding an
    /// entry that beats a bound is walked one by one. (At 20k × 384 the
    /// selection was ~11% of a build's profile, the products ~50%.)
    fn select_rows(
        &self,
        first: usize,
        data: &[f32],
        heaps: &mut [SmallestK],
        offers: &mut Vec<(u32, u32, f32)>,
    ) {
        for (i, heap) in (first..).zip(heaps.iter_mut()) {
            let me = self.new[i];
            let row_norm = self.row_norms[i];
            let products = &data[i * self.len..(i + 1) * self.len];
            let mut bound = heap.bound();
            let mut visit = |j: usize, distance: f32, bound: &mut f32| {
                let slot = (self.start + j) as u32;
                if distance < *bound && slot != me {
                    heap.push(distance.max(0.0), slot);
                    *bound = heap.bound();
                }
                if distance < self.offer_bound[j] {
                    offers.push((slot, me, distance.max(0.0)));
                }
            };
            let groups = products
                .chunks_exact(LANES)
                .zip(self.column_norm.chunks_exact(LANES))
                .zip(self.offer_bound.chunks_exact(LANES));
            for (g, ((p, norms), offer)) in groups.enumerate() {
                let mut hit = false;
                for t in 0..LANES {
                    let distance = row_norm + norms[t] - 2.0 * p[t];
                    hit |= (distance < bound) | (distance < offer[t]);
                }
                if hit {
                    for t in 0..LANES {
                        let distance = row_norm + norms[t] - 2.0 * p[t];
                        visit(g * LANES + t, distance, &mut bound);
                    }
                }
            }
            let tail = products.len() / LANES * LANES;
            for (j, (&p, &norm)) in products.iter().zip(self.column_norm).enumerate().skip(tail) {
                visit(j, row_norm + norm - 2.0 * p, &mut bound);
            }
        }
    }
}

fn candle(e: candle_core::Error) -> IndexError {
    backend(e.to_string())
}

fn backend(message: String) -> IndexError {
    IndexError::Backend {
        backend: "candle",
        message,
    }
}
