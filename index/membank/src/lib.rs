//! The hierarchical memory bank of SPECS §5 (Pouransari et al., 2025): a
//! tree over document embeddings whose every non-root node owns a block of
//! extra SwiGLU units for an anchor language model.
//!
//! - [`Tree`]: hierarchical spherical k-means over L2-normalised
//!   embeddings; [`Tree::descend`] finds a query's memory path, and
//!   [`Tree::path_of`] the blocks a document was trained into.
//! - [`Bank`]: the blocks on disk, one safetensors file per node so a
//!   path is fetched without the rest; a manifest records what each block
//!   was trained on, so removing a document disables exactly the blocks
//!   that learned it ([`Bank::disable_blocks_trained_on`]).
//!
//! Training the blocks is not here: this crate stores, routes and merges
//! them into [`mnemos_llama::FfnUnits`] for the anchor's forward pass.

mod bank;
mod block;
mod error;
mod files;
mod kmeans;
mod manifest;
mod node;
mod routing;
#[cfg(test)]
mod testing;
mod texts;
mod tiered;
mod tree;
mod tree_file;

pub use bank::{Bank, BLOCKS_DIR};
pub use error::{BankError, Result};
pub use manifest::{BankConfig, BlockMeta, LevelTraining, MANIFEST_FILE};
pub use node::NodeId;
pub use texts::{document_text, TEXTS_FILE};
pub use tiered::{fetch_bank_files, MissingBlock, PathMemory};
pub use tree::{Node, Tree, TreeParams, TreeStats};
pub use tree_file::TREE_FILE;
