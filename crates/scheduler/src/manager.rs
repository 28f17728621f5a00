//! The job manager: the only writer of job state. It feeds events to the admission reactor,
//! acts on the effects through the backend, and recovers every unfinished job after a restart.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use berth_core::job::{FailureKind, JobRecord, JobState, JobStatus};
use berth_store::{Kind, Store, StoreError, Stored};
use time::OffsetDateTime;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::backend::{Backend, Phase, Reattach, RunHandle};
use crate::reactor::{Reactor, Recorded};
use crate::supervisor::{Ending, RunResult};

/// The pool every local compute draws from: this machine.
pub const LOCAL_POOL: &str = "local";

/// Errors a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum ManagerError {
    /// No such job.
    #[error("job `{0}` does not exist")]
    NotFound(String),
    /// The job already ended.
    #[error("job `{name}` already finished ({status}); there is nothing to cancel")]
    AlreadyFinished {
        /// Job.
        name: String,
        /// Its final status.
        status: JobStatus,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Drives jobs from submission to their end.
pub struct JobManager<B: Backend> {
    store: Store,
    backend: B,
    reactor: Mutex<Reactor>,
    cancels: Mutex<HashSet<String>>,
    /// Woken on every cancel, so a job being prepared stops at once.
    cancel_signal: tokio::sync::Notify,
    /// Why a job its backend queues is waiting (the cluster scheduler's message).
    waiting: Mutex<HashMap<String, String>>,
    changed: watch::Sender<u64>,
}

impl<B: Backend> JobManager<B> {
    /// A manager whose local pool has `capacity` and these GPU ids.
    pub fn new(
        store: Store,
        backend: B,
        capacity: berth_core::Resources,
        gpu_ids: Vec<String>,
    ) -> Arc<Self> {
        let mut reactor = Reactor::default();
        reactor.set_pool(LOCAL_POOL, capacity, gpu_ids);
        Arc::new(JobManager {
            store,
            backend,
            reactor: Mutex::new(reactor),
            cancels: Mutex::new(HashSet::new()),
            cancel_signal: tokio::sync::Notify::new(),
            waiting: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
        })
    }

    /// A receiver that ticks whenever any job changes state.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Why a queued job waits, if it is queued.
    pub fn queue_reason(&self, job: &str) -> Option<String> {
        if let Some(r) = self.waiting.lock().ok()?.get(job) {
            return Some(r.clone());
        }
        self.reactor.lock().ok()?.queue_reason(job)
    }

    /// Total and free capacity of a pool.
    pub fn capacity(&self, pool: &str) -> Option<(berth_core::Resources, berth_core::Resources)> {
        self.reactor.lock().ok()?.capacity(pool)
    }

    /// Stores a new job (durably, before returning) and queues it.
    pub async fn submit(
        self: &Arc<Self>,
        mut record: JobRecord,
    ) -> Result<Stored<JobRecord>, ManagerError> {
        record.state = JobState::Queued;
        let (resource_version, seq) = self
            .store
            .insert(
                Kind::Job,
                &record.name,
                Some(JobStatus::Queued.as_str()),
                &record,
            )
            .await?;
        let stored = Stored {
            value: record,
            resource_version,
            seq,
        };
        self.enqueue(&stored);
        self.notify();
        Ok(stored)
    }

    fn enqueue(self: &Arc<Self>, job: &Stored<JobRecord>) {
        let mut fx = Recorded::default();
        if self.backend.queues_itself(&job.value) {
            // The cluster's scheduler admits it; `wait` reports while it is queued there.
            fx.admitted.push((job.value.name.clone(), Vec::new(), None));
            return self.apply(fx);
        }
        if let Ok(mut r) = self.reactor.lock() {
            r.on_submitted(
                &mut fx,
                &job.value.name,
                LOCAL_POOL,
                job.value.instance_type.requests,
                job.value.spec.priority,
                job.seq as u64,
            );
        }
        self.apply(fx);
    }

    fn apply(self: &Arc<Self>, fx: Recorded) {
        for (job, gpus, note) in fx.admitted {
            let me = Arc::clone(self);
            tokio::spawn(async move { me.run(job, gpus, note).await });
        }
        for (job, reason) in fx.rejected {
            let me = Arc::clone(self);
            tokio::spawn(async move {
                let now = OffsetDateTime::now_utc();
                let failed = JobState::Failed {
                    started_at: None,
                    ended_at: now,
                    exit_code: None,
                    kind: FailureKind::Unschedulable,
                    message: reason,
                };
                if let Err(e) = me.set_state(&job, |_| Some(failed.clone())).await {
                    warn!(job = %job, error = %e, "cannot record an unschedulable job");
                }
            });
        }
    }

    fn finished(self: &Arc<Self>, job: &str) {
        if let Ok(mut w) = self.waiting.lock() {
            w.remove(job);
        }
        let mut fx = Recorded::default();
        if let Ok(mut r) = self.reactor.lock() {
            r.on_finished(&mut fx, job);
        }
        self.apply(fx);
    }

    fn cancel_requested(&self, job: &str) -> bool {
        self.cancels.lock().is_ok_and(|c| c.contains(job))
    }

    /// Returns once a cancel of `job` has been asked for.
    async fn canceled(&self, job: &str) {
        loop {
            let notified = self.cancel_signal.notified();
            tokio::pin!(notified);
            // Registered before the check, so a cancel between the two is not missed.
            notified.as_mut().enable();
            if self.cancel_requested(job) {
                return;
            }
            notified.await;
        }
    }

    async fn run(self: Arc<Self>, name: String, gpus: Vec<String>, note: Option<String>) {
        let admitted_at = OffsetDateTime::now_utc();
        let preparing = JobState::Preparing {
            admitted_at,
            gpus: gpus.clone(),
            note: note.clone(),
        };
        let job = match self
            .set_state(&name, |cur| {
                (cur.status() == JobStatus::Queued).then(|| preparing.clone())
            })
            .await
        {
            Ok(Some(j)) => j,
            Ok(None) => return self.finished(&name),
            Err(e) => {
                warn!(job = %name, error = %e, "cannot mark job preparing");
                return self.finished(&name);
            }
        };
        let run = match self.start(&name, &job, &gpus).await {
            Ok(run) => run,
            Err(result) => {
                self.end(&name, None, result).await;
                return self.finished(&name);
            }
        };
        if self.cancel_requested(&name) {
            self.backend.cancel(&job).await;
        }
        info!(job = %name, run = %run, "job launched");
        let (result, started_at) = self.watch(&job, run, gpus, note).await;
        self.end(&name, started_at, result).await;
        self.finished(&name);
    }

    /// Waits for a launched job to end, recording the phases its backend reports on the way.
    /// Returns how it ended and when its command started, if it did.
    async fn watch(
        &self,
        job: &JobRecord,
        run: RunHandle,
        gpus: Vec<String>,
        note: Option<String>,
    ) -> (RunResult, Option<OffsetDateTime>) {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let wait = self.backend.wait(job, run, tx);
        tokio::pin!(wait);
        let mut started_at = job.state.started_at();
        loop {
            tokio::select! {
                result = &mut wait => {
                    while let Ok(phase) = rx.try_recv() {
                        self.on_phase(&job.name, phase, &mut started_at, run, &gpus, &note).await;
                    }
                    return (result, started_at);
                }
                Some(phase) = rx.recv() => {
                    self.on_phase(&job.name, phase, &mut started_at, run, &gpus, &note).await;
                }
            }
        }
    }

    async fn on_phase(
        &self,
        name: &str,
        phase: Phase,
        started_at: &mut Option<OffsetDateTime>,
        run: RunHandle,
        gpus: &[String],
        note: &Option<String>,
    ) {
        let next = match phase {
            Phase::Queued(reason) => {
                let changed = self
                    .waiting
                    .lock()
                    .is_ok_and(|mut w| w.insert(name.to_string(), reason.clone()) != Some(reason));
                if changed {
                    // Watchers show the new reason even when the status stays Queued.
                    self.notify();
                }
                JobState::Queued
            }
            Phase::Starting(_) => {
                if let Ok(mut w) = self.waiting.lock() {
                    w.remove(name);
                }
                JobState::Preparing {
                    admitted_at: OffsetDateTime::now_utc(),
                    gpus: gpus.to_vec(),
                    note: note.clone(),
                }
            }
            Phase::Running => {
                if let Ok(mut w) = self.waiting.lock() {
                    w.remove(name);
                }
                JobState::Running {
                    started_at: *started_at.get_or_insert_with(OffsetDateTime::now_utc),
                    gpus: gpus.to_vec(),
                    supervisor_pid: run.supervisor_pid().unwrap_or(0),
                    note: note.clone(),
                }
            }
        };
        let result = self
            .set_state(name, |cur| {
                (cur.status() != next.status()).then(|| next.clone())
            })
            .await;
        match result {
            Ok(Some(_)) => info!(job = %name, status = %next.status(), "job phase"),
            Ok(None) => {}
            Err(e) => warn!(job = %name, error = %e, "cannot record a job's phase"),
        }
    }

    /// Prepares and launches a job; on failure says how it ended and why.
    async fn start(
        &self,
        name: &str,
        job: &JobRecord,
        gpus: &[String],
    ) -> Result<RunHandle, RunResult> {
        // A cancel drops the preparation: downloads and environment builds stop where they are.
        tokio::select! {
            prepared = self.backend.prepare(job, gpus) => {
                prepared.map_err(|e| RunResult::not_started(Ending::PreparationFailed, e.to_string()))?;
            }
            () = self.canceled(name) => {
                return Err(RunResult::not_started(Ending::Canceled, "canceled while preparing"));
            }
        }
        if self.cancel_requested(name) {
            return Err(RunResult::not_started(Ending::Canceled, "canceled"));
        }
        self.backend
            .launch(job)
            .await
            .map_err(|e| RunResult::not_started(Ending::StartFailed, e.to_string()))
    }

    async fn end(&self, name: &str, started_at: Option<OffsetDateTime>, result: RunResult) {
        let ended_at = OffsetDateTime::now_utc();
        if result.ending == Ending::Succeeded
            && let Some(s) = started_at
        {
            // Outputs are written in place on the local compute, so finalizing only records it.
            let _ = self
                .set_state(name, |_| {
                    Some(JobState::Finalizing {
                        started_at: s,
                        exit_code: 0,
                    })
                })
                .await;
        }
        let state = match (result.ending, result.ending.failure_kind()) {
            (Ending::Succeeded, _) => JobState::Completed {
                started_at: started_at.unwrap_or(ended_at),
                ended_at,
            },
            (Ending::Canceled, _) | (_, None) => JobState::Canceled {
                started_at,
                ended_at,
            },
            (_, Some(kind)) => JobState::Failed {
                started_at,
                ended_at,
                exit_code: result.exit_code,
                kind,
                message: result.message,
            },
        };
        match self.set_state(name, |_| Some(state.clone())).await {
            Ok(Some(job)) => {
                // The end is stored: what only a running job needs can go.
                let dir = crate::workdir::JobDir::new(&job.workdir);
                let _ = tokio::task::spawn_blocking(move || dir.tidy_after_end()).await;
            }
            Ok(None) => {}
            Err(e) => warn!(job = %name, error = %e, "cannot record the end of a job"),
        }
        if let Ok(mut c) = self.cancels.lock() {
            c.remove(name);
        }
    }

    /// Cancels a job: a queued one at once, a started one by stopping its process tree.
    pub async fn cancel(self: &Arc<Self>, name: &str) -> Result<JobStatus, ManagerError> {
        let job: Stored<JobRecord> = self
            .store
            .get(Kind::Job, name)
            .await?
            .ok_or_else(|| ManagerError::NotFound(name.to_string()))?;
        let status = job.value.state.status();
        if status.is_terminal() {
            return Err(ManagerError::AlreadyFinished {
                name: name.to_string(),
                status,
            });
        }
        let was_queued = self.reactor.lock().is_ok_and(|mut r| r.on_dequeued(name));
        if was_queued {
            let now = OffsetDateTime::now_utc();
            self.set_state(name, |_| {
                Some(JobState::Canceled {
                    started_at: None,
                    ended_at: now,
                })
            })
            .await?;
            return Ok(JobStatus::Canceled);
        }
        if let Ok(mut c) = self.cancels.lock() {
            c.insert(name.to_string());
        }
        // Kept in the record before acting, so that a server that dies now still stops it.
        self.change_record(name, |job| {
            let first = !job.cancel_requested;
            job.cancel_requested = true;
            first
        })
        .await?;
        self.cancel_signal.notify_waiters();
        self.backend.cancel(&job.value).await;
        Ok(status)
    }

    /// Re-queues and re-attaches every unfinished job; call once at start-up.
    pub async fn recover(self: &Arc<Self>) -> Result<(), ManagerError> {
        let jobs: Vec<Stored<JobRecord>> = self
            .store
            .list_with_status(Kind::Job, &JobStatus::active_names())
            .await?;
        let mut requeue = Vec::new();
        for job in jobs {
            let name = job.value.name.clone();
            if job.value.is_driven() {
                // A sweep or pipeline runs no process: the server's driver takes it up again.
                continue;
            }
            let canceled = job.value.cancel_requested;
            if canceled && let Ok(mut c) = self.cancels.lock() {
                c.insert(name.clone());
            }
            match job.value.state.status() {
                JobStatus::NotStarted | JobStatus::Queued
                    if canceled && !self.backend.queues_itself(&job.value) =>
                {
                    self.cancel_unstarted(&name, job.value.state.started_at())
                        .await?;
                }
                JobStatus::NotStarted => requeue.push(job),
                JobStatus::Queued if !self.backend.queues_itself(&job.value) => requeue.push(job),
                JobStatus::Queued
                | JobStatus::Preparing
                | JobStatus::Running
                | JobStatus::Finalizing => {
                    match self.backend.reattach(&job.value).await {
                        Reattach::Running(run) => {
                            if !self.backend.queues_itself(&job.value)
                                && let Ok(mut r) = self.reactor.lock()
                            {
                                r.restore_running(
                                    &name,
                                    LOCAL_POOL,
                                    job.value.instance_type.requests,
                                    gpus_of(&job.value),
                                );
                            }
                            info!(job = %name, run = %run, "re-attached to a running job");
                            if canceled {
                                info!(job = %name, "its cancel was asked for before the restart: stopping it");
                                self.backend.cancel(&job.value).await;
                            }
                            let me = Arc::clone(self);
                            tokio::spawn(async move {
                                let (result, started) =
                                    me.watch(&job.value, run, gpus_of(&job.value), None).await;
                                me.end(&name, started, result).await;
                                me.finished(&name);
                            });
                        }
                        Reattach::Finished(result) => {
                            let started = job.value.state.started_at();
                            self.end(&name, started, result).await;
                        }
                        Reattach::Lost if canceled => {
                            self.cancel_unstarted(&name, job.value.state.started_at())
                                .await?;
                        }
                        Reattach::Lost
                            if matches!(
                                job.value.state.status(),
                                JobStatus::Preparing | JobStatus::Queued
                            ) =>
                        {
                            // Nothing ran yet: queue it again.
                            self.set_state(&name, |_| Some(JobState::Queued)).await?;
                            requeue.push(job);
                        }
                        Reattach::Lost => {
                            let now = OffsetDateTime::now_utc();
                            let state = JobState::Failed {
                            started_at: job.value.state.started_at(),
                            ended_at: now,
                            exit_code: None,
                            kind: FailureKind::ServerRestarted,
                            message: "server restarted: the job's process was gone and left no result; submit it again".into(),
                        };
                            self.set_state(&name, |_| Some(state.clone())).await?;
                        }
                    }
                }
                _ => {}
            }
        }
        for job in requeue {
            self.enqueue(&job);
        }
        Ok(())
    }

    /// Ends a job that had not started, or whose process is gone, as canceled.
    async fn cancel_unstarted(
        &self,
        name: &str,
        started_at: Option<OffsetDateTime>,
    ) -> Result<(), ManagerError> {
        let ended_at = OffsetDateTime::now_utc();
        self.set_state(name, |_| {
            Some(JobState::Canceled {
                started_at,
                ended_at,
            })
        })
        .await?;
        if let Ok(mut c) = self.cancels.lock() {
            c.remove(name);
        }
        Ok(())
    }

    /// Reads, changes and writes a job's state, retrying if someone else wrote in between.
    /// `change` returns `None` to leave the job as it is.
    async fn set_state(
        &self,
        name: &str,
        change: impl Fn(&JobState) -> Option<JobState>,
    ) -> Result<Option<JobRecord>, ManagerError> {
        self.change_record(name, |job| match change(&job.state) {
            Some(next) => {
                job.state = next;
                true
            }
            None => false,
        })
        .await
    }

    /// Reads, changes and writes an unfinished job's record, retrying if someone else wrote in
    /// between. `change` returns `false` to leave the job as it is.
    async fn change_record(
        &self,
        name: &str,
        mut change: impl FnMut(&mut JobRecord) -> bool,
    ) -> Result<Option<JobRecord>, ManagerError> {
        loop {
            let Some(mut job) = self.store.get::<JobRecord>(Kind::Job, name).await? else {
                return Err(ManagerError::NotFound(name.to_string()));
            };
            if job.value.state.status().is_terminal() || !change(&mut job.value) {
                return Ok(None);
            }
            let status = job.value.state.status().as_str();
            match self
                .store
                .update(
                    Kind::Job,
                    name,
                    job.resource_version,
                    Some(status),
                    &job.value,
                )
                .await
            {
                Ok(_) => {
                    self.notify();
                    return Ok(Some(job.value));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Wakes whoever follows job changes (log streams, drivers).
    pub fn notify(&self) {
        self.changed.send_modify(|v| *v += 1);
    }
}

/// The GPUs a job was given, from its state.
fn gpus_of(job: &JobRecord) -> Vec<String> {
    match &job.state {
        JobState::Running { gpus, .. } | JobState::Preparing { gpus, .. } => gpus.clone(),
        _ => Vec::new(),
    }
}

#[cfg(test)]
#[path = "manager_tests.rs"]
mod tests;
