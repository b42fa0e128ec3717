//! Tells the crate's tests whether it is compiled with optimisations.
//!
//! hnsw_rs's graph code is generic over the distance, so it is compiled
//! (monomorphised) here, at this crate's opt-level, not at the opt-level 3
//! that `[profile.dev.package."*"]` gives dependencies. Unoptimised, a
//! 20k-point graph takes about ten minutes to build instead of tens of
//! seconds, so the large recall test runs only in optimised builds.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(mnemos_hnsw_optimized)");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var("OPT_LEVEL").is_ok_and(|level| level != "0") {
        println!("cargo::rustc-cfg=mnemos_hnsw_optimized");
    }
}
