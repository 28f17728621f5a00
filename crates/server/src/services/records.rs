//! Reading the stored jobs, endpoints and deployments, with a not-found error that says how
//! to list them. Every service reads them here, so none depends on another for a lookup.

use berth_core::job::JobRecord;
use berth_core::serving::{DeploymentRecord, EndpointRecord, deployment_key};
use berth_store::{Kind, Stored};

use crate::AppState;
use crate::error::ApiError;

/// A job.
pub async fn job(state: &AppState, name: &str) -> Result<Stored<JobRecord>, ApiError> {
    state
        .store
        .get(Kind::Job, name)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            kind: "job",
            name: name.to_string(),
            hint: Some("`berth job list` shows the jobs".into()),
        })
}

/// An online endpoint.
pub async fn endpoint(state: &AppState, name: &str) -> Result<Stored<EndpointRecord>, ApiError> {
    state
        .store
        .get(Kind::Endpoint, name)
        .await?
        .ok_or_else(|| ApiError::NotFound {
            kind: "online endpoint",
            name: name.to_string(),
            hint: Some("`berth online-endpoint list` shows the endpoints".into()),
        })
}

/// An online deployment.
pub async fn deployment(
    state: &AppState,
    endpoint: &str,
    name: &str,
) -> Result<Stored<DeploymentRecord>, ApiError> {
    state
        .store
        .get(Kind::Deployment, &deployment_key(endpoint, name))
        .await?
        .ok_or_else(|| ApiError::NotFound {
            kind: "online deployment",
            name: format!("{endpoint}/{name}"),
            hint: Some(format!(
                "`berth online-deployment list --endpoint-name {endpoint}` shows its deployments"
            )),
        })
}
