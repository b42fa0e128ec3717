//! Background retraining of memory blocks. Unlearning disables a block at
//! once (durably, before the admin call returns); this worker then trains
//! it again on the documents still under its node, as `mnemos train
//! memory` trained it, and enables it by saving the new block. Adding a
//! document queues the blocks on its path the same way.
//!
//! One worker thread (training takes whole cores for minutes); shallow
//! levels first, so a leaf is retrained over its retrained ancestors; a
//! node is queued at most once. A job whose node's documents changed while
//! it ran (another removal or addition) is superseded: its block is
//! dropped, never saved, and the node queued again.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Instant;

use mnemos_api::{LmMemoryJob, LmMemoryJobsResponse};
use mnemos_llama::{train_units, Llama, TrainText, UnitTraining};
use mnemos_membank::{Bank, BlockMeta, NodeId};

/// Finished jobs kept for `GET /v1/admin/lm/memory/jobs`.
const HISTORY: usize = 100;

/// A job about to run: nothing counted yet.
fn fresh_job(node: &NodeId, reason: &str) -> LmMemoryJob {
    LmMemoryJob {
        node: node.to_string(),
        reason: reason.into(),
        state: "running".into(),
        documents: 0,
        steps: 0,
        total_steps: 0,
        loss: None,
        secs: 0.0,
        error: None,
    }
}

#[derive(Default)]
struct State {
    /// (level, node): shallow levels first.
    pending: BTreeSet<(usize, NodeId)>,
    reasons: std::collections::HashMap<NodeId, &'static str>,
    running: Option<LmMemoryJob>,
    finished: VecDeque<LmMemoryJob>,
    shutdown: bool,
}

/// The queue and its worker.
pub struct Jobs {
    state: Mutex<State>,
    wake: Condvar,
}

impl Jobs {
    /// Starts the worker over `bank` with `model` (the anchor, f32).
    pub fn start(bank: Arc<RwLock<Bank>>, model: Arc<Llama>) -> Arc<Jobs> {
        let jobs = Arc::new(Jobs {
            state: Mutex::default(),
            wake: Condvar::new(),
        });
        let worker = Arc::clone(&jobs);
        let spawned = std::thread::Builder::new()
            .name("memory-bank-train".into())
            .spawn(move || worker.run(&bank, &model));
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the memory-bank worker; blocks stay disabled");
        }
        jobs
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Queues `nodes` (no duplicates).
    pub fn queue(&self, nodes: &[NodeId], reason: &'static str) {
        let mut s = self.state();
        for n in nodes {
            if !n.is_root() {
                s.pending.insert((n.level(), n.clone()));
                s.reasons.insert(n.clone(), reason);
            }
        }
        drop(s);
        self.wake.notify_all();
    }

    /// What is waiting, running and done; `disabled` from the bank.
    pub fn report(&self, disabled: Vec<String>) -> LmMemoryJobsResponse {
        let s = self.state();
        LmMemoryJobsResponse {
            pending: s.pending.iter().map(|(_, n)| n.to_string()).collect(),
            running: s.running.clone(),
            finished: s.finished.iter().cloned().collect(),
            disabled,
        }
    }

    /// Stops the worker after its current job.
    pub fn shutdown(&self) {
        self.state().shutdown = true;
        self.wake.notify_all();
    }

    fn run(&self, bank: &RwLock<Bank>, model: &Llama) {
        loop {
            let (node, reason) = {
                let mut s = self.state();
                while s.pending.is_empty() && !s.shutdown {
                    s = self.wake.wait(s).unwrap_or_else(PoisonError::into_inner);
                }
                if s.shutdown {
                    return;
                }
                let Some((_, node)) = s.pending.pop_first() else {
                    continue;
                };
                let reason = s.reasons.remove(&node).unwrap_or("unlearn");
                // Running from the moment it leaves the queue: a reader
                // never sees it in neither place.
                s.running = Some(fresh_job(&node, reason));
                (node, reason)
            };
            let job = self.retrain(bank, model, &node, reason);
            if job.state == "superseded" {
                self.queue(std::slice::from_ref(&node), reason);
            }
            let mut s = self.state();
            s.running = None;
            s.finished.push_back(job);
            while s.finished.len() > HISTORY {
                s.finished.pop_front();
            }
        }
    }

    fn set_running(&self, job: &LmMemoryJob) {
        self.state().running = Some(job.clone());
    }

    /// Trains `node`'s block on the documents under it now.
    fn retrain(
        &self,
        bank: &RwLock<Bank>,
        model: &Llama,
        node: &NodeId,
        reason: &'static str,
    ) -> LmMemoryJob {
        let started = Instant::now();
        let mut job = fresh_job(node, reason);
        let result = self.train(bank, model, node, &mut job);
        job.secs = started.elapsed().as_secs_f64();
        match result {
            Ok(state) => job.state = state.into(),
            Err(e) => {
                tracing::warn!(node = %node, error = %e, "memory block retraining failed");
                job.state = "failed".into();
                job.error = Some(e);
            }
        }
        tracing::info!(node = %node, state = %job.state, secs = job.secs, "memory block job finished");
        job
    }

    fn train(
        &self,
        bank: &RwLock<Bank>,
        model: &Llama,
        node: &NodeId,
        job: &mut LmMemoryJob,
    ) -> Result<&'static str, String> {
        let err = |e: &dyn std::fmt::Display| e.to_string();
        // Everything the run needs, read under the lock, then released.
        let (docs, texts, frozen, init, training, first, max_tokens) = {
            let b = bank.read().map_err(|_| "bank lock poisoned".to_string())?;
            let docs = b.tree().documents_under(node);
            let level = node.level();
            let cfg = b.config();
            let training = cfg.training.get(level - 1).cloned().ok_or_else(|| {
                format!("the bank records no training settings for level {level}")
            })?;
            let first = cfg.layers.iter().copied().min().unwrap_or(0);
            let texts: Vec<String> = docs
                .iter()
                .filter_map(|d| b.texts().get(d).cloned())
                .collect();
            let ancestors: Vec<NodeId> = node.path().into_iter().filter(|n| n != node).collect();
            let (frozen, _, _) = b.path_units(&ancestors).map_err(|e| err(&e))?;
            let init = b.init_block(node, 0).map_err(|e| err(&e))?;
            (
                docs,
                texts,
                frozen,
                init,
                training,
                first,
                cfg.max_tokens.max(2),
            )
        };
        job.documents = docs.len();
        if docs.is_empty() {
            // Its last document was unlearned: nothing left to hold.
            let mut b = bank.write().map_err(|_| "bank lock poisoned".to_string())?;
            if b.tree().documents_under(node).is_empty() {
                b.drop_block(node).map_err(|e| err(&e))?;
                return Ok("dropped");
            }
            return Ok("superseded");
        }
        if texts.is_empty() {
            return Err(format!(
                "the bank holds no text for the {} documents under {node}",
                docs.len()
            ));
        }
        let batches = texts.len().div_ceil(training.batch.max(1));
        job.total_steps = batches * training.epochs;
        self.set_running(job);
        let mut prepared = Vec::with_capacity(texts.len());
        for t in &texts {
            let mut ids = model.encode(t).map_err(|e| err(&e))?;
            ids.truncate(max_tokens);
            if ids.len() >= 2 {
                prepared.push(TrainText::prepare(model, &ids, first).map_err(|e| err(&e))?);
            }
        }
        let refs: Vec<&TrainText> = prepared.iter().collect();
        let config = UnitTraining {
            epochs: training.epochs,
            batch: training.batch,
            learning_rate: training.learning_rate,
            seed: node.level() as u64,
            ..UnitTraining::default()
        };
        let frozen = (!frozen.is_empty()).then_some(frozen);
        let mut progress = job.clone();
        let (units, report) = train_units(
            model,
            &refs,
            first,
            frozen.as_ref(),
            &init,
            &config,
            |step, _| {
                progress.steps = step;
                self.set_running(&progress);
            },
        )
        .map_err(|e| err(&e))?;
        job.steps = report.steps;
        job.loss = Some(report.last_epoch_loss);

        let mut b = bank.write().map_err(|_| "bank lock poisoned".to_string())?;
        if b.tree().documents_under(node) != docs {
            return Ok("superseded");
        }
        let meta = BlockMeta {
            node: node.clone(),
            trained_on: docs,
            steps: report.steps,
            final_loss: Some(report.last_epoch_loss),
            train_secs: report.secs,
            disabled: false,
            version: 0,
        };
        b.save_block(node, &units, meta).map_err(|e| err(&e))?;
        Ok("done")
    }
}
