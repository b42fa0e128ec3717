//! mnemos-engine
