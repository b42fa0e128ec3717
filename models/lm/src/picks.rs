//! The key pairs a product-key lookup chose, and their selection head by
//! head from sub-key scores ([`crate::topk::ProductTopK`]).

use crate::topk::{Pick, ProductTopK};

/// The picks of a batch: `(T, H, k)` row-major.
pub(crate) struct Picks {
    pub tokens: usize,
    pub heads: usize,
    pub k: usize,
    pub picks: Vec<Pick>,
    pub scores: Vec<f32>,
}

impl Picks {
    pub fn pick(&self, tok: usize, head: usize, p: usize) -> Pick {
        self.picks[(tok * self.heads + head) * self.k + p]
    }

    /// Value ids `i·n + j`, `(T, H, k)` row-major.
    pub fn value_ids(&self, n: usize) -> Vec<u32> {
        let n = n as u32;
        self.picks.iter().map(|p| p.i * n + p.j).collect()
    }
}

/// [`Picks`] under construction, one head at a time, so a caller can
/// score a head's sub-keys and select from them before scoring the next.
pub(crate) struct Selection {
    picks: Picks,
    topk: ProductTopK,
    chosen: Vec<Pick>,
}

impl Selection {
    pub fn new(tokens: usize, heads: usize, k: usize) -> Self {
        let none = Pick {
            i: 0,
            j: 0,
            score: 0.0,
        };
        Self {
            picks: Picks {
                tokens,
                heads,
                k,
                picks: vec![none; tokens * heads * k],
                scores: Vec::new(),
            },
            topk: ProductTopK::default(),
            chosen: Vec::with_capacity(k),
        }
    }

    /// Selects head `head`'s `k` best pairs for every token from its two
    /// halves' scores, `(T, n)` row-major each.
    pub fn head(&mut self, head: usize, first: &[f32], second: &[f32], n: usize) {
        let Picks { heads, k, .. } = self.picks;
        for tok in 0..self.picks.tokens {
            let row = tok * n..(tok + 1) * n;
            self.topk
                .select(&first[row.clone()], &second[row], k, &mut self.chosen);
            let at = (tok * heads + head) * k;
            self.picks.picks[at..at + self.chosen.len()].copy_from_slice(&self.chosen);
        }
    }

    pub fn finish(mut self) -> Picks {
        self.picks.scores = self.picks.picks.iter().map(|p| p.score).collect();
        self.picks
    }
}
