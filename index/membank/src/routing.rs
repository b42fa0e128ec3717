//! Routing a text embedding to its memory path: the greedy descent, the
//! per-level centroid thresholds and the leaf gate.

use mnemos_index_core::vector::dot;

use crate::kmeans::normalise;
use crate::{Bank, NodeId, Result};

/// `v` scaled to unit length (callers pass queries `Tree::descend` has
/// already checked: finite and non-zero).
fn unit(v: &[f32]) -> Vec<f32> {
    let mut q = v.to_vec();
    normalise(&mut q);
    q
}

impl Bank {
    /// The memory path for a text embedding: the greedy descent, cut at
    /// the first node whose centroid's cosine with the embedding is below
    /// the threshold of its level (`min_similarity[level - 1]`, the last
    /// entry for deeper levels; none given, no cut). Text unlike anything
    /// in the bank (general Wikipedia for a bank of biomedical abstracts)
    /// then runs on the bare anchor, and text that matches a topic but no
    /// particular leaf gets the topic's blocks without a leaf's, which
    /// holds its documents nearly verbatim.
    pub fn route(&self, embedding: &[f32], min_similarity: &[f32]) -> Result<Vec<NodeId>> {
        self.route_gated(embedding, min_similarity, None)
    }

    /// [`Bank::route`], and then a leaf gate: with `leaf_document`, a leaf
    /// block is kept only if the embedding's cosine with one of the leaf's
    /// own documents reaches it. A leaf holds its few documents nearly
    /// verbatim, which helps text close to one of them and hurts other
    /// text of the same topic; the centroid says only "same topic". Leaves
    /// whose documents have no vectors ([`Bank::set_document_vectors`])
    /// are judged by the centroid rule alone.
    pub fn route_gated(
        &self,
        embedding: &[f32],
        min_similarity: &[f32],
        leaf_document: Option<f32>,
    ) -> Result<Vec<NodeId>> {
        let mut path = self.route_centroids(embedding, min_similarity)?;
        let (Some(gate), Some(leaf)) = (leaf_document, path.last()) else {
            return Ok(path);
        };
        let Some(node) = self
            .tree
            .node(leaf)
            .filter(|n| n.is_leaf() && n.level() > 1)
        else {
            return Ok(path);
        };
        let vectors: Vec<&Vec<f32>> = node
            .documents()
            .iter()
            .filter_map(|d| self.doc_vectors.get(d))
            .collect();
        if vectors.is_empty() {
            return Ok(path);
        }
        let q = unit(embedding);
        let best = vectors
            .iter()
            .map(|v| dot(v, &q))
            .fold(f32::NEG_INFINITY, f32::max);
        if best < gate {
            path.pop();
        }
        Ok(path)
    }

    /// Records document embeddings for the leaf gate (normalised here;
    /// non-finite or zero vectors are skipped).
    pub fn set_document_vectors(&mut self, vectors: impl IntoIterator<Item = (String, Vec<f32>)>) {
        for (id, mut v) in vectors {
            if normalise(&mut v) {
                self.doc_vectors.insert(id, v);
            }
        }
    }

    fn route_centroids(&self, embedding: &[f32], min_similarity: &[f32]) -> Result<Vec<NodeId>> {
        let (path, cosines) = self.route_cosines(embedding)?;
        let keep = path
            .iter()
            .zip(&cosines)
            .take_while(|(node, &c)| {
                let level = node.level().max(1);
                let threshold = min_similarity
                    .get(level - 1)
                    .or(min_similarity.last())
                    .copied()
                    .unwrap_or(f32::NEG_INFINITY);
                c >= threshold
            })
            .count();
        Ok(path.into_iter().take(keep).collect())
    }

    /// The greedy descent for an embedding and the cosine between it and
    /// each node's centroid on the way.
    pub fn route_cosines(&self, embedding: &[f32]) -> Result<(Vec<NodeId>, Vec<f32>)> {
        let path = self.tree.descend(embedding)?;
        let q = unit(embedding);
        let cosines = path
            .iter()
            .map(|id| {
                self.tree
                    .node(id)
                    .map_or(f32::NEG_INFINITY, |n| dot(n.centroid(), &q))
            })
            .collect();
        Ok((path, cosines))
    }
}
