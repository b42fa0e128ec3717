//! `mnemos eval-visual`: runs `mnemos-visual-eval` and prints its report,
//! as a table or (`--json`) as one JSON object on stdout. Progress goes to
//! stderr, so stdout stays machine-readable.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use mnemos_config::Loader;
use mnemos_visual_eval::{run_with_progress, DatasetReport, EvalOptions, Progress, Report, KS};

use crate::cli::{resolve_model_dir, EvalVisualArgs};

/// Resolves the model and data directories, runs the evaluation, prints.
pub fn run(config: Option<&PathBuf>, args: &EvalVisualArgs) -> anyhow::Result<()> {
    let mut loader = Loader::new();
    if let Some(path) = config {
        loader = loader.file(path)?;
    }
    let settings = loader.env(std::env::vars())?.build()?;
    let model_dir = resolve_model_dir(
        args.model_dir
            .as_ref()
            .unwrap_or(&settings.visual.model_dir),
    );
    if !model_dir.is_dir() {
        anyhow::bail!(
            "the image model is not installed at {}.\n  Run: scripts/install-models.sh\n  \
             (or pass --model-dir DIR)",
            model_dir.display()
        );
    }
    let data_dir = resolve_model_dir(&args.data);
    if !data_dir.is_dir() {
        anyhow::bail!(
            "no data directory at {} (it should hold mnist/ and digits/; pass --data DIR)",
            data_dir.display()
        );
    }
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let opts = EvalOptions {
        model_dir,
        data_dir,
        threads,
        limit: args.limit,
    };

    let bar = indicatif::ProgressBar::new(0);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} images ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let progress = |p: Progress<'_>| match p {
        Progress::Stage { dataset, stage } => {
            bar.finish_and_clear();
            eprintln!("{dataset}: {stage}");
        }
        Progress::Encoded { done, total, .. } => {
            bar.set_length(total as u64);
            bar.set_position(done as u64);
        }
    };
    let report = run_with_progress(&opts, &progress).context("visual evaluation failed")?;
    bar.finish_and_clear();

    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{}", table(&report));
    }
    Ok(())
}

/// The report as a human-readable table (accuracies in percent).
pub fn table(report: &Report) -> String {
    let mut out = String::new();
    for (name, set) in &report.datasets {
        dataset_table(&mut out, name, set);
    }
    let e = &report.encode;
    out.push_str(&format!(
        "encoding: {} images in {:.1} s on {} threads = {:.1} images/s\ntotal: {:.1} s\n",
        e.images, e.seconds, e.threads, e.images_per_s, report.seconds
    ));
    out
}

fn pct(x: f64) -> String {
    format!("{:.2}", x * 100.0)
}

fn dataset_table(out: &mut String, name: &str, set: &DatasetReport) {
    use std::fmt::Write;
    let _ = writeln!(
        out,
        "{name}: {} images, {} memory / {} queries ({})",
        set.images, set.memory, set.queries, set.split
    );
    let _ = write!(out, "  {:<14}", "accuracy %");
    for k in KS {
        let _ = write!(out, "{:>8}", format!("k={k}"));
    }
    let _ = writeln!(out, "   (kNN grid {:.1} s)", set.knn_seconds);
    for (aggregation, by_k) in &set.accuracy {
        let _ = write!(out, "  {aggregation:<14}");
        for k in KS {
            let _ = write!(out, "{:>8}", by_k.get(&k).map_or("-".into(), |a| pct(*a)));
        }
        let _ = writeln!(out);
    }
    if let Some(cv) = &set.cross_validated {
        let _ = writeln!(
            out,
            "  cross-validated, {} folds ({} queries: every image once):",
            cv.folds, cv.queries
        );
        for (aggregation, by_k) in &cv.accuracy {
            let _ = write!(out, "  {aggregation:<14}");
            for k in KS {
                let _ = write!(out, "{:>8}", by_k.get(&k).map_or("-".into(), |a| pct(*a)));
            }
            let _ = writeln!(out);
        }
        let _ = writeln!(
            out,
            "  queries only RankVoting / only plurality gets right (exact McNemar p):"
        );
        let _ = write!(out, "   ");
        for (k, d) in &cv.rank_voting_vs_plurality {
            let _ = write!(
                out,
                " k={k} +{}/-{} (p {:.2e});",
                d.only_rank_voting, d.only_plurality, d.p_value
            );
        }
        let _ = writeln!(out);
    }
    let p = &set.linear_probe;
    let _ = writeln!(
        out,
        "  {:<14}{:>8}   (logistic regression on the memory embeddings; l2 {:e}, {} steps, {:.1} s)",
        "linear probe",
        pct(p.accuracy),
        p.l2,
        p.steps,
        p.seconds
    );

    let u = &set.unlearn;
    let _ = writeln!(
        out,
        "  unlearn class {} ({}, k={}): {} items removed; class {}: {}% -> {}% (after reopen {}%); \
         overall {}% -> {}%",
        u.class,
        u.aggregation,
        u.k,
        u.removed,
        u.class,
        pct(u.before.class(&u.class)),
        pct(u.class_accuracy_after),
        pct(u.class_accuracy_after_reopen),
        pct(u.before.overall),
        pct(u.after.overall),
    );
    let changes: Vec<String> = u
        .other_changes_points
        .iter()
        .map(|(l, c)| format!("{l}:{c:+.2}"))
        .collect();
    let _ = writeln!(
        out,
        "    other classes, points: {} (largest move {:.2}, largest fall {:.2})",
        changes.join(" "),
        u.max_other_change_points,
        u.max_other_drop_points
    );
    for r in &u.recovery {
        let _ = writeln!(
            out,
            "    add back n={:<4} ({:>3} added): class {} {:>6}%, overall {}%, \
             other classes: largest move {:.2}, largest fall {:.2} points",
            r.n,
            r.added,
            u.class,
            pct(r.class_accuracy),
            pct(r.overall),
            r.max_other_change_points,
            r.max_other_drop_points
        );
    }

    let pr = &set.pruning;
    let _ = write!(out, "  pruning: accuracy % at k={:<8}", pr.k);
    for a in pr.before.keys() {
        let _ = write!(out, "{a:>12}");
    }
    let _ = writeln!(out);
    let row = |out: &mut String, label: String, acc: &BTreeMap<&str, f64>, seconds: f64| {
        let _ = write!(out, "    {label:<32}");
        for a in acc.values() {
            let _ = write!(out, "{:>12}", pct(*a));
        }
        if seconds > 0.0 {
            let _ = write!(out, "   ({seconds:.1} s)");
        }
        let _ = writeln!(out);
    };
    row(out, "before".into(), &pr.before, 0.0);
    for h in &pr.hard {
        row(
            out,
            format!(
                "hard top-{} >= {}: -{} items",
                h.prune_k, h.threshold, h.removed
            ),
            &h.accuracy,
            h.seconds,
        );
    }
    let soft = &pr.soft;
    row(
        out,
        format!(
            "soft top-{}: {} items x{:.2}",
            soft.prune_k, soft.downweighted, soft.mean_multiplier
        ),
        &soft.accuracy,
        soft.seconds,
    );
}
