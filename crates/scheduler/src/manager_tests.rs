//! A cancel the manager accepted is kept in the job's record, so that a server which dies
//! before the job stops still stops it after its restart: a scripted backend stands in for
//! the machine (a preparation that never ends, a run that ends when canceled).

use std::sync::Mutex;
use std::time::Duration;

use berth_core::job::{JobRecord, JobState, JobStatus};
use berth_core::spec::instance_type::InstanceType;
use berth_store::{Kind, Store};
use time::OffsetDateTime;

use super::JobManager;
use crate::backend::{Backend, BackendError, Progress, Reattach, RunHandle};
use crate::supervisor::{Ending, RunResult};

/// What re-attaching finds.
#[derive(Clone, Copy)]
enum Found {
    Running,
    Lost,
}

/// Prepares for ever; a launched or re-attached run ends only when canceled (a cancel stays
/// asked for, as the local backend's flag file does).
struct Scripted {
    found: Found,
    canceled: tokio::sync::watch::Sender<bool>,
    cancels: Mutex<Vec<String>>,
    prepared: Mutex<Vec<String>>,
}

impl Scripted {
    fn new(found: Found) -> Scripted {
        Scripted {
            found,
            canceled: tokio::sync::watch::channel(false).0,
            cancels: Mutex::new(Vec::new()),
            prepared: Mutex::new(Vec::new()),
        }
    }
}

impl Backend for &'static Scripted {
    async fn prepare(&self, job: &JobRecord, _gpus: &[String]) -> Result<(), BackendError> {
        self.prepared.lock().unwrap().push(job.name.clone());
        std::future::pending().await
    }

    async fn launch(&self, _job: &JobRecord) -> Result<RunHandle, BackendError> {
        Ok(RunHandle::remote())
    }

    async fn wait(&self, _job: &JobRecord, _run: RunHandle, _progress: Progress) -> RunResult {
        let _ = self.canceled.subscribe().wait_for(|c| *c).await;
        RunResult::not_started(Ending::Canceled, "canceled")
    }

    async fn cancel(&self, job: &JobRecord) {
        self.cancels.lock().unwrap().push(job.name.clone());
        self.canceled.send_replace(true);
    }

    async fn reattach(&self, _job: &JobRecord) -> Reattach {
        match self.found {
            Found::Running => Reattach::Running(RunHandle::remote()),
            Found::Lost => Reattach::Lost,
        }
    }
}

fn record(name: &str, state: JobState) -> JobRecord {
    let mut job =
        crate::testing::job_record(name, "command: sleep 600\n", &format!("/nowhere/{name}"));
    job.state = state;
    job
}

fn manager(
    store: &Store,
    found: Found,
) -> (
    std::sync::Arc<JobManager<&'static Scripted>>,
    &'static Scripted,
) {
    let backend: &'static Scripted = Box::leak(Box::new(Scripted::new(found)));
    let capacity = InstanceType::default_type().requests;
    (
        JobManager::new(store.clone(), backend, capacity, Vec::new()),
        backend,
    )
}

async fn stored(store: &Store, name: &str) -> JobRecord {
    store
        .get::<JobRecord>(Kind::Job, name)
        .await
        .unwrap()
        .unwrap()
        .value
}

/// Waits (bounded) until the job has `status`.
async fn until<B: Backend>(m: &JobManager<B>, store: &Store, name: &str, status: JobStatus) {
    let mut changes = m.subscribe();
    let reached = async {
        while stored(store, name).await.state.status() != status {
            changes.changed().await.unwrap();
        }
    };
    tokio::time::timeout(Duration::from_secs(30), reached)
        .await
        .unwrap_or_else(|_| panic!("{name} never became {status}"));
}

/// A job the dead server was starting or running, with the cancel it had accepted.
async fn left_behind(store: &Store, state: JobState) {
    let mut job = record("j", state);
    job.cancel_requested = true;
    let status = job.state.status();
    store
        .insert(Kind::Job, "j", Some(status.as_str()), &job)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_cancel_is_kept_in_the_record_before_it_is_acted_on() {
    let store = Store::in_memory().await.unwrap();
    let (m, _) = manager(&store, Found::Lost);
    m.submit(record("j", JobState::Queued)).await.unwrap();
    until(&m, &store, "j", JobStatus::Preparing).await;
    m.cancel("j").await.unwrap();
    assert!(stored(&store, "j").await.cancel_requested);
    until(&m, &store, "j", JobStatus::Canceled).await;
}

#[tokio::test]
async fn a_restarted_server_cancels_a_starting_job_instead_of_starting_it_again() {
    let store = Store::in_memory().await.unwrap();
    left_behind(
        &store,
        JobState::Preparing {
            admitted_at: OffsetDateTime::now_utc(),
            gpus: Vec::new(),
            note: None,
        },
    )
    .await;
    let (m, backend) = manager(&store, Found::Lost);
    m.recover().await.unwrap();
    assert_eq!(
        stored(&store, "j").await.state.status(),
        JobStatus::Canceled
    );
    assert!(
        backend.prepared.lock().unwrap().is_empty(),
        "not prepared again"
    );
}

#[tokio::test]
async fn a_restarted_server_stops_a_running_job_whose_cancel_it_had_accepted() {
    let store = Store::in_memory().await.unwrap();
    left_behind(
        &store,
        JobState::Running {
            started_at: OffsetDateTime::now_utc(),
            gpus: Vec::new(),
            supervisor_pid: 0,
            note: None,
        },
    )
    .await;
    let (m, backend) = manager(&store, Found::Running);
    m.recover().await.unwrap();
    until(&m, &store, "j", JobStatus::Canceled).await;
    assert_eq!(*backend.cancels.lock().unwrap(), ["j"]);
}
