//! `tree.json`: the tree as saved, and every check a loaded one must pass.
//!
//! The descent trusts the tree's structure (children exist, centroids have
//! the query's length) and the bank trusts that each document sits in one
//! leaf, so a file that breaks any of that is rejected at load with a
//! message naming the fault, rather than failing later mid-query.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::files::{read_json, write_json};
use crate::tree::{check_dim, Node, Tree, TreeParams};
use crate::{BankError, NodeId, Result};

/// File name of the tree inside a bank directory.
pub const TREE_FILE: &str = "tree.json";

/// Bumped when the layout changes incompatibly.
const FORMAT: u32 = 1;

/// How far a stored centroid's norm may stray from 1 (JSON keeps f32 to
/// the last bit, so this only allows for hand edits' rounding).
const NORM_TOLERANCE: f32 = 1e-3;

#[derive(Serialize)]
struct TreeFileRef<'a> {
    format: u32,
    dim: usize,
    params: &'a TreeParams,
    nodes: Vec<&'a Node>,
}

#[derive(Deserialize)]
struct TreeFile {
    format: u32,
    dim: usize,
    params: TreeParams,
    nodes: Vec<Node>,
}

impl Tree {
    /// Writes `<dir>/tree.json` (nodes top down), atomically and durably:
    /// a crash leaves the previous tree or this one.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let file = TreeFileRef {
            format: FORMAT,
            dim: self.dim,
            params: &self.params,
            nodes: self.nodes().collect(),
        };
        write_json(&dir.join(TREE_FILE), &file)
    }

    /// Reads `<dir>/tree.json` and checks it: parameters valid, every
    /// centroid finite, unit length and `dim` long, every child present
    /// and reachable once, and each document in exactly one leaf.
    pub fn load(dir: &Path) -> Result<Tree> {
        let path = dir.join(TREE_FILE);
        let file: TreeFile = read_json(&path)?;
        validate(&path, file)
    }
}

fn validate(path: &Path, file: TreeFile) -> Result<Tree> {
    let bad = |m: String| BankError::corrupt(path, m);
    if file.format != FORMAT {
        return Err(bad(format!("unsupported tree format {}", file.format)));
    }
    file.params.validate().map_err(|e| bad(e.to_string()))?;
    check_dim(file.dim).map_err(|e| bad(e.to_string()))?;
    let params = file.params;

    let mut nodes = HashMap::with_capacity(file.nodes.len());
    for node in file.nodes {
        check_node(&node, file.dim, &params).map_err(|m| bad(format!("node {}: {m}", node.id)))?;
        let id = node.id.clone();
        if nodes.insert(id.clone(), node).is_some() {
            return Err(bad(format!("node {id} appears twice")));
        }
    }
    if !nodes.contains_key(&NodeId::root()) {
        return Err(bad("no root node".into()));
    }
    let mut listed = 0;
    let mut leaf_of = HashMap::new();
    for node in nodes.values() {
        for child in &node.children {
            if child.parent().as_ref() != Some(&node.id) {
                return Err(bad(format!(
                    "node {} lists {child}, not its child",
                    node.id
                )));
            }
            if !nodes.contains_key(child) {
                return Err(bad(format!("node {} lists missing child {child}", node.id)));
            }
        }
        listed += node.children.len();
        for doc in &node.documents {
            if let Some(other) = leaf_of.insert(doc.clone(), node.id.clone()) {
                return Err(bad(format!(
                    "document {doc:?} is in both node {other} and node {}",
                    node.id
                )));
            }
        }
    }
    // Children are named after their parent, so each is listed at most
    // once; the count then says every non-root node is listed.
    if listed != nodes.len() - 1 {
        return Err(bad(format!(
            "{} of {} non-root nodes are not any node's child",
            nodes.len() - 1 - listed,
            nodes.len() - 1
        )));
    }
    Ok(Tree {
        dim: file.dim,
        params,
        nodes,
        leaf_of,
    })
}

/// Checks one node on its own; the message is about `node`.
fn check_node(node: &Node, dim: usize, params: &TreeParams) -> std::result::Result<(), String> {
    if node.level != node.id.level() {
        return Err(format!(
            "level {} does not match its id's depth {}",
            node.level,
            node.id.level()
        ));
    }
    if node.level > params.levels {
        return Err(format!("below the tree's {} levels", params.levels));
    }
    if node.centroid.len() != dim {
        return Err(format!(
            "centroid has {} dimensions, the tree {dim}",
            node.centroid.len()
        ));
    }
    if node.centroid.iter().any(|x| !x.is_finite()) {
        return Err("centroid is not finite".into());
    }
    let norm = mnemos_index_core::vector::dot(&node.centroid, &node.centroid).sqrt();
    if (norm - 1.0).abs() > NORM_TOLERANCE {
        return Err(format!("centroid has norm {norm}, not 1"));
    }
    if node.children.len() > params.branching {
        return Err(format!(
            "{} children, over the branching of {}",
            node.children.len(),
            params.branching
        ));
    }
    if !node.children.is_empty() && !node.documents.is_empty() {
        return Err("has both children and documents".into());
    }
    let unique: HashSet<&NodeId> = node.children.iter().collect();
    if unique.len() != node.children.len() {
        return Err("lists a child twice".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::testing::clustered;

    /// Edits a tree file's JSON, for the checks a well-formed file must pass.
    type Edit = Box<dyn Fn(&mut serde_json::Value)>;

    fn tree_path(dir: &Path) -> std::path::PathBuf {
        dir.join(TREE_FILE)
    }

    fn saved() -> Result<(tempfile::TempDir, Tree, serde_json::Value)> {
        let dir = tempfile::tempdir().map_err(BankError::io(Path::new("tempdir")))?;
        let (vectors, ids) = clustered(4, 10, 16, 0.1, 5);
        let params = TreeParams {
            levels: 2,
            branching: 3,
            iterations: 25,
            seed: 11,
        };
        let tree = Tree::build(&vectors, 16, &ids, params)?;
        tree.save(dir.path())?;
        let bytes = fs::read(tree_path(dir.path())).map_err(BankError::io(dir.path()))?;
        let json = serde_json::from_slice(&bytes[..bytes.len() - 4])
            .map_err(|e| BankError::corrupt(dir.path(), e))?;
        Ok((dir, tree, json))
    }

    /// Writes `json` as a well-checksummed tree file and loads it, so only
    /// the content's checks can reject it.
    fn load_edited(dir: &Path, json: &serde_json::Value) -> Result<Tree> {
        write_json(&tree_path(dir), json)?;
        Tree::load(dir)
    }

    #[test]
    fn round_trip_keeps_every_node_and_document() -> Result<()> {
        let (dir, tree, _) = saved()?;
        let loaded = Tree::load(dir.path())?;
        assert_eq!(loaded.nodes, tree.nodes);
        assert_eq!(loaded.leaf_of, tree.leaf_of);
        assert_eq!(loaded.params, tree.params);
        assert_eq!(loaded.stats(), tree.stats());
        Ok(())
    }

    #[test]
    fn damaged_files_are_errors_that_say_why() -> Result<()> {
        let (dir, _, json) = saved()?;
        let path = tree_path(dir.path());
        let bytes = fs::read(&path).map_err(BankError::io(&path))?;
        for len in [0, 3, bytes.len() / 2, bytes.len() - 1] {
            fs::write(&path, &bytes[..len]).map_err(BankError::io(&path))?;
            assert!(matches!(
                Tree::load(dir.path()),
                Err(BankError::Corrupt { .. })
            ));
        }

        let cases: Vec<(&str, Edit)> = vec![
            ("dimensions", Box::new(|j| j["dim"] = 15.into())),
            (
                "not finite",
                Box::new(|j| j["nodes"][1]["centroid"][0] = 1e39.into()),
            ),
            (
                "norm",
                Box::new(|j| j["nodes"][1]["centroid"][0] = 3.0.into()),
            ),
            (
                "missing child",
                Box::new(|j| j["nodes"][0]["children"][0] = "9".into()),
            ),
            (
                "malformed node id",
                Box::new(|j| j["nodes"][1]["id"] = "x".into()),
            ),
            (
                "appears twice",
                Box::new(|j| j["nodes"][1] = j["nodes"][2].clone()),
            ),
            (
                "is in both",
                Box::new(|j| {
                    let last = j["nodes"].as_array().map_or(0, Vec::len) - 1;
                    let doc = j["nodes"][last]["documents"][0].clone();
                    j["nodes"][last - 1]["documents"][0] = doc;
                }),
            ),
            ("levels", Box::new(|j| j["params"]["levels"] = 9.into())),
        ];
        for (expected, edit) in cases {
            let mut edited = json.clone();
            edit(&mut edited);
            let err = load_edited(dir.path(), &edited).expect_err(expected);
            assert!(
                matches!(err, BankError::Corrupt { .. }),
                "{expected}: {err}"
            );
            assert!(err.to_string().contains(expected), "{expected}: {err}");
        }
        Ok(())
    }
}
