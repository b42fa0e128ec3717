//! mnemos-api
