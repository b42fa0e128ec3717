//! mnemos-bm25
