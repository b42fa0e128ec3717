//! mnemos-store
