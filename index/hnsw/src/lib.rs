//! mnemos-hnsw
