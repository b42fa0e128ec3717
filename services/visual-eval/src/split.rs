//! The fixed memory/query split of a data set, shared by the kNN memory and
//! the linear probe so both are judged on the same queries.
//!
//! Interleaved, not head/tail: image `i` is a query when
//! `i % every == every - 1`. The MNIST test file holds its 5,000 cleaner
//! writers (NIST SD-3) before its 5,000 harder ones (SD-1), so a
//! head/tail split would query only the hard half; interleaving draws
//! both halves evenly and needs no random seed.

use mnemos_visual::VisualMemory;

use crate::knn::label;
use crate::Result;

/// MNIST: every fifth image is a query (8,000 memory / 2,000 queries).
pub const MNIST_QUERY_EVERY: usize = 5;
/// Digits: every third image is a query (1,198 memory / 599 queries), so
/// each class has ~60 queries and a per-class change is measurable.
pub const DIGITS_QUERY_EVERY: usize = 3;

/// Embeddings split into the memory set and the query set.
#[derive(Debug, Clone)]
pub struct Split {
    /// `<data set>-<image index>`.
    pub memory_ids: Vec<String>,
    pub memory_labels: Vec<u8>,
    pub memory_rows: Vec<Vec<f32>>,
    pub query_labels: Vec<u8>,
    pub query_rows: Vec<Vec<f32>>,
}

impl Split {
    /// Splits `embeddings` (one per image, in file order) by the rule
    /// above.
    pub fn new(name: &str, embeddings: Vec<Vec<f32>>, labels: &[u8], every: usize) -> Self {
        Self::by(name, embeddings.into_iter(), labels, |i| {
            Self::is_query(i, every)
        })
    }

    /// Fold `fold` of `every` as the query set (image `i` is a query when
    /// `i % every == fold`; the fixed split is fold `every - 1`) and the
    /// rest as the memory, for cross-validation; the rows are copied.
    pub fn fold(
        name: &str,
        embeddings: &[Vec<f32>],
        labels: &[u8],
        every: usize,
        fold: usize,
    ) -> Self {
        Self::by(name, embeddings.iter().cloned(), labels, |i| {
            i % every == fold
        })
    }

    fn by(
        name: &str,
        rows: impl Iterator<Item = Vec<f32>>,
        labels: &[u8],
        is_query: impl Fn(usize) -> bool,
    ) -> Self {
        let mut split = Split {
            memory_ids: Vec::new(),
            memory_labels: Vec::new(),
            memory_rows: Vec::new(),
            query_labels: Vec::new(),
            query_rows: Vec::new(),
        };
        for (i, (row, &digit)) in rows.zip(labels).enumerate() {
            if is_query(i) {
                split.query_labels.push(digit);
                split.query_rows.push(row);
            } else {
                split.memory_ids.push(format!("{name}-{i:05}"));
                split.memory_labels.push(digit);
                split.memory_rows.push(row);
            }
        }
        split
    }

    /// Whether image `i` is a query under a one-in-`every` split.
    pub fn is_query(i: usize, every: usize) -> bool {
        i % every == every - 1
    }

    /// The embedding dimension.
    pub fn dim(&self) -> usize {
        self.memory_rows.first().map_or(0, Vec::len)
    }

    pub fn memory_refs(&self) -> Vec<&[f32]> {
        self.memory_rows.iter().map(Vec::as_slice).collect()
    }

    pub fn query_refs(&self) -> Vec<&[f32]> {
        self.query_rows.iter().map(Vec::as_slice).collect()
    }

    /// An in-memory visual memory holding the memory set, in order.
    pub fn memory(&self) -> Result<VisualMemory> {
        let mut memory = VisualMemory::new(self.dim())?;
        let labels: Vec<String> = self.memory_labels.iter().map(|&d| label(d)).collect();
        let items: Vec<(&str, &str, &[f32])> = self
            .memory_ids
            .iter()
            .zip(&labels)
            .zip(&self.memory_rows)
            .map(|((id, l), row)| (id.as_str(), l.as_str(), row.as_slice()))
            .collect();
        memory.upsert_batch(&items)?;
        Ok(memory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_interleaved_and_complete() {
        let rows: Vec<Vec<f32>> = (0..10).map(|i| vec![1.0, i as f32]).collect();
        let labels: Vec<u8> = (0..10).collect();
        let split = Split::new("t", rows, &labels, 5);
        assert_eq!(split.query_labels, [4, 9]);
        assert_eq!(split.memory_labels, [0, 1, 2, 3, 5, 6, 7, 8]);
        assert_eq!(split.memory_ids[4], "t-00005");
        assert_eq!(split.memory().unwrap().len(), 8);
        let rows: Vec<Vec<f32>> = (0..10).map(|i| vec![1.0, i as f32]).collect();
        let last = Split::fold("t", &rows, &labels, 5, 4);
        assert_eq!(last.query_labels, split.query_labels);
        assert_eq!(last.memory_ids, split.memory_ids);
        assert_eq!(Split::fold("t", &rows, &labels, 5, 0).query_labels, [0, 5]);
    }
}
