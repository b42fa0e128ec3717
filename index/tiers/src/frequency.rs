//! Access frequency with decay, in fixed memory (SPECS §6: rank blocks by
//! how often they are accessed).
//!
//! A count-min sketch: `DEPTH` rows of 16-bit counters; a key's count is
//! the minimum of its counters, which only ever over-estimates. Every
//! `period` recorded accesses all counters are halved, so a count is an
//! exponentially decayed access count with a half-life of `period`
//! accesses: a block that was hot an hour ago cools down, and the memory
//! used does not grow with the number of blocks (a bank of a million
//! blocks costs the same few MB as one of a thousand).

use std::hash::{DefaultHasher, Hash, Hasher};

const DEPTH: usize = 4;

/// Decayed per-key access counts.
#[derive(Debug)]
pub struct Frequency {
    rows: Vec<u16>,
    mask: usize,
    period: u64,
    since_halving: u64,
    halvings: u64,
}

/// The 64-bit hash a key is counted under.
pub fn key_hash(key: &str) -> u64 {
    let mut h = DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

impl Frequency {
    /// A sketch of `width` counters per row (rounded up to a power of two,
    /// at least 64) whose counts halve every `period` accesses.
    pub fn new(width: usize, period: u64) -> Self {
        let width = width.max(64).next_power_of_two();
        Self {
            rows: vec![0; width * DEPTH],
            mask: width - 1,
            period: period.max(1),
            since_halving: 0,
            halvings: 0,
        }
    }

    fn slots(&self, hash: u64) -> [usize; DEPTH] {
        // Double hashing: row i uses lo + i·hi, hi forced odd so rows differ.
        let lo = hash as usize;
        let hi = ((hash >> 32) as usize) | 1;
        let width = self.mask + 1;
        std::array::from_fn(|i| i * width + (lo.wrapping_add(i.wrapping_mul(hi)) & self.mask))
    }

    /// Counts one access of the key with this hash; returns its new
    /// estimate.
    pub fn record(&mut self, hash: u64) -> u32 {
        let slots = self.slots(hash);
        let current = slots.iter().map(|&s| self.rows[s]).min().unwrap_or(0);
        // Conservative update: raise only the counters at the minimum,
        // which keeps collisions from inflating other keys.
        for &s in &slots {
            if self.rows[s] == current {
                self.rows[s] = self.rows[s].saturating_add(1);
            }
        }
        self.since_halving += 1;
        if self.since_halving >= self.period {
            self.halve();
        }
        self.estimate(hash)
    }

    /// The decayed access count of the key with this hash.
    pub fn estimate(&self, hash: u64) -> u32 {
        self.slots(hash)
            .iter()
            .map(|&s| u32::from(self.rows[s]))
            .min()
            .unwrap_or(0)
    }

    fn halve(&mut self) {
        for c in &mut self.rows {
            *c >>= 1;
        }
        self.since_halving = 0;
        self.halvings += 1;
    }

    /// Bytes the sketch holds (its whole, fixed footprint).
    pub fn bytes(&self) -> usize {
        self.rows.len() * std::mem::size_of::<u16>()
    }

    /// How many times the counts have been halved.
    pub fn halvings(&self) -> u64 {
        self.halvings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_rank_keys_and_decay() {
        let mut f = Frequency::new(1024, 1_000);
        let (a, b, c) = (key_hash("a"), key_hash("b"), key_hash("c"));
        for _ in 0..30 {
            f.record(a);
        }
        for _ in 0..10 {
            f.record(b);
        }
        assert!(f.estimate(a) >= 30 && f.estimate(b) >= 10);
        assert!(f.estimate(a) > f.estimate(b));
        assert!(f.estimate(c) < f.estimate(b));
        // 1,000 accesses of c: one halving; a and b lose half.
        for _ in 0..960 {
            f.record(c);
        }
        assert_eq!(f.halvings(), 1);
        assert!(
            f.estimate(a) <= 16 && f.estimate(a) >= 15,
            "{}",
            f.estimate(a)
        );
        assert!(f.estimate(c) > f.estimate(a));
    }

    #[test]
    fn memory_is_fixed_by_width() {
        let f = Frequency::new(1000, 10);
        assert_eq!(f.bytes(), 1024 * DEPTH * 2);
    }
}
