//! Small tensor helpers shared by the blocks.

use candle_core::{CpuStorage, DType, Storage, Tensor};

use crate::error::Result;

/// `x · wᵀ` for `x` of shape `(…, in)` and a weight `w` of shape
/// `(out, in)` (PyTorch's `Linear` layout, as in hub checkpoints).
///
/// The leading dimensions are folded into one so the product is a single
/// 2-D matrix multiplication; gemm reads the transposed weight through its
/// strides, without a copy.
pub(crate) fn linear(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let dims = x.dims();
    let (inner, rest) = dims.split_last().map_or((1, &[][..]), |(l, r)| (*l, r));
    let rows = rest.iter().product::<usize>();
    let y = x.reshape((rows, inner))?.matmul(&w.t()?)?;
    let mut out = rest.to_vec();
    out.push(w.dim(0)?);
    Ok(y.reshape(out)?)
}

/// Runs `f` on the elements of `t` in row-major order, borrowing the
/// tensor's own buffer when it is a contiguous f32 CPU tensor (the usual
/// case: no copy) and reading a copy otherwise.
pub(crate) fn with_host_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    {
        let (storage, layout) = t.storage_and_layout();
        if let (Storage::Cpu(CpuStorage::F32(data)), Some((start, end))) =
            (&*storage, layout.contiguous_offsets())
        {
            return Ok(f(&data[start..end]));
        }
    }
    let copy = t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    Ok(f(&copy))
}
