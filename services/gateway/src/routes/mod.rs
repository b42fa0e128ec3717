//! One module per endpoint group.

pub mod admin;
pub mod health;
pub mod search;
pub mod visual;
