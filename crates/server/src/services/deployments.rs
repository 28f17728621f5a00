//! Online deployments: validate, snapshot the code, start `berth runtime` replicas on the local
//! compute (or hand the revision to `cluster_deployments` when the endpoint is on a cluster),
//! and track `Creating → Succeeded | Failed` with the reason.

use berth_core::serving::{DeploymentRecord, DeploymentState, deployment_key};
use berth_scheduler::serving::Placement;
use berth_store::{Kind, StoreError, Stored};
use serde::Deserialize;

use crate::AppState;
use crate::error::ApiError;
use crate::services::routes::settled;
use crate::services::{records, revisions};

/// `POST /api/endpoints/{endpoint}/deployments` and `PUT .../{deployment}`.
#[derive(Debug, Deserialize)]
pub struct DeploymentCreate {
    /// The file name, for errors.
    #[serde(default)]
    pub file: String,
    /// The YAML text; empty for an update that only sets fields of the current revision's file.
    #[serde(default)]
    pub yaml: String,
    /// The folder of the file (absolute).
    #[serde(default)]
    pub base_dir: String,
    /// `--set path=value` overrides.
    #[serde(default)]
    pub set: Vec<String>,
    /// Send all traffic to it once it is ready.
    #[serde(default)]
    pub all_traffic: bool,
}

pub use crate::services::records::deployment as get;

/// Creates a deployment: validates it, snapshots its code, stores it `Creating` and starts
/// its replicas in the background.
pub async fn create(
    state: &AppState,
    endpoint: &str,
    req: DeploymentCreate,
) -> Result<Stored<DeploymentRecord>, ApiError> {
    let (record, staged) = revisions::prepare(state, endpoint, &req, None).await?;
    let key = deployment_key(endpoint, &record.spec.name);
    let (v, seq) = match state
        .store
        .insert(Kind::Deployment, &key, Some("Creating"), &record)
        .await
    {
        Ok(x) => x,
        Err(e) => {
            staged.discard().await;
            return Err(match e {
                StoreError::AlreadyExists { .. } => ApiError::Conflict {
                    message: format!("deployment `{key}` is being created already"),
                    hint: None,
                },
                other => other.into(),
            });
        }
    };
    staged.commit().await?;
    start(state, &record, req.all_traffic).await;
    Ok(Stored {
        value: record,
        resource_version: v,
        seq,
    })
}

/// Hands the stored revision to the serving controller, which starts it and records how it
/// goes; a revision that cannot even be planned fails at once.
async fn start(state: &AppState, d: &DeploymentRecord, all_traffic: bool) {
    match crate::services::placement::plan(state, d).await {
        Ok(plan) => state.serving.apply(plan, all_traffic).await,
        Err(e) => {
            let key = deployment_key(&d.spec.endpoint_name, &d.spec.name);
            tracing::warn!(deployment = %key, error = %e, "cannot plan the deployment");
        }
    }
}

/// Updates a deployment with no unavailability: the new revision's replicas start beside the
/// serving ones and take over when all are ready; if they fail, the old ones keep serving.
pub async fn update(
    state: &AppState,
    endpoint: &str,
    name: &str,
    req: DeploymentCreate,
) -> Result<Stored<DeploymentRecord>, ApiError> {
    let cur = get(state, endpoint, name).await?;
    let key = deployment_key(endpoint, name);
    if matches!(
        cur.value.state,
        DeploymentState::Creating | DeploymentState::Updating | DeploymentState::Deleting
    ) {
        return Err(ApiError::Conflict {
            message: format!("deployment `{key}` is {} already", cur.value.state.name()),
            hint: Some("wait for it to finish, then update again".into()),
        });
    }
    let (record, staged) = revisions::prepare(state, endpoint, &req, Some(&cur.value)).await?;
    if record.spec.name != name {
        staged.discard().await;
        return Err(ApiError::BadRequest(format!(
            "the file describes deployment `{}`, not `{name}`",
            record.spec.name
        )));
    }
    let updated = state
        .store
        .update(
            Kind::Deployment,
            &key,
            cur.resource_version,
            Some("Updating"),
            &record,
        )
        .await;
    let v = match updated {
        Ok(v) => v,
        Err(e) => {
            staged.discard().await;
            return Err(match e {
                StoreError::Conflict { .. } => ApiError::Conflict {
                    message: format!(
                        "deployment `{key}` changed while updating; another update is in progress"
                    ),
                    hint: None,
                },
                other => other.into(),
            });
        }
    };
    staged.commit().await?;
    start(state, &record, false).await;
    Ok(Stored {
        value: record,
        resource_version: v,
        seq: cur.seq,
    })
}

/// The last `lines` lines of each replica's log.
pub async fn logs(
    state: &AppState,
    endpoint: &str,
    name: &str,
    lines: usize,
) -> Result<String, ApiError> {
    let d = get(state, endpoint, name).await?;
    let plan = crate::services::placement::plan(state, &d.value).await?;
    Ok(state.serving.logs(&plan, lines).await?)
}

/// Stops the replicas and forgets the deployment. A deployment that still gets traffic is
/// refused unless its endpoint is being deleted with it (`with_endpoint`).
pub async fn delete(
    state: &AppState,
    endpoint: &str,
    name: &str,
    with_endpoint: bool,
) -> Result<(), ApiError> {
    get(state, endpoint, name).await?;
    if !with_endpoint
        && let Ok(ep) = records::endpoint(state, endpoint).await
        && ep.value.spec.traffic.weight(name) > 0
    {
        return Err(ApiError::Conflict {
            message: format!(
                "deployment `{name}` still gets {}% of endpoint `{endpoint}`'s traffic",
                ep.value.spec.traffic.weight(name)
            ),
            hint: Some(format!(
                "move its traffic first: berth online-endpoint update --name {endpoint} --traffic \"<other>=100\""
            )),
        });
    }
    let key = deployment_key(endpoint, name);
    let d = get(state, endpoint, name).await?;
    let plan = crate::services::placement::plan(state, &d.value).await?;
    state.serving.delete(&plan).await?;
    state.store.delete(Kind::Deployment, &key).await?;
    settled(state).await;
    Ok(())
}

/// Starts the replicas of every deployment that was up when the server stopped. Re-applying
/// a cluster deployment is idempotent: the controller adopts what runs there.
pub async fn recover(state: &AppState) {
    let Ok(all) = state.store.list::<DeploymentRecord>(Kind::Deployment).await else {
        return;
    };
    for d in all {
        let d = d.value;
        let plan = match crate::services::placement::plan(state, &d).await {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(deployment = %deployment_key(&d.spec.endpoint_name, &d.spec.name), error = %e, "cannot recover the deployment");
                continue;
            }
        };
        let wanted = if matches!(plan.placement, Placement::Local) {
            matches!(
                d.state,
                DeploymentState::Succeeded | DeploymentState::Creating | DeploymentState::Updating
            )
        } else {
            d.state != DeploymentState::Deleting
        };
        if wanted {
            state.serving.apply(plan, false).await;
        }
    }
}
