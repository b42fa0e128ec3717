//! The read path: validate, encode, search each backend, drop what the store
//! no longer holds, fuse, and attach the stored text.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use mnemos_api::{FusionRequest, SearchHit, SearchRequest, SearchResponse, SourceScore};
use mnemos_config::{FusionMethod, Normalization};
use mnemos_index_core::{Hit, IndexRead};

use crate::fusion::{fuse_linear, fuse_rrf, FusedHit, Ranked};
use crate::{Backend, Engine, EngineError, HypencoderMode, Result};

/// Largest `k` a search may ask for.
pub const MAX_K: usize = 1000;
/// Longest accepted query, in bytes.
pub const MAX_QUERY_BYTES: usize = 16 * 1024;

/// A validated search.
#[derive(Debug, Clone)]
pub struct SearchPlan {
    pub query: String,
    pub k: usize,
    pub backends: Vec<Backend>,
    pub fusion: Fusion,
    /// How the `hypencoder` backend searches, when it is among `backends`.
    pub hypencoder: Option<HypencoderMode>,
}

#[derive(Debug, Clone)]
pub enum Fusion {
    Rrf {
        k: f32,
    },
    Linear {
        weights: BTreeMap<String, f32>,
        normalization: Normalization,
    },
}

impl Engine {
    /// Checks a request against the rules and the configured defaults.
    pub fn plan(&self, req: &SearchRequest) -> Result<SearchPlan> {
        let bad = |m: String| Err(EngineError::InvalidArgument(m));
        if req.query.trim().is_empty() {
            return bad("`query` must not be empty".into());
        }
        if req.query.len() > MAX_QUERY_BYTES {
            return bad(format!("`query` is longer than {MAX_QUERY_BYTES} bytes"));
        }
        let s = &self.settings.search;
        let k = req.k.unwrap_or(s.default_k);
        if !(1..=MAX_K).contains(&k) {
            return bad(format!("`k` must be in 1..={MAX_K}, got {k}"));
        }
        let names = req.backends.as_ref().unwrap_or(&s.default_backends);
        if names.is_empty() {
            return bad("`backends` must name at least one backend".into());
        }
        let mut backends = Vec::new();
        for name in names {
            let b = Backend::parse(name)?;
            if !self.backend_enabled(b) {
                return Err(EngineError::InvalidArgument(format!(
                    "backend `{name}` is disabled on this server"
                )));
            }
            if !backends.contains(&b) {
                backends.push(b);
            }
        }
        let fusion = match &req.fusion {
            None => match s.fusion {
                FusionMethod::Rrf => Fusion::Rrf { k: s.rrf_k },
                FusionMethod::Linear => Fusion::Linear {
                    weights: s.linear_weights.clone(),
                    normalization: s.normalization,
                },
            },
            Some(FusionRequest::Rrf { k }) => {
                let k = k.unwrap_or(s.rrf_k);
                if !(k.is_finite() && k >= 0.0) {
                    return bad("`fusion.k` must be a finite number >= 0".into());
                }
                Fusion::Rrf { k }
            }
            Some(FusionRequest::Linear {
                weights,
                normalization,
            }) => {
                let weights = weights.clone().unwrap_or_else(|| s.linear_weights.clone());
                for (name, w) in &weights {
                    Backend::parse(name)?;
                    if !(w.is_finite() && *w >= 0.0) {
                        return bad(format!("weight for `{name}` must be a finite number >= 0"));
                    }
                }
                let normalization = match normalization.as_deref() {
                    None => s.normalization,
                    Some("minmax") => Normalization::MinMax,
                    Some("zscore") => Normalization::ZScore,
                    Some(other) => {
                        return bad(format!(
                            "unknown normalization `{other}` (known: minmax, zscore)"
                        ))
                    }
                };
                Fusion::Linear {
                    weights,
                    normalization,
                }
            }
        };
        let hypencoder = match &self.hypencoder {
            Some(h) if backends.contains(&Backend::Hypencoder) => {
                Some(h.mode(req.hypencoder.as_ref())?)
            }
            _ => None,
        };
        Ok(SearchPlan {
            query: req.query.clone(),
            k,
            backends,
            fusion,
            hypencoder,
        })
    }

    /// Runs a search request end to end.
    pub async fn search(&self, req: &SearchRequest) -> Result<SearchResponse> {
        let started = Instant::now();
        let plan = self.plan(req)?;
        let hits = self.execute(&plan).await?;
        Ok(SearchResponse {
            hits,
            took_ms: started.elapsed().as_secs_f64() * 1e3,
        })
    }

    /// One backend's ranked list, with ids the store no longer holds
    /// dropped; the `hypencoder` backend searches as configured.
    pub async fn backend_hits(
        &self,
        backend: Backend,
        query: &str,
        depth: usize,
    ) -> Result<Vec<Hit>> {
        self.backend_hits_with(backend, query, depth, None).await
    }

    /// [`Engine::backend_hits`] with the `hypencoder` backend's search mode
    /// (`None`: the configured default).
    pub async fn backend_hits_with(
        &self,
        backend: Backend,
        query: &str,
        depth: usize,
        mode: Option<&HypencoderMode>,
    ) -> Result<Vec<Hit>> {
        let hits = match backend {
            Backend::Bm25 => {
                let index = Arc::clone(self.bm25.as_ref().ok_or_else(|| disabled(backend))?);
                let q = query.to_string();
                tokio::task::spawn_blocking(move || index.search(q.as_str(), depth))
                    .await
                    .map_err(|e| EngineError::Internal(format!("bm25 search task: {e}")))??
            }
            Backend::Dense => {
                let dense = Arc::clone(self.dense.as_ref().ok_or_else(|| disabled(backend))?);
                let mut v = dense.pool.embed(vec![query.to_string()]).await?;
                let qv = v
                    .pop()
                    .ok_or_else(|| EngineError::Internal("no query vector".into()))?;
                tokio::task::spawn_blocking(move || dense.index.search(qv.as_slice(), depth))
                    .await
                    .map_err(|e| EngineError::Internal(format!("dense search task: {e}")))??
            }
            Backend::Hypencoder => {
                let h = self.hypencoder.as_ref().ok_or_else(|| disabled(backend))?;
                let mode = match mode {
                    Some(m) => m.clone(),
                    None => h.mode(None)?,
                };
                h.search(query.to_string(), depth, mode).await?
            }
        };
        // The store is the authority on what exists: an index that lags can
        // never serve a removed document.
        Ok(hits
            .into_iter()
            .filter(|h| self.store.contains(&h.id))
            .collect())
    }

    async fn execute(&self, plan: &SearchPlan) -> Result<Vec<SearchHit>> {
        let depth = if plan.backends.len() == 1 {
            plan.k
        } else {
            plan.k.max(self.settings.search.fusion_depth)
        };
        let lists = futures_join(self, plan, depth).await?;
        let fused: Vec<FusedHit> = if lists.len() == 1 {
            let list = &lists[0];
            list.hits
                .iter()
                .enumerate()
                .map(|(i, h)| FusedHit {
                    id: h.id.clone(),
                    score: h.score,
                    sources: [(list.backend.to_string(), (i + 1, h.score))].into(),
                })
                .collect()
        } else {
            match &plan.fusion {
                Fusion::Rrf { k } => fuse_rrf(&lists, *k, plan.k),
                Fusion::Linear {
                    weights,
                    normalization,
                } => fuse_linear(&lists, weights, *normalization, plan.k),
            }
        };
        Ok(fused
            .into_iter()
            .take(plan.k)
            .filter_map(|f| {
                let (doc, _) = self.store.get(&f.id)?;
                Some(SearchHit {
                    id: f.id,
                    score: f.score,
                    title: doc.title.clone(),
                    text: doc.text.clone(),
                    metadata: doc.metadata.clone(),
                    sources: f
                        .sources
                        .into_iter()
                        .map(|(b, (rank, score))| (b, SourceScore { rank, score }))
                        .collect(),
                })
            })
            .collect())
    }
}

/// Runs the plan's backends concurrently: BM25 on the blocking pool while
/// the query is being encoded. Lists come back in the plan's order.
async fn futures_join<'p>(
    engine: &Engine,
    plan: &'p SearchPlan,
    depth: usize,
) -> Result<Vec<Ranked<'p>>> {
    let search = |b: Backend| async move {
        let hits = engine
            .backend_hits_with(b, &plan.query, depth, plan.hypencoder.as_ref())
            .await?;
        Ok::<_, EngineError>(Ranked {
            backend: b.name(),
            hits,
        })
    };
    match plan.backends.as_slice() {
        [a] => Ok(vec![search(*a).await?]),
        [a, b] => {
            let (x, y) = tokio::join!(search(*a), search(*b));
            Ok(vec![x?, y?])
        }
        [a, b, c] => {
            let (x, y, z) = tokio::join!(search(*a), search(*b), search(*c));
            Ok(vec![x?, y?, z?])
        }
        more => Err(EngineError::Internal(format!(
            "a plan names {} backends; at most 3 exist",
            more.len()
        ))),
    }
}

fn disabled(b: Backend) -> EngineError {
    EngineError::InvalidArgument(format!("backend `{}` is disabled on this server", b.name()))
}
