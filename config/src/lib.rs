//! mnemos-config
