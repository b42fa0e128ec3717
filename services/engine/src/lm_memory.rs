//! The anchor's hierarchical memory bank at serving time (SPECS §5): embed
//! the request's text with the dense encoder, descend the bank's tree,
//! fetch the enabled blocks on the path and hand them to the anchor as
//! appended feed-forward units.

use std::path::Path;
use std::sync::{Arc, RwLock};

use mnemos_api::LmMemoryUsed;
use mnemos_llama::FfnUnits;
use mnemos_membank::Bank;
use mnemos_models_core::Encoder;

use crate::{EngineError, Result};

/// A memory bank and what routes texts into it.
pub struct AnchorMemory {
    bank: RwLock<Bank>,
    encoder: Arc<dyn Encoder>,
    min_similarity: Vec<f32>,
}

impl AnchorMemory {
    /// Opens the bank in `dir`, or `None` (with a log line) when there is
    /// none or no encoder to route with.
    pub fn open(
        dir: &Path,
        encoder: Option<Arc<dyn Encoder>>,
        min_similarity: &[f32],
    ) -> Result<Option<Self>> {
        if !dir.join(mnemos_membank::MANIFEST_FILE).is_file() {
            tracing::info!(dir = %dir.display(), "no memory bank; the anchor runs without memory");
            return Ok(None);
        }
        let Some(encoder) = encoder else {
            tracing::warn!(
                "a memory bank needs the dense encoder to route texts; it is not served"
            );
            return Ok(None);
        };
        let bank = Bank::open(dir).map_err(|e| {
            EngineError::Unavailable(format!(
                "cannot open the memory bank in {}: {e}",
                dir.display()
            ))
        })?;
        let (parameters, bytes) = bank.size();
        tracing::info!(
            dir = %dir.display(),
            blocks = bank.blocks().count(),
            parameters,
            bytes,
            "memory bank opened"
        );
        Ok(Some(Self {
            bank: RwLock::new(bank),
            encoder,
            min_similarity: min_similarity.to_vec(),
        }))
    }

    /// The memory for `text`: the merged units of the enabled blocks on its
    /// path (`None` when the path is empty) and what to report.
    pub fn fetch(&self, text: &str) -> Result<(Option<FfnUnits>, LmMemoryUsed)> {
        let vector = self
            .encoder
            .embed(&[text])
            .map_err(|e| EngineError::Model(e.to_string()))?
            .pop()
            .ok_or_else(|| EngineError::Internal("the encoder returned no vector".into()))?;
        let bank = self
            .bank
            .read()
            .map_err(|_| EngineError::Internal("memory bank lock poisoned".into()))?;
        let bank_error = |e: mnemos_membank::BankError| EngineError::Model(e.to_string());
        let path = bank
            .route(&vector, &self.min_similarity)
            .map_err(bank_error)?;
        let (units, used, params) = bank.path_units(&path).map_err(bank_error)?;
        let report = LmMemoryUsed {
            path: used.iter().map(|n| n.to_string()).collect(),
            params,
        };
        Ok(((!used.is_empty()).then_some(units), report))
    }
}
