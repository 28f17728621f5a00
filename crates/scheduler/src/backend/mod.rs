//! The one small trait between the job manager and whatever runs jobs. The manager never
//! knows which backend it drives.

pub mod dispatch;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod local;

use std::future::Future;

use berth_core::job::JobRecord;

use crate::supervisor::RunResult;

/// What re-attaching to a job found after a server restart.
#[derive(Debug)]
pub enum Reattach {
    /// Still running; `wait` will report its end.
    Running {
        /// Its supervising process.
        pid: u32,
    },
    /// It ended while the server was down.
    Finished(RunResult),
    /// Nothing to re-attach to and no record of how it ended.
    Lost,
}

/// Where a launched job is before it ends, as its backend sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for room; the reason says for what (shown as the Queued job's reason).
    Queued(String),
    /// Placed and starting (pulling an image, mounting files).
    Starting(String),
    /// The command runs.
    Running,
}

/// Where a backend reports a job's phase while `wait` runs.
pub type Progress = tokio::sync::mpsc::UnboundedSender<Phase>;

/// Runs jobs somewhere.
pub trait Backend: Send + Sync + 'static {
    /// True when something else (a cluster's scheduler) decides when the job starts, so Berth's
    /// own admission lets it through at once and `wait` reports when it is queued.
    fn queues_itself(&self, _job: &JobRecord) -> bool {
        false
    }
    /// Makes everything the job needs before it starts (inputs, output folders, run plan).
    fn prepare(
        &self,
        job: &JobRecord,
        gpus: &[String],
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Starts the job; returns the id of what supervises it.
    fn launch(&self, job: &JobRecord) -> impl Future<Output = Result<u32, String>> + Send;
    /// Waits for the job started (or re-attached) as `pid` to end, reporting its phase on the
    /// way (at least [`Phase::Running`] once the command starts).
    fn wait(
        &self,
        job: &JobRecord,
        pid: u32,
        progress: Progress,
    ) -> impl Future<Output = RunResult> + Send;
    /// Asks a started job to stop; `wait` then reports it canceled.
    fn cancel(&self, job: &JobRecord) -> impl Future<Output = ()> + Send;
    /// Finds a job that was running when the server stopped.
    fn reattach(&self, job: &JobRecord) -> impl Future<Output = Reattach> + Send;
}
