//! Label-based cleanup: what Berth made in a compute's namespace and no longer knows about
//! (a job canceled while the server was down, a deployment deleted then, a ConfigMap whose Job
//! was never created) is deleted when the server starts, so nothing is left behind.

use std::collections::HashSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PropagationPolicy};

use super::cluster::{Cluster, describe};
use super::objects::{JOB_LABEL, JOB_NAME_ANNOTATION, MANAGED_BY, object_name};
use super::serving;

/// Deletes Berth's objects on `compute` that belong to no job in `jobs` and no
/// `(endpoint, deployment)` in `deployments`; returns what it deleted. Objects created at or
/// after `known_at` (when those sets were read) are left alone: they may be new work.
pub async fn collect(
    cluster: &Cluster,
    compute: &str,
    jobs: &HashSet<String>,
    deployments: &HashSet<(String, String)>,
    known_at: std::time::SystemTime,
) -> Result<Vec<String>, String> {
    let known_at = k8s_openapi::jiff::Timestamp::try_from(known_at).map_err(|e| e.to_string())?;
    let older = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
        m.creation_timestamp
            .as_ref()
            .is_some_and(|t| t.0 < known_at)
    };
    let ns = &cluster.namespace;
    let managed = ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1));
    let background = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    let mut deleted = Vec::new();

    let job_api: Api<Job> = Api::namespaced(cluster.client.clone(), ns);
    for j in job_api
        .list(&managed)
        .await
        .map_err(|e| describe(&e))?
        .items
    {
        let ann = j.metadata.annotations.clone().unwrap_or_default();
        if ann.get("berth.dev/compute").map(String::as_str) != Some(compute) {
            continue;
        }
        let owner = ann.get(JOB_NAME_ANNOTATION).cloned().unwrap_or_default();
        if jobs.contains(&owner) || !older(&j.metadata) {
            continue;
        }
        let name = j.metadata.name.clone().unwrap_or_default();
        job_api
            .delete(&name, &background)
            .await
            .map_err(|e| describe(&e))?;
        deleted.push(format!("Job {ns}/{name} (job `{owner}`)"));
    }

    // A ConfigMap with no owner was made for a Job that was never created (and whose job is
    // gone: a known job may be about to create it).
    let known: HashSet<String> = jobs.iter().map(|j| object_name(j)).collect();
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), ns);
    let job_maps = ListParams::default().labels(JOB_LABEL);
    let live: HashSet<String> = job_api
        .list(&managed)
        .await
        .map_err(|e| describe(&e))?
        .items
        .iter()
        .filter_map(|j| j.metadata.name.clone())
        .collect();
    for m in maps.list(&job_maps).await.map_err(|e| describe(&e))?.items {
        let owned = m
            .metadata
            .owner_references
            .as_ref()
            .is_some_and(|o| !o.is_empty());
        let job = m
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(JOB_LABEL))
            .cloned()
            .unwrap_or_default();
        if owned || live.contains(&job) || known.contains(&job) || !older(&m.metadata) {
            continue;
        }
        let name = m.metadata.name.clone().unwrap_or_default();
        maps.delete(&name, &DeleteParams::default())
            .await
            .map_err(|e| describe(&e))?;
        deleted.push(format!("ConfigMap {ns}/{name}"));
    }

    let dep_api: Api<Deployment> = Api::namespaced(cluster.client.clone(), ns);
    for d in dep_api
        .list(&managed)
        .await
        .map_err(|e| describe(&e))?
        .items
    {
        let ann = d.metadata.annotations.clone().unwrap_or_default();
        let (Some(ep), Some(dep)) = (
            ann.get("berth.dev/endpoint-name"),
            ann.get("berth.dev/deployment-name"),
        ) else {
            continue;
        };
        if deployments.contains(&(ep.clone(), dep.clone())) || !older(&d.metadata) {
            continue;
        }
        serving::delete(cluster, ep, dep).await?;
        deleted.push(format!(
            "Deployment {ns}/{} (deployment `{ep}/{dep}`)",
            d.metadata.name.clone().unwrap_or_default()
        ));
    }
    Ok(deleted)
}
