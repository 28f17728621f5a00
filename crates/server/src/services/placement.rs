//! Where a deployment's replicas run, and the plan of its current revision: the local compute,
//! or the cluster behind its endpoint's compute (whose pods fetch large files from this server
//! with a token for that revision).

use berth_core::serving::DeploymentRecord;
use berth_core::spec::job::image_for;
#[cfg(feature = "kubernetes")]
use berth_scheduler::backend::kubernetes::cluster::Cluster;
#[cfg(feature = "kubernetes")]
use berth_scheduler::backend::kubernetes::delivery::Fetch;
use berth_scheduler::serving::{Placement, RevisionPlan};

use crate::AppState;
#[cfg(feature = "kubernetes")]
use crate::auth::deployment_token;
use crate::error::ApiError;

/// The cluster an endpoint's deployments run on; `None` for the local compute.
#[cfg(feature = "kubernetes")]
pub async fn cluster_of(state: &AppState, endpoint: &str) -> Result<Option<Cluster>, ApiError> {
    let ep = crate::services::records::endpoint(state, endpoint).await?;
    cluster_of_compute(state, ep.value.spec.compute.as_deref()).await
}

/// True when an endpoint's `compute` is a Kubernetes cluster.
pub async fn on_cluster(state: &AppState, compute: Option<&str>) -> Result<bool, ApiError> {
    let Some(compute) = compute else {
        return Ok(false);
    };
    Ok(crate::services::resources::find_compute(state, compute)
        .await?
        .as_ref()
        .is_some_and(crate::services::clusters::is_kubernetes))
}

/// The cluster behind an endpoint's `compute`; `None` for a local compute.
#[cfg(feature = "kubernetes")]
pub async fn cluster_of_compute(
    state: &AppState,
    compute: Option<&str>,
) -> Result<Option<Cluster>, ApiError> {
    let Some(compute) = compute else {
        return Ok(None);
    };
    let spec = crate::services::resources::find_compute(state, compute).await?;
    if !spec
        .as_ref()
        .is_some_and(crate::services::clusters::is_kubernetes)
    {
        return Ok(None);
    }
    crate::services::clusters::connected(state, compute).map(Some)
}

/// The plan of `d`'s current revision, placed where its endpoint's compute is.
pub async fn plan(state: &AppState, d: &DeploymentRecord) -> Result<RevisionPlan, ApiError> {
    let placement = placement(state, d).await?;
    Ok(RevisionPlan::new(
        d,
        placement,
        image_for(d.spec.environment.as_ref()),
    ))
}

#[cfg(feature = "kubernetes")]
async fn placement(state: &AppState, d: &DeploymentRecord) -> Result<Placement, ApiError> {
    let (endpoint, name) = (&d.spec.endpoint_name, &d.spec.name);
    Ok(match cluster_of(state, endpoint).await? {
        None => Placement::Local,
        Some(cluster) => {
            let fetch = cluster.server_url.as_deref().map(|url| Fetch {
                url: format!(
                    "{}/api/endpoints/{endpoint}/deployments/{name}/revisions/{}/files",
                    url.trim_end_matches('/'),
                    d.revision
                ),
                token: deployment_token(&state.token_secret, d, d.revision),
            });
            Placement::Cluster {
                cluster: Box::new(cluster),
                fetch,
            }
        }
    })
}

#[cfg(not(feature = "kubernetes"))]
async fn placement(state: &AppState, d: &DeploymentRecord) -> Result<Placement, ApiError> {
    let ep = crate::services::records::endpoint(state, &d.spec.endpoint_name).await?;
    if on_cluster(state, ep.value.spec.compute.as_deref()).await? {
        return Err(ApiError::BadRequest(
            "this berth was built without Kubernetes support; its endpoint is on a Kubernetes compute".into(),
        ));
    }
    Ok(Placement::Local)
}
