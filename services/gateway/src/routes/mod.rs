//! One module per endpoint group.

pub mod admin;
pub mod health;
pub mod lm;
pub mod search;
pub mod visual;
