//! Snapshots: every live document at one seq, as an Arrow IPC file.
//!
//! `snapshot-<seq>.arrow` (seq zero-padded to 20 digits so names sort by
//! seq) holds the columns `id`, `title`, `text`, `metadata` (the JSON text of
//! the document's metadata, `null` when absent) and `seq` (the version of each
//! document), in id order. The schema metadata key [`SEQ_KEY`] holds the seq
//! the snapshot covers, which can be newer than every document's version (the
//! last write may have been a remove). Arrow IPC lets tools such as pyarrow
//! or DuckDB read a store without mnemos, and loads far faster than replaying
//! JSON.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, StringBuilder, UInt64Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type};
use arrow::ipc::reader::FileReader;
use arrow::ipc::writer::FileWriter;
use arrow::record_batch::RecordBatch;
use mnemos_index_core::{Document, Seq};

use crate::error::{IoContext, Result, StoreError};
use crate::files;

/// Schema metadata key of the seq a snapshot covers.
pub(crate) const SEQ_KEY: &str = "mnemos.snapshot_seq";

const PREFIX: &str = "snapshot-";
const SUFFIX: &str = ".arrow";

/// Rows per record batch: large enough to amortize per-batch overhead,
/// small enough that a batch never holds much memory twice.
const ROWS_PER_BATCH: usize = 8192;

/// String bytes per batch. Arrow's Utf8 arrays use i32 offsets, so one
/// column of one batch must stay under 2 GiB; big documents close a batch
/// early instead of overflowing it.
const BYTES_PER_BATCH: usize = 256 << 20;

pub(crate) fn path_for(dir: &Path, seq: Seq) -> PathBuf {
    dir.join(format!("{PREFIX}{seq:020}{SUFFIX}"))
}

fn seq_of(name: &str) -> Option<Seq> {
    name.strip_prefix(PREFIX)?
        .strip_suffix(SUFFIX)?
        .parse()
        .ok()
}

/// All snapshot files in `dir`, oldest first.
pub(crate) fn list(dir: &Path) -> Result<Vec<(Seq, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let path = entry.at(dir)?.path();
        if let Some(seq) = path.file_name().and_then(|n| n.to_str()).and_then(seq_of) {
            found.push((seq, path));
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Deletes the snapshots older than `seq`; the newest one makes them
/// redundant.
pub(crate) fn remove_older_than(dir: &Path, seq: Seq) -> Result<()> {
    for (old, path) in list(dir)? {
        if old < seq {
            fs::remove_file(&path).at(&path)?;
        }
    }
    Ok(())
}

fn schema(seq: Seq) -> Schema {
    let fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("title", DataType::Utf8, false),
        Field::new("text", DataType::Utf8, false),
        Field::new("metadata", DataType::Utf8, false),
        Field::new("seq", DataType::UInt64, false),
    ];
    let metadata = HashMap::from([(SEQ_KEY.to_string(), seq.to_string())]);
    Schema::new_with_metadata(fields, metadata)
}

fn arrow_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::Arrow(e.to_string())
}

/// Writes `docs` as the snapshot covering `seq` and makes it durable under
/// its final name (temp file, fsync, rename, fsync directory). Returns its
/// path.
pub(crate) fn write(
    dir: &Path,
    seq: Seq,
    docs: &[(Arc<Document>, Seq)],
    fsync: bool,
) -> Result<PathBuf> {
    let dest = path_for(dir, seq);
    let tmp = files::temp_path(&dest);
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&tmp)
        .at(&tmp)?;
    let schema = Arc::new(schema(seq));
    let mut writer = FileWriter::try_new(BufWriter::new(file), &schema).map_err(arrow_err)?;
    let mut batch = BatchBuilder::default();
    for (doc, version) in docs {
        let metadata = serde_json::to_string(&doc.metadata)
            .map_err(|e| StoreError::Encode(format!("metadata of {:?}: {e}", doc.id)))?;
        let row_bytes = doc.id.len() + doc.title.len() + doc.text.len() + metadata.len();
        if batch.rows > 0
            && (batch.rows == ROWS_PER_BATCH || batch.bytes + row_bytes > BYTES_PER_BATCH)
        {
            writer.write(&batch.finish(&schema)?).map_err(arrow_err)?;
        }
        if row_bytes > i32::MAX as usize {
            return Err(StoreError::Arrow(format!(
                "document {:?} is too large for a snapshot ({row_bytes} bytes)",
                doc.id
            )));
        }
        batch.push(doc, &metadata, *version, row_bytes);
    }
    if batch.rows > 0 {
        writer.write(&batch.finish(&schema)?).map_err(arrow_err)?;
    }
    writer.finish().map_err(arrow_err)?;
    let mut buffered = writer.into_inner().map_err(arrow_err)?;
    buffered.flush().at(&tmp)?;
    if fsync {
        buffered.get_ref().sync_all().at(&tmp)?;
    }
    drop(buffered);
    files::commit_rename(&tmp, &dest, fsync)?;
    Ok(dest)
}

/// Columns of the batch being filled.
#[derive(Default)]
struct BatchBuilder {
    id: StringBuilder,
    title: StringBuilder,
    text: StringBuilder,
    metadata: StringBuilder,
    seq: UInt64Builder,
    rows: usize,
    bytes: usize,
}

impl BatchBuilder {
    fn push(&mut self, doc: &Document, metadata: &str, seq: Seq, bytes: usize) {
        self.id.append_value(&doc.id);
        self.title.append_value(&doc.title);
        self.text.append_value(&doc.text);
        self.metadata.append_value(metadata);
        self.seq.append_value(seq);
        self.rows += 1;
        self.bytes += bytes;
    }

    /// Turns the rows so far into a batch and starts over.
    fn finish(&mut self, schema: &SchemaRef) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.id.finish()),
            Arc::new(self.title.finish()),
            Arc::new(self.text.finish()),
            Arc::new(self.metadata.finish()),
            Arc::new(self.seq.finish()),
        ];
        self.rows = 0;
        self.bytes = 0;
        RecordBatch::try_new(schema.clone(), columns).map_err(arrow_err)
    }
}

/// Reads the snapshot at `path`, which its name says covers `seq`, handing
/// each document and its version to `load`.
pub(crate) fn read(path: &Path, seq: Seq, mut load: impl FnMut(Document, Seq)) -> Result<()> {
    let corrupt = |reason: String| StoreError::Corrupt {
        path: path.to_path_buf(),
        offset: 0,
        reason,
    };
    let file = File::open(path).at(path)?;
    let reader = FileReader::try_new(BufReader::new(file), None)
        .map_err(|e| corrupt(format!("unreadable Arrow IPC file: {e}")))?;
    let covered = reader.schema().metadata().get(SEQ_KEY).cloned();
    if covered.as_deref() != Some(seq.to_string().as_str()) {
        return Err(corrupt(format!(
            "schema says it covers seq {covered:?}, its name says {seq}"
        )));
    }
    for batch in reader {
        let batch = batch.map_err(|e| corrupt(format!("unreadable record batch: {e}")))?;
        let text_column = |name: &str| {
            batch
                .column_by_name(name)
                .and_then(|c| c.as_string_opt::<i32>())
                .filter(|c| c.null_count() == 0)
                .ok_or_else(|| corrupt(format!("column {name:?} missing, mistyped or null")))
        };
        let (ids, titles, texts, metadata) = (
            text_column("id")?,
            text_column("title")?,
            text_column("text")?,
            text_column("metadata")?,
        );
        let versions = batch
            .column_by_name("seq")
            .and_then(|c| c.as_primitive_opt::<UInt64Type>())
            .filter(|c| c.null_count() == 0)
            .ok_or_else(|| corrupt("column \"seq\" missing, mistyped or null".into()))?;
        for row in 0..batch.num_rows() {
            let metadata = serde_json::from_str(metadata.value(row))
                .map_err(|e| corrupt(format!("metadata of row {row} is not JSON: {e}")))?;
            let doc = Document {
                id: ids.value(row).to_string(),
                title: titles.value(row).to_string(),
                text: texts.value(row).to_string(),
                metadata,
            };
            let version = versions.value(row);
            if version > seq {
                return Err(corrupt(format!(
                    "row {row} has version {version}, newer than the snapshot"
                )));
            }
            load(doc, version);
        }
    }
    Ok(())
}
