//! Batches of texts laid end to end, without padding.
//!
//! Every part of a BERT layer but attention works token by token, so a
//! batch of texts can run as one `(tokens, hidden)` matrix whatever their
//! lengths: the linear layers, which are nearly all the work, then reuse
//! each weight panel across every text's tokens without computing a single
//! padding row. Padded to its longest, a batch of a 12-token and a
//! 40-token query would cost as much as two 40-token ones. That is the
//! batch a server forms from requests in arrival order; a length-sorted
//! bulk batch pads little either way.
//!
//! Attention is the one step that needs texts apart: it gathers the rows
//! into a padded `(texts, longest)` block for its masked products, which
//! are a small share of the work for short texts, and scatters the result
//! back. Texts of one length need neither copy.

use candle_core::{Device, Result, Tensor};

/// The lengths of the texts in a batch and the index tensors that move its
/// rows between the end-to-end and the padded layouts.
pub(crate) struct Ragged {
    lengths: Vec<usize>,
    tokens: usize,
    longest: usize,
    /// `(texts, longest)` f32: 1 for a real token, 0 for padding.
    mask: Tensor,
    /// `None` when every text has the longest length: the rows then
    /// reshape straight into the padded layout.
    gather: Option<Gather>,
}

struct Gather {
    /// `(texts · longest)` u32: the row of each padded slot, or `tokens`
    /// (a zero row appended for the purpose) for padding.
    pad: Tensor,
    /// `(tokens)` u32: the padded slot of each row.
    unpad: Tensor,
}

impl Ragged {
    /// `lengths` of the texts in the order their rows are laid out; each
    /// at least 1.
    pub fn new(lengths: Vec<usize>, device: &Device) -> Result<Self> {
        if lengths.contains(&0) {
            candle_core::bail!("a text of no tokens in a batch");
        }
        let tokens = lengths.iter().sum::<usize>();
        let longest = lengths.iter().copied().max().unwrap_or(0);
        let texts = lengths.len();
        let mut mask = vec![0f32; texts * longest];
        for (b, &len) in lengths.iter().enumerate() {
            mask[b * longest..b * longest + len].fill(1.0);
        }
        let mask = Tensor::from_vec(mask, (texts, longest), device)?;
        let gather = if tokens == texts * longest {
            None
        } else {
            let index = |i: usize| u32::try_from(i).map_err(candle_core::Error::wrap);
            let mut pad = Vec::with_capacity(texts * longest);
            let mut unpad = Vec::with_capacity(tokens);
            let mut start = 0;
            for (b, &len) in lengths.iter().enumerate() {
                for t in 0..longest {
                    pad.push(index(if t < len { start + t } else { tokens })?);
                }
                for t in 0..len {
                    unpad.push(index(b * longest + t)?);
                }
                start += len;
            }
            Some(Gather {
                pad: Tensor::from_vec(pad, texts * longest, device)?,
                unpad: Tensor::from_vec(unpad, tokens, device)?,
            })
        };
        Ok(Self {
            lengths,
            tokens,
            longest,
            mask,
            gather,
        })
    }

    pub fn lengths(&self) -> &[usize] {
        &self.lengths
    }

    /// Rows in all texts.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    pub fn longest(&self) -> usize {
        self.longest
    }

    /// `(texts, longest)`: 1 for real tokens, 0 for padding.
    pub fn mask(&self) -> &Tensor {
        &self.mask
    }

    /// Token positions `0..len` of each text, end to end: `(tokens)` u32.
    pub fn positions(&self, device: &Device) -> Result<Tensor> {
        let positions = self
            .lengths
            .iter()
            .flat_map(|&len| 0..len as u32)
            .collect::<Vec<_>>();
        Tensor::from_vec(positions, self.tokens, device)
    }

    /// `(tokens, width)` rows into `(texts, longest, width)`, padding rows
    /// zero.
    pub fn pad(&self, rows: &Tensor) -> Result<Tensor> {
        let width = rows.dim(1)?;
        let padded = match &self.gather {
            None => rows.clone(),
            Some(g) => {
                let zero = Tensor::zeros((1, width), rows.dtype(), rows.device())?;
                Tensor::cat(&[rows, &zero], 0)?.index_select(&g.pad, 0)?
            }
        };
        padded.reshape((self.lengths.len(), self.longest, width))
    }

    /// `(texts, longest, width)` back to the `(tokens, width)` real rows.
    pub fn unpad(&self, padded: &Tensor) -> Result<Tensor> {
        let width = padded.dim(2)?;
        let flat = padded.reshape((self.lengths.len() * self.longest, width))?;
        match &self.gather {
            None => Ok(flat),
            Some(g) => flat.index_select(&g.unpad, 0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_rows(t: &Tensor) -> Vec<Vec<f32>> {
        t.to_vec2::<f32>().expect("a 2-d f32 tensor")
    }

    fn rows(tokens: usize, width: usize) -> Result<Tensor> {
        let data: Vec<f32> = (0..tokens * width).map(|i| i as f32 + 1.0).collect();
        Tensor::from_vec(data, (tokens, width), &Device::Cpu)
    }

    #[test]
    fn pads_and_unpads_texts_of_different_lengths() -> Result<()> {
        let dev = Device::Cpu;
        let ragged = Ragged::new(vec![2, 3, 1], &dev)?;
        assert_eq!((ragged.tokens(), ragged.longest()), (6, 3));
        let x = rows(6, 2)?;
        let padded = ragged.pad(&x)?;
        assert_eq!(padded.dims(), &[3, 3, 2]);
        let p = padded.to_vec3::<f32>()?;
        assert_eq!(p[0], vec![vec![1., 2.], vec![3., 4.], vec![0., 0.]]);
        assert_eq!(p[1], vec![vec![5., 6.], vec![7., 8.], vec![9., 10.]]);
        assert_eq!(p[2], vec![vec![11., 12.], vec![0., 0.], vec![0., 0.]]);
        assert_eq!(
            as_rows(ragged.mask()),
            vec![vec![1., 1., 0.], vec![1., 1., 1.], vec![1., 0., 0.]]
        );
        assert_eq!(
            ragged.positions(&dev)?.to_vec1::<u32>()?,
            vec![0, 1, 0, 1, 2, 0]
        );
        let back = ragged.unpad(&padded)?;
        assert_eq!(back.to_vec2::<f32>()?, x.to_vec2::<f32>()?);
        Ok(())
    }

    #[test]
    fn equal_lengths_need_no_copy() -> Result<()> {
        let ragged = Ragged::new(vec![2, 2], &Device::Cpu)?;
        assert!(ragged.gather.is_none());
        let x = rows(4, 3)?;
        let padded = ragged.pad(&x)?;
        assert_eq!(padded.dims(), &[2, 2, 3]);
        assert_eq!(
            ragged.unpad(&padded)?.to_vec2::<f32>()?,
            x.to_vec2::<f32>()?
        );
        Ok(())
    }

    #[test]
    fn an_empty_text_is_refused() {
        assert!(Ragged::new(vec![3, 0], &Device::Cpu).is_err());
    }
}
