//! Kubernetes computes: attaching a cluster (with the checks that make a bad kubeconfig, a
//! missing namespace or a missing permission a one-line answer), reconnecting them when the
//! server starts, and reading capacity and InstanceTypes from the cluster.

use berth_core::api::ClusterView;
use berth_core::resources::Resources;
use berth_core::spec::compute::{ComputeKind, ComputeSpec};
use berth_core::spec::instance_type::InstanceType;
use berth_scheduler::backend::kubernetes::cluster::{self, Cluster, Clusters};
use berth_store::{Kind, Store};
use tracing::{info, warn};

use crate::AppState;
use crate::error::ApiError;

/// Checks the cluster behind a Kubernetes compute spec and starts routing its jobs there.
/// Nothing is stored here; the caller stores the spec once this succeeds.
pub async fn connect_new(
    state: &AppState,
    spec: &ComputeSpec,
    create_namespace: bool,
) -> Result<(), ApiError> {
    let target = spec.kubernetes.as_ref().ok_or_else(|| {
                ApiError::BadRequest(
            "a Kubernetes compute needs a cluster: pass --kubeconfig (or --in-cluster for a server running in the cluster) and --namespace".into(),
        )
    })?;
    berth_core::names::validate_k8s_name(&target.namespace)
        .map_err(|m| ApiError::BadRequest(format!("namespace `{}`: {m}", target.namespace)))?;
    let c = cluster::connect(target)
        .await
        .map_err(|m| ApiError::BadRequest(format!("compute `{}`: {m}", spec.name)))?;
    cluster::preflight(&c, create_namespace)
        .await
        .map_err(|m| ApiError::BadRequest(format!("compute `{}`: {m}", spec.name)))?;
    state.clusters.attach(&spec.name, c);
    Ok(())
}

/// Reconnects every stored Kubernetes compute (at start-up, before jobs are recovered).
/// Building a client makes no request, so an unreachable cluster does not delay start-up.
pub async fn connect_stored(store: &Store, clusters: &Clusters) {
    let Ok(all) = store.list::<ComputeSpec>(Kind::Compute).await else {
        return;
    };
    for s in all {
        let spec = s.value;
        let Some(target) = spec.kubernetes.as_ref() else {
            continue;
        };
        match cluster::connect(target).await {
            Ok(c) => {
                info!(compute = %spec.name, server = %c.server, namespace = %c.namespace, "Kubernetes compute");
                clusters.attach(&spec.name, c);
            }
            Err(e) => {
                warn!(compute = %spec.name, error = %e, "cannot connect a Kubernetes compute")
            }
        }
    }
}

/// The cluster behind a Kubernetes compute, which must be connected.
pub fn connected(state: &AppState, compute: &str) -> Result<Cluster, ApiError> {
    state
        .clusters
        .get(compute)
        .ok_or_else(|| ApiError::Conflict {
            message: format!("compute `{compute}` is not connected to its cluster"),
            hint: Some(
                "the server's log says why; detach and attach it again with a working kubeconfig"
                    .into(),
            ),
        })
}

/// What a Kubernetes compute's cluster has: total allocatable capacity and a view.
pub async fn describe(state: &AppState, spec: &ComputeSpec) -> (Resources, ClusterView) {
    let Ok(c) = connected(state, &spec.name) else {
        return (
            Resources::default(),
            ClusterView {
                error: Some("not connected".into()),
                ..ClusterView::default()
            },
        );
    };
    let mut view = ClusterView {
        server: c.server.clone(),
        ..ClusterView::default()
    };
    let mut capacity = Resources::default();
    // A cluster that does not answer must not hang `compute list`.
    let limit = std::time::Duration::from_secs(5);
    let slow = || format!("the cluster at {} did not answer within 5 s", c.server);
    match tokio::time::timeout(limit, cluster::capacity(&c)).await {
        Ok(Ok((total, nodes))) => {
            capacity = total;
            view.nodes = nodes;
        }
        Ok(Err(e)) => view.error = Some(e.to_string()),
        Err(_) => view.error = Some(slow()),
    }
    if view.error.is_none() {
        match tokio::time::timeout(limit, cluster::instance_types(&c)).await {
            Ok(Ok(types)) => view.instance_types = types.into_keys().collect(),
            Ok(Err(e)) => view.error = Some(e.to_string()),
            Err(_) => view.error = Some(slow()),
        }
    }
    (capacity, view)
}

/// The instance type a job on a Kubernetes compute asks for, read from the cluster.
/// `defaultinstancetype` falls back to Azure's built-in default when the cluster has none.
pub async fn instance_type(
    state: &AppState,
    compute: &str,
    name: &str,
) -> Result<Option<InstanceType>, ApiError> {
    let c = connected(state, compute)?;
    let found = cluster::instance_type(&c, name)
        .await
        .map_err(|e| ApiError::Upstream(e.to_string()))?;
    Ok(match found {
        Some(t) => Some(t),
        None if name == berth_core::spec::instance_type::DEFAULT_INSTANCE_TYPE => {
            Some(InstanceType::default_type())
        }
        None => None,
    })
}

/// True for a Kubernetes compute.
pub fn is_kubernetes(spec: &ComputeSpec) -> bool {
    spec.kind == ComputeKind::Kubernetes
}

/// Stops routing work to a compute's cluster (it was detached, or its attach failed).
pub fn forget(state: &AppState, compute: &str) {
    state.clusters.detach(compute);
}

/// Deletes, in every attached cluster, what Berth made and no longer knows about (jobs canceled
/// or deployments deleted while the server was down). Runs once at start-up, in the background.
pub async fn collect_orphans(state: &AppState) {
    use std::collections::HashSet;
    let known_at = std::time::SystemTime::now();
    let Ok(computes) = state.store.list::<ComputeSpec>(Kind::Compute).await else {
        return;
    };
    if !computes.iter().any(|c| is_kubernetes(&c.value)) {
        return;
    }
    // Names only: a long history is not read whole.
    let (Ok(jobs), Ok(deployments)) = (
        state
            .store
            .names_except(Kind::Job, berth_core::job::JobStatus::Canceled.as_str())
            .await,
        state
            .store
            .list::<berth_core::serving::DeploymentRecord>(Kind::Deployment)
            .await,
    ) else {
        return;
    };
    let known_jobs: HashSet<String> = jobs.into_iter().collect();
    let known_deployments: HashSet<(String, String)> = deployments
        .into_iter()
        .map(|d| (d.value.spec.endpoint_name, d.value.spec.name))
        .collect();
    for spec in computes.into_iter().map(|s| s.value).filter(is_kubernetes) {
        let Some(c) = state.clusters.get(&spec.name) else {
            continue;
        };
        match berth_scheduler::backend::kubernetes::orphans::collect(
            &c,
            &spec.name,
            &known_jobs,
            &known_deployments,
            known_at,
        )
        .await
        {
            Ok(deleted) => {
                for d in deleted {
                    info!(compute = %spec.name, object = %d, "deleted an object Berth no longer owns");
                }
            }
            Err(e) => {
                warn!(compute = %spec.name, error = %e, "cannot look for objects Berth no longer owns")
            }
        }
    }
}
