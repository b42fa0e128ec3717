//! Turning per-token hidden states into one sentence vector.
//!
//! Sentence-BERT (Reimers & Gurevych 2019, arXiv:1908.10084, §3) found the
//! mean of the token vectors to work better than the `[CLS]` vector for
//! sentence similarity; all-MiniLM-L6-v2 uses the mean, some other
//! checkpoints (e.g. BGE) use `[CLS]`. The mean is over the text's own
//! tokens; batches carry no padding rows to leave out.

/// How token vectors are combined into a sentence vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooling {
    /// Mean of the token vectors under the attention mask.
    #[default]
    Mean,
    /// The vector of the first token (`[CLS]`).
    Cls,
}

/// Pools the rows of `hidden`, texts of `lengths` rows each laid end to end
/// in rows of `dim` floats, into one vector per text, scaled to unit L2
/// norm when `normalize` is set (a dot product of two outputs is then their
/// cosine similarity). Like PyTorch's `F.normalize`, a zero vector stays
/// zero instead of becoming NaN.
pub(crate) fn pool_rows(
    hidden: &[f32],
    dim: usize,
    lengths: &[usize],
    pooling: Pooling,
    normalize: bool,
) -> Vec<Vec<f32>> {
    let mut out = Vec::with_capacity(lengths.len());
    let mut start = 0;
    for &len in lengths {
        let text = &hidden[start * dim..(start + len) * dim];
        start += len;
        let mut v = vec![0f32; dim];
        match pooling {
            Pooling::Cls => {
                if let Some(first) = text.get(..dim) {
                    v.copy_from_slice(first);
                }
            }
            Pooling::Mean => {
                for row in text.chunks_exact(dim) {
                    for (acc, x) in v.iter_mut().zip(row) {
                        *acc += x;
                    }
                }
                // sentence-transformers clamps the count at 1e-9; a text
                // always holds [CLS] and [SEP], so this only guards zero.
                let inv = 1.0 / (len.max(1) as f32);
                v.iter_mut().for_each(|x| *x *= inv);
            }
        }
        if normalize {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|x| *x /= norm);
        }
        out.push(v);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two texts, dim 2: three tokens, then two.
    const HIDDEN: [f32; 10] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 2.0, 0.0, 4.0, 0.0];

    #[test]
    fn mean_is_over_each_texts_own_rows() {
        let pooled = pool_rows(&HIDDEN, 2, &[3, 2], Pooling::Mean, false);
        assert_eq!(pooled, vec![vec![3.0, 4.0], vec![3.0, 0.0]]);
    }

    #[test]
    fn cls_takes_first_token() {
        let pooled = pool_rows(&HIDDEN, 2, &[3, 2], Pooling::Cls, false);
        assert_eq!(pooled, vec![vec![1.0, 2.0], vec![2.0, 0.0]]);
    }

    #[test]
    fn normalize_gives_unit_rows_and_keeps_zero_rows() {
        let x = [3f32, 4., 0., 0.];
        let y = pool_rows(&x, 2, &[1, 1], Pooling::Cls, true);
        assert_eq!(y, vec![vec![0.6, 0.8], vec![0.0, 0.0]]);
    }
}
