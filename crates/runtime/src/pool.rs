//! The worker pool: N Python workers; a request takes an idle one, a crashed or hung worker
//! is killed and replaced so it costs one request, never the replica.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{Mutex, mpsc};
use tracing::{info, warn};

use crate::worker::{RunOutcome, Worker, WorkerConfig, WorkerError};

/// Why a request got no answer from `run()`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScoreError {
    /// No worker became free in time.
    #[error("every scoring worker stayed busy for {0:?}")]
    Busy(Duration),
    /// `run()` did not answer in time; the worker was replaced.
    #[error("run() did not answer within {0} ms; its worker was restarted")]
    Timeout(u64),
    /// The worker died while answering; it was replaced.
    #[error("{0}; it was restarted")]
    Crashed(String),
}

/// The pool.
pub struct Pool {
    cfg: Arc<WorkerConfig>,
    idle_tx: mpsc::Sender<Worker>,
    idle_rx: Mutex<mpsc::Receiver<Worker>>,
    next_id: AtomicU64,
    alive: AtomicUsize,
}

impl Pool {
    /// Starts `n` workers; fails if any `init()` fails (like a container that crashes at start).
    pub async fn start(cfg: WorkerConfig, n: usize) -> Result<Arc<Pool>, WorkerError> {
        let n = n.max(1);
        let (idle_tx, idle_rx) = mpsc::channel(n);
        let cfg = Arc::new(cfg);
        let starts = (0..n).map(|i| {
            let cfg = Arc::clone(&cfg);
            tokio::spawn(async move { Worker::start(&cfg, i as u64).await })
        });
        let mut workers = Vec::new();
        for s in starts {
            match s.await {
                Ok(Ok(w)) => workers.push(w),
                Ok(Err(e)) => {
                    for w in workers {
                        w.kill().await;
                    }
                    return Err(e);
                }
                Err(e) => return Err(WorkerError::Crashed(e.to_string())),
            }
        }
        for w in workers {
            let _ = idle_tx.try_send(w);
        }
        info!(workers = n, "scoring workers ready");
        Ok(Arc::new(Pool {
            cfg,
            idle_tx,
            idle_rx: Mutex::new(idle_rx),
            next_id: AtomicU64::new(n as u64),
            alive: AtomicUsize::new(n),
        }))
    }

    /// How many workers are alive.
    pub fn alive(&self) -> usize {
        self.alive.load(Ordering::Relaxed)
    }

    /// Calls `run()` on an idle worker: waits up to `wait` for one, then up to `timeout` for the
    /// answer. The call runs in its own task, so a client that goes away mid-request never
    /// takes a worker with it: the worker always goes back to the pool (or is replaced).
    pub async fn score(
        self: &Arc<Self>,
        body: String,
        headers: BTreeMap<String, String>,
        wait: Duration,
        timeout: Duration,
    ) -> Result<RunOutcome, ScoreError> {
        let me = Arc::clone(self);
        tokio::spawn(async move { me.score_owned(&body, &headers, wait, timeout).await })
            .await
            .unwrap_or_else(|e| Err(ScoreError::Crashed(format!("the scoring task failed: {e}"))))
    }

    async fn score_owned(
        self: &Arc<Self>,
        body: &str,
        headers: &BTreeMap<String, String>,
        wait: Duration,
        timeout: Duration,
    ) -> Result<RunOutcome, ScoreError> {
        let taken =
            tokio::time::timeout(wait, async { self.idle_rx.lock().await.recv().await }).await;
        let mut worker = match taken {
            Ok(Some(w)) => w,
            _ => return Err(ScoreError::Busy(wait)),
        };
        match tokio::time::timeout(timeout, worker.call(body, headers)).await {
            Ok(Ok(outcome)) => {
                let _ = self.idle_tx.try_send(worker);
                Ok(outcome)
            }
            Ok(Err(e)) => {
                let status = worker.exited();
                self.replace(worker);
                let how = status.map(|s| format!(" ({s})")).unwrap_or_default();
                Err(ScoreError::Crashed(format!(
                    "the scoring worker crashed{how}: {}",
                    describe(&e)
                )))
            }
            Err(_) => {
                self.replace(worker);
                Err(ScoreError::Timeout(timeout.as_millis() as u64))
            }
        }
    }

    /// Kills a broken worker and starts another in the background.
    fn replace(self: &Arc<Self>, worker: Worker) {
        self.alive.fetch_sub(1, Ordering::Relaxed);
        let me = Arc::clone(self);
        tokio::spawn(async move {
            worker.kill().await;
            loop {
                let id = me.next_id.fetch_add(1, Ordering::Relaxed);
                match Worker::start(&me.cfg, id).await {
                    Ok(w) => {
                        me.alive.fetch_add(1, Ordering::Relaxed);
                        let _ = me.idle_tx.send(w).await;
                        info!(worker = id, "scoring worker replaced");
                        return;
                    }
                    Err(e) => {
                        warn!(error = %e, "cannot replace a scoring worker; retrying");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
}

fn describe(e: &WorkerError) -> String {
    match e {
        WorkerError::Crashed(m) if m.contains("early eof") || m.contains("unexpected end") => {
            "it exited while running run()".into()
        }
        other => other.to_string(),
    }
}
