//! Query latency of `Bm25Index::search` on SciFact's test queries (5,183
//! abstracts), or on a generated corpus of the same shape when the shared
//! data folder is absent. Run by hand: `cargo bench -p mnemos-bm25`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use mnemos_bm25::{Bm25Index, Bm25Params};
use mnemos_index_core::{Document, IndexRead, IndexWrite, Seq};

#[allow(dead_code)]
#[path = "../tests/integration/beir.rs"]
mod beir;

/// Documents and queries to search: SciFact if present, else synthetic.
fn workload() -> (&'static str, Vec<Document>, Vec<String>) {
    match beir::collection_dir("scifact") {
        Ok(dir) => {
            let collection = beir::load(&dir);
            let queries = collection.queries.into_iter().map(|(_, q)| q).collect();
            ("scifact", collection.docs, queries)
        }
        Err(why) => {
            eprintln!("{why}; benchmarking a generated corpus instead");
            let (docs, queries) = generated(5_000, 300);
            ("generated", docs, queries)
        }
    }
}

/// A Zipf-ish corpus from a fixed-seed generator: `n_docs` documents of ~200
/// words over a 20k-word vocabulary, and `n_queries` queries of 8 words.
fn generated(n_docs: usize, n_queries: usize) -> (Vec<Document>, Vec<String>) {
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next_word = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let u = ((state >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        // Inverse of a power-law CDF: low ranks are common, as in prose.
        let rank = (20_000f64.powf(u) - 1.0) as u64;
        format!("w{rank}")
    };
    let mut sentence = |len: usize| (0..len).map(|_| next_word()).collect::<Vec<_>>().join(" ");
    let docs = (0..n_docs)
        .map(|i| Document {
            id: format!("doc{i}"),
            title: sentence(10),
            text: sentence(190),
            metadata: serde_json::Value::Null,
        })
        .collect();
    let queries = (0..n_queries).map(|_| sentence(8)).collect();
    (docs, queries)
}

fn bench_search(c: &mut Criterion) {
    let (name, docs, queries) = workload();
    let index = Bm25Index::in_ram(Bm25Params::default()).expect("in-RAM index");
    let entries: Vec<(&str, Seq, &Document)> = docs.iter().map(|d| (d.id.as_str(), 1, d)).collect();
    index.upsert(&entries).expect("bulk upsert");

    let mut group = c.benchmark_group(format!("bm25_search_{name}"));
    for k in [10, 100] {
        let mut next = 0usize;
        group.bench_function(format!("top{k}"), |b| {
            b.iter(|| {
                let query = &queries[next % queries.len()];
                next += 1;
                black_box(index.search(black_box(query), k).expect("search"))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench_search);
criterion_main!(benches);
