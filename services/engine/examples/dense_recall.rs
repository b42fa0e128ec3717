//! HNSW recall@10 against exact search on a real collection, with the
//! configured defaults, using the query vectors of a BEIR split:
//!
//! ```text
//! mnemos ingest --beir ../shared/data/beir/scifact --data-dir /tmp/scifact
//! cargo run --release -p mnemos-engine --example dense_recall -- /tmp/scifact ../shared/data/beir/scifact
//! ```

use std::path::PathBuf;
use std::time::Instant;

use mnemos_config::Loader;
use mnemos_hnsw::VectorIndex;
use mnemos_models_core::Encoder;
use mnemos_text::{EncoderOptions, MiniLmEncoder};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let data_dir = PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: DATA_DIR BEIR_DIR"))?,
    );
    let beir_dir = PathBuf::from(
        args.next()
            .ok_or_else(|| anyhow::anyhow!("usage: DATA_DIR BEIR_DIR"))?,
    );
    let s = Loader::new().env(std::env::vars())?.build()?;
    let model_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(&s.dense.model_dir);
    let encoder = MiniLmEncoder::load(&model_dir, EncoderOptions::default())?;
    let params = mnemos_engine::hnsw_params(&s.hnsw);
    let started = Instant::now();
    let index = VectorIndex::open(&data_dir.join("dense"), encoder.dim(), params)?;
    let opened = started.elapsed().as_secs_f64();
    let qrels = mnemos_engine::beir::read_qrels(&beir_dir.join("qrels/test.tsv"))?;
    let queries = mnemos_engine::beir::read_queries(&beir_dir.join("queries.jsonl"))?;
    let texts: Vec<&str> = qrels
        .keys()
        .filter_map(|q| queries.get(q).map(String::as_str))
        .collect();
    let vectors = encoder.embed(&texts)?;
    let recall = index.recall_at_k(&vectors, 10)?;
    println!(
        "{} vectors (opened and graph rebuilt in {opened:.2} s), {} queries, ef_search {}: recall@10 vs exact = {recall:.4}",
        mnemos_index_core::IndexRead::<[f32]>::len(&index),
        vectors.len(),
        s.hnsw.ef_search
    );
    Ok(())
}
