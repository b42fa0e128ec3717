//! `texts.json`: the text of every document in the bank, so that a block
//! can be retrained from the bank alone (the retrieval store need not hold
//! the same documents). Written atomically with a checksum, like the
//! manifest, on every change.

use std::collections::BTreeMap;
use std::path::Path;

use crate::files::{read_json, write_json};
use crate::Result;

/// The text a document with a title contributes to a bank: the title, a
/// newline, the text (either may be empty). One definition for the
/// training pipeline, the admin write path and the corpus reader, so a
/// document is embedded and trained on the same way wherever it enters.
pub fn document_text(title: &str, text: &str) -> String {
    match (title.trim(), text.trim()) {
        ("", t) => t.to_string(),
        (h, t) => format!("{h}\n{t}"),
    }
}

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
