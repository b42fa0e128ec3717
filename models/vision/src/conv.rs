//! Convolution geometry on NHWC activations, and the stem's 3×3
//! convolution as im2col + one matrix product. The depthwise convolutions
//! are in [`crate::depthwise`].

use crate::config::Padding;

/// Output size and leading padding of a convolution along one axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Window {
    pub out: usize,
    pub pad_before: usize,
}

impl Window {
    /// For an input of `n` pixels, a kernel of `k` and stride `s`.
    pub fn new(n: usize, k: usize, s: usize, padding: Padding) -> Self {
        match padding {
            Padding::Same => {
                let out = n.div_ceil(s);
                let total = ((out - 1) * s + k).saturating_sub(n);
                Self {
                    out,
                    pad_before: total / 2,
                }
            }
            Padding::Symmetric => {
                let pad = k / 2;
                Self {
                    out: (n + 2 * pad - k) / s + 1,
                    pad_before: pad,
                }
            }
        }
    }

    /// Input index of kernel tap `t` for output `o`, if inside the image.
    #[inline(always)]
    pub(crate) fn source(self, o: usize, t: usize, s: usize, n: usize) -> Option<usize> {
        (o * s + t).checked_sub(self.pad_before).filter(|&i| i < n)
    }
}

/// Shape of an NHWC activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Nhwc {
    pub n: usize,
    pub h: usize,
    pub w: usize,
    pub c: usize,
}

/// Unfolds `k`×`k` patches of an NHWC image into rows of a matrix
/// `[n·out_h·out_w, k·k·c]`, taps ordered (ky, kx, channel); padding reads
/// as zero. The stem has only 3 input channels, so this matrix is small
/// (27 columns) and one matrix product does the convolution.
pub(crate) fn im2col(
    input: &[f32],
    shape: Nhwc,
    k: usize,
    s: usize,
    rows: Window,
    cols: Window,
) -> Vec<f32> {
    let patch = k * k * shape.c;
    let mut out = vec![0f32; shape.n * rows.out * cols.out * patch];
    let mut dst = out.chunks_exact_mut(patch);
    for b in 0..shape.n {
        for oy in 0..rows.out {
            for ox in 0..cols.out {
                let Some(row) = dst.next() else { return out };
                for ky in 0..k {
                    let Some(iy) = rows.source(oy, ky, s, shape.h) else {
                        continue;
                    };
                    for kx in 0..k {
                        let Some(ix) = cols.source(ox, kx, s, shape.w) else {
                            continue;
                        };
                        let at = ((b * shape.h + iy) * shape.w + ix) * shape.c;
                        let tap = (ky * k + kx) * shape.c;
                        row[tap..tap + shape.c].copy_from_slice(&input[at..at + shape.c]);
                    }
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_padding_matches_tensorflow() {
        let w = |n, k, s, padding| {
            let w = Window::new(n, k, s, padding);
            (w.out, w.pad_before)
        };
        // TF "SAME": out = ceil(n / s); the extra padding goes after.
        assert_eq!(w(224, 3, 2, Padding::Same), (112, 0));
        assert_eq!(w(56, 5, 2, Padding::Same), (28, 1));
        assert_eq!(w(7, 3, 2, Padding::Same), (4, 1));
        assert_eq!(w(14, 5, 1, Padding::Same), (14, 2));
        assert_eq!(w(1, 5, 2, Padding::Same), (1, 2));
        assert_eq!(w(224, 3, 2, Padding::Symmetric), (112, 1));
    }

    #[test]
    fn im2col_places_taps_and_zero_padding() {
        // 1 image, 4×4, 1 channel, values 1..=16; k 3, stride 2, SAME:
        // 2×2 outputs, padding 0 before and 1 after (TF's asymmetric split).
        let input: Vec<f32> = (1..=16).map(|v| v as f32).collect();
        let shape = Nhwc {
            n: 1,
            h: 4,
            w: 4,
            c: 1,
        };
        let win = Window::new(4, 3, 2, Padding::Same);
        assert_eq!(
            win,
            Window {
                out: 2,
                pad_before: 0
            }
        );
        let cols = im2col(&input, shape, 3, 2, win, win);
        assert_eq!(cols.len(), 4 * 9);
        assert_eq!(&cols[..9], &[1.0, 2.0, 3.0, 5.0, 6.0, 7.0, 9.0, 10.0, 11.0]);
        assert_eq!(
            &cols[27..],
            &[11.0, 12.0, 0.0, 15.0, 16.0, 0.0, 0.0, 0.0, 0.0]
        );
    }
}
