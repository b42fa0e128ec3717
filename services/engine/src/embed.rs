//! The dedicated compute pool for the text encoder, with dynamic batching.
//!
//! Model inference is synchronous CPU work; running it on tokio workers would
//! stall every other request. Instead, `workers` OS threads each take the
//! first waiting job, then, when every other worker is busy too, drain a
//! fair share of whatever else is queued (up to `max_batch` texts), and run
//! one forward pass for all of them: under load, batches grow by
//! themselves; when idle, a lone query runs at once with no added wait.
//! A worker never batches while another sits idle: the idle one takes the
//! next job itself, and with the encoder's packed weights one text alone
//! costs about what it costs in a batch, so two passes side by side finish
//! sooner than one pass of both (see [`share`]). That holds where the
//! packed kernel runs (x86-64 with AVX2 and FMA); with candle's gemm
//! instead a lone text costs ~3× its share of a batch, and this rule
//! measured 17% below draining the queue (`loadtest/README.md`).
//! The queue is bounded so overload is refused (503) instead of growing
//! latency without limit.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use mnemos_models_core::Encoder;
use tokio::sync::oneshot;

use crate::{EngineError, Result};

type JobResult = std::result::Result<Vec<Vec<f32>>, String>;
type Reply = oneshot::Sender<JobResult>;

struct Job {
    texts: Vec<String>,
    reply: Reply,
}

/// Counters the gateway exports as metrics.
#[derive(Debug, Default)]
pub struct EmbedStats {
    /// Jobs waiting or running.
    pub queue_depth: AtomicUsize,
    /// Jobs in the queue that no worker has taken yet (steers batching).
    pub waiting: AtomicUsize,
    /// Workers running a batch (steers batching).
    pub busy_workers: AtomicUsize,
    pub batches: AtomicUsize,
    pub texts: AtomicUsize,
}

pub struct EmbedPool {
    tx: Option<SyncSender<Job>>,
    workers: Vec<JoinHandle<()>>,
    stats: Arc<EmbedStats>,
    dim: usize,
    max_batch: usize,
}

impl EmbedPool {
    pub fn new(
        encoder: Arc<dyn Encoder>,
        workers: usize,
        max_batch: usize,
        capacity: usize,
    ) -> Self {
        let max_batch = max_batch.max(1);
        let (tx, rx) = sync_channel::<Job>(capacity);
        let rx = Arc::new(Mutex::new(rx));
        let stats = Arc::new(EmbedStats::default());
        let dim = encoder.dim();
        let workers = workers.max(1);
        let handles = (0..workers)
            .map(|i| {
                let rx = Arc::clone(&rx);
                let enc = Arc::clone(&encoder);
                let stats = Arc::clone(&stats);
                std::thread::Builder::new()
                    .name(format!("mnemos-embed-{i}"))
                    .spawn(move || worker(&rx, enc.as_ref(), max_batch, workers, &stats))
                    .expect("spawning an embedding thread")
            })
            .collect();
        Self {
            tx: Some(tx),
            workers: handles,
            stats,
            dim,
            max_batch,
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn stats(&self) -> &EmbedStats {
        &self.stats
    }

    fn submit(&self, texts: Vec<String>) -> Result<oneshot::Receiver<JobResult>> {
        let (reply, rx) = oneshot::channel();
        let tx = self
            .tx
            .as_ref()
            .ok_or_else(|| EngineError::Unavailable("encoder is shutting down".into()))?;
        // Counted before the send, so a worker never takes a job it could
        // not subtract.
        self.stats.queue_depth.fetch_add(1, Ordering::Relaxed);
        self.stats.waiting.fetch_add(1, Ordering::SeqCst);
        match tx.try_send(Job { texts, reply }) {
            Ok(()) => Ok(rx),
            Err(e) => {
                self.stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
                self.stats.waiting.fetch_sub(1, Ordering::SeqCst);
                Err(match e {
                    TrySendError::Full(_) => {
                        EngineError::Overloaded("the encoder queue is full; retry later".into())
                    }
                    TrySendError::Disconnected(_) => {
                        EngineError::Unavailable("encoder workers stopped".into())
                    }
                })
            }
        }
    }

    /// Embeds texts on the pool; the caller's task waits without blocking a
    /// tokio worker. More texts than one batch holds are split into jobs of
    /// `max_batch`, so a bulk upsert keeps every worker busy. Jobs are cut
    /// from the texts sorted by length, so each batch pads to a similar
    /// length: cut in input order, a short text would be padded to its
    /// batch's longest. Vectors come back in input order.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>> {
        let n = texts.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        if n <= self.max_batch {
            return self.await_job(self.submit(texts)?).await;
        }
        // Bytes stand in for tokens: close enough to group similar lengths.
        let mut texts: Vec<(usize, String)> = texts.into_iter().enumerate().collect();
        texts.sort_by_key(|(_, t)| std::cmp::Reverse(t.len()));
        let mut pending = Vec::new();
        let mut texts = texts.into_iter().peekable();
        while texts.peek().is_some() {
            let (slots, job): (Vec<usize>, Vec<String>) =
                texts.by_ref().take(self.max_batch).unzip();
            pending.push((slots, self.submit(job)?));
        }
        let mut out = vec![Vec::new(); n];
        for (slots, rx) in pending {
            for (i, vector) in slots.into_iter().zip(self.await_job(rx).await?) {
                out[i] = vector;
            }
        }
        Ok(out)
    }

    async fn await_job(&self, rx: oneshot::Receiver<JobResult>) -> Result<Vec<Vec<f32>>> {
        rx.await
            .map_err(|_| EngineError::Internal("encoder worker dropped a request".into()))?
            .map_err(EngineError::Model)
    }
}

impl Drop for EmbedPool {
    fn drop(&mut self) {
        self.tx = None; // workers see a closed channel and exit
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

/// How many more queued jobs a worker that has just taken one adds to its
/// batch, with `busy` workers of `workers` running (itself included) and
/// `waiting` jobs left in the queue: none while another worker is idle
/// (that one takes the next job, and runs it in parallel), else an even
/// share of the queue, so that one worker does not take it all while the
/// others finish and find it empty.
fn share(waiting: usize, busy: usize, workers: usize) -> usize {
    if busy < workers {
        0
    } else {
        waiting.div_ceil(workers.max(1))
    }
}

fn worker(
    rx: &Mutex<Receiver<Job>>,
    encoder: &dyn Encoder,
    max_batch: usize,
    workers: usize,
    stats: &EmbedStats,
) {
    loop {
        let mut jobs = Vec::new();
        {
            let Ok(guard) = rx.lock() else { return };
            let Ok(first) = guard.recv() else { return };
            stats.waiting.fetch_sub(1, Ordering::SeqCst);
            let busy = stats.busy_workers.fetch_add(1, Ordering::SeqCst) + 1;
            let extra = share(stats.waiting.load(Ordering::SeqCst), busy, workers);
            let mut n = first.texts.len();
            jobs.push(first);
            while n < max_batch && jobs.len() <= extra {
                match guard.try_recv() {
                    Ok(job) => {
                        stats.waiting.fetch_sub(1, Ordering::SeqCst);
                        n += job.texts.len();
                        jobs.push(job);
                    }
                    Err(_) => break,
                }
            }
        }
        run_batch(jobs, encoder, max_batch, stats);
        stats.busy_workers.fetch_sub(1, Ordering::SeqCst);
    }
}

fn run_batch(jobs: Vec<Job>, encoder: &dyn Encoder, max_batch: usize, stats: &EmbedStats) {
    let texts: Vec<&str> = jobs
        .iter()
        .flat_map(|j| j.texts.iter().map(String::as_str))
        .collect();
    let mut vectors = Vec::with_capacity(texts.len());
    let mut failure = None;
    for chunk in texts.chunks(max_batch) {
        let span = tracing::debug_span!("embed_batch", size = chunk.len());
        let _enter = span.enter();
        match encoder.embed(chunk) {
            Ok(v) => vectors.extend(v),
            Err(e) => {
                failure = Some(e.to_string());
                break;
            }
        }
        stats.batches.fetch_add(1, Ordering::Relaxed);
    }
    stats.texts.fetch_add(texts.len(), Ordering::Relaxed);
    let mut rest = vectors.into_iter();
    for job in jobs {
        stats.queue_depth.fetch_sub(1, Ordering::Relaxed);
        let answer = match &failure {
            Some(msg) => Err(msg.clone()),
            None => Ok(rest.by_ref().take(job.texts.len()).collect()),
        };
        let _ = job.reply.send(answer); // the caller may have gone away
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use mnemos_text::{EncoderOptions, MiniLmEncoder};

    use super::*;

    #[test]
    fn batches_only_when_every_worker_is_busy() {
        // Another worker idle: run alone, whatever waits.
        assert_eq!(share(10, 1, 2), 0);
        assert_eq!(share(0, 3, 4), 0);
        // All busy: an even share of the queue, rounded up.
        assert_eq!(share(10, 2, 2), 5);
        assert_eq!(share(1, 2, 2), 1);
        assert_eq!(share(0, 2, 2), 0);
        assert_eq!(share(7, 1, 1), 7);
    }

    fn encoder() -> Option<Arc<dyn Encoder>> {
        let dir = std::env::var_os("MNEMOS_MODEL_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../../models/weights/all-MiniLM-L6-v2")
            });
        if !dir.join("model.safetensors").is_file() {
            eprintln!(
                "skipping: no model in {} (scripts/install-models.sh)",
                dir.display()
            );
            return None;
        }
        let enc = MiniLmEncoder::load(&dir, EncoderOptions::default()).expect("model loads");
        Some(Arc::new(enc))
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// Bulk embeddings are cut into jobs by length, not input order; every
    /// vector must still come back at its text's position.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn bulk_embedding_keeps_input_order() {
        let Some(enc) = encoder() else { return };
        let texts: Vec<String> = (0..23)
            .map(|i| {
                let words = [(i * 7) % 23 + 1, 40, 2][i % 3];
                format!("text {i}: ")
                    + &(0..words)
                        .map(|w| format!("w{}", w * i))
                        .collect::<Vec<_>>()
                        .join(" ")
            })
            .collect();
        let alone: Vec<Vec<f32>> = texts
            .iter()
            .map(|t| enc.embed(&[t.as_str()]).expect("embeds").remove(0))
            .collect();
        let pool = EmbedPool::new(Arc::clone(&enc), 2, 4, 64);
        let bulk = pool.embed(texts.clone()).await.expect("pool embeds");
        assert_eq!(bulk.len(), texts.len());
        for (i, (a, b)) in alone.iter().zip(&bulk).enumerate() {
            assert!(cosine(a, b) > 0.9999, "text {i} came back out of place");
        }
        // A small request (one job) goes the short way, in order too.
        let two = pool.embed(texts[..2].to_vec()).await.expect("pool embeds");
        assert!(cosine(&two[1], &alone[1]) > 0.9999);
    }
}
