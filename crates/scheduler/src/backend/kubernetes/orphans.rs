//! Label-based cleanup: what Berth made in a compute's namespace and no longer knows about
//! (a job canceled while the server was down, a deployment deleted then, a ConfigMap whose Job
//! was never created) is deleted when the server starts, so nothing is left behind.

use std::collections::HashSet;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, PropagationPolicy};

use super::cluster::Cluster;
use super::error::KubeError;
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
) -> Result<Vec<String>, KubeError> {
    let sweep = Sweep {
        cluster,
        known_at: k8s_openapi::jiff::Timestamp::try_from(known_at).map_err(super::error::object)?,
        managed: ListParams::default().labels(&format!("{}={}", MANAGED_BY.0, MANAGED_BY.1)),
    };
    let mut deleted = sweep.jobs(compute, jobs).await?;
    deleted.extend(sweep.config_maps(jobs).await?);
    deleted.extend(sweep.deployments(deployments).await?);
    Ok(deleted)
}

/// One collection over a cluster's namespace.
struct Sweep<'a> {
    cluster: &'a Cluster,
    known_at: k8s_openapi::jiff::Timestamp,
    managed: ListParams,
}

impl Sweep<'_> {
    /// Made before the known sets were read: it cannot be new work.
    fn older(&self, m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> bool {
        m.creation_timestamp
            .as_ref()
            .is_some_and(|t| t.0 < self.known_at)
    }

    fn api<K>(&self) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.cluster.client.clone(), &self.cluster.namespace)
    }

    /// Jobs on `compute` whose Berth job is gone.
    async fn jobs(&self, compute: &str, jobs: &HashSet<String>) -> Result<Vec<String>, KubeError> {
        let ns = &self.cluster.namespace;
        let background = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        let job_api: Api<Job> = self.api();
        let mut deleted = Vec::new();
        for j in job_api.list(&self.managed).await?.items {
            let ann = j.metadata.annotations.clone().unwrap_or_default();
            if ann.get("berth.dev/compute").map(String::as_str) != Some(compute) {
                continue;
            }
            let owner = ann.get(JOB_NAME_ANNOTATION).cloned().unwrap_or_default();
            if jobs.contains(&owner) || !self.older(&j.metadata) {
                continue;
            }
            let name = j.metadata.name.clone().unwrap_or_default();
            job_api.delete(&name, &background).await?;
            deleted.push(format!("Job {ns}/{name} (job `{owner}`)"));
        }
        Ok(deleted)
    }

    /// A ConfigMap with no owner was made for a Job that was never created (and whose job is
    /// gone: a known job may be about to create it).
    async fn config_maps(&self, jobs: &HashSet<String>) -> Result<Vec<String>, KubeError> {
        let ns = &self.cluster.namespace;
        let known: HashSet<String> = jobs.iter().map(|j| object_name(j)).collect();
        let job_api: Api<Job> = self.api();
        let maps: Api<ConfigMap> = self.api();
        let live: HashSet<String> = job_api
            .list(&self.managed)
            .await?
            .items
            .iter()
            .filter_map(|j| j.metadata.name.clone())
            .collect();
        let job_maps = ListParams::default().labels(JOB_LABEL);
        let mut deleted = Vec::new();
        for m in maps.list(&job_maps).await?.items {
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
            if owned || live.contains(&job) || known.contains(&job) || !self.older(&m.metadata) {
                continue;
            }
            let name = m.metadata.name.clone().unwrap_or_default();
            maps.delete(&name, &DeleteParams::default()).await?;
            deleted.push(format!("ConfigMap {ns}/{name}"));
        }
        Ok(deleted)
    }

    /// Deployments (with their Service and ConfigMaps) whose online deployment is gone.
    async fn deployments(
        &self,
        deployments: &HashSet<(String, String)>,
    ) -> Result<Vec<String>, KubeError> {
        let ns = &self.cluster.namespace;
        let dep_api: Api<Deployment> = self.api();
        let mut deleted = Vec::new();
        for d in dep_api.list(&self.managed).await?.items {
            let ann = d.metadata.annotations.clone().unwrap_or_default();
            let (Some(ep), Some(dep)) = (
                ann.get("berth.dev/endpoint-name"),
                ann.get("berth.dev/deployment-name"),
            ) else {
                continue;
            };
            if deployments.contains(&(ep.clone(), dep.clone())) || !self.older(&d.metadata) {
                continue;
            }
            serving::delete(self.cluster, ep, dep).await?;
            deleted.push(format!(
                "Deployment {ns}/{} (deployment `{ep}/{dep}`)",
                d.metadata.name.clone().unwrap_or_default()
            ));
        }
        Ok(deleted)
    }
}
