//! The English analyzer, modelled on the one behind Anserini's BM25.
//!
//! Anserini indexes with Lucene's `EnglishAnalyzer` chain: `StandardTokenizer`
//! (Unicode UAX #29 word boundaries) → `EnglishPossessiveFilter` →
//! `LowerCaseFilter` → `StopFilter` (Lucene's 33 English stop words) →
//! `PorterStemFilter`. tantivy ships no UAX #29 tokenizer (its
//! `SimpleTokenizer` splits on every non-alphanumeric character, so `0.05`,
//! `1,000` and `don't` each become two tokens), so [`WordTokenizer`] below
//! implements the UAX #29 rules that matter for English prose and strips
//! possessives as it goes. The rest of the chain is tantivy's own filters.
//!
//! Known differences from Lucene, all minor for English text:
//! - the stemmer is tantivy's `Stemmer` for English, which is Snowball's
//!   "English" (Porter2), not the original Porter algorithm Lucene uses; the
//!   two agree on most words and differ on some suffix rules. Measured
//!   with `bm25s` + PyStemmer, swapping one for the other moved nDCG@10 by
//!   at most 0.005 on SciFact and Cranfield, in neither direction
//!   consistently, so we keep what tantivy ships (original Porter would
//!   need `frostem`'s `porter` feature and a token filter of our own);
//! - tokens of 256 bytes or more are dropped (Lucene splits them at 255
//!   characters);
//! - CJK ideographs are not split into one token each.
//!
//! Documents and queries go through the same chain, so whatever a document
//! term is stemmed to, the query term is stemmed to the same.

use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, Stemmer, StopWordFilter, TextAnalyzer, Token,
    TokenStream, Tokenizer,
};

/// The name the analyzer is registered under in the tantivy index. The
/// schema stores this name, not the analyzer: every open must register it
/// again (see `Bm25Index::open`).
pub(crate) const ANALYZER_NAME: &str = "mnemos_en_bm25";

/// Lucene's `EnglishAnalyzer.ENGLISH_STOP_WORDS_SET`, the list Anserini uses.
pub(crate) const ENGLISH_STOP_WORDS: [&str; 33] = [
    "a", "an", "and", "are", "as", "at", "be", "but", "by", "for", "if", "in", "into", "is", "it",
    "no", "not", "of", "on", "or", "such", "that", "the", "their", "then", "there", "these",
    "they", "this", "to", "was", "will", "with",
];

/// Longest token kept, in bytes; tantivy refuses terms above ~64 KiB and no
/// real word comes near this.
const MAX_TOKEN_BYTES: usize = 256;

/// Builds the analyzer used for both indexing and queries.
pub(crate) fn english_analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(WordTokenizer::default())
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES))
        .filter(LowerCaser)
        .filter(StopWordFilter::remove(
            ENGLISH_STOP_WORDS.iter().map(|w| (*w).to_owned()),
        ))
        .filter(Stemmer::new(Language::English))
        .build()
}

/// The terms `analyzer` produces for `text`, in order, repeats kept.
pub(crate) fn analyze(analyzer: &mut TextAnalyzer, text: &str) -> Vec<String> {
    let mut terms = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        terms.push(stream.token().text.clone());
    }
    terms
}

/// Splits text into words following the parts of Unicode UAX #29 word
/// segmentation that Lucene's `StandardTokenizer` applies to English text:
/// runs of letters and digits, joined across `'` `’` `.` between two letters
/// or two digits (`don't`, `U.S`, `3.14`), `:` `·` between letters, `,` `;`
/// between digits (`1,000`) and `_` between any two. A trailing possessive
/// `'s` is removed, as Lucene's `EnglishPossessiveFilter` does.
#[derive(Clone, Default)]
pub struct WordTokenizer {
    token: Token,
}

impl Tokenizer for WordTokenizer {
    type TokenStream<'a> = WordTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordTokenStream<'a> {
        self.token.reset();
        WordTokenStream {
            text,
            cursor: 0,
            token: &mut self.token,
        }
    }
}

/// The stream of [`WordTokenizer`] over one text.
pub struct WordTokenStream<'a> {
    text: &'a str,
    cursor: usize,
    token: &'a mut Token,
}

impl TokenStream for WordTokenStream<'_> {
    fn advance(&mut self) -> bool {
        self.token.text.clear();
        let rest = &self.text[self.cursor..];
        let Some(offset) = rest.find(char::is_alphanumeric) else {
            self.cursor = self.text.len();
            return false;
        };
        let start = self.cursor + offset;
        let end = word_end(self.text, start);
        self.cursor = end;
        let word = strip_possessive(&self.text[start..end]);
        self.token.offset_from = start;
        self.token.offset_to = end;
        self.token.position = self.token.position.wrapping_add(1);
        self.token.text.push_str(word);
        true
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

/// End (exclusive, in bytes) of the word starting at `start`, which must be
/// the offset of an alphanumeric character.
fn word_end(text: &str, start: usize) -> usize {
    let mut end = start;
    let mut prev: Option<char> = None;
    let mut chars = text[start..].chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() {
            end += c.len_utf8();
            prev = Some(c);
            continue;
        }
        match (prev, chars.peek().copied()) {
            (Some(p), Some(n)) if joins(p, c, n) => {
                end += c.len_utf8() + n.len_utf8();
                prev = Some(n);
                chars.next();
            }
            _ => break,
        }
    }
    end
}

/// Whether `mid` keeps `prev` and `next` in one word (UAX #29 rules WB6/7,
/// WB11/12, WB13a/b, in their English-relevant subset).
fn joins(prev: char, mid: char, next: char) -> bool {
    let letters = prev.is_alphabetic() && next.is_alphabetic();
    let digits = prev.is_numeric() && next.is_numeric();
    match mid {
        '_' => prev.is_alphanumeric() && next.is_alphanumeric(),
        '\'' | '\u{2019}' | '.' => letters || digits,
        ':' | '\u{00B7}' => letters,
        ',' | ';' => digits,
        _ => false,
    }
}

/// `word` without a trailing `'s` / `’s` (either case of `s`).
fn strip_possessive(word: &str) -> &str {
    for suffix in ["'s", "'S", "\u{2019}s", "\u{2019}S"] {
        if let Some(stem) = word.strip_suffix(suffix) {
            if !stem.is_empty() {
                return stem;
            }
        }
    }
    word
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        let mut tokenizer = WordTokenizer::default();
        let mut stream = tokenizer.token_stream(text);
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        out
    }

    #[test]
    fn tokenizer_keeps_numbers_contractions_and_abbreviations_whole() {
        assert_eq!(
            words("p < 0.05 in 1,000 U.S. patients; don't (IL-6)."),
            ["p", "0.05", "in", "1,000", "U.S", "patients", "don't", "IL", "6"]
        );
        assert_eq!(
            words("v1.2 snake_case a.1"),
            ["v1.2", "snake_case", "a", "1"]
        );
        assert_eq!(words(""), Vec::<String>::new());
        assert_eq!(words("  ...  "), Vec::<String>::new());
    }

    #[test]
    fn tokenizer_strips_possessives_and_keeps_offsets() {
        assert_eq!(
            words("Alzheimer's disease’s cause"),
            ["Alzheimer", "disease", "cause"]
        );
        let mut tokenizer = WordTokenizer::default();
        let mut stream = tokenizer.token_stream("héllo wörld");
        assert!(stream.advance());
        assert_eq!(
            (stream.token().offset_from, stream.token().offset_to),
            (0, 6)
        );
        assert!(stream.advance());
        assert_eq!(stream.token().text, "wörld");
        assert!(!stream.advance());
    }

    #[test]
    fn analyzer_lowercases_drops_stop_words_and_stems() {
        let mut analyzer = english_analyzer();
        assert_eq!(
            analyze(&mut analyzer, "The Running of THE dogs"),
            ["run", "dog"]
        );
        assert_eq!(analyze(&mut analyzer, "runs"), ["run"]);
        assert!(analyze(&mut analyzer, "to be or not to be").is_empty());
        let long = "x".repeat(MAX_TOKEN_BYTES);
        assert_eq!(analyze(&mut analyzer, &format!("{long} ok")), ["ok"]);
    }
}
