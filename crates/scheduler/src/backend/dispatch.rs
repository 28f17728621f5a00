//! The backend the manager drives: each job goes to the local backend or, when its compute is
//! an attached cluster, to the Kubernetes backend. The manager sees one [`Backend`].

use berth_core::job::JobRecord;

use super::local::LocalBackend;
use super::{Backend, BackendError, Progress, Reattach, RunHandle};
use crate::supervisor::RunResult;

/// Local processes, and Kubernetes clusters when the feature is on.
pub struct Backends {
    local: LocalBackend,
    #[cfg(feature = "kubernetes")]
    kubernetes: super::kubernetes::KubernetesBackend,
}

impl Backends {
    /// Both backends; jobs on a compute attached in `clusters` go to it.
    pub fn new(
        local: LocalBackend,
        #[cfg(feature = "kubernetes")] clusters: std::sync::Arc<
            super::kubernetes::cluster::Clusters,
        >,
    ) -> Self {
        Backends {
            local,
            #[cfg(feature = "kubernetes")]
            kubernetes: super::kubernetes::KubernetesBackend::new(clusters),
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

    async fn prepare(&self, job: &JobRecord, gpus: &[String]) -> Result<(), BackendError> {
        route!(self, job, prepare(job, gpus))
    }

    async fn launch(&self, job: &JobRecord) -> Result<RunHandle, BackendError> {
        route!(self, job, launch(job))
    }

    async fn wait(&self, job: &JobRecord, run: RunHandle, progress: Progress) -> RunResult {
        route!(self, job, wait(job, run, progress))
    }

    async fn cancel(&self, job: &JobRecord) {
        route!(self, job, cancel(job))
    }

    async fn reattach(&self, job: &JobRecord) -> Reattach {
        route!(self, job, reattach(job))
    }
}
