//! Scenario files: a weighted mix of request types in TOML.
//!
//! Relative `queries` and `corpus` paths are resolved against the directory
//! of the scenario file, not the working directory, so a scenario means the
//! same thing wherever the harness is started from (`--queries` and
//! `--corpus` on the command line are taken relative to the working
//! directory, as command-line paths usually are).
//!
//! Parsing is strict: unknown keys, zero weights, fields that do not apply to
//! a request's kind and removes without any upsert to feed them are errors,
//! because a typo in a load test silently measures something else.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use mnemos_api::{FusionRequest, HypencoderRequest};
use serde::Deserialize;

use crate::error::{LoadError, Result};
use crate::schedule::Arrival;

/// What one request type does.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Search,
    Upsert,
    Remove,
    Get,
    /// `POST /v1/visual/classify`.
    Classify,
}

/// Where a search's query texts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuerySource {
    /// The queries file: realistic traffic.
    #[default]
    Queries,
    /// Titles of the corpus documents that upserts copy: searches that find
    /// the run's own upserted documents, which is what makes the removal
    /// check bite (random queries rarely hit a handful of fresh documents).
    Titles,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Option<String>,
    description: Option<String>,
    queries: Option<PathBuf>,
    corpus: Option<PathBuf>,
    corpus_limit: Option<usize>,
    arrival: Option<Arrival>,
    seed: Option<u64>,
    #[serde(default)]
    request: Vec<RawRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    name: String,
    kind: Kind,
    weight: f64,
    backends: Option<Vec<String>>,
    k: Option<usize>,
    fusion: Option<FusionRequest>,
    hypencoder: Option<HypencoderRequest>,
    query_source: Option<QuerySource>,
    batch: Option<usize>,
    path: Option<String>,
    images: Option<PathBuf>,
    embedding_dim: Option<usize>,
    aggregation: Option<String>,
}

/// One request type of a scenario.
#[derive(Debug, Clone)]
pub struct RequestSpec {
    /// The label in reports, e.g. `search:bm25`.
    pub name: String,
    /// Relative share of arrivals.
    pub weight: f64,
    pub op: Op,
}

/// The HTTP operation behind a request type.
#[derive(Debug, Clone)]
pub enum Op {
    /// `POST /v1/search` with a query drawn from the queries file (or from
    /// corpus titles).
    Search {
        backends: Option<Vec<String>>,
        k: Option<usize>,
        fusion: Option<FusionRequest>,
        /// How the `hypencoder` backend searches (`exhaustive`, `graph`).
        hypencoder: Option<HypencoderRequest>,
        source: QuerySource,
    },
    /// `POST /v1/admin/documents` with `batch` fresh documents copied from
    /// the corpus.
    Upsert { batch: usize },
    /// Removes `batch` ids this run upserted: `DELETE /v1/admin/documents/{id}`
    /// for one, `POST /v1/admin/documents/delete` for several.
    Remove { batch: usize },
    /// A plain `GET` of `path` (health checks, trivial endpoints).
    Get { path: String },
    /// `POST /v1/visual/classify` with an image from a folder or a random
    /// embedding.
    Classify {
        input: ClassifyInput,
        k: Option<usize>,
        aggregation: Option<String>,
    },
}

/// What a classify request sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClassifyInput {
    /// A PNG or JPEG file from this folder (resolved against the scenario's
    /// directory), base64 in JSON: the whole path, image decoding included.
    Images(PathBuf),
    /// A random unit vector of this dimension: search and voting only.
    Embeddings { dim: usize },
}

impl Op {
    /// Whether the request needs the admin token.
    pub fn is_admin(&self) -> bool {
        matches!(self, Op::Upsert { .. } | Op::Remove { .. })
    }
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    pub name: String,
    pub description: Option<String>,
    /// Resolved against the scenario's directory.
    pub queries: Option<PathBuf>,
    pub corpus: Option<PathBuf>,
    /// Use only the first N corpus documents (for upserts and title
    /// queries), so title searches keep meeting the run's own copies.
    pub corpus_limit: Option<usize>,
    pub arrival: Option<Arrival>,
    pub seed: Option<u64>,
    pub requests: Vec<RequestSpec>,
    /// Where it was read from, for error messages.
    pub origin: PathBuf,
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| LoadError::scenario(path, format!("cannot read: {e}")))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base, path)
    }

    /// Parses scenario text; relative data paths are resolved against `base`.
    pub fn parse(text: &str, base: &Path, origin: &Path) -> Result<Self> {
        let err = |m: String| LoadError::scenario(origin, m);
        let raw: RawScenario = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        if raw.request.is_empty() {
            return Err(err(
                "no [[request]] entries: a scenario needs at least one request type".into(),
            ));
        }
        let mut seen = HashSet::new();
        let mut requests = Vec::with_capacity(raw.request.len());
        for (i, r) in raw.request.into_iter().enumerate() {
            let at = format!("request #{} (`{}`)", i + 1, r.name);
            if r.name.trim().is_empty() {
                return Err(err(format!("request #{}: `name` must not be empty", i + 1)));
            }
            if !seen.insert(r.name.clone()) {
                return Err(err(format!("{at}: duplicate name")));
            }
            requests.push(validate_request(r).map_err(|m| err(format!("{at}: {m}")))?);
        }
        let has_upsert = requests.iter().any(|r| matches!(r.op, Op::Upsert { .. }));
        if requests.iter().any(|r| matches!(r.op, Op::Remove { .. })) && !has_upsert {
            return Err(err(
                "a `remove` request needs an `upsert` request in the same scenario: the harness \
                 only removes documents it upserted itself"
                    .into(),
            ));
        }
        if raw.corpus_limit == Some(0) {
            return Err(err("`corpus_limit` must be at least 1".into()));
        }
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        for r in &mut requests {
            if let Op::Classify {
                input: ClassifyInput::Images(dir),
                ..
            } = &mut r.op
            {
                *dir = resolve(std::mem::take(dir));
            }
        }
        Ok(Self {
            name: raw.name.unwrap_or_else(|| {
                origin
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "scenario".into())
            }),
            description: raw.description,
            queries: raw.queries.map(resolve),
            corpus: raw.corpus.map(resolve),
            corpus_limit: raw.corpus_limit,
            arrival: raw.arrival,
            seed: raw.seed,
            requests,
            origin: origin.to_path_buf(),
        })
    }

    fn searches_from(&self, from: QuerySource) -> bool {
        self.requests
            .iter()
            .any(|r| matches!(r.op, Op::Search { source, .. } if source == from))
    }

    /// Whether any request type searches the queries file.
    pub fn needs_queries(&self) -> bool {
        self.searches_from(QuerySource::Queries)
    }

    /// Whether any request type upserts or searches corpus titles.
    pub fn needs_corpus(&self) -> bool {
        self.searches_from(QuerySource::Titles)
            || self
                .requests
                .iter()
                .any(|r| matches!(r.op, Op::Upsert { .. }))
    }

    /// Whether any request type needs the admin token.
    pub fn needs_admin(&self) -> bool {
        self.requests.iter().any(|r| r.op.is_admin())
    }

    /// Checks what the scenario needs from the run: an admin token for admin
    /// requests and the data files (after command-line overrides) that exist.
    pub fn check_runnable(
        &self,
        admin_token: Option<&str>,
        queries: Option<&Path>,
        corpus: Option<&Path>,
    ) -> Result<()> {
        let err = |m: String| LoadError::scenario(&self.origin, m);
        if self.needs_admin() && admin_token.is_none_or(|t| t.trim().is_empty()) {
            let names: Vec<&str> = self
                .requests
                .iter()
                .filter(|r| r.op.is_admin())
                .map(|r| r.name.as_str())
                .collect();
            return Err(err(format!(
                "admin requests ({}) need a token: pass --admin-token or set MNEMOS_ADMIN_TOKEN",
                names.join(", ")
            )));
        }
        let need = [
            (self.needs_queries(), queries, "queries", "search"),
            (
                self.needs_corpus(),
                corpus,
                "corpus",
                "upsert` or title `search",
            ),
        ];
        for (needed, path, key, kind) in need {
            if !needed {
                continue;
            }
            match path {
                None => {
                    return Err(err(format!(
                        "`{kind}` requests need a {key} file: set `{key} = \"...\"` in the \
                         scenario or pass --{key}"
                    )))
                }
                Some(p) if !p.is_file() => {
                    return Err(err(format!("{key} file {} does not exist", p.display())))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

fn validate_request(r: RawRequest) -> std::result::Result<RequestSpec, String> {
    if !(r.weight.is_finite() && r.weight > 0.0) {
        return Err(format!(
            "`weight` must be a positive number, got {}",
            r.weight
        ));
    }
    let only = |allowed: &[&str]| -> std::result::Result<(), String> {
        let given = [
            ("backends", r.backends.is_some()),
            ("k", r.k.is_some()),
            ("fusion", r.fusion.is_some()),
            ("hypencoder", r.hypencoder.is_some()),
            ("query_source", r.query_source.is_some()),
            ("batch", r.batch.is_some()),
            ("path", r.path.is_some()),
            ("images", r.images.is_some()),
            ("embedding_dim", r.embedding_dim.is_some()),
            ("aggregation", r.aggregation.is_some()),
        ];
        for (key, present) in given {
            if present && !allowed.contains(&key) {
                return Err(format!(
                    "`{key}` does not apply to kind `{}`",
                    format!("{:?}", r.kind).to_lowercase()
                ));
            }
        }
        Ok(())
    };
    let batch = |b: Option<usize>| match b.unwrap_or(1) {
        0 => Err("`batch` must be at least 1".to_string()),
        n if n > 10_000 => Err(format!("`batch` must be at most 10000, got {n}")),
        n => Ok(n),
    };
    let op = match r.kind {
        Kind::Search => {
            only(&["backends", "k", "fusion", "hypencoder", "query_source"])?;
            if r.k == Some(0) {
                return Err("`k` must be at least 1".into());
            }
            if r.backends.as_ref().is_some_and(|b| b.is_empty()) {
                return Err("`backends` must name at least one backend".into());
            }
            Op::Search {
                backends: r.backends.clone(),
                k: r.k,
                fusion: r.fusion.clone(),
                hypencoder: r.hypencoder.clone(),
                source: r.query_source.unwrap_or_default(),
            }
        }
        Kind::Upsert => {
            only(&["batch"])?;
            Op::Upsert {
                batch: batch(r.batch)?,
            }
        }
        Kind::Remove => {
            only(&["batch"])?;
            Op::Remove {
                batch: batch(r.batch)?,
            }
        }
        Kind::Get => {
            only(&["path"])?;
            let path = r.path.clone().unwrap_or_else(|| "/".into());
            if !path.starts_with('/') {
                return Err(format!("`path` must start with `/`, got `{path}`"));
            }
            if path.parse::<http::uri::PathAndQuery>().is_err() {
                return Err(format!("`path` is not a valid request path: `{path}`"));
            }
            Op::Get { path }
        }
        Kind::Classify => {
            only(&["k", "images", "embedding_dim", "aggregation"])?;
            if r.k == Some(0) {
                return Err("`k` must be at least 1".into());
            }
            let input = match (&r.images, r.embedding_dim) {
                (Some(dir), None) => ClassifyInput::Images(dir.clone()),
                (None, Some(dim)) if (1..=65_536).contains(&dim) => {
                    ClassifyInput::Embeddings { dim }
                }
                (None, Some(dim)) => {
                    return Err(format!("`embedding_dim` must be in 1..=65536, got {dim}"))
                }
                _ => {
                    return Err(
                        "give exactly one of `images` (a folder of PNG/JPEG files) and \
                         `embedding_dim`"
                            .into(),
                    )
                }
            };
            Op::Classify {
                input,
                k: r.k,
                aggregation: r.aggregation.clone(),
            }
        }
    };
    Ok(RequestSpec {
        name: r.name,
        weight: r.weight,
        op,
    })
}

#[cfg(test)]
mod tests;
