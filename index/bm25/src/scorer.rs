//! Term-at-a-time BM25 over tantivy's postings, with our own `k1` and `b`.
//!
//! tantivy's `Bm25Weight` hard-codes `k1 = 1.2, b = 0.75`. Rather than fork
//! its query machinery, this module reads the same inputs tantivy's scorer
//! reads (block postings with term frequencies, one-byte field norms, the
//! searcher's statistics) and accumulates scores into a per-segment array.
//! Query texts are short (a handful of distinct terms) and the corpora this
//! index serves are small enough that exhaustive term-at-a-time evaluation
//! beats the bookkeeping of dynamic pruning (WAND / block-max).
//!
//! The formula is Lucene's `BM25Similarity` (Robertson & Zaragoza 2009, eq.
//! 3.15, with Lucene's idf that never goes negative):
//!
//! ```text
//! score(q, d) = Σ_t qtf(t) · idf(t) · tf·(k1 + 1) / (tf + k1·(1 − b + b·dl/avgdl))
//! idf(t)      = ln(1 + (N − df + 0.5) / (df + 0.5))
//! ```
//!
//! `N`, `df` and `avgdl` count every document still in a segment, including
//! deleted ones not yet merged away, as Lucene's do; `dl` is the field norm
//! tantivy stores, quantised to one byte like Lucene's. `qtf(t)` is how
//! often the term occurs in the query: Anserini's bag-of-words query
//! generator boosts a repeated term by its count, which equals summing one
//! SHOULD clause per occurrence, so we keep repeats rather than dedupe.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use mnemos_index_core::Hit;
use tantivy::fieldnorm::FieldNormReader;
use tantivy::postings::TermInfo;
use tantivy::schema::{Field, IndexRecordOption};
use tantivy::{DocId, InvertedIndexReader, Searcher, Term};

use crate::error::{Context, Result};
use crate::ids::SearcherIds;
use crate::params::Bm25Params;

/// Scores `terms` (analysed query terms, repeats kept) over `contents` and
/// returns the best `k` live documents, best first. Equal scores rank by
/// segment and document number: stable for one snapshot of the index, but
/// not across merges.
pub(crate) fn top_k(
    searcher: &Searcher,
    ids: &mut SearcherIds<'_>,
    contents: Field,
    terms: &[String],
    params: Bm25Params,
    k: usize,
) -> Result<Vec<Hit>> {
    if k == 0 || terms.is_empty() {
        return Ok(Vec::new());
    }
    let segments = searcher.segment_readers();
    let postings_indexes = segments
        .iter()
        .map(|segment| segment.inverted_index(contents))
        .collect::<Result<Vec<_>, _>>()
        .context("opening postings")?;
    let num_docs: u64 = segments.iter().map(|s| u64::from(s.max_doc())).sum();
    let num_tokens: u64 = postings_indexes.iter().map(|p| p.total_num_tokens()).sum();
    if num_docs == 0 || num_tokens == 0 {
        return Ok(Vec::new());
    }
    let avgdl = num_tokens as f32 / num_docs as f32;
    let query = weigh_terms(&postings_indexes, contents, terms, num_docs, params)?;
    if query.is_empty() {
        return Ok(Vec::new());
    }
    let length_norm = length_norm_table(params, avgdl);

    let mut best = TopK::new(k);
    // One accumulator for all segments, reset entry by entry after each:
    // `vec!` of zeros gets lazily zeroed pages from the allocator, so a query
    // only pays for the pages its postings touch, even on a large segment.
    let largest = segments.iter().map(|s| s.max_doc()).max().unwrap_or(0);
    let mut scores = vec![0.0f32; largest as usize];
    let mut touched: Vec<DocId> = Vec::new();
    for (segment_ord, segment) in segments.iter().enumerate() {
        let norms = segment
            .get_fieldnorms_reader(contents)
            .context("opening field norms")?;
        for term in &query {
            let Some(info) = &term.infos[segment_ord] else {
                continue;
            };
            let mut postings = postings_indexes[segment_ord]
                .read_block_postings_from_terminfo(info, IndexRecordOption::WithFreqs)
                .context("reading postings")?;
            loop {
                let docs = postings.docs();
                if docs.is_empty() {
                    break;
                }
                for (&doc, &tf) in docs.iter().zip(postings.freqs()) {
                    let tf = tf as f32;
                    let norm = length_norm[usize::from(norms.fieldnorm_id(doc))];
                    let slot = &mut scores[doc as usize];
                    // Every contribution is > 0 (idf > 0, tf ≥ 1), so 0 marks
                    // a document this query has not reached yet.
                    if *slot == 0.0 {
                        touched.push(doc);
                    }
                    *slot += term.weight * tf / (tf + norm);
                }
                postings.advance();
            }
        }
        let alive = segment.alive_bitset();
        for &doc in &touched {
            let score = std::mem::take(&mut scores[doc as usize]);
            if alive.is_none_or(|alive| alive.is_alive(doc)) {
                best.offer(Candidate {
                    score,
                    segment: segment_ord as u32,
                    doc,
                });
            }
        }
        touched.clear();
    }
    resolve_ids(ids, best.into_sorted())
}

/// One distinct query term that occurs in the index.
struct QueryTerm {
    /// `qtf · idf · (k1 + 1)`.
    weight: f32,
    /// Where its postings are, per segment (`None`: not in that segment).
    infos: Vec<Option<TermInfo>>,
}

/// Looks each distinct term up once per segment: the lookups give both the
/// document frequency (summed over segments) and the postings to read.
fn weigh_terms(
    postings_indexes: &[Arc<InvertedIndexReader>],
    contents: Field,
    terms: &[String],
    num_docs: u64,
    params: Bm25Params,
) -> Result<Vec<QueryTerm>> {
    let mut counts: HashMap<&str, u32> = HashMap::new();
    for term in terms {
        *counts.entry(term.as_str()).or_default() += 1;
    }
    // Sorted so that float summation order, hence scores, are reproducible.
    let mut counts: Vec<(&str, u32)> = counts.into_iter().collect();
    counts.sort_unstable();
    let mut query = Vec::with_capacity(counts.len());
    for (text, count) in counts {
        let term = Term::from_field_text(contents, text);
        let infos = postings_indexes
            .iter()
            .map(|postings| postings.get_term_info(&term))
            .collect::<Result<Vec<_>, _>>()
            .context("looking up a term")?;
        let df: u64 = infos.iter().flatten().map(|i| u64::from(i.doc_freq)).sum();
        if df == 0 {
            continue;
        }
        let weight = count as f32 * idf(df, num_docs) * (params.k1 + 1.0);
        query.push(QueryTerm { weight, infos });
    }
    Ok(query)
}

/// Lucene's BM25 idf; `df ≤ n` always holds because both count the same
/// (possibly deleted) documents.
fn idf(df: u64, n: u64) -> f32 {
    let n = n.max(df);
    (1.0 + ((n - df) as f32 + 0.5) / (df as f32 + 0.5)).ln()
}

/// `k1 · (1 − b + b · dl / avgdl)` for each of the 256 one-byte field norms,
/// so the inner loop does a table lookup instead of a division.
fn length_norm_table(params: Bm25Params, avgdl: f32) -> [f32; 256] {
    let mut table = [0.0; 256];
    for (id, entry) in table.iter_mut().enumerate() {
        let dl = FieldNormReader::id_to_fieldnorm(id as u8) as f32;
        *entry = params.k1 * (1.0 - params.b + params.b * dl / avgdl);
    }
    table
}

/// A scored document, ordered so that "greater" means "ranks higher".
#[derive(Debug, Clone, Copy)]
struct Candidate {
    score: f32,
    segment: u32,
    doc: DocId,
}

impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            // Ties: the lower (segment, doc) ranks higher, as in Lucene.
            .then_with(|| (other.segment, other.doc).cmp(&(self.segment, self.doc)))
    }
}

impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Candidate {}

/// The best `k` candidates seen so far: a min-heap whose root is the one to
/// evict next.
struct TopK {
    k: usize,
    heap: BinaryHeap<Reverse<Candidate>>,
}

impl TopK {
    fn new(k: usize) -> Self {
        // `k` comes from the caller; don't let `usize::MAX` allocate.
        Self {
            k,
            heap: BinaryHeap::with_capacity(k.min(1024)),
        }
    }

    fn offer(&mut self, candidate: Candidate) {
        if self.heap.len() < self.k {
            self.heap.push(Reverse(candidate));
        } else if let Some(mut worst) = self.heap.peek_mut() {
            if candidate > worst.0 {
                *worst = Reverse(candidate);
            }
        }
    }

    fn into_sorted(self) -> Vec<Candidate> {
        // Ascending order of `Reverse` is descending order of candidates.
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|r| r.0)
            .collect()
    }
}

/// Turns the winners into hits.
fn resolve_ids(ids: &mut SearcherIds<'_>, winners: Vec<Candidate>) -> Result<Vec<Hit>> {
    winners
        .into_iter()
        .map(|candidate| {
            Ok(Hit {
                id: ids.id(candidate.segment, candidate.doc)?.to_owned(),
                score: candidate.score,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idf_matches_lucene() {
        // ln(1 + (10 - 1 + 0.5) / (1 + 0.5)) = ln(7.333…)
        assert!((idf(1, 10) - 7.333_333_f32.ln()).abs() < 1e-6);
        // A term in every document still gets a small positive weight.
        assert!(idf(10, 10) > 0.0);
    }

    #[test]
    fn top_k_keeps_the_best_and_breaks_ties_by_index_order() {
        let mut top = TopK::new(2);
        for (score, doc) in [(1.0, 0), (3.0, 1), (2.0, 2), (3.0, 3), (0.5, 4)] {
            top.offer(Candidate {
                score,
                segment: 0,
                doc,
            });
        }
        let docs: Vec<DocId> = top.into_sorted().iter().map(|c| c.doc).collect();
        assert_eq!(docs, [1, 3]);
        assert!(TopK::new(0).into_sorted().is_empty());
    }
}
