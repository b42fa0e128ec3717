//! mnemos-text
