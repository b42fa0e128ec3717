//! The memory tree: hierarchical spherical k-means over document
//! embeddings (SPECS §5, "Organisation").
//!
//! The root holds every document; each node above depth `levels` is split
//! into up to `branching` children by [`spherical_kmeans`], and documents
//! live in the leaves. Every non-root node owns one memory block, so the
//! blocks fetched for a query are those on its greedy root-to-leaf path
//! ([`Tree::descend`]), and the blocks to retrain or disable for a document
//! are those on its leaf's path ([`Tree::path_of`]).
//!
//! After [`Tree::build`] the shape is fixed: [`Tree::assign`] and
//! [`Tree::remove`] only move document ids in and out of leaves, and
//! centroids stay where k-means put them. Rebuild to rebalance.

use std::collections::{HashMap, HashSet, VecDeque};

use mnemos_index_core::vector::MAX_DIM;
use mnemos_models_core::rng::SplitMix64;
use serde::{Deserialize, Serialize};

use crate::kmeans::{nearest, normalise, spherical_kmeans};
use crate::{BankError, NodeId, Result};

/// How a tree is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeParams {
    /// Depth of the leaves: 4 in the paper (16 / 256 / 4,096 / 65,536
    /// clusters at k = 16).
    pub levels: usize,
    /// Children per node, at most: the paper's k = 16.
    pub branching: usize,
    /// Lloyd iterations per split, at most (fewer when it converges).
    #[serde(default = "default_iterations")]
    pub iterations: usize,
    /// Seeds every split's k-means++ draws: one seed, one tree.
    pub seed: u64,
}

fn default_iterations() -> usize {
    25
}

impl Default for TreeParams {
    /// The paper's shape: 4 levels of 16 children.
    fn default() -> Self {
        Self {
            levels: 4,
            branching: 16,
            iterations: default_iterations(),
            seed: 0,
        }
    }
}

impl TreeParams {
    /// Limits that keep a tree's node count and file names sane:
    /// 64⁶ leaves is already far beyond any corpus.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(BankError::InvalidInput(m));
        if !(1..=6).contains(&self.levels) {
            return bad(format!("tree levels must be in 1..=6, got {}", self.levels));
        }
        if !(2..=64).contains(&self.branching) {
            return bad(format!(
                "tree branching must be in 2..=64, got {}",
                self.branching
            ));
        }
        if !(1..=1000).contains(&self.iterations) {
            return bad(format!(
                "k-means iterations must be in 1..=1000, got {}",
                self.iterations
            ));
        }
        Ok(())
    }
}

/// One node of the tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub(crate) id: NodeId,
    pub(crate) level: usize,
    pub(crate) centroid: Vec<f32>,
    pub(crate) children: Vec<NodeId>,
    pub(crate) documents: Vec<String>,
}

impl Node {
    pub fn id(&self) -> &NodeId {
        &self.id
    }

    /// 0 for the root.
    pub fn level(&self) -> usize {
        self.level
    }

    /// Unit-length centre that the descent compares queries with.
    pub fn centroid(&self) -> &[f32] {
        &self.centroid
    }

    /// Children in routing order (ties in the descent go to the first).
    pub fn children(&self) -> &[NodeId] {
        &self.children
    }

    /// Document ids placed here; empty unless this is a leaf.
    pub fn documents(&self) -> &[String] {
        &self.documents
    }

    pub fn is_leaf(&self) -> bool {
        self.children.is_empty()
    }
}

/// Node counts and leaf sizes, for logs and capacity planning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeStats {
    /// Nodes per level, the root's (1) first.
    pub nodes_per_level: Vec<usize>,
    pub leaves: usize,
    pub documents: usize,
    pub min_docs_per_leaf: usize,
    /// The lower median.
    pub median_docs_per_leaf: usize,
    pub max_docs_per_leaf: usize,
}

/// The hierarchical k-means tree over document embeddings.
#[derive(Debug, Clone)]
pub struct Tree {
    pub(crate) dim: usize,
    pub(crate) params: TreeParams,
    pub(crate) nodes: HashMap<NodeId, Node>,
    /// Document id → the leaf holding it.
    pub(crate) leaf_of: HashMap<String, NodeId>,
}

impl Tree {
    /// Builds the tree over `ids.len()` documents whose embeddings lie
    /// row-major in `vectors` (`dim` each; normalised here, so any non-zero
    /// scale is fine). Deterministic for `params.seed`: each split draws
    /// from a generator seeded by the seed and the node's id.
    ///
    /// Leaves sit at depth `levels`, or higher where a node has a single
    /// document. The root is always split, so every document lies below a
    /// node with a memory block.
    pub fn build(vectors: &[f32], dim: usize, ids: &[String], params: TreeParams) -> Result<Tree> {
        params.validate()?;
        check_dim(dim)?;
        if ids.is_empty() {
            return Err(BankError::InvalidInput(
                "cannot build a memory tree over zero documents".into(),
            ));
        }
        if vectors.len() != ids.len() * dim {
            return Err(BankError::InvalidInput(format!(
                "{} values for {} documents of dimension {dim}; expected {}",
                vectors.len(),
                ids.len(),
                ids.len() * dim
            )));
        }
        let mut seen = HashSet::with_capacity(ids.len());
        if let Some(dup) = ids.iter().find(|id| !seen.insert(id.as_str())) {
            return Err(BankError::DuplicateDocument(dup.clone()));
        }
        let mut unit = vectors.to_vec();
        for (row, (v, id)) in unit.chunks_exact_mut(dim).zip(ids).enumerate() {
            unit_vector(v).map_err(|m| {
                BankError::InvalidInput(format!("embedding {row} (document {id:?}): {m}"))
            })?;
        }
        let rows: Vec<&[f32]> = unit.chunks_exact(dim).collect();

        let mut tree = Tree {
            dim,
            params,
            nodes: HashMap::new(),
            leaf_of: HashMap::with_capacity(ids.len()),
        };
        let mut root_centroid = mean_direction(&rows, dim);
        if !normalise(&mut root_centroid) {
            root_centroid = rows[0].to_vec();
        }
        // Breadth first: (node, its centroid, the rows it holds).
        let mut queue = VecDeque::from([(NodeId::root(), root_centroid, (0..ids.len()).collect())]);
        while let Some((id, centroid, members)) = queue.pop_front() {
            let members: Vec<usize> = members;
            let level = id.level();
            let split = level < params.levels && (members.len() > 1 || id.is_root());
            let mut node = Node {
                id: id.clone(),
                level,
                centroid,
                children: Vec::new(),
                documents: Vec::new(),
            };
            if split {
                let points: Vec<&[f32]> = members.iter().map(|&m| rows[m]).collect();
                let mut rng = SplitMix64::new(params.seed ^ fnv1a(id.as_str()));
                let clusters =
                    spherical_kmeans(&points, dim, params.branching, params.iterations, &mut rng);
                for (i, (centroid, positions)) in clusters
                    .centroids
                    .into_iter()
                    .zip(clusters.members)
                    .enumerate()
                {
                    let child = id.child(i);
                    node.children.push(child.clone());
                    let rows_of_child = positions.into_iter().map(|p| members[p]).collect();
                    queue.push_back((child, centroid, rows_of_child));
                }
            } else {
                for &m in &members {
                    node.documents.push(ids[m].clone());
                    tree.leaf_of.insert(ids[m].clone(), id.clone());
                }
            }
            tree.nodes.insert(id, node);
        }
        tracing::debug!(
            documents = ids.len(),
            nodes = tree.nodes.len(),
            "built memory tree"
        );
        Ok(tree)
    }

    /// Dimension of the embeddings the tree routes.
    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn params(&self) -> &TreeParams {
        &self.params
    }

    /// Number of documents placed in the tree.
    pub fn len(&self) -> usize {
        self.leaf_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.leaf_of.is_empty()
    }

    /// The nodes that own a block: every one but the root, top down.
    pub fn block_nodes(&self) -> Vec<NodeId> {
        self.nodes()
            .filter(|n| !n.id().is_root())
            .map(|n| n.id().clone())
            .collect()
    }

    pub fn node(&self, id: &NodeId) -> Option<&Node> {
        self.nodes.get(id)
    }

    pub fn contains(&self, doc_id: &str) -> bool {
        self.leaf_of.contains_key(doc_id)
    }

    /// Greedy root-to-leaf descent: at each node, the child whose centroid
    /// has the highest dot product with the (normalised) query. Returns the
    /// non-root nodes on the way, top down: the memory path for the query.
    pub fn descend(&self, query: &[f32]) -> Result<Vec<NodeId>> {
        let mut q = query.to_vec();
        if q.len() != self.dim {
            return Err(BankError::InvalidInput(format!(
                "query has {} dimensions, the tree routes {}",
                q.len(),
                self.dim
            )));
        }
        unit_vector(&mut q).map_err(|m| BankError::InvalidInput(format!("query: {m}")))?;
        let mut path = Vec::with_capacity(self.params.levels);
        let mut at = self.root()?;
        while !at.is_leaf() {
            let children = at
                .children
                .iter()
                .map(|c| {
                    self.nodes
                        .get(c)
                        .ok_or_else(|| BankError::UnknownNode(c.clone()))
                })
                .collect::<Result<Vec<&Node>>>()?;
            let best = nearest(&q, children.iter().map(|c| c.centroid.as_slice()))
                .and_then(|i| children.get(i))
                .ok_or_else(|| BankError::UnknownNode(at.id.clone()))?;
            path.push(best.id.clone());
            at = best;
        }
        Ok(path)
    }

    /// Places a new document in the leaf its vector descends to and
    /// returns that leaf's path: the nodes whose blocks no longer cover
    /// every document under them and should be retrained.
    pub fn assign(&mut self, id: String, vector: &[f32]) -> Result<Vec<NodeId>> {
        if self.leaf_of.contains_key(&id) {
            return Err(BankError::DuplicateDocument(id));
        }
        let path = self.descend(vector)?;
        let leaf = path.last().cloned().unwrap_or_else(NodeId::root);
        let node = self
            .nodes
            .get_mut(&leaf)
            .ok_or_else(|| BankError::UnknownNode(leaf.clone()))?;
        node.documents.push(id.clone());
        self.leaf_of.insert(id, leaf);
        Ok(path)
    }

    /// Takes a document out of its leaf; returns the path of nodes that
    /// held it (whose blocks were trained with it), or `None` if it is not
    /// in the tree.
    pub fn remove(&mut self, id: &str) -> Option<Vec<NodeId>> {
        let leaf = self.leaf_of.remove(id)?;
        if let Some(node) = self.nodes.get_mut(&leaf) {
            node.documents.retain(|d| d != id);
        }
        Some(leaf.path())
    }

    /// Every document in the subtree of `node` (none for an unknown node),
    /// leaves in top-down order.
    pub fn documents_under(&self, node: &NodeId) -> Vec<String> {
        self.subtree(node)
            .flat_map(|n| n.documents.iter().cloned())
            .collect()
    }

    /// The non-root nodes from the root down to the document's leaf.
    pub fn path_of(&self, doc_id: &str) -> Option<Vec<NodeId>> {
        self.leaf_of.get(doc_id).map(NodeId::path)
    }

    /// Every node, root first, breadth first.
    pub fn nodes(&self) -> impl Iterator<Item = &Node> + '_ {
        self.subtree(&NodeId::root())
    }

    /// Node counts per level and leaf sizes.
    pub fn stats(&self) -> TreeStats {
        let mut nodes_per_level = vec![0; self.params.levels + 1];
        let mut leaf_sizes = Vec::new();
        for node in self.nodes.values() {
            if let Some(count) = nodes_per_level.get_mut(node.level) {
                *count += 1;
            }
            if node.is_leaf() {
                leaf_sizes.push(node.documents.len());
            }
        }
        leaf_sizes.sort_unstable();
        let pick = |i: usize| leaf_sizes.get(i).copied().unwrap_or(0);
        TreeStats {
            nodes_per_level,
            leaves: leaf_sizes.len(),
            documents: self.leaf_of.len(),
            min_docs_per_leaf: pick(0),
            median_docs_per_leaf: pick(leaf_sizes.len().saturating_sub(1) / 2),
            max_docs_per_leaf: pick(leaf_sizes.len().saturating_sub(1)),
        }
    }

    /// Puts a document back in a leaf it was removed from (undoing a
    /// [`Tree::remove`] whose save failed).
    pub(crate) fn place(&mut self, id: String, leaf: &NodeId) {
        if let Some(node) = self.nodes.get_mut(leaf) {
            node.documents.push(id.clone());
            self.leaf_of.insert(id, leaf.clone());
        }
    }

    fn root(&self) -> Result<&Node> {
        self.nodes
            .get(&NodeId::root())
            .ok_or_else(|| BankError::UnknownNode(NodeId::root()))
    }

    /// The nodes under `top` (itself included), breadth first.
    fn subtree<'a>(&'a self, top: &NodeId) -> impl Iterator<Item = &'a Node> + 'a {
        let mut queue: VecDeque<&Node> = self.nodes.get(top).into_iter().collect();
        std::iter::from_fn(move || {
            let node = queue.pop_front()?;
            queue.extend(node.children.iter().filter_map(|c| self.nodes.get(c)));
            Some(node)
        })
    }
}

pub(crate) fn check_dim(dim: usize) -> Result<()> {
    if !(1..=MAX_DIM).contains(&dim) {
        return Err(BankError::InvalidInput(format!(
            "embedding dimension must be in 1..={MAX_DIM}, got {dim}"
        )));
    }
    Ok(())
}

/// Normalises an embedding in place, or says why it cannot be used.
fn unit_vector(v: &mut [f32]) -> std::result::Result<(), &'static str> {
    if v.iter().any(|x| !x.is_finite()) {
        return Err("has a NaN or infinite component");
    }
    if !normalise(v) {
        return Err("is zero (no direction to route by)");
    }
    Ok(())
}

fn mean_direction(rows: &[&[f32]], dim: usize) -> Vec<f32> {
    let mut sum = vec![0.0f32; dim];
    for row in rows {
        sum.iter_mut().zip(*row).for_each(|(s, x)| *s += x);
    }
    sum
}

/// FNV-1a of a node id: a stable per-node seed offset (std's hasher may
/// change between Rust releases, which would change the trees).
pub(crate) fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;
