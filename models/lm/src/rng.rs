//! The seeded random source every model crate shares (see
//! `mnemos_models_core::rng`).

pub use mnemos_models_core::rng::SplitMix64;
