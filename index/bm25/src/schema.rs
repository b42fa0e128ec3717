//! The tantivy schema of a BM25 index.

use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, STORED, STRING,
};

use crate::analyzer::ANALYZER_NAME;
use crate::error::{Bm25Error, Result};

pub(crate) const ID: &str = "id";
pub(crate) const SEQ: &str = "seq";
pub(crate) const TITLE: &str = "title";
pub(crate) const TEXT: &str = "text";
pub(crate) const CONTENTS: &str = "contents";

/// Handles to the fields of [`build`]'s schema.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fields {
    /// The document id, indexed untokenised so `delete_term` can address one
    /// document; also a fast column so hits and `indexed_versions` read ids
    /// without decompressing stored documents.
    pub id: Field,
    /// The log sequence number of the indexed version (fast + stored).
    pub seq: Field,
    /// Stored only, so the index can be inspected on its own.
    pub title: Field,
    /// Stored only, see `title`.
    pub text: Field,
    /// What BM25 scores: `title + "\n" + text` through the English
    /// analyzer. Frequencies and field norms, no positions: there are no
    /// phrase queries, and positions would roughly double the index.
    pub contents: Field,
}

/// The schema every BM25 index is created with. Changing it makes existing
/// indexes unreadable (`open` reports them as corrupt), so it is versioned
/// only by this code.
pub(crate) fn build() -> (Schema, Fields) {
    let mut builder = Schema::builder();
    let id = builder.add_text_field(ID, STRING | STORED | FAST);
    let seq = builder.add_u64_field(SEQ, FAST | STORED);
    let title = builder.add_text_field(TITLE, STORED);
    let text = builder.add_text_field(TEXT, STORED);
    let contents_indexing = TextFieldIndexing::default()
        .set_tokenizer(ANALYZER_NAME)
        .set_index_option(IndexRecordOption::WithFreqs)
        .set_fieldnorms(true);
    let contents = builder.add_text_field(
        CONTENTS,
        TextOptions::default().set_indexing_options(contents_indexing),
    );
    (
        builder.build(),
        Fields {
            id,
            seq,
            title,
            text,
            contents,
        },
    )
}

/// Looks up [`Fields`] in a schema read from disk, so an index written with
/// another schema is reported instead of misread.
pub(crate) fn fields_of(schema: &Schema) -> Result<Fields> {
    let (expected, fields) = build();
    if schema != &expected {
        return Err(Bm25Error::Corrupt(
            "the index was created with a different schema than this version of mnemos-bm25 \
             writes; rebuild it from the document store"
                .to_owned(),
        ));
    }
    Ok(fields)
}
