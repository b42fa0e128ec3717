//! The `hypencoder` backend: the query's token states from the dense
//! encoder, its q-net from the hyperheads, then exhaustive or graph search
//! over the dense backend's document vectors (SPECS §2).
//!
//! A query is one job on tokio's blocking pool: encoding a short query
//! (~5 ms), generating its q-net (~10 ms) and scoring are all CPU work, and
//! doing them in one job avoids two hand-offs. At most `workers` jobs run
//! at once and at most `queue_capacity` wait; beyond that a search gets 503
//! instead of queueing without bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use mnemos_api::HypencoderRequest;
use mnemos_config::HypencoderSettings;
use mnemos_hypencoder::{Hypencoder, QueryStates};
use mnemos_hypencoder_index::{GraphSearch, HypencoderIndex};
use mnemos_index_core::Hit;
use mnemos_text::MiniLmEncoder;
use tokio::sync::Semaphore;

use crate::{blocking, EngineError, Pending, Result};

/// How one search runs, resolved from the request and the config.
#[derive(Debug, Clone, PartialEq)]
pub enum HypencoderMode {
    Exhaustive,
    Graph(GraphSearch),
}

/// The backend: encoder (shared with the dense pool), model and index.
pub struct HypencoderBackend {
    encoder: Arc<MiniLmEncoder>,
    model: Hypencoder,
    pub index: HypencoderIndex,
    settings: HypencoderSettings,
    permits: Arc<Semaphore>,
    pending: Arc<AtomicUsize>,
}

impl HypencoderBackend {
    pub fn new(
        encoder: Arc<MiniLmEncoder>,
        model: Hypencoder,
        index: HypencoderIndex,
        settings: HypencoderSettings,
    ) -> Self {
        Self {
            encoder,
            model,
            index,
            permits: Arc::new(Semaphore::new(settings.workers().max(1))),
            pending: Arc::new(AtomicUsize::new(0)),
            settings,
        }
    }

    /// Checks a request's `hypencoder` options against the config.
    pub fn mode(&self, req: Option<&HypencoderRequest>) -> Result<HypencoderMode> {
        resolve_mode(&self.settings, req, self.index.len())
    }

    /// The best `k` documents for `query` (ids the store still holds are
    /// filtered by the caller, as for every backend).
    pub async fn search(
        self: &Arc<Self>,
        query: String,
        k: usize,
        mode: HypencoderMode,
    ) -> Result<Vec<Hit>> {
        let before = self.pending.fetch_add(1, Ordering::AcqRel);
        let _pending = Pending(Arc::clone(&self.pending));
        let limit = self.settings.queue_capacity + self.settings.workers();
        if before >= limit {
            return Err(EngineError::Overloaded(format!(
                "the hypencoder queue is full ({before} searches waiting or running); retry later"
            )));
        }
        let _permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| EngineError::Unavailable("the hypencoder is shutting down".into()))?;
        let me = Arc::clone(self);
        blocking(move || me.search_now(&query, k, &mode)).await
    }

    fn search_now(&self, query: &str, k: usize, mode: &HypencoderMode) -> Result<Vec<Hit>> {
        let t = self
            .encoder
            .token_states(&[query])
            .map_err(|e| EngineError::Model(e.to_string()))?;
        let states = QueryStates::from_flat(t.states, t.mask, t.rows, t.seq_len, t.dim)
            .map_err(model_error)?;
        let qnets = self.model.generate(&states).map_err(model_error)?;
        let mut lists = match mode {
            HypencoderMode::Exhaustive => self.index.search_exhaustive(&qnets, k)?,
            HypencoderMode::Graph(g) => self
                .index
                .search_graph(&qnets, k, g)?
                .into_iter()
                .map(|o| o.hits)
                .collect(),
        };
        Ok(lists.pop().unwrap_or_default())
    }
}

impl HypencoderBackend {
    /// Recomputes every neighbour list exactly. Removals refill the lists
    /// they touch from the removed document's own list, which is cheap but
    /// approximate; after heavy churn this restores the exact 100-NN graph.
    /// Searches continue meanwhile; writes wait. Returns (documents, edges).
    pub async fn rebuild_graph(self: &Arc<Self>) -> Result<(usize, usize)> {
        let me = Arc::clone(self);
        blocking(move || {
            me.index.rebuild_graph()?;
            let stats = me.index.stats();
            Ok((stats.live, stats.edges))
        })
        .await
    }
}

fn model_error(e: mnemos_hypencoder::HypencoderError) -> EngineError {
    EngineError::Model(e.to_string())
}

/// The search a request asks for, with config defaults filled in; `auto`
/// is exhaustive up to `exhaustive_below` live documents.
pub fn resolve_mode(
    s: &HypencoderSettings,
    req: Option<&HypencoderRequest>,
    live: usize,
) -> Result<HypencoderMode> {
    let default = HypencoderRequest::default();
    let r = req.unwrap_or(&default);
    let search = r.search.as_deref().unwrap_or(&s.search);
    let graph = GraphSearch {
        entry_points: r.entry_points.unwrap_or(s.entry_points),
        candidates: r.candidates.unwrap_or(s.candidates),
        max_rounds: r.max_rounds.unwrap_or(s.max_rounds),
        seed: r.seed.unwrap_or(GraphSearch::default().seed),
    };
    graph
        .validate()
        .map_err(|e| EngineError::InvalidArgument(format!("`hypencoder`: {e}")))?;
    match search {
        "exhaustive" => Ok(HypencoderMode::Exhaustive),
        "graph" => Ok(HypencoderMode::Graph(graph)),
        "auto" if live <= s.exhaustive_below => Ok(HypencoderMode::Exhaustive),
        "auto" => Ok(HypencoderMode::Graph(graph)),
        other => Err(EngineError::InvalidArgument(format!(
            "`hypencoder.search` must be one of auto, exhaustive, graph; got `{other}`"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_are_the_index_defaults() {
        let s = HypencoderSettings::default();
        let g = GraphSearch::default();
        assert_eq!(
            (s.entry_points, s.candidates, s.max_rounds),
            (g.entry_points, g.candidates, g.max_rounds)
        );
        assert_eq!(
            s.neighbors,
            mnemos_hypencoder_index::GraphParams::default().neighbors
        );
    }

    #[test]
    fn modes_resolve_from_request_then_config() {
        let s = HypencoderSettings::default();
        assert_eq!(
            resolve_mode(&s, None, 10).unwrap(),
            HypencoderMode::Exhaustive
        );
        let HypencoderMode::Graph(g) = resolve_mode(&s, None, 1_000_000).unwrap() else {
            panic!("auto above exhaustive_below must walk the graph");
        };
        assert_eq!(g.entry_points, s.entry_points);
        let req = HypencoderRequest {
            search: Some("graph".into()),
            candidates: Some(3),
            ..HypencoderRequest::default()
        };
        let HypencoderMode::Graph(g) = resolve_mode(&s, Some(&req), 10).unwrap() else {
            panic!("an explicit graph search must walk the graph");
        };
        assert_eq!(g.candidates, 3);
        for bad in [
            HypencoderRequest {
                search: Some("fast".into()),
                ..HypencoderRequest::default()
            },
            HypencoderRequest {
                max_rounds: Some(0),
                ..HypencoderRequest::default()
            },
        ] {
            let err = resolve_mode(&s, Some(&bad), 10).unwrap_err();
            assert!(matches!(err, EngineError::InvalidArgument(_)), "{err}");
        }
    }
}
