//! `texts.json`: the text of every document in the bank, so that a block
//! can be retrained from the bank alone (the retrieval store need not hold
//! the same documents). Written atomically with a checksum, like the
//! manifest, on every change.

use std::collections::BTreeMap;
use std::path::Path;

use crate::files::{read_json, write_json};
use crate::Result;

/// File name of the texts inside a bank directory.
pub const TEXTS_FILE: &str = "texts.json";

/// Reads the texts, or none when the bank has no texts file yet.
pub(crate) fn load(dir: &Path) -> Result<BTreeMap<String, String>> {
    let path = dir.join(TEXTS_FILE);
    if !path.exists() {
        return Ok(BTreeMap::new());
    }
    read_json(&path)
}

/// Writes the texts durably.
pub(crate) fn save(dir: &Path, texts: &BTreeMap<String, String>) -> Result<()> {
    write_json(&dir.join(TEXTS_FILE), texts)
}
