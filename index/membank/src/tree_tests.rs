use super::*;
use crate::testing::{clustered, row};

fn params(levels: usize, branching: usize, seed: u64) -> TreeParams {
    TreeParams {
        levels,
        branching,
        iterations: 25,
        seed,
    }
}

fn cluster_of(doc: &str) -> &str {
    doc.split('-').next().unwrap_or(doc)
}

#[test]
fn separated_clusters_get_one_child_each() -> Result<()> {
    let (vectors, ids) = clustered(4, 25, 32, 0.05, 1);
    let tree = Tree::build(&vectors, 32, &ids, params(1, 4, 7))?;
    let root = tree.node(&NodeId::root()).expect("root");
    assert_eq!(root.children().len(), 4);
    let mut seen = HashSet::new();
    for child in root.children() {
        let docs = tree.documents_under(child);
        assert_eq!(docs.len(), 25, "child {child}: {docs:?}");
        let cluster = cluster_of(&docs[0]);
        assert!(docs.iter().all(|d| cluster_of(d) == cluster), "{docs:?}");
        assert!(seen.insert(cluster.to_string()), "cluster {cluster} split");
        let node = tree.node(child).expect("child");
        assert!(node.is_leaf());
        assert_eq!(node.level(), 1);
        assert!(
            (mnemos_index_core::vector::dot(node.centroid(), node.centroid()) - 1.0).abs() < 1e-5
        );
    }
    Ok(())
}

#[test]
fn same_seed_same_tree_other_seed_may_differ() -> Result<()> {
    let (vectors, ids) = clustered(5, 20, 16, 0.3, 2);
    let a = Tree::build(&vectors, 16, &ids, params(3, 3, 42))?;
    let b = Tree::build(&vectors, 16, &ids, params(3, 3, 42))?;
    assert_eq!(a.nodes, b.nodes);
    assert_eq!(a.leaf_of, b.leaf_of);
    let top_down: Vec<&NodeId> = a.nodes().map(Node::id).collect();
    assert_eq!(top_down[0], &NodeId::root());
    assert!(top_down.windows(2).all(|w| w[0].level() <= w[1].level()));
    assert_eq!(top_down.len(), a.nodes.len());
    Ok(())
}

#[test]
fn a_document_descends_to_its_own_leaf() -> Result<()> {
    let (vectors, ids) = clustered(6, 30, 24, 0.4, 3);
    let tree = Tree::build(&vectors, 24, &ids, params(3, 4, 5))?;
    let stats = tree.stats();
    assert_eq!(stats.documents, 180);
    assert_eq!(stats.nodes_per_level[0], 1);
    assert!(stats.min_docs_per_leaf >= 1);
    for (i, id) in ids.iter().enumerate() {
        let path = tree.descend(row(&vectors, 24, i))?;
        assert_eq!(Some(&path), tree.path_of(id).as_ref(), "{id}");
        let leaf = path.last().and_then(|l| tree.node(l)).expect("leaf");
        assert!(leaf.documents().contains(id));
        // Leaves with one document may stop early; the rest are at depth 3.
        if leaf.documents().len() > 1 {
            assert_eq!(path.len(), 3);
        }
        assert_eq!(
            path.iter().map(NodeId::level).collect::<Vec<_>>(),
            (1..=path.len()).collect::<Vec<_>>()
        );
    }
    Ok(())
}

#[test]
fn bad_input_is_an_error() {
    let ids = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>();
    let p = params(2, 4, 0);
    assert!(Tree::build(&[], 4, &[], p).is_err());
    assert!(Tree::build(&[1.0; 7], 4, &ids(2), p).is_err());
    assert!(Tree::build(&[1.0, f32::NAN, 0.0, 0.0], 4, &ids(1), p).is_err());
    assert!(Tree::build(&[0.0; 4], 4, &ids(1), p).is_err());
    let dup = vec!["a".to_string(), "a".to_string()];
    assert!(matches!(
        Tree::build(&[1.0; 8], 4, &dup, p),
        Err(BankError::DuplicateDocument(_))
    ));
    assert!(Tree::build(&[1.0; 4], 4, &ids(1), params(7, 4, 0)).is_err());
    assert!(Tree::build(&[1.0; 4], 4, &ids(1), params(2, 1, 0)).is_err());
    assert!(Tree::build(&[1.0; 4], 4, &ids(1), params(2, 65, 0)).is_err());
    let tree = Tree::build(&[1.0; 4], 4, &ids(1), p).expect("one document");
    assert!(tree.descend(&[1.0; 3]).is_err());
    assert!(tree.descend(&[f32::INFINITY, 0.0, 0.0, 0.0]).is_err());
}

#[test]
fn a_single_document_still_gets_a_block_path() -> Result<()> {
    let tree = Tree::build(&[0.0, 2.0], 2, &["only".to_string()], params(3, 4, 0))?;
    assert_eq!(tree.path_of("only"), Some(vec![NodeId::root().child(0)]));
    Ok(())
}

#[test]
fn assign_and_remove_move_documents() -> Result<()> {
    let (vectors, ids) = clustered(3, 10, 8, 0.05, 4);
    let mut tree = Tree::build(&vectors, 8, &ids, params(2, 3, 9))?;
    // A new document near cluster 1 joins the leaf that cluster 1's
    // documents descend to.
    let mut near = row(&vectors, 8, 1).to_vec();
    near[7] += 0.01;
    let expected = tree.descend(&near)?;
    let path = tree.assign("new".into(), &near)?;
    assert_eq!(path, expected);
    assert_eq!(tree.path_of("new"), Some(path.clone()));
    for node in &path {
        assert!(tree.documents_under(node).contains(&"new".to_string()));
    }
    assert!(tree
        .documents_under(&NodeId::root())
        .contains(&"new".to_string()));
    assert_eq!(tree.len(), 31);
    assert!(matches!(
        tree.assign("new".into(), &near),
        Err(BankError::DuplicateDocument(_))
    ));

    assert_eq!(tree.remove("new"), Some(path.clone()));
    assert_eq!(tree.remove("new"), None);
    assert_eq!(tree.path_of("new"), None);
    assert!(!tree.documents_under(&path[0]).contains(&"new".to_string()));
    assert_eq!(tree.documents_under(&NodeId::root()).len(), 30);
    assert!(tree.documents_under(&NodeId::root().child(60)).is_empty());
    Ok(())
}
