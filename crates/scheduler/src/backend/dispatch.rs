//! The backend the manager drives: each job goes to the local backend or, when its compute is
//! an attached cluster, to the Kubernetes backend. The manager sees one [`Backend`].

use berth_core::job::JobRecord;

use super::local::LocalBackend;
use super::{Backend, Progress, Reattach};
use crate::supervisor::RunResult;

/// Local processes, and Kubernetes clusters when the feature is on.
pub struct Backends {
    /// This machine.
    pub local: LocalBackend,
    /// Attached clusters.
    #[cfg(feature = "kubernetes")]
    pub kubernetes: super::kubernetes::KubernetesBackend,
}

impl Backends {
    /// Both backends; no cluster attached yet.
    pub fn new(local: LocalBackend) -> Self {
        Backends {
            local,
            #[cfg(feature = "kubernetes")]
            kubernetes: super::kubernetes::KubernetesBackend::default(),
        }
    }

    #[cfg(feature = "kubernetes")]
    fn on_cluster(&self, job: &JobRecord) -> bool {
        self.kubernetes.serves(&job.compute)
    }

    #[cfg(not(feature = "kubernetes"))]
    fn on_cluster(&self, _job: &JobRecord) -> bool {
        false
    }
}

/// Calls `$method` on the backend that runs `$job`.
macro_rules! route {
    ($self:ident, $job:ident, $method:ident($($arg:expr),*)) => {{
        #[cfg(feature = "kubernetes")]
        if $self.on_cluster($job) {
            return $self.kubernetes.$method($($arg),*).await;
        }
        $self.local.$method($($arg),*).await
    }};
}

impl Backend for Backends {
    fn queues_itself(&self, job: &JobRecord) -> bool {
        self.on_cluster(job)
    }

    async fn prepare(&self, job: &JobRecord, gpus: &[String]) -> Result<(), String> {
        route!(self, job, prepare(job, gpus))
    }

    async fn launch(&self, job: &JobRecord) -> Result<u32, String> {
        route!(self, job, launch(job))
    }

    async fn wait(&self, job: &JobRecord, pid: u32, progress: Progress) -> RunResult {
        route!(self, job, wait(job, pid, progress))
    }

    async fn cancel(&self, job: &JobRecord) {
        route!(self, job, cancel(job))
    }

    async fn reattach(&self, job: &JobRecord) -> Reattach {
        route!(self, job, reattach(job))
    }
}
