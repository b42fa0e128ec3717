//! Integration tests of the harness: the real `mnemos-loadtest` binary
//! against a real gateway (in-process, over a socket), against a server
//! that stalls (coordinated omission), against trivial and slow endpoints
//! (step mode, closed loop), and with bad input.

mod cli;
mod common;
mod gateway;
mod omission;
mod steps;
