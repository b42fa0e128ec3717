//! Integration tests of `mnemos-bm25` through its public API.
//!
//! `behaviour` checks the read/write contract on tiny corpora; `relevance`
//! measures nDCG@10 on the real BEIR collections in the shared data folder
//! (skipped, with a message, where that folder is absent).

mod behaviour;
mod beir;
mod relevance;
