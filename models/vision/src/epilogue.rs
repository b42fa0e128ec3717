//! What follows each matrix product, done in place in one pass: add the
//! folded BatchNorm bias, then ReLU6 or the block's residual input.
//!
//! candle's `broadcast_add` and `clamp` would each allocate a new tensor and
//! pass over it once more; these activations are the largest arrays of the
//! forward pass (up to 112·112·96 floats per image), so touching them once
//! matters on one core.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, InplaceOp1, InplaceOp2, Layout, Result, Tensor};

use mnemos_models_core::simd::{vectorized, Kernel};

/// What to apply after the bias.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    None,
    Relu6,
}

struct BiasAct<'a> {
    bias: &'a [f32],
    act: Activation,
}

struct BiasActRows<'a> {
    rows: &'a mut [f32],
    bias: &'a [f32],
    act: Activation,
}

impl Kernel for BiasActRows<'_> {
    #[inline(always)]
    fn run(self) {
        for row in self.rows.chunks_exact_mut(self.bias.len()) {
            match self.act {
                Activation::None => {
                    for (x, b) in row.iter_mut().zip(self.bias) {
                        *x += b;
                    }
                }
                Activation::Relu6 => {
                    for (x, b) in row.iter_mut().zip(self.bias) {
                        *x = (*x + b).clamp(0.0, 6.0);
                    }
                }
            }
        }
    }
}

fn rows_of<'a>(
    storage: &'a mut CpuStorage,
    layout: &Layout,
    width: usize,
) -> Result<&'a mut [f32]> {
    let Some((start, end)) = layout.contiguous_offsets() else {
        bail!("epilogue: tensor must be contiguous");
    };
    if layout.dims().last() != Some(&width) {
        bail!(
            "epilogue: last dimension of {:?} is not {width}",
            layout.dims()
        );
    }
    match storage {
        CpuStorage::F32(data) => Ok(&mut data[start..end]),
        other => bail!("epilogue: only f32 is supported, got {:?}", other.dtype()),
    }
}

impl InplaceOp1 for BiasAct<'_> {
    fn name(&self) -> &'static str {
        "mnemos-bias-act"
    }

    fn cpu_fwd(&self, storage: &mut CpuStorage, layout: &Layout) -> Result<()> {
        let rows = rows_of(storage, layout, self.bias.len())?;
        vectorized(BiasActRows {
            rows,
            bias: self.bias,
            act: self.act,
        });
        Ok(())
    }
}

/// `xs[.., j] = act(xs[.., j] + bias[j])` in place. `xs` must be a
/// contiguous f32 tensor whose storage nothing else shares (a fresh matrix
/// product) and whose last dimension is `bias.len()`.
pub(crate) fn bias_act(xs: &Tensor, bias: &[f32], act: Activation) -> Result<()> {
    xs.inplace_op1(&BiasAct { bias, act })
}

struct BiasResidual<'a> {
    bias: &'a [f32],
}

struct BiasResidualRows<'a> {
    rows: &'a mut [f32],
    residual: &'a [f32],
    bias: &'a [f32],
}

impl Kernel for BiasResidualRows<'_> {
    #[inline(always)]
    fn run(self) {
        let width = self.bias.len();
        for (row, res) in self
            .rows
            .chunks_exact_mut(width)
            .zip(self.residual.chunks_exact(width))
        {
            for ((x, r), b) in row.iter_mut().zip(res).zip(self.bias) {
                *x += b + r;
            }
        }
    }
}

impl InplaceOp2 for BiasResidual<'_> {
    fn name(&self) -> &'static str {
        "mnemos-bias-residual"
    }

    fn cpu_fwd(
        &self,
        dst: &mut CpuStorage,
        dst_l: &Layout,
        src: &CpuStorage,
        src_l: &Layout,
    ) -> Result<()> {
        if src_l.dims() != dst_l.dims() {
            bail!(
                "residual: shapes {:?} and {:?} differ",
                src_l.dims(),
                dst_l.dims()
            );
        }
        let Some((start, end)) = src_l.contiguous_offsets() else {
            bail!("residual: input must be contiguous");
        };
        let CpuStorage::F32(src) = src else {
            bail!("residual: only f32 is supported");
        };
        let rows = rows_of(dst, dst_l, self.bias.len())?;
        vectorized(BiasResidualRows {
            rows,
            residual: &src[start..end],
            bias: self.bias,
        });
        Ok(())
    }
}

/// `xs += bias + residual` in place (the MBConv skip connection); same
/// requirements on `xs` as [`bias_act`], and `residual` of the same shape.
pub(crate) fn bias_residual(xs: &Tensor, bias: &[f32], residual: &Tensor) -> Result<()> {
    xs.inplace_op2(residual, &BiasResidual { bias })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn bias_then_relu6_or_residual() -> Result<()> {
        let dev = Device::Cpu;
        let xs = Tensor::new(&[[-1f32, 2.0, 7.0], [0.5, -3.0, 5.0]], &dev)?;
        bias_act(&xs, &[0.5, 0.5, 0.5], Activation::Relu6)?;
        assert_eq!(xs.to_vec2::<f32>()?, [[0.0, 2.5, 6.0], [1.0, 0.0, 5.5]]);

        let ys = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &dev)?;
        bias_act(&ys, &[-10.0, 0.0], Activation::None)?;
        assert_eq!(ys.to_vec2::<f32>()?, [[-9.0, 2.0], [-7.0, 4.0]]);

        let zs = Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &dev)?;
        let res = Tensor::new(&[[10f32, 20.0], [30.0, 40.0]], &dev)?;
        bias_residual(&zs, &[0.5, -0.5], &res)?;
        assert_eq!(zs.to_vec2::<f32>()?, [[11.5, 21.5], [33.5, 43.5]]);
        Ok(())
    }

    #[test]
    fn mismatched_widths_are_errors() -> Result<()> {
        let xs = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu)?;
        assert!(bias_act(&xs, &[0.0; 2], Activation::None).is_err());
        Ok(())
    }
}
