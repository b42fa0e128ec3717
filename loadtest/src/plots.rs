//! SVG plots of a run, drawn with plotters' SVG backend only (no system font
//! or image libraries): latency percentiles over time per request type, the
//! latency percentile spectrum of every type, and, in step mode, latency
//! against offered rate.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use crate::error::{LoadError, Result};
use crate::recorder::TypeStats;
use crate::report::{Report, SeriesPoint};

const SIZE: (u32, u32) = (960, 540);

/// A file-name-safe form of a request label (`search:bm25` → `search-bm25`).
pub fn slug(label: &str) -> String {
    let s: String = label
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    s.trim_matches('-').to_string()
}

/// Writes every plot into `dir` (created if needed); returns their paths.
pub fn write_all(dir: &Path, report: &Report, types: &[TypeStats]) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| LoadError::output(dir, e))?;
    let mut written = Vec::new();
    for (label, points) in &report.series.0 {
        let path = dir.join(format!("timeline-{}.svg", slug(label)));
        timeline(&path, label, points).map_err(|e| LoadError::output(&path, e))?;
        written.push(path);
    }
    let path = dir.join("spectrum.svg");
    let labels: Vec<&str> = report.requests.0.iter().map(|(l, _)| l.as_str()).collect();
    spectrum(&path, &labels, types).map_err(|e| LoadError::output(&path, e))?;
    written.push(path);
    if let Some(steps) = &report.steps {
        let path = dir.join("steps.svg");
        let points: Vec<(f64, f64, f64)> = steps
            .iter()
            .map(|s| (s.offered_rate, s.p50_ms, s.p99_ms))
            .collect();
        step_plot(&path, &points, report.slo_p99_ms).map_err(|e| LoadError::output(&path, e))?;
        written.push(path);
    }
    Ok(written)
}

type Plot = std::result::Result<(), Box<dyn std::error::Error>>;

/// A log-scale latency axis from just under the smallest to just over the
/// largest value (milliseconds).
fn latency_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| *v > 0.0)
        .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi <= 0.0 {
        return (0.01, 1.0);
    }
    ((lo / 1.5).max(0.001), hi * 1.5)
}

fn timeline(path: &Path, label: &str, points: &[SeriesPoint]) -> Plot {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let t_max = points.iter().map(|p| p.t_s + 1).max().unwrap_or(1) as f64;
    let (lo, hi) = latency_range(
        points
            .iter()
            .flat_map(|p| [p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms]),
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("{label}: latency over time (from intended send)"),
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..t_max, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("seconds since start")
        .y_desc("latency (ms, log)")
        .draw()?;
    type Line = (&'static str, fn(&SeriesPoint) -> f64, RGBColor);
    let lines: [Line; 4] = [
        ("p50", |p| p.p50_ms, BLUE),
        ("p90", |p| p.p90_ms, GREEN),
        ("p99", |p| p.p99_ms, RED),
        ("max", |p| p.max_ms, BLACK),
    ];
    for (name, value, color) in lines {
        chart
            .draw_series(LineSeries::new(
                points
                    .iter()
                    .map(|p| (p.t_s as f64 + 0.5, value(p).max(lo))),
                color.stroke_width(2),
            ))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

/// x coordinate of quantile q: the number of nines (0.9 → 1, 0.99 → 2).
fn nines(q: f64) -> f64 {
    -(1.0 - q.min(1.0 - 1e-7)).log10()
}

fn spectrum(path: &Path, labels: &[&str], types: &[TypeStats]) -> Plot {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let curves: Vec<Vec<(f64, f64)>> = types
        .iter()
        .map(|t| {
            t.hist
                .iter_quantiles(4)
                .map(|v| {
                    (
                        nines(v.quantile_iterated_to()),
                        t.hist.highest_equivalent(v.value_iterated_to()) as f64 / 1000.0,
                    )
                })
                .collect()
        })
        .collect();
    let x_max = curves
        .iter()
        .flatten()
        .map(|(x, _)| *x)
        .fold(1.0f64, f64::max)
        .ceil();
    let (lo, hi) = latency_range(curves.iter().flatten().map(|(_, y)| *y));
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "latency distribution (percentile spectrum)",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("latency (ms, log)")
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| {
            let p = 100.0 * (1.0 - 10f64.powf(-x));
            format!("{}%", (p * 1000.0).round() / 1000.0)
        })
        .draw()?;
    for (i, (label, curve)) in labels.iter().zip(&curves).enumerate() {
        if curve.is_empty() {
            continue;
        }
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                curve.iter().map(|(x, y)| (*x, y.max(lo))),
                color.stroke_width(2),
            ))?
            .label(*label)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

fn step_plot(path: &Path, points: &[(f64, f64, f64)], slo: Option<f64>) -> Plot {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    let x_max = points.iter().map(|p| p.0).fold(1.0f64, f64::max) * 1.05;
    let (lo, hi) = latency_range(points.iter().flat_map(|p| [p.1, p.2]).chain(slo));
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "latency against offered rate (step mode)",
            ("sans-serif", 22),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0f64..x_max, (lo..hi).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("offered rate (req/s)")
        .y_desc("latency (ms, log)")
        .draw()?;
    for (name, pick, color) in [("p50", 1, BLUE), ("p99", 2, RED)] {
        let series = points.iter().map(move |p| {
            let y = if pick == 1 { p.1 } else { p.2 };
            (p.0, y.max(lo))
        });
        chart
            .draw_series(LineSeries::new(series, color.stroke_width(2)))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
    }
    if let Some(slo) = slo {
        chart
            .draw_series(LineSeries::new(
                [(0.0, slo), (x_max, slo)],
                BLACK.mix(0.6).stroke_width(1),
            ))?
            .label(format!("SLO p99 {slo} ms"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_nines() {
        assert_eq!(slug("search:rrf(bm25,dense)"), "search-rrf-bm25-dense");
        assert!((nines(0.99) - 2.0).abs() < 1e-9);
        assert!(nines(1.0).is_finite());
    }
}
