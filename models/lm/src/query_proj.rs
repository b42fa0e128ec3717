//! The memory layer's query projection for inference, from a packed f16
//! copy of its weight (with the batch norm's running affine map applied
//! after), for the few-token calls of decoding.
//!
//! Why: candle's `matmul` hands a `(T, dim) × (dim, H·d_k)` product to
//! gemm, which packs the whole right-hand side, a 512 KB copy at
//! dim = 256 and H·d_k = 512, on every call. At T = 1 that copy is most
//! of the ~7 µs the projection took, and it pushed the eight-bit sub-keys
//! ([`crate::subkeys_i8`]) out of a 1 MB L2. The packed copy is read in
//! place by the same kernel that scores f16 sub-keys ([`PackedKeys`]),
//! which is exactly a matrix-vector product. Only a weight that f16
//! holds exactly (as in the checkpoints `mnemos train lm` saves) is
//! packed, so the copy never changes the weights. The sums run in another
//! order than `matmul`'s, which longer inputs still use: decoding and a
//! prefill of the same token can differ in the last bits of a query.

use crate::subkeys::PackedKeys;

/// Tokens up to which [`QueryProjection`] is used; longer inputs (prefill,
/// scoring) go through `matmul`, where packing pays for itself.
pub(crate) const MAX_TOKENS: usize = 16;

/// `q = scale ⊙ (W x) + shift` for a weight `W` `(rows, dim)`.
#[derive(Debug)]
pub(crate) struct QueryProjection {
    /// `Wᵀ` as one half of `dim`-wide "sub-keys", `rows` of them.
    weight: PackedKeys,
    scale: Vec<f32>,
    shift: Vec<f32>,
    dim: usize,
}

impl QueryProjection {
    /// Packs `weight` `(rows, dim)` row-major; `affine` is the batch
    /// norm's `(scale, shift)`, one per row, or none. Only a weight that
    /// f16 holds exactly is packed (an f16 checkpoint's): for any other,
    /// `None`, and the caller keeps `matmul`, so a model loaded from f32
    /// weights projects exactly what it was given.
    pub fn pack(
        weight: &[f32],
        rows: usize,
        dim: usize,
        affine: Option<(Vec<f32>, Vec<f32>)>,
    ) -> Option<Self> {
        let exact = |w: &f32| f32::from(half::f16::from_f32(*w)).to_bits() == w.to_bits();
        if !weight.iter().all(exact) {
            return None;
        }
        let mut transposed = vec![0f32; weight.len()];
        for (o, row) in weight.chunks_exact(dim).enumerate() {
            for (d, &w) in row.iter().enumerate() {
                transposed[d * rows + o] = w;
            }
        }
        let (scale, shift) = affine.unwrap_or_else(|| (vec![1.0; rows], vec![0.0; rows]));
        Some(Self {
            weight: PackedKeys::pack(&transposed, 1, dim, rows).ok()?,
            scale,
            shift,
            dim,
        })
    }

    /// Queries `(T, rows)` of inputs `x` `(T, dim)`, row-major.
    pub fn project(&self, x: &[f32]) -> Vec<f32> {
        let rows = self.scale.len();
        let tokens = x.len() / self.dim;
        let mut q = vec![0f32; tokens * rows];
        self.weight.score(x, &mut q);
        for row in q.chunks_exact_mut(rows) {
            for ((v, &a), &b) in row.iter_mut().zip(&self.scale).zip(&self.shift) {
                *v = *v * a + b;
            }
        }
        q
    }
}
