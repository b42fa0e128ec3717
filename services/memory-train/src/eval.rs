//! Does the memory help where it should and stay out of the way elsewhere?
//! Perplexity of the anchor alone vs with the path each text selects, on
//! the texts the bank was trained on, on held-out texts from the same
//! corpus, and on general text.

use std::path::Path;

use mnemos_llama::{score, Llama};
use mnemos_membank::Bank;
use mnemos_models_core::Encoder;
use serde::Serialize;

use crate::{MemoryTrainError, Result};

/// Perplexities over one set of texts.
#[derive(Debug, Clone, Serialize)]
pub struct EvalSet {
    pub name: String,
    pub texts: usize,
    /// Texts for which routing fetched a non-empty path.
    pub routed: usize,
    /// Predicted tokens over all texts.
    pub tokens: usize,
    /// exp(mean NLL per token), anchor alone.
    pub anchor_perplexity: f64,
    /// The same with the fetched memory.
    pub memory_perplexity: f64,
    /// Relative change, in percent (negative: memory helps).
    pub change_percent: f64,
    /// Mean parameters fetched per text.
    pub mean_fetched_parameters: f64,
    /// Per level, the median cosine between a text and the node its
    /// descent reaches (what the routing thresholds are set from).
    pub median_cosine: Vec<f32>,
}

/// The three sets of SPECS §5's evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    pub sets: Vec<EvalSet>,
}

/// `n` passages of at least 400 characters from the last 10% of a text
/// file (the part `mnemos train lm` holds out of WikiText-2), headings
/// skipped, spread evenly over it.
pub fn wiki_passages(path: &Path, n: usize) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| MemoryTrainError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    let mut cut = text.len() * 9 / 10;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    let passages: Vec<&str> = text[cut..]
        .lines()
        .map(str::trim)
        .filter(|l| l.len() >= 400 && !l.starts_with('='))
        .collect();
    if passages.is_empty() || n == 0 {
        return Ok(Vec::new());
    }
    let step = (passages.len() as f64 / n as f64).max(1.0);
    Ok((0..n.min(passages.len()))
        .map(|i| passages[(i as f64 * step) as usize].to_string())
        .collect())
}

/// The text the anchor sees for a document: its first `max_tokens` tokens.
pub fn clip(model: &Llama, text: &str, max_tokens: usize) -> Result<String> {
    let mut ids = model.encode(text)?;
    ids.truncate(max_tokens);
    Ok(model.decode(&ids)?)
}

/// Scores each named set of texts with and without the routed memory.
pub fn evaluate(
    model: &Llama,
    encoder: &dyn Encoder,
    bank: &Bank,
    sets: &[(&str, Vec<String>)],
    min_similarity: &[f32],
    leaf_gate: Option<f32>,
) -> Result<Evaluation> {
    let mut out = Vec::new();
    for (name, texts) in sets {
        let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let vectors = crate::fit::embed(encoder, &refs)?;
        let (mut base, mut with, mut tokens, mut routed, mut fetched) = (0f64, 0f64, 0, 0, 0);
        let mut cosines: Vec<Vec<f32>> = Vec::new();
        for (text, v) in texts.iter().zip(&vectors) {
            let ids = model.encode(text)?;
            if ids.len() < 2 {
                continue;
            }
            let (_, cos) = bank.route_cosines(v)?;
            for (l, c) in cos.into_iter().enumerate() {
                if cosines.len() <= l {
                    cosines.push(Vec::new());
                }
                cosines[l].push(c);
            }
            let path = bank.route_gated(v, min_similarity, leaf_gate)?;
            let (units, used, params) = bank.path_units(&path)?;
            let a = score(model, &ids, 1024, None)?;
            let m = if used.is_empty() {
                a
            } else {
                routed += 1;
                fetched += params;
                score(model, &ids, 1024, Some(&units))?
            };
            base += a.nll * a.tokens as f64;
            with += m.nll * m.tokens as f64;
            tokens += a.tokens;
        }
        let anchor = (base / tokens.max(1) as f64).exp();
        let memory = (with / tokens.max(1) as f64).exp();
        let set = EvalSet {
            name: name.to_string(),
            texts: texts.len(),
            routed,
            tokens,
            anchor_perplexity: anchor,
            memory_perplexity: memory,
            change_percent: 100.0 * (memory / anchor - 1.0),
            mean_fetched_parameters: fetched as f64 / texts.len().max(1) as f64,
            median_cosine: cosines
                .iter_mut()
                .map(|c| {
                    c.sort_by(f32::total_cmp);
                    c[c.len() / 2]
                })
                .collect(),
        };
        tracing::info!(
            set = name,
            anchor = format!("{anchor:.2}"),
            memory = format!("{memory:.2}"),
            change = format!("{:+.1}%", set.change_percent),
            routed,
            median_cosine = ?set.median_cosine,
            "evaluated"
        );
        out.push(set);
    }
    Ok(Evaluation { sets: out })
}
