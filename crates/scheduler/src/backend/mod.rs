//! The one small trait between the job manager and whatever runs jobs. The manager never
//! knows which backend it drives.

pub mod dispatch;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod local;
pub mod spare;

use std::future::Future;

use berth_core::job::JobRecord;

use crate::supervisor::RunResult;

/// What a backend gives back for a started job, to wait on it later: opaque to the manager,
/// which only records the local supervisor's pid (0 when a cluster runs the job).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunHandle {
    supervisor: Option<u32>,
}

impl RunHandle {
    /// A job supervised by a process on this machine.
    pub fn supervised_by(pid: u32) -> Self {
        RunHandle {
            supervisor: Some(pid),
        }
    }

    /// A job something else runs (a cluster).
    pub fn remote() -> Self {
        RunHandle { supervisor: None }
    }

    /// The supervising process, if there is one here.
    pub fn supervisor_pid(self) -> Option<u32> {
        self.supervisor
    }
}

impl std::fmt::Display for RunHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.supervisor {
            Some(pid) => write!(f, "supervisor pid {pid}"),
            None => f.write_str("run by its cluster"),
        }
    }
}

/// Why a job could not be prepared or started. The message is for the person reading the job.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// Its inputs, working folder or environment could not be made (on a cluster: its
    /// objects).
    #[error("{0}")]
    Prepare(String),
    /// It could not be started.
    #[error("{0}")]
    Launch(String),
    /// A folder or file the job needs could not be made.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: std::io::Error,
    },
    /// An input in `download` mode could not be fetched or copied.
    #[error("input `{input}`: cannot download {from}: {reason}")]
    Download {
        /// The input.
        input: String,
        /// Its URL or path.
        from: String,
        /// Why.
        reason: String,
    },
    /// The command refers to something the job does not define.
    #[error(transparent)]
    Command(#[from] berth_core::interpolate::InterpolateError),
    /// The job's Python environment did not build.
    #[error(transparent)]
    Environment(#[from] crate::envs::EnvError),
    /// Its compute is a cluster this server is not connected to.
    #[error("compute `{0}` is not connected to its cluster; see the server's log")]
    NotConnected(String),
}

/// What re-attaching to a job found after a server restart.
#[derive(Debug)]
pub enum Reattach {
    /// Still running; `wait` will report its end.
    Running(RunHandle),
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
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// Starts the job.
    fn launch(
        &self,
        job: &JobRecord,
    ) -> impl Future<Output = Result<RunHandle, BackendError>> + Send;
    /// Waits for the job started (or re-attached) as `run` to end, reporting its phase on the
    /// way (at least [`Phase::Running`] once the command starts).
    fn wait(
        &self,
        job: &JobRecord,
        run: RunHandle,
        progress: Progress,
    ) -> impl Future<Output = RunResult> + Send;
    /// Asks a started job to stop; `wait` then reports it canceled.
    fn cancel(&self, job: &JobRecord) -> impl Future<Output = ()> + Send;
    /// Finds a job that was running when the server stopped.
    fn reattach(&self, job: &JobRecord) -> impl Future<Output = Reattach> + Send;
}
