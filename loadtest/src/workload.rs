//! Turns a scenario into requests: picks a request type by weight, draws its
//! query or document, and builds the HTTP request.
//!
//! Search bodies are serialised once per (request type, query) before the
//! run, so the hot path only clones a reference-counted buffer. Upserts copy
//! a corpus document's title and text under a fresh id `lt-<run>-<n>` (so
//! they rank for real queries but can never collide with the collection or
//! another run); their bodies are built per request, which is fine at the
//! rates a write path sustains.

use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderValue, Method, Request, Uri};
use http_body_util::Full;
use mnemos_api::{BatchRemoveRequest, DocumentIn, SearchRequest, UpsertRequest};
use rand::Rng;

use crate::checker::Checker;
use crate::client::Target;
use crate::data::CorpusDoc;
use crate::error::{LoadError, Result};
use crate::scenario::{Op, QuerySource, Scenario};

/// One arrival, decided by the scheduler.
#[derive(Debug)]
pub struct Planned {
    /// Index of the request type in the scenario.
    pub ty: usize,
    pub plan: Plan,
}

#[derive(Debug)]
pub enum Plan {
    Search { query: usize },
    Upsert,
    Remove { ids: Vec<String> },
    Get,
    Classify { body: usize },
}

/// What the response of a built request is needed for.
#[derive(Debug)]
pub enum Followup {
    /// A search: hits are checked against acknowledged removals.
    Search,
    /// An upsert of these ids: each is looked up once acknowledged.
    Upsert(Vec<String>),
    /// A removal of these ids; `batch` tells the response shape.
    Remove {
        ids: Vec<String>,
        batch: bool,
    },
    Get,
    /// A classification: only its status and latency are recorded.
    Classify,
}

/// Why an arrival could not be planned.
#[derive(Debug, PartialEq, Eq)]
pub enum Skip {
    /// A remove with no acknowledged upsert left to remove.
    NothingToRemove(usize),
}

struct Routes {
    search: Uri,
    upsert: Uri,
    remove_batch: Uri,
    classify: Uri,
    /// `prefix/v1/admin/documents/`, completed with an id.
    document: String,
}

/// The prepared request mix of a run.
pub struct Workload {
    labels: Vec<String>,
    ops: Vec<Op>,
    /// Cumulative weights, for picking by a uniform draw.
    cumulative: Vec<f64>,
    /// Per request type: prepared bodies, one per query of a search and
    /// one per image or vector of a classify (empty for other kinds).
    bodies: Vec<Vec<Bytes>>,
    /// Per request type: the URI of a `get`.
    get_uris: Vec<Option<Uri>>,
    corpus: Vec<CorpusDoc>,
    routes: Routes,
    auth: Option<HeaderValue>,
    json: HeaderValue,
    run_id: String,
    next_id: AtomicU64,
}

impl Workload {
    /// Prepares every request type of `scenario`. `queries` and `corpus`
    /// must be given when the scenario searches or upserts.
    pub fn new(
        scenario: &Scenario,
        queries: &[String],
        corpus: Vec<CorpusDoc>,
        target: &Target,
        admin_token: Option<&str>,
        run_id: &str,
    ) -> Result<Self> {
        if !run_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            || run_id.is_empty()
        {
            return Err(LoadError::Config(format!(
                "--run-id `{run_id}`: use letters, digits, `-` and `_` only"
            )));
        }
        if scenario.needs_queries() && queries.is_empty() {
            return Err(LoadError::Config("search requests need queries".into()));
        }
        if scenario.needs_corpus() && corpus.is_empty() {
            return Err(LoadError::Config(
                "upserts and title searches need a corpus".into(),
            ));
        }
        let titles: Vec<String> = corpus.iter().map(CorpusDoc::title_query).collect();
        let mut total = 0.0;
        let mut cumulative = Vec::new();
        let mut bodies = Vec::new();
        let mut get_uris = Vec::new();
        for r in &scenario.requests {
            total += r.weight;
            cumulative.push(total);
            bodies.push(match &r.op {
                Op::Search {
                    backends,
                    k,
                    fusion,
                    hypencoder,
                    source,
                } => match source {
                    QuerySource::Queries => queries,
                    QuerySource::Titles => &titles[..],
                }
                .iter()
                .map(|q| {
                    let body = SearchRequest {
                        query: q.clone(),
                        k: *k,
                        backends: backends.clone(),
                        fusion: fusion.clone(),
                        hypencoder: hypencoder.clone(),
                    };
                    serde_json::to_vec(&body).map(Bytes::from)
                })
                .collect::<std::result::Result<_, _>>()
                .map_err(|e| LoadError::Config(format!("cannot encode a search: {e}")))?,
                Op::Classify {
                    input,
                    k,
                    aggregation,
                } => crate::visual::classify_bodies(&r.name, input, *k, aggregation.as_deref())?,
                _ => Vec::new(),
            });
            get_uris.push(match &r.op {
                Op::Get { path } => Some(target.path(path)?),
                _ => None,
            });
        }
        let auth = admin_token
            .map(|t| HeaderValue::from_str(&format!("Bearer {}", t.trim())))
            .transpose()
            .map_err(|_| LoadError::Config("the admin token is not a valid header value".into()))?
            .map(|mut v| {
                v.set_sensitive(true);
                v
            });
        Ok(Self {
            labels: scenario.requests.iter().map(|r| r.name.clone()).collect(),
            ops: scenario.requests.iter().map(|r| r.op.clone()).collect(),
            cumulative,
            bodies,
            get_uris,
            corpus,
            routes: Routes {
                search: target.path("/v1/search")?,
                upsert: target.path("/v1/admin/documents")?,
                remove_batch: target.path("/v1/admin/documents/delete")?,
                classify: target.path("/v1/visual/classify")?,
                document: format!("{}/v1/admin/documents/", target.prefix),
            },
            auth,
            json: HeaderValue::from_static("application/json"),
            run_id: run_id.to_string(),
            next_id: AtomicU64::new(0),
        })
    }

    /// The prefix of every id this run upserts.
    pub fn id_prefix(&self) -> String {
        format!("lt-{}-", self.run_id)
    }

    /// The request-type labels, in scenario order.
    pub fn labels(&self) -> &[String] {
        &self.labels
    }

    /// Picks the next arrival's request type and item.
    pub fn pick(
        &self,
        rng: &mut impl Rng,
        checker: &Checker,
    ) -> std::result::Result<Planned, Skip> {
        let total = self.cumulative.last().copied().unwrap_or(1.0);
        let draw = rng.random::<f64>() * total;
        let ty = self
            .cumulative
            .iter()
            .position(|c| draw < *c)
            .unwrap_or(self.cumulative.len() - 1);
        let plan = match &self.ops[ty] {
            Op::Search { .. } => Plan::Search {
                query: rng.random_range(0..self.bodies[ty].len()),
            },
            Op::Classify { .. } => Plan::Classify {
                body: rng.random_range(0..self.bodies[ty].len()),
            },
            Op::Upsert { .. } => Plan::Upsert,
            Op::Remove { batch } => match checker.take_removable(*batch) {
                Some(ids) => Plan::Remove { ids },
                None => return Err(Skip::NothingToRemove(ty)),
            },
            Op::Get { .. } => Plan::Get,
        };
        Ok(Planned { ty, plan })
    }

    fn request(&self, method: Method, uri: Uri, body: Bytes, admin: bool) -> Request<Full<Bytes>> {
        let has_body = !body.is_empty();
        let mut req = Request::new(Full::new(body));
        *req.method_mut() = method;
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        if has_body {
            h.insert(CONTENT_TYPE, self.json.clone());
        }
        if admin {
            if let Some(a) = &self.auth {
                h.insert(AUTHORIZATION, a.clone());
            }
        }
        req
    }

    /// Builds the HTTP request for an arrival.
    pub fn build(&self, planned: Planned) -> Result<(Request<Full<Bytes>>, Followup)> {
        let ty = planned.ty;
        Ok(match planned.plan {
            Plan::Search { query } => (
                self.request(
                    Method::POST,
                    self.routes.search.clone(),
                    self.bodies[ty][query].clone(),
                    false,
                ),
                Followup::Search,
            ),
            Plan::Classify { body } => (
                self.request(
                    Method::POST,
                    self.routes.classify.clone(),
                    self.bodies[ty][body].clone(),
                    false,
                ),
                Followup::Classify,
            ),
            Plan::Upsert => {
                let batch = match self.ops[ty] {
                    Op::Upsert { batch } => batch,
                    _ => 1,
                };
                let first = self.next_id.fetch_add(batch as u64, Ordering::Relaxed);
                let mut ids = Vec::with_capacity(batch);
                let mut documents = Vec::with_capacity(batch);
                for n in first..first + batch as u64 {
                    let doc = &self.corpus[(n % self.corpus.len() as u64) as usize];
                    let id = format!("lt-{}-{n}", self.run_id);
                    documents.push(DocumentIn {
                        id: id.clone(),
                        title: doc.title.clone(),
                        text: doc.text.clone(),
                        metadata: serde_json::json!({
                            "loadtest_run": self.run_id,
                            "copied_from": doc.id,
                        }),
                    });
                    ids.push(id);
                }
                let body = serde_json::to_vec(&UpsertRequest { documents })
                    .map_err(|e| LoadError::Config(format!("cannot encode an upsert: {e}")))?;
                let req = self.request(
                    Method::POST,
                    self.routes.upsert.clone(),
                    Bytes::from(body),
                    true,
                );
                (req, Followup::Upsert(ids))
            }
            Plan::Remove { ids } => {
                let (req, batch) = if ids.len() == 1 {
                    (
                        self.request(
                            Method::DELETE,
                            self.document_uri(&ids[0])?,
                            Bytes::new(),
                            true,
                        ),
                        false,
                    )
                } else {
                    (self.remove_batch_request(&ids)?, true)
                };
                (req, Followup::Remove { ids, batch })
            }
            Plan::Get => {
                let uri = self.get_uris[ty]
                    .clone()
                    .ok_or_else(|| LoadError::Config("get without a path".into()))?;
                (
                    self.request(Method::GET, uri, Bytes::new(), false),
                    Followup::Get,
                )
            }
        })
    }

    fn document_uri(&self, id: &str) -> Result<Uri> {
        format!("{}{id}", self.routes.document)
            .parse()
            .map_err(|e| LoadError::Config(format!("bad document id `{id}`: {e}")))
    }

    /// `GET /v1/admin/documents/{id}`: the visibility check of an upsert.
    pub fn lookup_request(&self, id: &str) -> Result<Request<Full<Bytes>>> {
        Ok(self.request(Method::GET, self.document_uri(id)?, Bytes::new(), true))
    }

    /// `POST /v1/admin/documents/delete` for `ids` (also used by cleanup).
    pub fn remove_batch_request(&self, ids: &[String]) -> Result<Request<Full<Bytes>>> {
        let body = serde_json::to_vec(&BatchRemoveRequest { ids: ids.to_vec() })
            .map_err(|e| LoadError::Config(format!("cannot encode a removal: {e}")))?;
        Ok(self.request(
            Method::POST,
            self.routes.remove_batch.clone(),
            Bytes::from(body),
            true,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use std::path::Path;
    use std::time::Instant;

    fn workload() -> Workload {
        let s = Scenario::parse(
            r#"
            [[request]]
            name = "search"
            kind = "search"
            weight = 3
            backends = ["bm25"]
            k = 5
            [[request]]
            name = "upsert"
            kind = "upsert"
            weight = 1
            batch = 2
            [[request]]
            name = "remove"
            kind = "remove"
            weight = 1
            [[request]]
            name = "health"
            kind = "get"
            weight = 1
            path = "/healthz"
            "#,
            Path::new("."),
            Path::new("t.toml"),
        )
        .unwrap();
        let corpus = vec![CorpusDoc {
            id: "d1".into(),
            title: "Title".into(),
            text: "Text".into(),
        }];
        let target = Target::parse("http://127.0.0.1:9/p").unwrap();
        Workload::new(&s, &["q one".into()], corpus, &target, Some("tok"), "r1").unwrap()
    }

    #[test]
    fn picks_by_weight() {
        let w = workload();
        let c = Checker::new(Instant::now(), "lt-r1-");
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut counts = [0usize; 4];
        let mut skipped = 0;
        for _ in 0..60_000 {
            match w.pick(&mut rng, &c) {
                Ok(p) => counts[p.ty] += 1,
                Err(Skip::NothingToRemove(ty)) => {
                    assert_eq!(ty, 2);
                    skipped += 1;
                }
            }
        }
        // Weights 3:1:1:1 over 60 000 draws; nothing to remove yet.
        assert_eq!(counts[2], 0);
        assert!((29_000..31_000).contains(&counts[0]), "{counts:?}");
        assert!((9_500..10_500).contains(&counts[1]), "{counts:?}");
        assert!((9_500..10_500).contains(&skipped), "{skipped}");
    }

    #[test]
    fn builds_requests() {
        let w = workload();
        let (req, f) = w
            .build(Planned {
                ty: 0,
                plan: Plan::Search { query: 0 },
            })
            .unwrap();
        assert_eq!(req.uri(), "/p/v1/search");
        assert!(req.headers().get(AUTHORIZATION).is_none());
        assert!(matches!(f, Followup::Search));

        let (req, f) = w
            .build(Planned {
                ty: 1,
                plan: Plan::Upsert,
            })
            .unwrap();
        assert_eq!(req.uri(), "/p/v1/admin/documents");
        assert_eq!(req.headers()[AUTHORIZATION], "Bearer tok");
        match f {
            Followup::Upsert(ids) => assert_eq!(ids, ["lt-r1-0", "lt-r1-1"]),
            other => panic!("{other:?}"),
        }

        let (req, _) = w
            .build(Planned {
                ty: 2,
                plan: Plan::Remove {
                    ids: vec!["lt-r1-0".into()],
                },
            })
            .unwrap();
        assert_eq!(req.method(), Method::DELETE);
        assert_eq!(req.uri(), "/p/v1/admin/documents/lt-r1-0");
        let (req, _) = w
            .build(Planned {
                ty: 3,
                plan: Plan::Get,
            })
            .unwrap();
        assert_eq!(req.method(), Method::GET);
        assert_eq!(req.uri(), "/p/healthz");
    }
}
