//! Online deployments whose endpoint is on a Kubernetes compute: each revision is applied as
//! a Deployment (rolling, `maxUnavailable: 0`) with a headless Service, and one watcher per
//! deployment reads the cluster every half second: the ready Pods' addresses become the
//! router's replicas, and the rollout's end becomes `Succeeded` or `Failed` with the reason.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use berth_core::serving::{DeploymentRecord, DeploymentState, deployment_key};
use berth_core::spec::deployment::ScaleSettings;
use berth_core::spec::endpoint::TrafficSplit;
use berth_scheduler::backend::kubernetes::cluster::Cluster;
use berth_scheduler::backend::kubernetes::delivery::Fetch;
use berth_scheduler::backend::kubernetes::objects::image_for;
use berth_scheduler::backend::kubernetes::serving::{self, Rollout, ServingPlan};
use berth_store::Kind;

use crate::AppState;
use crate::error::ApiError;
use crate::services::endpoints::{self, refresh_routes};
use crate::services::pod_files::deployment_token;

/// How long a rollout may wait for the scheduler to place a replica before it fails (a cluster
/// autoscaler may add a node meanwhile).
const UNSCHEDULABLE_FOR: Duration = Duration::from_secs(600);

/// Ready replicas of cluster deployments, why a rollout waits, and which deployments have a
/// watcher.
#[derive(Default)]
pub struct ClusterServing {
    ready: Mutex<HashMap<String, Vec<String>>>,
    waiting: Mutex<HashMap<String, String>>,
    watching: Mutex<HashSet<String>>,
}

impl ClusterServing {
    /// The ready replicas (`ip:port`) of a deployment on a cluster.
    pub fn ready(&self, key: &str) -> Vec<String> {
        self.ready
            .lock()
            .ok()
            .and_then(|m| m.get(key).cloned())
            .unwrap_or_default()
    }

    /// Why a deployment's rollout waits (replicas that cannot be placed), while it does.
    pub fn waiting(&self, key: &str) -> Option<String> {
        self.waiting.lock().ok().and_then(|m| m.get(key).cloned())
    }

    fn set_waiting(&self, key: &str, reason: Option<String>) {
        if let Ok(mut m) = self.waiting.lock() {
            match reason {
                Some(r) => m.insert(key.to_string(), r),
                None => m.remove(key),
            };
        }
    }
}

/// The cluster an endpoint's deployments run on; `None` for the local compute.
pub async fn cluster_of(state: &AppState, endpoint: &str) -> Result<Option<Cluster>, ApiError> {
    let ep = endpoints::get(state, endpoint).await?;
    cluster_of_compute(state, ep.value.spec.compute.as_deref()).await
}

/// The cluster behind an endpoint's `compute`; `None` for a local compute.
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
    state
        .jobs
        .backend()
        .kubernetes
        .cluster(compute)
        .map(Some)
        .ok_or_else(|| ApiError::Conflict {
            message: format!("compute `{compute}` is not connected to its cluster"),
            hint: Some("the server's log says why".into()),
        })
}

fn plan(state: &AppState, d: &DeploymentRecord, cluster: &Cluster) -> ServingPlan {
    let (endpoint, name) = (&d.spec.endpoint_name, &d.spec.name);
    let fetch = cluster.server_url.as_deref().map(|url| Fetch {
        url: format!(
            "{}/api/endpoints/{endpoint}/deployments/{name}/revisions/{}/files",
            url.trim_end_matches('/'),
            d.revision
        ),
        token: deployment_token(&state.token_key, endpoint, name, d.revision),
    });
    // The script inside the revision's code snapshot (Berth's own for an MLflow model).
    let code_dir = d.revision_dir().join("code");
    let code = d.script.as_ref().and_then(|script| {
        let rel = Path::new(script).strip_prefix(&code_dir).ok()?;
        Some((code_dir.clone(), rel.to_string_lossy().into_owned()))
    });
    ServingPlan {
        endpoint: d.spec.endpoint_name.clone(),
        deployment: d.spec.name.clone(),
        revision: d.revision,
        replicas: match d.spec.scale_settings {
            ScaleSettings::TargetUtilization { min_instances, .. } => min_instances,
            ScaleSettings::Default => d.spec.instance_count,
        },
        instance_type: d.instance_type.clone(),
        image: image_for(d.spec.environment.as_ref()),
        berth_image: cluster.berth_image.clone(),
        code,
        model_dir: d.model_dir.as_ref().map(PathBuf::from),
        fetch,
        env: d
            .spec
            .environment_variables
            .clone()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        workers: usize::try_from((d.instance_type.requests.cpu.millis() + 999) / 1000)
            .unwrap_or(1)
            .max(1),
        request_timeout_ms: d.spec.request_settings.request_timeout_ms,
        liveness: d.spec.liveness_probe,
        readiness: d.spec.readiness_probe,
        python_env: d.environment.as_ref().and_then(|e| e.python.clone()),
    }
}

/// Applies the deployment's current revision and makes sure a watcher follows it.
pub async fn apply(
    state: &AppState,
    cluster: Cluster,
    endpoint: &str,
    name: &str,
    all_traffic: bool,
) {
    let key = deployment_key(endpoint, name);
    let Ok(d) = crate::services::deployments::get(state, endpoint, name).await else {
        return;
    };
    if let Err(reason) = serving::apply(&cluster, &plan(state, &d.value, &cluster)).await {
        set_state(state, &key, DeploymentState::Failed { reason }).await;
        return;
    }
    watch(state, cluster, endpoint, name, all_traffic);
}

async fn set_state(state: &AppState, key: &str, next: DeploymentState) -> Option<DeploymentRecord> {
    loop {
        let cur = state
            .store
            .get::<DeploymentRecord>(Kind::Deployment, key)
            .await
            .ok()??;
        if cur.value.state == next {
            return Some(cur.value);
        }
        let mut rec = cur.value;
        rec.state = next.clone();
        match state
            .store
            .update(
                Kind::Deployment,
                key,
                cur.resource_version,
                Some(next.name()),
                &rec,
            )
            .await
        {
            Ok(_) => return Some(rec),
            Err(berth_store::StoreError::Conflict { .. }) => continue,
            Err(e) => {
                tracing::warn!(deployment = %key, error = %e, "cannot record the deployment's state");
                return None;
            }
        }
    }
}

fn watch(state: &AppState, cluster: Cluster, endpoint: &str, name: &str, all_traffic: bool) {
    let key = deployment_key(endpoint, name);
    if !state
        .cluster_serving
        .watching
        .lock()
        .is_ok_and(|mut w| w.insert(key.clone()))
    {
        return;
    }
    let (state, endpoint, name) = (state.clone(), endpoint.to_string(), name.to_string());
    tokio::spawn(async move {
        let mut give_traffic = all_traffic;
        // The revision whose autoscaler runs (it stops itself when the revision changes).
        let mut scaling: Option<u32> = None;
        // Since when a replica of a rollout in progress cannot be placed.
        let mut stuck_since: Option<tokio::time::Instant> = None;
        let mut backoff = Duration::from_millis(500);
        loop {
            let Ok(Some(rec)) = state
                .store
                .get::<DeploymentRecord>(Kind::Deployment, &key)
                .await
            else {
                break;
            };
            if rec.value.state == DeploymentState::Deleting {
                break;
            }
            let observed = match serving::observe(&cluster, &endpoint, &name, rec.value.revision)
                .await
            {
                Ok(o) => {
                    backoff = Duration::from_millis(500);
                    o
                }
                Err(e) => {
                    tracing::warn!(deployment = %key, error = %e, retry_in = ?backoff, "cannot read the deployment from the cluster");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    continue;
                }
            };
            let changed = state.cluster_serving.ready.lock().is_ok_and(|mut m| {
                let prev = m.insert(key.clone(), observed.ready.clone());
                prev.as_ref() != Some(&observed.ready)
            });
            if changed {
                refresh_routes(&state).await;
            }
            if rec.value.state == DeploymentState::Succeeded && scaling != Some(rec.value.revision)
            {
                crate::services::autoscaling::spawn(&state, &rec.value, Some(cluster.clone()));
                scaling = Some(rec.value.revision);
            }
            let busy = matches!(
                rec.value.state,
                DeploymentState::Creating | DeploymentState::Updating
            );
            match observed.rollout {
                Rollout::Complete if busy => {
                    set_state(&state, &key, DeploymentState::Succeeded).await;
                    if give_traffic
                        && let Ok(t) = TrafficSplit::try_from(BTreeMap::from([(name.clone(), 100)]))
                    {
                        let _ = endpoints::set_traffic(&state, &endpoint, t).await;
                    }
                    give_traffic = false;
                    refresh_routes(&state).await;
                }
                Rollout::Failed(reason) if busy => {
                    let reason = if rec.value.revision > 1 {
                        format!(
                            "update to revision {} failed: {reason}; replicas of the previous revision keep serving",
                            rec.value.revision
                        )
                    } else {
                        reason
                    };
                    set_state(&state, &key, DeploymentState::Failed { reason }).await;
                }
                Rollout::Unplaceable(reason) if busy => {
                    let minutes = UNSCHEDULABLE_FOR.as_secs() / 60;
                    state.cluster_serving.set_waiting(
                        &key,
                        Some(format!(
                            "replicas cannot be placed: {reason} (the deployment fails if this lasts {minutes} minutes)"
                        )),
                    );
                    let since = *stuck_since.get_or_insert_with(tokio::time::Instant::now);
                    if since.elapsed() >= UNSCHEDULABLE_FOR {
                        let reason = format!(
                            "replicas could not be placed for {minutes} minutes: {reason}; add nodes or pick a smaller instance type"
                        );
                        set_state(&state, &key, DeploymentState::Failed { reason }).await;
                    }
                }
                _ => {
                    stuck_since = None;
                    state.cluster_serving.set_waiting(&key, None);
                }
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        if let Ok(mut m) = state.cluster_serving.ready.lock() {
            m.remove(&key);
        }
        state.cluster_serving.set_waiting(&key, None);
        if let Ok(mut w) = state.cluster_serving.watching.lock() {
            w.remove(&key);
        }
        refresh_routes(&state).await;
    });
}

/// Deletes a deployment's objects from its cluster.
pub async fn delete(cluster: &Cluster, endpoint: &str, name: &str) -> Result<(), ApiError> {
    serving::delete(cluster, endpoint, name).await.map_err(|m| {
        ApiError::Internal(format!(
            "cannot delete deployment `{endpoint}/{name}` from the cluster: {m}"
        ))
    })
}

/// The replicas' logs, from pods/log.
pub async fn logs(
    cluster: &Cluster,
    endpoint: &str,
    name: &str,
    lines: usize,
) -> Result<String, ApiError> {
    serving::logs(cluster, endpoint, name, lines)
        .await
        .map_err(|m| ApiError::Internal(format!("cannot read the replicas' logs: {m}")))
}
