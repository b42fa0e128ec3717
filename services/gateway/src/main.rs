//! `mnemos`: serve, ingest, eval.

use clap::Parser;
use mnemos_gateway::cli::{check_model, load_settings, Cli, Command, TiersCommand, TrainCommand};
use mnemos_gateway::{eval_visual, serve, tiers_cli, train};

/// The encoder allocates and frees large tensors on every layer; glibc's
/// allocator hands such buffers back to the kernel and page-faults them in
/// again, ~8% of one-thread inference time in a profile. mimalloc keeps
/// them for reuse.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // One thread per inference worker: two threads in one gemm were slower
    // than one on this class of machine (PITFALLS.md), and requests already
    // run in parallel across workers. Set before any thread pool starts.
    let cli = Cli::parse();
    // Training is one big computation at a time: it gets every core.
    let threads = match &cli.command {
        Command::Train(TrainCommand::Hypencoder(a)) => all_cores(a.threads),
        Command::Train(TrainCommand::Lm(a)) => all_cores(a.threads),
        Command::Train(TrainCommand::Memory(a)) => all_cores(a.threads),
        _ => "1".to_string(),
    };
    for (key, value) in [
        ("RAYON_NUM_THREADS", threads.as_str()),
        ("TOKENIZERS_PARALLELISM", "false"),
    ] {
        if std::env::var_os(key).is_none() {
            std::env::set_var(key, value);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,tantivy=warn,hnsw_rs=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// `threads`, or one per core.
fn all_cores(threads: Option<usize>) -> String {
    threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        .to_string()
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match &cli.command {
        Command::Serve(a) => {
            let s = load_settings(cli.config.as_ref(), &a.common, a.bind.as_deref())?;
            check_model(&s)?;
            rt.block_on(serve::serve(s))
        }
        Command::Ingest(a) => {
            let s = load_settings(cli.config.as_ref(), &a.common, None)?;
            check_model(&s)?;
            rt.block_on(serve::ingest(
                s,
                a.beir.as_deref(),
                a.jsonl.as_deref(),
                a.batch,
            ))
        }
        Command::Eval(a) => {
            let mut s = load_settings(cli.config.as_ref(), &a.common, None)?;
            if a.common.no_dense {
                let dense = ["dense", "hypencoder", "rrf", "linear", "rrf3", "linear3"];
                if a.backends.iter().any(|m| dense.contains(&m.as_str())) {
                    anyhow::bail!("--no-dense allows only --backends bm25");
                }
            }
            check_model(&s)?;
            let tmp;
            let temporary = a.common.data_dir.is_none();
            if temporary {
                tmp = tempfile::tempdir()?;
                s.server.data_dir = tmp.path().to_path_buf();
            }
            rt.block_on(serve::evaluate(
                s,
                &a.beir,
                &a.backends,
                &a.split,
                a.json,
                temporary,
            ))
        }
        Command::EvalVisual(a) => eval_visual::run(cli.config.as_ref(), a),
        Command::Train(TrainCommand::Hypencoder(a)) => {
            let s = load_settings(cli.config.as_ref(), &a.common, None)?;
            train::hypencoder(&s, a)
        }
        Command::Train(TrainCommand::Lm(a)) => train::lm(a),
        Command::Train(TrainCommand::Memory(a)) => {
            let s = load_settings(cli.config.as_ref(), &a.common, None)?;
            train::memory(&s, a)
        }
        Command::Tiers(TiersCommand::Publish(a)) => tiers_cli::publish(a),
        Command::Tiers(TiersCommand::PublishData(a)) => tiers_cli::publish_data(a),
    }
}
