//! The OpenAPI document, generated from the handlers' annotations and the
//! API types, so it cannot drift from the code.

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{admin, health, lm, search, visual};

#[derive(OpenApi)]
#[openapi(
    info(title = "mnemos", description = "Retrieval over explicit, editable memory."),
    paths(
        health::healthz, health::readyz, health::metrics, health::stats,
        search::search,
        admin::upsert, admin::get, admin::remove, admin::remove_batch,
        admin::rebuild_hypencoder_graph,
        lm::models, lm::generate, lm::score, lm::memory_jobs, lm::tiers,
        visual::classify, visual::upsert, visual::remove, visual::remove_class, visual::prune,
    ),
    components(schemas(
        mnemos_api::SearchRequest, mnemos_api::FusionRequest, mnemos_api::HypencoderRequest,
        mnemos_api::SearchResponse,
        mnemos_api::SearchHit, mnemos_api::SourceScore, mnemos_api::UpsertRequest,
        mnemos_api::DocumentIn, mnemos_api::UpsertResponse, mnemos_api::RemoveResponse,
        mnemos_api::BatchRemoveRequest, mnemos_api::BatchRemoveResponse,
        mnemos_api::RebuildGraphResponse,
        mnemos_api::DocumentOut, mnemos_api::StatsResponse, mnemos_api::ErrorResponse,
        mnemos_api::ErrorDetail, mnemos_api::VisualStats, mnemos_api::ClassifyRequest,
        mnemos_api::ClassifyResponse, mnemos_api::NeighborOut, mnemos_api::VisualItemIn,
        mnemos_api::VisualUpsertRequest, mnemos_api::VisualUpsertResponse,
        mnemos_api::VisualRemoveResponse, mnemos_api::PruneRequest, mnemos_api::PruneResponse,
        mnemos_api::PrunedItem, mnemos_api::DownweightedItem,
        mnemos_api::LmModelInfo, mnemos_api::LmModelsResponse, mnemos_api::LmGenerateRequest,
        mnemos_api::LmGenerateResponse, mnemos_api::LmScoreRequest, mnemos_api::LmScoreResponse,
        mnemos_api::LmMemoryMode, mnemos_api::LmMemoryUsed, mnemos_api::LmMemoryJob,
        mnemos_api::LmMemoryJobsResponse, mnemos_api::LmMissingBlock, mnemos_api::TiersResponse,
    )),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

pub async fn serve() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
