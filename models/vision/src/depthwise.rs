//! The depthwise k×k convolutions of the MBConv blocks, on NHWC
//! activations.
//!
//! Why a kernel of our own: candle's CPU `conv2d` runs a grouped
//! convolution as one small convolution per group; measured on one thread
//! it reached 0.15–0.33 GMAC/s on Lite0's depthwise shapes, which would be
//! ~170 ms per image, more than ten times the rest of the network. The
//! kernel below reaches ~18–20 GMAC/s on the same shapes (AVX-512 machine):
//! channels in blocks of 16 (one vector register), four output pixels at a
//! time, each block's input copied into a small zero-padded slab first (see
//! [`Slab`]). BatchNorm is already folded into the weights and bias, and
//! ReLU6 is applied on the way out, so each activation is written once.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, CustomOp1, Layout, Shape};

use crate::config::Padding;
use crate::conv::{Nhwc, Window};
use mnemos_models_core::simd::{vectorized, Kernel};

/// A depthwise convolution with BatchNorm folded in, followed by ReLU6.
#[derive(Debug, Clone)]
pub(crate) struct Depthwise {
    pub kernel: usize,
    pub stride: usize,
    pub channels: usize,
    pub padding: Padding,
    /// `[k·k, channels]`: tap-major, so each tap's weights for all
    /// channels are contiguous like the activations they multiply.
    pub weight: Vec<f32>,
    pub bias: Vec<f32>,
}

impl Depthwise {
    pub fn windows(&self, h: usize, w: usize) -> (Window, Window) {
        (
            Window::new(h, self.kernel, self.stride, self.padding),
            Window::new(w, self.kernel, self.stride, self.padding),
        )
    }

    /// Computes the output for input `shape` into `out` (NHWC).
    pub fn run(&self, input: &[f32], shape: Nhwc, out: &mut [f32]) {
        vectorized(DepthwiseKernel {
            conv: self,
            input,
            shape,
            out,
        });
    }
}

struct DepthwiseKernel<'a> {
    conv: &'a Depthwise,
    input: &'a [f32],
    shape: Nhwc,
    out: &'a mut [f32],
}

/// Channels per packed block: one AVX-512 register (two AVX2 ones). Every
/// EfficientNet-Lite width (32, 96, 144, 240, …) is a multiple of 16; the
/// one-channel blocks only serve other models.
const LANES: usize = 16;
/// Horizontally adjacent output pixels computed together: each weight
/// vector is loaded once for all of them, and their sums are independent
/// chains that hide the multiply-add latency. 4 × 16 floats are four
/// AVX-512 (eight AVX2) accumulator registers.
const PIXELS: usize = 4;

impl Kernel for DepthwiseKernel<'_> {
    #[inline(always)]
    fn run(self) {
        let Self {
            conv,
            input,
            shape,
            out,
        } = self;
        let c = shape.c;
        let image_in = shape.h * shape.w * c;
        let (rows, cols) = conv.windows(shape.h, shape.w);
        let image_out = rows.out * cols.out * c;
        let mut slab = Slab::default();
        for b in 0..shape.n {
            let input = &input[b * image_in..(b + 1) * image_in];
            let out = &mut out[b * image_out..(b + 1) * image_out];
            let mut c0 = 0;
            while c0 + LANES <= c {
                slab.pack::<LANES>(conv, input, shape, c0);
                by_geometry::<LANES>(conv, &slab, out, c, c0);
                c0 += LANES;
            }
            while c0 < c {
                slab.pack::<1>(conv, input, shape, c0);
                by_geometry::<1>(conv, &slab, out, c, c0);
                c0 += 1;
            }
        }
    }
}

/// One channel block of one image, copied out of the NHWC activation into
/// a dense, zero-padded `[rows][cols][W]` array, with its weights as
/// `[k·k][W]`.
///
/// Why copy: in place, neighbouring pixels of a block are `channels·4`
/// bytes apart (4.6 KB for 1152 channels), so a window touches scattered
/// cache lines; packed, the window's rows are contiguous, the working set
/// stays in L1, and with the padding materialised every output pixel sees
/// all k×k taps, so the inner loops have no border cases and (with k and
/// the stride known at compile time) no bounds checks. The copy is one
/// pass over the input.
#[derive(Default)]
struct Slab {
    data: Vec<f32>,
    weight: Vec<f32>,
    cols: usize,
    out_rows: usize,
    out_cols: usize,
}

impl Slab {
    #[inline(always)]
    fn pack<const W: usize>(&mut self, conv: &Depthwise, input: &[f32], shape: Nhwc, c0: usize) {
        let (k, s, c) = (conv.kernel, conv.stride, shape.c);
        let (rows, cols) = conv.windows(shape.h, shape.w);
        // Padded extent the outputs reach (symmetric padding may leave
        // trailing input rows unread).
        let padded_rows = (rows.out - 1) * s + k;
        let padded_cols = (cols.out - 1) * s + k;
        let len = padded_rows * padded_cols * W;
        if self.data.len() != len || self.cols != padded_cols {
            // The padding is never written below, so it stays zero from
            // one channel block to the next: zero-fill only on a new shape.
            self.data.clear();
            self.data.resize(len, 0.0);
        }
        for y in 0..shape.h.min(padded_rows - rows.pad_before) {
            let py = y + rows.pad_before;
            let dst_row = &mut self.data[py * padded_cols * W..(py + 1) * padded_cols * W];
            let src_row = &input[y * shape.w * c..(y + 1) * shape.w * c];
            let dst = dst_row[cols.pad_before * W..].chunks_exact_mut(W);
            for (dst, src) in dst.zip(src_row.chunks_exact(c)) {
                dst.copy_from_slice(&src[c0..c0 + W]);
            }
        }
        self.weight.clear();
        for tap in conv.weight.chunks_exact(c) {
            self.weight.extend_from_slice(&tap[c0..c0 + W]);
        }
        self.cols = padded_cols;
        self.out_rows = rows.out;
        self.out_cols = cols.out;
    }
}

/// Runs [`channel_block`] with the kernel size and stride as constants for
/// the shapes EfficientNet uses (each call is inlined, so the compiler
/// unrolls the tap loops and drops their bounds checks), generically for
/// any other.
#[inline(always)]
fn by_geometry<const L: usize>(
    conv: &Depthwise,
    slab: &Slab,
    out: &mut [f32],
    c: usize,
    c0: usize,
) {
    match (conv.kernel, conv.stride) {
        (3, 1) => channel_block::<L>(conv, slab, out, c, c0, 3, 1),
        (3, 2) => channel_block::<L>(conv, slab, out, c, c0, 3, 2),
        (5, 1) => channel_block::<L>(conv, slab, out, c, c0, 5, 1),
        (5, 2) => channel_block::<L>(conv, slab, out, c, c0, 5, 2),
        (k, s) => channel_block::<L>(conv, slab, out, c, c0, k, s),
    }
}

/// Channels `c0..c0 + L` of every output pixel of one image, from `slab`.
#[allow(clippy::too_many_arguments)] // inlined into by_geometry
#[inline(always)]
fn channel_block<const L: usize>(
    conv: &Depthwise,
    slab: &Slab,
    out: &mut [f32],
    c: usize,
    c0: usize,
    k: usize,
    s: usize,
) {
    let mut bias = [0f32; L];
    bias.copy_from_slice(&conv.bias[c0..c0 + L]);
    let g = Geometry { k, s, c, c0 };
    for oy in 0..slab.out_rows {
        let mut ox = 0;
        while ox + PIXELS <= slab.out_cols {
            pixels::<L, PIXELS>(slab, &bias, out, g, oy, ox);
            ox += PIXELS;
        }
        while ox < slab.out_cols {
            pixels::<L, 1>(slab, &bias, out, g, oy, ox);
            ox += 1;
        }
    }
}

#[derive(Clone, Copy)]
struct Geometry {
    k: usize,
    s: usize,
    c: usize,
    c0: usize,
}

/// `P` adjacent output pixels from `(oy, ox)` on, channels `c0..c0 + L`:
/// bias + Σ taps, clamped to [0, 6], the sums held in registers.
#[inline(always)]
fn pixels<const L: usize, const P: usize>(
    slab: &Slab,
    bias: &[f32; L],
    out: &mut [f32],
    g: Geometry,
    oy: usize,
    ox: usize,
) {
    let Geometry { k, s, c, c0 } = g;
    let row_stride = slab.cols * L;
    // The input columns the P pixels' windows span, as one slice of known
    // length, so that the indexing below needs no checks once k and s are
    // constants.
    let span = ((P - 1) * s + k) * L;
    let mut acc = [*bias; P];
    for ky in 0..k {
        let start = (oy * s + ky) * row_stride + ox * s * L;
        let row = &slab.data[start..start + span];
        let taps = &slab.weight[ky * k * L..(ky + 1) * k * L];
        for kx in 0..k {
            let w = &taps[kx * L..kx * L + L];
            for (p, a) in acc.iter_mut().enumerate() {
                let at = (p * s + kx) * L;
                let x = &row[at..at + L];
                for ((a, x), w) in a.iter_mut().zip(x).zip(w) {
                    *a = x.mul_add(*w, *a);
                }
            }
        }
    }
    for (p, a) in acc.iter().enumerate() {
        let at = (oy * slab.out_cols + ox + p) * c + c0;
        for (o, a) in out[at..at + L].iter_mut().zip(a) {
            *o = a.clamp(0.0, 6.0);
        }
    }
}

impl CustomOp1 for Depthwise {
    fn name(&self) -> &'static str {
        "mnemos-depthwise-relu6"
    }

    fn cpu_fwd(
        &self,
        storage: &CpuStorage,
        layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let Some((start, end)) = layout.contiguous_offsets() else {
            bail!("depthwise: input must be contiguous");
        };
        let &[n, h, w, c] = layout.dims() else {
            bail!("depthwise: expected NHWC input, got {:?}", layout.dims());
        };
        if c != self.channels {
            bail!(
                "depthwise: {c} input channels, weights have {}",
                self.channels
            );
        }
        let CpuStorage::F32(data) = storage else {
            bail!(
                "depthwise: only f32 is supported, got {:?}",
                storage.dtype()
            );
        };
        let (rows, cols) = self.windows(h, w);
        let mut out = vec![0f32; n * rows.out * cols.out * c];
        self.run(&data[start..end], Nhwc { n, h, w, c }, &mut out);
        Ok((
            CpuStorage::F32(out),
            Shape::from((n, rows.out, cols.out, c)),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Direct definition, one output at a time.
    fn naive(conv: &Depthwise, input: &[f32], shape: Nhwc) -> Vec<f32> {
        let (rows, cols) = conv.windows(shape.h, shape.w);
        let k = conv.kernel as isize;
        let mut out = Vec::new();
        for b in 0..shape.n {
            for oy in 0..rows.out {
                for ox in 0..cols.out {
                    for ch in 0..shape.c {
                        let mut acc = conv.bias[ch];
                        for ky in 0..k {
                            for kx in 0..k {
                                let iy =
                                    (oy * conv.stride) as isize + ky - rows.pad_before as isize;
                                let ix =
                                    (ox * conv.stride) as isize + kx - cols.pad_before as isize;
                                if iy < 0
                                    || ix < 0
                                    || iy >= shape.h as isize
                                    || ix >= shape.w as isize
                                {
                                    continue;
                                }
                                let x = input[((b * shape.h + iy as usize) * shape.w
                                    + ix as usize)
                                    * shape.c
                                    + ch];
                                acc += x * conv.weight[(ky * k + kx) as usize * shape.c + ch];
                            }
                        }
                        out.push(acc.clamp(0.0, 6.0));
                    }
                }
            }
        }
        out
    }

    fn pseudo_random(n: usize, seed: u32) -> Vec<f32> {
        let mut state = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                (state % 2001) as f32 / 1000.0 - 1.0
            })
            .collect()
    }

    #[test]
    fn depthwise_matches_the_definition() {
        // 70 channels: one full 64-lane block and a remainder.
        for (k, s, padding, h, w) in [
            (3, 1, Padding::Same, 5, 6),
            (3, 2, Padding::Same, 8, 7),
            (5, 2, Padding::Same, 9, 10),
            (5, 1, Padding::Symmetric, 4, 4),
            (3, 2, Padding::Symmetric, 6, 6),
        ] {
            let c = 70;
            let conv = Depthwise {
                kernel: k,
                stride: s,
                channels: c,
                padding,
                weight: pseudo_random(k * k * c, 1),
                bias: pseudo_random(c, 2).iter().map(|b| b * 3.0).collect(),
            };
            let shape = Nhwc { n: 2, h, w, c };
            let input: Vec<f32> = pseudo_random(2 * h * w * c, 3)
                .iter()
                .map(|x| x * 4.0)
                .collect();
            let (rows, cols) = conv.windows(h, w);
            let mut out = vec![0f32; 2 * rows.out * cols.out * c];
            conv.run(&input, shape, &mut out);
            let want = naive(&conv, &input, shape);
            let worst = out
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(worst < 1e-5, "k{k} s{s} {padding:?}: max diff {worst}");
        }
    }
}
