//! The image-encoder pool: at most `workers` images run through the
//! network at once, each on tokio's blocking pool, and at most `capacity`
//! images are accepted (waiting or running); beyond that a request is
//! refused (503) rather than queued without bound, and a request with more
//! images than that could never run, so it is a 400.
//!
//! Unlike the text pool there is no dynamic batching: EfficientNet-Lite0
//! runs fastest per image at batch 1–2 on one core (see
//! `mnemos_vision::EncoderOptions::max_batch`), so one image per job loses
//! nothing and keeps a slow request from holding up others.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use mnemos_models_core::ModelError;
use mnemos_vision::{ImageEncoder, ImageInput};
use tokio::sync::Semaphore;

use crate::{blocking, EngineError, Result};

pub struct ImagePool {
    encoder: Arc<ImageEncoder>,
    permits: Arc<Semaphore>,
    /// Images accepted and not yet encoded.
    pending: Arc<AtomicUsize>,
    capacity: usize,
}

/// Gives back an image's queue slot when its request finishes or is
/// dropped (a client that hangs up must not leak capacity).
struct Slots {
    pending: Arc<AtomicUsize>,
    n: usize,
}

impl Drop for Slots {
    fn drop(&mut self) {
        self.pending.fetch_sub(self.n, Ordering::AcqRel);
    }
}

impl ImagePool {
    pub fn new(encoder: Arc<ImageEncoder>, workers: usize, capacity: usize) -> Self {
        Self {
            encoder,
            permits: Arc::new(Semaphore::new(workers.max(1))),
            pending: Arc::new(AtomicUsize::new(0)),
            capacity: capacity.max(1),
        }
    }

    pub fn dim(&self) -> usize {
        self.encoder.dim()
    }

    /// Images waiting or being encoded.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Embeds encoded PNG/JPEG files, in order. Each comes with the name
    /// the request knows it by (`image`, `items[3].image`), which a bad
    /// image's [`EngineError::InvalidArgument`] starts with; every image is
    /// decoded before any is run through the network, so a bad one costs
    /// no inference.
    pub async fn embed(&self, images: Vec<(String, Vec<u8>)>) -> Result<Vec<Vec<f32>>> {
        let n = images.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        if n > self.capacity {
            return Err(EngineError::InvalidArgument(format!(
                "{n} images in one request; at most {} (visual.queue_capacity)",
                self.capacity
            )));
        }
        let before = self.pending.fetch_add(n, Ordering::AcqRel);
        let _slots = Slots {
            pending: Arc::clone(&self.pending),
            n,
        };
        if before + n > self.capacity {
            return Err(EngineError::Overloaded(format!(
                "the image encoder queue is full ({} waiting, capacity {}); retry later",
                before, self.capacity
            )));
        }
        let mut prepared = Vec::with_capacity(n);
        for (name, bytes) in images {
            let permit = self.acquire().await?;
            let encoder = Arc::clone(&self.encoder);
            prepared.push(tokio::spawn(async move {
                let out = blocking(move || {
                    let p = encoder
                        .preprocess(&ImageInput::Encoded(&bytes))
                        .map_err(|e| image_error(&name, e))?;
                    Ok((name, p))
                })
                .await;
                drop(permit);
                out
            }));
        }
        let mut batch = Vec::with_capacity(n);
        for task in prepared {
            batch.push(join(task).await??);
        }
        let mut running = Vec::with_capacity(n);
        for (name, image) in batch {
            let permit = self.acquire().await?;
            let encoder = Arc::clone(&self.encoder);
            running.push(tokio::spawn(async move {
                let out = blocking(move || {
                    let mut v = encoder
                        .embed_preprocessed(std::slice::from_ref(&image))
                        .map_err(|e| image_error(&name, e))?;
                    v.pop()
                        .ok_or_else(|| EngineError::Internal("the encoder returned nothing".into()))
                })
                .await;
                drop(permit);
                out
            }));
        }
        let mut out = Vec::with_capacity(n);
        for task in running {
            out.push(join(task).await??);
        }
        Ok(out)
    }

    async fn acquire(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|_| EngineError::Unavailable("the image encoder is shutting down".into()))
    }
}

async fn join<T>(task: tokio::task::JoinHandle<T>) -> Result<T> {
    task.await
        .map_err(|e| EngineError::Internal(format!("image task failed: {e}")))
}

/// Bad pixels are the caller's fault (400); anything else is ours.
fn image_error(name: &str, e: ModelError) -> EngineError {
    match e {
        ModelError::InvalidInput(m) => EngineError::InvalidArgument(format!("{name}: {m}")),
        other => EngineError::Model(other.to_string()),
    }
}
