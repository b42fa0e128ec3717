//! The hot tier: whole blocks in RAM within a byte budget.
//!
//! Placement is by frequency (TinyLFU-style admission): a block that
//! would not fit evicts the least frequently used blocks, found by
//! sampling, and only if each of them is accessed less often than the
//! newcomer; otherwise the newcomer stays out and is served from a lower
//! tier. Pinned blocks (e.g. the top levels of a hierarchy) count against
//! the budget but are never evicted.

use std::collections::HashMap;

use bytes::Bytes;

/// Victims looked at per eviction (the Redis-style sampled LFU: within a
/// few percent of exact LFU and O(1) per miss, where a sorted structure
/// would re-sort on every hit).
const SAMPLE: usize = 8;

#[derive(Debug)]
struct Entry {
    bytes: Bytes,
    crc32: u32,
    hash: u64,
    pinned: bool,
    /// Index in `evictable` (unpinned entries only).
    slot: usize,
}

/// What an admission did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Admission {
    pub admitted: bool,
    /// Keys evicted to make room, with their sizes.
    pub evicted: Vec<(String, u64)>,
}

#[derive(Debug)]
pub struct HotTier {
    budget: u64,
    resident: u64,
    pinned_bytes: u64,
    entries: HashMap<String, Entry>,
    evictable: Vec<String>,
    rng: u64,
}

impl HotTier {
    pub fn new(budget: u64) -> Self {
        Self {
            budget,
            resident: 0,
            pinned_bytes: 0,
            entries: HashMap::new(),
            evictable: Vec::new(),
            rng: 0x9E37_79B9_7F4A_7C15,
        }
    }

    pub fn budget(&self) -> u64 {
        self.budget
    }

    pub fn resident_bytes(&self) -> u64 {
        self.resident
    }

    pub fn pinned_bytes(&self) -> u64 {
        self.pinned_bytes
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn pinned_len(&self) -> usize {
        self.entries.len() - self.evictable.len()
    }

    /// The block under `key` if it is resident with this checksum (an
    /// entry with another checksum is a stale version: not served).
    pub fn get(&self, key: &str, crc32: u32) -> Option<Bytes> {
        self.entries
            .get(key)
            .filter(|e| e.crc32 == crc32)
            .map(|e| e.bytes.clone())
    }

    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Resident keys with their sizes, pinned flags and hashes.
    pub fn entries(&self) -> impl Iterator<Item = (&str, u64, bool, u64)> + '_ {
        self.entries
            .iter()
            .map(|(k, e)| (k.as_str(), e.bytes.len() as u64, e.pinned, e.hash))
    }

    fn next_random(&mut self) -> usize {
        // xorshift64*: only picks eviction samples.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        (self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as usize
    }

    /// Offers a block for residence. `freq` is the newcomer's decayed
    /// access count; `freq_of` gives a resident block's (by its hash).
    /// Replaces an entry of the same key (a new version).
    pub fn admit(
        &mut self,
        key: &str,
        crc32: u32,
        hash: u64,
        bytes: Bytes,
        freq: u32,
        freq_of: impl Fn(u64) -> u32,
    ) -> Admission {
        let size = bytes.len() as u64;
        let mut out = Admission::default();
        if let Some(e) = self.entries.get(key) {
            if e.crc32 == crc32 {
                out.admitted = true;
                return out;
            }
            self.remove(key);
        }
        if size > self.budget.saturating_sub(self.pinned_bytes) {
            return out;
        }
        // Choose victims first, evict only if every one is colder.
        let mut victims: Vec<usize> = Vec::new();
        let mut freed = 0u64;
        while self.resident + size - freed > self.budget {
            let candidates = self.evictable.len() - victims.len();
            if candidates == 0 {
                return out;
            }
            let mut best: Option<(u32, usize)> = None;
            for _ in 0..SAMPLE.min(candidates) {
                let i = self.next_random() % self.evictable.len();
                if victims.contains(&i) {
                    continue;
                }
                let e = &self.entries[&self.evictable[i]];
                let f = freq_of(e.hash);
                if best.is_none_or(|(bf, _)| f < bf) {
                    best = Some((f, i));
                }
            }
            let Some((f, i)) = best else {
                continue;
            };
            if f >= freq {
                return out;
            }
            freed += self.entries[&self.evictable[i]].bytes.len() as u64;
            victims.push(i);
        }
        let names: Vec<String> = victims.iter().map(|&i| self.evictable[i].clone()).collect();
        for name in names {
            if let Some(size) = self.remove(&name) {
                out.evicted.push((name, size));
            }
        }
        self.insert(key, crc32, hash, bytes, false);
        out.admitted = true;
        out
    }

    /// Makes a block resident for good. Evicts whatever unpinned blocks it
    /// takes; `false` when pinned blocks alone would exceed the budget.
    pub fn pin(
        &mut self,
        key: &str,
        crc32: u32,
        hash: u64,
        bytes: Bytes,
    ) -> (bool, Vec<(String, u64)>) {
        let size = bytes.len() as u64;
        self.remove(key);
        if self.pinned_bytes + size > self.budget {
            return (false, Vec::new());
        }
        let mut evicted = Vec::new();
        while self.resident + size > self.budget {
            let Some(name) = self.evictable.last().cloned() else {
                break;
            };
            if let Some(s) = self.remove(&name) {
                evicted.push((name, s));
            }
        }
        self.insert(key, crc32, hash, bytes, true);
        (true, evicted)
    }

    fn insert(&mut self, key: &str, crc32: u32, hash: u64, bytes: Bytes, pinned: bool) {
        let size = bytes.len() as u64;
        let slot = if pinned {
            usize::MAX
        } else {
            self.evictable.push(key.to_string());
            self.evictable.len() - 1
        };
        self.resident += size;
        if pinned {
            self.pinned_bytes += size;
        }
        self.entries.insert(
            key.to_string(),
            Entry {
                bytes,
                crc32,
                hash,
                pinned,
                slot,
            },
        );
    }

    /// Drops `key` (pinned or not); returns its size if it was resident.
    pub fn remove(&mut self, key: &str) -> Option<u64> {
        let e = self.entries.remove(key)?;
        let size = e.bytes.len() as u64;
        self.resident -= size;
        if e.pinned {
            self.pinned_bytes -= size;
        } else {
            let last = self.evictable.len() - 1;
            self.evictable.swap_remove(e.slot);
            if e.slot != last {
                let moved = self.evictable[e.slot].clone();
                if let Some(m) = self.entries.get_mut(&moved) {
                    m.slot = e.slot;
                }
            }
        }
        Some(size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(n: usize) -> Bytes {
        Bytes::from(vec![7u8; n])
    }

    #[test]
    fn the_budget_holds_and_colder_blocks_make_room() {
        let mut hot = HotTier::new(300);
        let freq = |h: u64| h as u32; // a block's hash is its frequency here
        for (i, key) in ["a", "b", "c"].iter().enumerate() {
            let a = hot.admit(key, 1, 10 + i as u64, block(100), 10, freq);
            assert!(a.admitted && a.evicted.is_empty());
        }
        assert_eq!(hot.resident_bytes(), 300);
        // A colder newcomer (freq 5 < every resident's) stays out.
        let a = hot.admit("d", 1, 5, block(100), 5, freq);
        assert!(!a.admitted);
        assert!(!hot.contains("d"));
        // A hotter one evicts the coldest ("a", frequency 10).
        let a = hot.admit("e", 1, 50, block(100), 50, freq);
        assert!(a.admitted);
        assert_eq!(a.evicted, vec![("a".to_string(), 100)]);
        assert_eq!(hot.resident_bytes(), 300);
        assert!(hot.get("e", 1).is_some());
        // A stale checksum is not served.
        assert!(hot.get("e", 2).is_none());
        // Too big for the budget: never admitted.
        assert!(!hot.admit("big", 1, 99, block(301), 99, freq).admitted);
    }

    #[test]
    fn pinned_blocks_are_never_evicted() {
        let mut hot = HotTier::new(250);
        let freq = |h: u64| h as u32;
        let (ok, _) = hot.pin("root", 1, 0, block(100));
        assert!(ok);
        assert!(hot.admit("x", 1, 1, block(100), 1, freq).admitted);
        // Needs 100 more: only x is evictable.
        let a = hot.admit("y", 1, 9, block(100), 9, freq);
        assert_eq!(a.evicted, vec![("x".to_string(), 100)]);
        assert!(hot.get("root", 1).is_some());
        // Pins beyond the budget are refused.
        let (ok, _) = hot.pin("p2", 1, 0, block(200));
        assert!(!ok);
        assert_eq!(hot.pinned_len(), 1);
        assert_eq!(hot.pinned_bytes(), 100);
        assert_eq!(hot.remove("root"), Some(100));
        assert_eq!(hot.resident_bytes(), 100);
    }
}
