//! Replicas on a Kubernetes cluster: a Deployment, a headless Service and a ConfigMap per
//! revision (see `backend::kubernetes::serving`), observed through the Pods.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Observed, Placement, RevisionPlan, ServingBackend, ServingError};
use crate::backend::kubernetes::cluster::Cluster;
use crate::backend::kubernetes::serving::{self, ServingPlan};

/// Deployments' replicas as Kubernetes Deployments; remembers the ready pods it last saw.
#[derive(Default)]
pub struct KubernetesServing {
    ready: Mutex<HashMap<String, Vec<String>>>,
}

impl KubernetesServing {
    /// The ready pods (`ip:port`) last observed.
    pub fn ready(&self, key: &str) -> Vec<String> {
        self.ready
            .lock()
            .ok()
            .and_then(|m| m.get(key).cloned())
            .unwrap_or_default()
    }
}

fn cluster_of(plan: &RevisionPlan) -> Result<&Cluster, ServingError> {
    match &plan.placement {
        Placement::Cluster { cluster, .. } => Ok(cluster),
        Placement::Local => Err(ServingError::NotOnCluster(plan.key())),
    }
}

fn serving_plan(plan: &RevisionPlan, cluster: &Cluster) -> ServingPlan {
    let fetch = match &plan.placement {
        Placement::Cluster { fetch, .. } => fetch.clone(),
        Placement::Local => None,
    };
    ServingPlan {
        endpoint: plan.endpoint.clone(),
        deployment: plan.deployment.clone(),
        revision: plan.revision,
        replicas: plan.replicas,
        instance_type: plan.instance_type.clone(),
        image: plan.image.clone(),
        berth_image: cluster.berth_image.clone(),
        code: plan.code.clone(),
        model_dir: plan.model_dir.clone(),
        fetch,
        env: plan.env.clone(),
        workers: plan.workers,
        request_timeout_ms: plan.request_timeout_ms,
        liveness: plan.liveness,
        readiness: plan.readiness,
        python_env: plan.python_env().cloned(),
    }
}

impl ServingBackend for KubernetesServing {
    async fn apply(&self, plan: &RevisionPlan) -> Result<(), ServingError> {
        let cluster = cluster_of(plan)?;
        Ok(serving::apply(cluster, &serving_plan(plan, cluster)).await?)
    }

    async fn observe(&self, plan: &RevisionPlan) -> Result<Observed, ServingError> {
        let observed = serving::observe(
            cluster_of(plan)?,
            &plan.endpoint,
            &plan.deployment,
            plan.revision,
        )
        .await?;
        if let Ok(mut m) = self.ready.lock() {
            m.insert(plan.key(), observed.ready.clone());
        }
        Ok(observed)
    }

    async fn scale(&self, plan: &RevisionPlan, replicas: u32) -> Result<(), ServingError> {
        Ok(serving::scale(
            cluster_of(plan)?,
            &plan.endpoint,
            &plan.deployment,
            replicas,
        )
        .await?)
    }

    async fn delete(&self, plan: &RevisionPlan) -> Result<(), ServingError> {
        if let Ok(mut m) = self.ready.lock() {
            m.remove(&plan.key());
        }
        serving::delete(cluster_of(plan)?, &plan.endpoint, &plan.deployment)
            .await
            .map_err(|source| ServingError::Cluster {
                what: format!("cannot delete deployment `{}` from the cluster", plan.key()),
                source,
            })
    }

    async fn logs(&self, plan: &RevisionPlan, lines: usize) -> Result<String, ServingError> {
        serving::logs(cluster_of(plan)?, &plan.endpoint, &plan.deployment, lines)
            .await
            .map_err(|source| ServingError::Cluster {
                what: "cannot read the replicas' logs".into(),
                source,
            })
    }
}
