//! Integration tests of the gateway: the router in-process (no socket), and
//! the real `mnemos` binary for restart and `kill -9` durability.

mod cli;
mod common;
mod crash;
mod faults;
mod fuzz;
mod hypencoder;
mod lm;
mod lm_memory;
mod lm_tiers;
mod process;
mod reliability;
mod router;
mod server;
mod visual;
