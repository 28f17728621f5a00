//! Online deployments beside jobs: one [`ServingBackend`] trait with the local compute's
//! replica processes and Kubernetes Deployments behind it, one [`RevisionPlan`] per revision,
//! a pure [`reconcile`](reconcile::reconcile), and the [`Controller`](controller::Controller)
//! that alone writes a deployment's state once its revision is stored.

pub mod controller;
#[cfg(feature = "kubernetes")]
pub mod kubernetes;
pub mod local;
pub mod plan;
pub mod reconcile;

use std::future::Future;

pub use plan::{Placement, RevisionPlan};

/// What went wrong serving a deployment. The message is for the person reading the
/// deployment's state.
#[derive(Debug, thiserror::Error)]
pub enum ServingError {
    /// It has no replicas to scale.
    #[error("the deployment is not running")]
    NotRunning,
    /// Local replicas did not start or scale.
    #[error(transparent)]
    Replicas(#[from] crate::replicas::ReplicaError),
    /// The revision's Python environment did not build.
    #[error("{source} (the build's log: {})", log.display())]
    Environment {
        /// The build's log.
        log: std::path::PathBuf,
        /// Why.
        #[source]
        source: crate::envs::EnvError,
    },
    /// The plan's placement is not this backend's.
    #[error("deployment `{0}` is not placed on a cluster")]
    NotOnCluster(String),
    /// The cluster refused or did not answer.
    #[cfg(feature = "kubernetes")]
    #[error(transparent)]
    Kube(#[from] crate::backend::kubernetes::error::KubeError),
    /// The cluster refused or did not answer while doing `what`.
    #[cfg(feature = "kubernetes")]
    #[error("{what}: {source}")]
    Cluster {
        /// What was being done.
        what: String,
        /// Why it failed.
        #[source]
        source: crate::backend::kubernetes::error::KubeError,
    },
    /// A log could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// How a revision's rollout stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rollout {
    /// Replicas are starting or being replaced.
    Progressing,
    /// Every replica runs the newest revision and is ready.
    Complete,
    /// Replicas cannot be placed (no node fits, or a quota refuses the pod); a node or quota
    /// change may still let them start. The reason says why.
    Unplaceable(String),
    /// A replica cannot start; the reason says why.
    Failed(String),
}

/// What a backend sees of a deployment: its ready replicas (`ip:port`) and its rollout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observed {
    /// Ready replica addresses.
    pub ready: Vec<String>,
    /// Rollout of the planned revision.
    pub rollout: Rollout,
}

/// Runs deployment replicas somewhere.
pub trait ServingBackend: Send + Sync + 'static {
    /// Starts the plan's revision (replacing an older one without unavailability); returns
    /// once it is under way. `observe` reports how it goes.
    fn apply(&self, plan: &RevisionPlan) -> impl Future<Output = Result<(), ServingError>> + Send;
    /// The ready replicas and how the plan's revision is rolling out.
    fn observe(
        &self,
        plan: &RevisionPlan,
    ) -> impl Future<Output = Result<Observed, ServingError>> + Send;
    /// Sets the replica count of the serving revision.
    fn scale(
        &self,
        plan: &RevisionPlan,
        replicas: u32,
    ) -> impl Future<Output = Result<(), ServingError>> + Send;
    /// Stops every replica and removes what the deployment made.
    fn delete(&self, plan: &RevisionPlan) -> impl Future<Output = Result<(), ServingError>> + Send;
    /// The last `lines` lines of each replica's log.
    fn logs(
        &self,
        plan: &RevisionPlan,
        lines: usize,
    ) -> impl Future<Output = Result<String, ServingError>> + Send;
}

/// The local compute's replicas, and Kubernetes clusters when the feature is on: each plan
/// goes where its [`Placement`] says.
pub struct ServingBackends {
    /// This machine.
    pub local: local::LocalServing,
    /// Attached clusters.
    #[cfg(feature = "kubernetes")]
    pub kubernetes: kubernetes::KubernetesServing,
}

impl ServingBackends {
    /// The ready replicas of a deployment, wherever it runs (what the routes use).
    pub fn ready(&self, key: &str) -> Vec<String> {
        let local = self.local.ready(key);
        #[cfg(feature = "kubernetes")]
        if local.is_empty() {
            return self.kubernetes.ready(key);
        }
        local
    }
}

/// Calls `$method` on the backend the plan is placed on.
macro_rules! route {
    ($self:ident, $plan:ident, $method:ident($($arg:expr),*)) => {{
        match &$plan.placement {
            Placement::Local => $self.local.$method($($arg),*).await,
            #[cfg(feature = "kubernetes")]
            Placement::Cluster { .. } => $self.kubernetes.$method($($arg),*).await,
        }
    }};
}

impl ServingBackend for ServingBackends {
    async fn apply(&self, plan: &RevisionPlan) -> Result<(), ServingError> {
        route!(self, plan, apply(plan))
    }

    async fn observe(&self, plan: &RevisionPlan) -> Result<Observed, ServingError> {
        route!(self, plan, observe(plan))
    }

    async fn scale(&self, plan: &RevisionPlan, replicas: u32) -> Result<(), ServingError> {
        route!(self, plan, scale(plan, replicas))
    }

    async fn delete(&self, plan: &RevisionPlan) -> Result<(), ServingError> {
        route!(self, plan, delete(plan))
    }

    async fn logs(&self, plan: &RevisionPlan, lines: usize) -> Result<String, ServingError> {
        route!(self, plan, logs(plan, lines))
    }
}
