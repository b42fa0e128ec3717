//! mnemos-models-core
