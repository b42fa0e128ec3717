//! A rayon pool that model computation started from tokio's blocking
//! threads runs in.
//!
//! candle-nn's softmax and RMS and layer norms split their rows with
//! rayon's `par_iter` whatever their number. Called from a thread outside
//! any rayon pool, such as tokio's blocking threads, each of those calls is
//! handed to rayon's global pool and waited for: two thread switches per
//! call, and with `RAYON_NUM_THREADS=1` (set by the gateway so that matrix
//! products stay on one thread) that pool has one thread, shared by every
//! caller in the process. A language model calls them several times per
//! token: a profile of generation through the server put ~27% of its CPU
//! in the scheduler and ~22% on that one global thread. A job installed in
//! a [`ComputePool`] runs on one of the pool's threads, where the same
//! calls run inline: one hand-over per job instead of per operation.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::{blocking, EngineError, Result};

/// A fixed set of compute threads (one per concurrent job the caller
/// admits). `None` inside when the threads could not be started: jobs
/// then run on tokio's blocking pool, as before.
pub(crate) struct ComputePool(Option<rayon::ThreadPool>);

impl ComputePool {
    pub fn new(name: &'static str, threads: usize) -> Arc<Self> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(move |i| format!("mnemos-{name}-{i}"))
            .build();
        Arc::new(Self(match pool {
            Ok(pool) => Some(pool),
            Err(error) => {
                tracing::warn!(
                    %error,
                    name,
                    "could not start compute threads; jobs run on tokio's blocking pool"
                );
                None
            }
        }))
    }

    /// Runs `job` on one of the pool's threads; the caller's task waits
    /// without blocking any thread. A job that panics answers an internal
    /// error (rayon would abort the process on a panic in a spawned job).
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let Some(pool) = &self.0 else {
            return blocking(job).await;
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        pool.spawn(move || {
            // The caller may have gone away; nothing to tell then.
            let _ = tx.send(catch_unwind(AssertUnwindSafe(job)));
        });
        match rx.await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(EngineError::Internal("a compute job panicked".into())),
            Err(_) => Err(EngineError::Internal("a compute job was dropped".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;

    /// A job runs on a pool thread, and a `par_iter` inside it (what
    /// candle-nn's norms do) runs there too, not on rayon's global pool.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn parallel_loops_in_a_job_stay_on_its_thread() {
        let pool = ComputePool::new("test", 1);
        let (job_thread, loop_threads) = pool
            .run(|| {
                let here = std::thread::current().id();
                let threads: Vec<_> = (0..64)
                    .into_par_iter()
                    .map(|_| std::thread::current().id())
                    .collect();
                assert!(rayon::current_thread_index().is_some());
                Ok((here, threads))
            })
            .await
            .expect("the job runs");
        assert!(loop_threads.iter().all(|t| *t == job_thread));
        assert_ne!(job_thread, std::thread::current().id());
        let err = pool
            .run(|| -> Result<()> { Err(EngineError::InvalidArgument("no".into())) })
            .await;
        assert!(matches!(err, Err(EngineError::InvalidArgument(_))));
    }
}
