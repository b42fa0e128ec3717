//! The `mnemos-loadtest` binary: parse flags, run, write the reports, print
//! the Markdown summary. Exit status: 0 on success, 1 when the run could not
//! be made (bad input, unreachable target), 2 for usage errors (from clap),
//! 3 when the correctness check failed (violations or upserts missing).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::Parser;
use mnemos_loadtest::{plots, trivial, Args, RunConfig};

fn main() -> ExitCode {
    let args = Args::parse();
    match real_main(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn runtime(threads: usize) -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn real_main(args: Args) -> anyhow::Result<ExitCode> {
    if let Some(addr) = args.serve_trivial {
        let threads = args.threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
        });
        return runtime(threads)?.block_on(async move {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr}"))?;
            eprintln!(
                "trivial endpoint on http://{} (any GET -> 200 \"ok\"); Ctrl-C to stop",
                listener.local_addr()?
            );
            tokio::select! {
                r = trivial::serve(listener) => r.context("trivial server failed")?,
                _ = tokio::signal::ctrl_c() => {}
            }
            Ok(ExitCode::SUCCESS)
        });
    }
    let json_path = args.json_report.clone();
    let md_path = args.md_report.clone();
    let plots_dir = args.plots.clone();
    // Fail before the run, not after it, when a report cannot be written.
    for path in json_path.iter().chain(&md_path) {
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
        if parent.is_some_and(|p| !p.is_dir()) {
            anyhow::bail!(
                "cannot write {}: its directory does not exist",
                path.display()
            );
        }
    }
    let cfg = RunConfig::from_args(args)?;
    let out = runtime(cfg.threads)?.block_on(mnemos_loadtest::run(cfg))?;
    let report = &out.report;
    let markdown = report.markdown();
    if let Some(path) = &json_path {
        let json = serde_json::to_string_pretty(report).context("encoding the JSON report")?;
        std::fs::write(path, json + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(path) = &md_path {
        std::fs::write(path, &markdown)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    if let Some(dir) = &plots_dir {
        let written = plots::write_all(dir, report, &out.types)?;
        eprintln!("wrote {} plots to {}", written.len(), dir.display());
    }
    println!("{markdown}");
    if report.violations > 0 || report.missing_after_upsert > 0 {
        eprintln!(
            "error: correctness check failed: {} violations, {} missing after upsert",
            report.violations, report.missing_after_upsert
        );
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}
