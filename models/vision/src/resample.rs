//! "Resize the shorter side to 256, centre-crop 224", computing only the
//! pixels the crop keeps.
//!
//! The filter is the antialiased bilinear (triangle) filter of PIL's
//! `Image.resize(..., BILINEAR)`, which torchvision's `Resize` uses and
//! `torch.nn.functional.interpolate(mode="bilinear", antialias=True)`
//! reproduces: when shrinking by a factor `f` the triangle is widened to
//! span `f` source pixels on each side, so every source pixel contributes
//! (no aliasing); when enlarging it is plain bilinear interpolation. Output
//! sizes and crop offsets follow torchvision exactly: the longer side
//! becomes `floor(256·long/short)`, the crop starts at
//! `round((size − 224) / 2)` with Python's round-half-to-even.
//!
//! Why not `image::imageops::resize` followed by a crop: that materialises
//! the whole resized image, which for a very elongated input (e.g.
//! 8000×20) is gigantic (256×102,400 pixels), rounds to u8 between the
//! passes, and spends most of its time on pixels the crop throws away. Here
//! a separable pass computes the 224×224 window directly, in f32.

/// Filter taps of one output coordinate: source range start and weights.
struct Taps {
    start: usize,
    weights: Vec<f32>,
}

/// PIL's `precompute_coeffs` for the triangle filter, for the outputs in
/// `outputs` of a resize from `input` to `output` samples.
fn taps(input: usize, output: usize, outputs: std::ops::Range<usize>) -> Vec<Taps> {
    let scale = input as f64 / output as f64;
    let filter_scale = scale.max(1.0);
    let support = filter_scale; // the triangle's support is 1
    outputs
        .map(|i| {
            let center = (i as f64 + 0.5) * scale;
            // PIL truncates toward zero, then clamps to the image.
            let lo = ((center - support + 0.5) as i64).max(0) as usize;
            let hi = ((center + support + 0.5) as i64).clamp(0, input as i64) as usize;
            let lo = lo.min(hi.saturating_sub(1));
            let mut weights: Vec<f64> = (lo..hi)
                .map(|j| {
                    let x = (j as f64 - center + 0.5) / filter_scale;
                    (1.0 - x.abs()).max(0.0)
                })
                .collect();
            let total: f64 = weights.iter().sum();
            if total > 0.0 {
                weights.iter_mut().for_each(|w| *w /= total);
            }
            Taps {
                start: lo,
                weights: weights.into_iter().map(|w| w as f32).collect(),
            }
        })
        .collect()
}

/// An 8-bit image in memory: `channels` interleaved samples per pixel,
/// 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA). Alpha is ignored, as
/// PIL's `convert("RGB")` does: transparent pixels keep their colour.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Source<'a> {
    pub width: usize,
    pub height: usize,
    pub channels: usize,
    pub data: &'a [u8],
}

impl Source<'_> {
    /// RGB of pixel `(x, y)`; grey is replicated into all three.
    #[inline(always)]
    fn rgb(&self, x: usize, y: usize) -> [f32; 3] {
        let at = (y * self.width + x) * self.channels;
        let p = &self.data[at..at + self.channels];
        if self.channels >= 3 {
            [p[0].into(), p[1].into(), p[2].into()]
        } else {
            let g = f32::from(p[0]);
            [g, g, g]
        }
    }
}

/// Where the crop lies in the resized image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Plan {
    pub resized_w: usize,
    pub resized_h: usize,
    pub left: usize,
    pub top: usize,
}

/// torchvision's `Resize(shorter)` output size and `CenterCrop(crop)`
/// offsets for a `width`×`height` image.
pub(crate) fn plan(width: usize, height: usize, shorter: usize, crop: usize) -> Plan {
    let (resized_w, resized_h) = if width <= height {
        (
            shorter,
            (shorter as u64 * height as u64 / width as u64) as usize,
        )
    } else {
        (
            (shorter as u64 * width as u64 / height as u64) as usize,
            shorter,
        )
    };
    Plan {
        resized_w,
        resized_h,
        left: centre_offset(resized_w, crop),
        top: centre_offset(resized_h, crop),
    }
}

/// `int(round((size - crop) / 2.0))` in Python: halves round to even.
fn centre_offset(size: usize, crop: usize) -> usize {
    let d = size.saturating_sub(crop);
    let half = d / 2;
    if d % 2 == 1 && half % 2 == 1 {
        half + 1
    } else {
        half
    }
}

/// The `crop`×`crop` centre of `src` resized so its shorter side is
/// `shorter`, as RGB samples in [0, 255], row-major HWC. `src` must be at
/// least 1×1 and `shorter ≥ crop`.
pub(crate) fn resize_crop(src: Source<'_>, shorter: usize, crop: usize) -> Vec<f32> {
    let p = plan(src.width, src.height, shorter, crop);
    let xs = taps(src.width, p.resized_w, p.left..p.left + crop);
    let ys = taps(src.height, p.resized_h, p.top..p.top + crop);
    // Source rows the vertical pass reads.
    let row_lo = ys.iter().map(|t| t.start).min().unwrap_or(0);
    let row_hi = ys
        .iter()
        .map(|t| t.start + t.weights.len())
        .max()
        .unwrap_or(0);

    // Horizontal pass over those rows only: [row_hi - row_lo, crop, 3].
    let mut horizontal = vec![0f32; (row_hi - row_lo) * crop * 3];
    for (r, y) in (row_lo..row_hi).enumerate() {
        let out_row = &mut horizontal[r * crop * 3..(r + 1) * crop * 3];
        for (px, t) in out_row.chunks_exact_mut(3).zip(&xs) {
            let mut acc = [0f32; 3];
            for (j, w) in t.weights.iter().enumerate() {
                let rgb = src.rgb(t.start + j, y);
                for c in 0..3 {
                    acc[c] += w * rgb[c];
                }
            }
            px.copy_from_slice(&acc);
        }
    }

    // Vertical pass.
    let stride = crop * 3;
    let mut out = vec![0f32; crop * crop * 3];
    for (out_row, t) in out.chunks_exact_mut(stride).zip(&ys) {
        for (j, w) in t.weights.iter().enumerate() {
            let r = t.start + j - row_lo;
            let in_row = &horizontal[r * stride..(r + 1) * stride];
            for (o, v) in out_row.iter_mut().zip(in_row) {
                *o += w * v;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_offsets_follow_torchvision() {
        // 640×480 → 341×256 (floor), crop left round(58.5) = 58 (to even).
        assert_eq!(
            plan(640, 480, 256, 224),
            Plan {
                resized_w: 341,
                resized_h: 256,
                left: 58,
                top: 16
            }
        );
        // 28×28 → 256×256, crop at 16.
        assert_eq!(
            plan(28, 28, 256, 224),
            Plan {
                resized_w: 256,
                resized_h: 256,
                left: 16,
                top: 16
            }
        );
        // Portrait, and an odd difference rounding up to even: 256×483 → 259/2 = 129.5 → 130.
        assert_eq!(plan(256, 483, 256, 224).top, 130);
        assert_eq!(plan(256, 481, 256, 224).top, 128);
    }

    #[test]
    fn identity_when_no_resize_is_needed() {
        // 256×256 grey ramp: the crop is an exact copy of the centre.
        let data: Vec<u8> = (0..256 * 256).map(|i| ((i * 7) % 251) as u8).collect();
        let src = Source {
            width: 256,
            height: 256,
            channels: 1,
            data: &data,
        };
        let out = resize_crop(src, 256, 224);
        for y in [0, 100, 223] {
            for x in [0, 57, 223] {
                let want = f32::from(data[(y + 16) * 256 + x + 16]);
                let got = &out[(y * 224 + x) * 3..][..3];
                assert_eq!(got, [want; 3], "({x}, {y})");
            }
        }
    }

    #[test]
    fn weights_sum_to_one_and_constant_images_stay_constant() {
        for (input, output) in [(28, 256), (1000, 256), (257, 256), (1, 256)] {
            for t in taps(input, output, 0..output) {
                let sum: f32 = t.weights.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "{input}->{output}: {sum}");
                assert!(t.start + t.weights.len() <= input);
            }
        }
        let data = vec![200u8, 10, 60, 255];
        let src = Source {
            width: 1,
            height: 1,
            channels: 4,
            data: &data,
        };
        let out = resize_crop(src, 256, 224);
        assert!(out.chunks_exact(3).all(|p| p == [200.0, 10.0, 60.0]));
    }

    #[test]
    fn elongated_images_need_no_huge_buffers() {
        // 8000×2: the full resize would be 1,024,000×256 pixels.
        let data = vec![128u8; 8000 * 2 * 3];
        let src = Source {
            width: 8000,
            height: 2,
            channels: 3,
            data: &data,
        };
        let out = resize_crop(src, 256, 224);
        assert_eq!(out.len(), 224 * 224 * 3);
        assert!(out.iter().all(|&v| (v - 128.0).abs() < 1e-3));
    }
}
