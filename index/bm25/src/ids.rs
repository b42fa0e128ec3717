//! Document number → id, held in memory per segment.
//!
//! The `id` fast column maps each document to an ordinal in a per-segment
//! dictionary of ids. Reading one id from that dictionary means
//! decompressing a zstd block, and tantivy 0.27 creates a fresh zstd
//! context per block: ~14 µs per id measured on SciFact, so resolving the
//! top 100 hits cost more than scoring them, and `indexed_versions` over a
//! million documents would take seconds. Segments are immutable, so each
//! segment's dictionary is decoded once, into one string buffer, when the
//! segment first appears; then an id costs one bit-packed ordinal read and
//! a slice. Memory: the ids' bytes plus 4 bytes per distinct id.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tantivy::columnar::Column;
use tantivy::index::SegmentId;
use tantivy::{DocId, Searcher, SegmentReader};

use crate::error::{Bm25Error, Context, Result};
use crate::schema;

/// The ids of one segment.
struct SegmentIds {
    /// Document → ordinal into `ends`.
    ords: Column<u64>,
    /// All ids, in ordinal order, back to back.
    text: String,
    /// `ends[ord]` is where id `ord` ends in `text`; it starts where the
    /// previous one ends.
    ends: Vec<u32>,
}

impl SegmentIds {
    fn load(segment: &SegmentReader) -> Result<Self> {
        let column = segment
            .fast_fields()
            .str(schema::ID)
            .context("opening the id column")?
            .ok_or_else(|| Bm25Error::Corrupt("segment has no id column".to_owned()))?;
        let dictionary = column.dictionary();
        let mut text = String::new();
        let mut ends = Vec::with_capacity(dictionary.num_terms());
        let mut terms = dictionary.stream().context("reading the id dictionary")?;
        while terms.advance() {
            let id = std::str::from_utf8(terms.key())
                .map_err(|_| Bm25Error::Corrupt("an id is not UTF-8".to_owned()))?;
            text.push_str(id);
            let end = u32::try_from(text.len())
                .map_err(|_| Bm25Error::Corrupt("a segment's ids exceed 4 GiB".to_owned()))?;
            ends.push(end);
        }
        if ends.len() != dictionary.num_terms() {
            return Err(Bm25Error::Corrupt(format!(
                "id dictionary yielded {} of its {} ids",
                ends.len(),
                dictionary.num_terms()
            )));
        }
        let (_, ords) = column.into_parts();
        Ok(Self { ords, text, ends })
    }

    fn id(&self, doc: DocId) -> Result<&str> {
        let ord = self
            .ords
            .first(doc)
            .ok_or_else(|| Bm25Error::Corrupt(format!("document {doc} has no id")))?;
        let ord = usize::try_from(ord).unwrap_or(usize::MAX);
        let end = *self
            .ends
            .get(ord)
            .ok_or_else(|| Bm25Error::Corrupt(format!("id ordinal {ord} out of range")))?;
        let start = match ord {
            0 => 0,
            _ => self.ends[ord - 1],
        };
        Ok(&self.text[start as usize..end as usize])
    }
}

/// The decoded ids of every segment a recent searcher has seen.
#[derive(Default)]
pub(crate) struct IdCache {
    segments: RwLock<HashMap<SegmentId, Arc<SegmentIds>>>,
}

/// A view of the cache for the segments of one searcher.
pub(crate) struct SearcherIds<'a> {
    searcher: &'a Searcher,
    cache: &'a IdCache,
    loaded: HashMap<u32, Arc<SegmentIds>>,
}

impl IdCache {
    /// Loads the segments of `searcher` that are new, and forgets those it
    /// no longer has. Called after each reload, so queries find every
    /// segment ready; segments merged away are dropped here.
    pub fn refresh(&self, searcher: &Searcher) -> Result<()> {
        let live: HashMap<SegmentId, &SegmentReader> = searcher
            .segment_readers()
            .iter()
            .map(|segment| (segment.segment_id(), segment))
            .collect();
        let missing: Vec<&SegmentReader> = {
            let segments = self.read();
            live.iter()
                .filter(|(id, _)| !segments.contains_key(id))
                .map(|(_, segment)| *segment)
                .collect()
        };
        let mut loaded = Vec::with_capacity(missing.len());
        for segment in missing {
            loaded.push((segment.segment_id(), Arc::new(SegmentIds::load(segment)?)));
        }
        let mut segments = self.segments.write().unwrap_or_else(|p| p.into_inner());
        segments.retain(|id, _| live.contains_key(id));
        segments.extend(loaded);
        Ok(())
    }

    /// Id lookups for the segments of `searcher`.
    pub fn for_searcher<'a>(&'a self, searcher: &'a Searcher) -> SearcherIds<'a> {
        SearcherIds {
            searcher,
            cache: self,
            loaded: HashMap::new(),
        }
    }

    /// Number of segments held, for tests.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.read().len()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<SegmentId, Arc<SegmentIds>>> {
        // The map is only ever replaced whole-entry, so a panic elsewhere
        // cannot leave it half-updated.
        self.segments.read().unwrap_or_else(|p| p.into_inner())
    }
}

impl SearcherIds<'_> {
    /// The id of document `doc` of segment number `segment`.
    pub fn id(&mut self, segment: u32, doc: DocId) -> Result<&str> {
        let ids = match self.loaded.entry(segment) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let reader = self.searcher.segment_reader(segment);
                let cached = self.cache.read().get(&reader.segment_id()).cloned();
                // A searcher older than the last refresh may hold a segment
                // the cache has dropped: decode it for this use only.
                let ids = match cached {
                    Some(ids) => ids,
                    None => Arc::new(SegmentIds::load(reader)?),
                };
                entry.insert(ids)
            }
        };
        ids.id(doc)
    }
}
