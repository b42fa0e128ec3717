//! Node identity in the memory tree.
//!
//! A node is named by its path from the root: the root's children are
//! `"0"`, `"1"`, …, their children `"3.0"`, `"3.1"`, …, and the root is the
//! empty path. The name alone gives the level and every ancestor, so a
//! block file (`blocks/3.1.safetensors`) says where it sits in the tree
//! without reading the tree, and a path is recovered from a leaf's id.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A node's path from the root, as dot-separated child indices.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeId(String);

impl TryFrom<String> for NodeId {
    type Error = String;

    /// What a file's node id must look like (see [`NodeId::parse`]).
    fn try_from(path: String) -> Result<Self, String> {
        NodeId::parse(&path).ok_or_else(|| format!("malformed node id {path:?}"))
    }
}

impl From<NodeId> for String {
    fn from(id: NodeId) -> String {
        id.0
    }
}

impl NodeId {
    /// The root: all documents, no memory block.
    pub fn root() -> Self {
        NodeId(String::new())
    }

    /// Parses a path such as `"3.1"` (or `""` for the root). Anything but
    /// dot-separated decimal child indices is rejected, so an id can always
    /// be used as a file name and its level trusted.
    pub fn parse(path: &str) -> Option<Self> {
        if path.is_empty() {
            return Some(Self::root());
        }
        let valid = path.split('.').all(|part| {
            !part.is_empty()
                && part.len() <= 6
                && part.bytes().all(|b| b.is_ascii_digit())
                && (part == "0" || !part.starts_with('0'))
        });
        valid.then(|| NodeId(path.to_string()))
    }

    /// The path string (`""` for the root).
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// Depth below the root: 0 for the root, 1 for its children.
    pub fn level(&self) -> usize {
        if self.is_root() {
            0
        } else {
            self.0.split('.').count()
        }
    }

    /// The `index`-th child of this node.
    pub fn child(&self, index: usize) -> Self {
        if self.is_root() {
            NodeId(index.to_string())
        } else {
            NodeId(format!("{}.{index}", self.0))
        }
    }

    /// The parent, or `None` for the root.
    pub fn parent(&self) -> Option<Self> {
        if self.is_root() {
            return None;
        }
        Some(match self.0.rfind('.') {
            Some(at) => NodeId(self.0[..at].to_string()),
            None => Self::root(),
        })
    }

    /// The non-root nodes from the root's child down to this node itself:
    /// the memory path whose blocks are fetched for a query reaching it.
    pub fn path(&self) -> Vec<NodeId> {
        let mut path = Vec::with_capacity(self.level());
        let mut at = 0;
        while let Some(dot) = self.0[at..].find('.') {
            path.push(NodeId(self.0[..at + dot].to_string()));
            at += dot + 1;
        }
        if !self.is_root() {
            path.push(self.clone());
        }
        path
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_root() {
            f.write_str("root")
        } else {
            f.write_str(&self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_know_their_level_parent_and_path() {
        let root = NodeId::root();
        let leaf = root.child(3).child(10).child(0);
        assert_eq!(leaf.as_str(), "3.10.0");
        assert_eq!(leaf.level(), 3);
        assert_eq!(root.level(), 0);
        assert_eq!(leaf.parent().map(|p| p.to_string()), Some("3.10".into()));
        assert_eq!(root.child(3).parent(), Some(root.clone()));
        assert_eq!(root.parent(), None);
        let path: Vec<String> = leaf.path().iter().map(NodeId::to_string).collect();
        assert_eq!(path, ["3", "3.10", "3.10.0"]);
        assert!(root.path().is_empty());
        assert_eq!(root.to_string(), "root");
    }

    #[test]
    fn only_well_formed_paths_parse() {
        assert_eq!(NodeId::parse(""), Some(NodeId::root()));
        assert_eq!(NodeId::parse("3.10.0").map(|n| n.level()), Some(3));
        for bad in [
            "3.", ".3", "3..1", "a", "03", "-1", "3/1", "../x", "1234567",
        ] {
            assert_eq!(NodeId::parse(bad), None, "{bad}");
        }
    }
}
