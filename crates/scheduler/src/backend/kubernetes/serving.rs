//! Online deployments on a cluster: a `Deployment` whose pods run `berth runtime` (the binary
//! copied in by an init container from Berth's image, so the user's image only needs Python),
//! a headless `Service` (cluster DNS for the replicas; the router reads ready pods itself), and
//! a ConfigMap per revision with the scoring code and model (or, when they are too large for
//! one, an init container that fetches them from the Berth server). Rolling updates keep every
//! old replica until a new one is ready (`maxUnavailable: 0`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use berth_core::conda::PythonEnv;
use berth_core::spec::deployment::ProbeSettings;
use berth_core::spec::instance_type::InstanceType;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, LogParams};
use serde_json::{Value, json};

use super::apply_retrying;
use super::cluster::{Cluster, describe};
use super::delivery::{BERTH_IN_IMAGE, Fetch, Part, deliver, size_init_containers};
use super::error::{KubeError, api, object};
use super::objects::{ENV_DIR, MANAGED_BY, UV_IN_IMAGE, env_build_vars, object_name};

/// The port `berth runtime` listens on in a pod.
pub const PORT: u16 = 5001;
/// Labels naming the endpoint and deployment a replica serves.
pub const ENDPOINT_LABEL: &str = "berth.dev/endpoint";
/// See [`ENDPOINT_LABEL`].
pub const DEPLOYMENT_LABEL: &str = "berth.dev/deployment";

/// What one revision of a deployment runs.
#[derive(Clone, Debug)]
pub struct ServingPlan {
    /// Endpoint name.
    pub endpoint: String,
    /// Deployment name.
    pub deployment: String,
    /// Revision (a new ConfigMap per revision).
    pub revision: u32,
    /// Replicas.
    pub replicas: u32,
    /// Resources and node selector.
    pub instance_type: InstanceType,
    /// The user's image (needs Python for a scoring script).
    pub image: String,
    /// Berth's image, which provides the `berth` binary.
    pub berth_image: String,
    /// The scoring code folder and the script in it.
    pub code: Option<(PathBuf, String)>,
    /// The model folder.
    pub model_dir: Option<PathBuf>,
    /// Where pods fetch code and model too large for a ConfigMap.
    pub fetch: Option<Fetch>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Python workers per replica.
    pub workers: usize,
    /// Scoring timeout.
    pub request_timeout_ms: u64,
    /// Liveness probe settings.
    pub liveness: ProbeSettings,
    /// Readiness probe settings.
    pub readiness: ProbeSettings,
    /// A conda file's environment, built in each pod (an init container in the user's image,
    /// with uv from Berth's image) before the replica starts.
    pub python_env: Option<PythonEnv>,
}

/// The Kubernetes name of a deployment's objects.
pub fn name_of(endpoint: &str, deployment: &str) -> String {
    object_name(&format!("{endpoint}-{deployment}"))
}

fn probe(path: &str, p: &ProbeSettings) -> Value {
    json!({
        "httpGet": {"path": path, "port": PORT},
        "initialDelaySeconds": p.initial_delay,
        "periodSeconds": p.period.max(1),
        "timeoutSeconds": p.timeout.max(1),
        "successThreshold": p.success_threshold.max(1),
        "failureThreshold": p.failure_threshold.max(1),
    })
}

/// Builds the revision's ConfigMap, the Deployment and the headless Service.
pub fn build(
    plan: &ServingPlan,
    namespace: &str,
) -> Result<(ConfigMap, Deployment, Service), KubeError> {
    let name = name_of(&plan.endpoint, &plan.deployment);
    let pod = pod_parts(plan, &format!("{name}-r{}", plan.revision))?;
    let it = &plan.instance_type;
    let mut limits =
        json!({"cpu": it.limits.cpu.to_string(), "memory": it.limits.memory.to_string()});
    if it.limits.gpus.max(it.requests.gpus) > 0 {
        limits["nvidia.com/gpu"] = json!(it.limits.gpus.max(it.requests.gpus).to_string());
    }
    let requests =
        json!({"cpu": it.requests.cpu.to_string(), "memory": it.requests.memory.to_string()});
    let mut init = pod.init;
    size_init_containers(&mut init, &requests, &limits);
    let pod_spec = json!({
        "enableServiceLinks": false,
        "automountServiceAccountToken": false,
        "nodeSelector": it.node_selector,
        "initContainers": init,
        "containers": [{
            "name": "inference-server",
            "image": plan.image,
            "command": ["/berth/bin/berth"],
            "args": pod.args,
            "env": replica_env(plan),
            "ports": [{"name": "http", "containerPort": PORT, "protocol": "TCP"}],
            "resources": {"requests": requests, "limits": limits},
            "readinessProbe": probe("/ready", &plan.readiness),
            "livenessProbe": probe("/", &plan.liveness),
            "volumeMounts": pod.mounts,
        }],
        "volumes": pod.volumes,
    });
    objects(plan, namespace, pod_spec, pod.data)
}

/// What a replica's pod is made of besides its container: the files delivered to it, the init
/// containers (Berth's binary, a fetch of large files, the environment build), and the
/// runtime's arguments.
struct PodParts {
    data: BTreeMap<String, String>,
    init: Vec<Value>,
    volumes: Vec<Value>,
    mounts: Vec<Value>,
    args: Vec<String>,
}

fn pod_parts(plan: &ServingPlan, config_map: &str) -> Result<PodParts, KubeError> {
    let mut parts = Vec::new();
    let mut args = vec!["runtime".to_string()];
    if let Some((code, script)) = &plan.code {
        parts.push(Part {
            name: "code".into(),
            root: code.clone(),
            volume: "code".into(),
            mount: "/berth/code".into(),
        });
        args.extend(["--script".into(), format!("/berth/code/{script}")]);
    }
    if let Some(model) = &plan.model_dir {
        parts.push(Part {
            name: "model".into(),
            root: model.clone(),
            volume: "model".into(),
            mount: "/berth/model".into(),
        });
        args.extend(["--model-dir".into(), "/berth/model".into()]);
    }
    let delivered = deliver(
        &parts,
        config_map,
        plan.fetch.as_ref(),
        &plan.berth_image,
        "the deployment's code and model",
        "attach the compute with --server-url so pods fetch them from the Berth server, or bake the model into the image",
    )?;
    let mut pod = PodParts {
        data: delivered.data,
        init: vec![json!({
            "name": "berth-bin", "image": plan.berth_image,
            "command": ["cp", BERTH_IN_IMAGE, "/berth/bin/berth"],
            "volumeMounts": [{"name": "berth-bin", "mountPath": "/berth/bin"}],
        })],
        volumes: vec![json!({"name": "berth-bin", "emptyDir": {}})],
        mounts: vec![json!({"name": "berth-bin", "mountPath": "/berth/bin"})],
        args,
    };
    pod.volumes.extend(delivered.volumes);
    pod.mounts.extend(delivered.mounts);
    pod.init.extend(delivered.init);
    if let Some(py) = &plan.python_env {
        build_environment(plan, py, &mut pod)?;
    }
    pod.args.extend([
        "--listen".into(),
        format!("$(BERTH_POD_IP):{PORT}"),
        "--workers".into(),
        plan.workers.to_string(),
        "--request-timeout-ms".into(),
        plan.request_timeout_ms.to_string(),
    ]);
    Ok(pod)
}

/// The environment is built in each pod by an init container in the deployment's image, with
/// uv copied from Berth's image; the replica's workers run with its Python.
fn build_environment(
    plan: &ServingPlan,
    py: &PythonEnv,
    pod: &mut PodParts,
) -> Result<(), KubeError> {
    pod.volumes
        .push(json!({"name": "berth-env", "emptyDir": {}}));
    let env_mount = json!({"name": "berth-env", "mountPath": ENV_DIR});
    pod.mounts.push(env_mount.clone());
    pod.init[0]["command"] = json!(["cp", BERTH_IN_IMAGE, UV_IN_IMAGE, "/berth/bin/"]);
    let vars: Vec<Value> = env_build_vars(py)?
        .iter()
        .map(|(k, v)| json!({"name": k, "value": v}))
        .collect();
    pod.init.push(json!({
        "name": "berth-env", "image": plan.image,
        "command": ["/berth/bin/berth", "env-build", "--into", ENV_DIR],
        "env": vars,
        "volumeMounts": [{"name": "berth-bin", "mountPath": "/berth/bin"}, env_mount],
    }));
    pod.args.extend([
        "--python".into(),
        format!("{ENV_DIR}/{}/bin/python", crate::envs::key(py)),
    ]);
    Ok(())
}

/// The replica container's variables: its pod's IP, the deployment's variables, and
/// `AZUREML_MODEL_DIR` when there is a model.
fn replica_env(plan: &ServingPlan) -> Vec<Value> {
    let mut env: Vec<Value> = vec![
        json!({"name": "BERTH_POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}),
    ];
    env.extend(plan.env.iter().map(|(k, v)| json!({"name": k, "value": v})));
    if plan.model_dir.is_some() {
        env.push(json!({"name": "AZUREML_MODEL_DIR", "value": "/berth/model"}));
    }
    env
}

/// The Deployment around `pod_spec`, its headless Service, and the revision's ConfigMap.
fn objects(
    plan: &ServingPlan,
    namespace: &str,
    pod_spec: Value,
    data: BTreeMap<String, String>,
) -> Result<(ConfigMap, Deployment, Service), KubeError> {
    let name = name_of(&plan.endpoint, &plan.deployment);
    let selector = json!({
        MANAGED_BY.0: MANAGED_BY.1,
        ENDPOINT_LABEL: object_name(&plan.endpoint),
        DEPLOYMENT_LABEL: object_name(&plan.deployment),
    });
    let mut pod_labels = selector.clone();
    pod_labels["berth.dev/revision"] = json!(plan.revision.to_string());
    // Azure's label on inference pods: the seed's `kubectl get pods -l app=azureml-inference`.
    pod_labels["app"] = json!("azureml-inference");
    let deployment = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name, "namespace": namespace, "labels": selector,
            "annotations": {"berth.dev/endpoint-name": plan.endpoint, "berth.dev/deployment-name": plan.deployment}},
        "spec": {
            "replicas": plan.replicas,
            "selector": {"matchLabels": selector},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {"metadata": {"labels": pod_labels}, "spec": pod_spec},
        },
    });
    let service = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": namespace, "labels": selector},
        "spec": {"clusterIP": "None", "selector": selector, "ports": [{"name": "http", "port": PORT, "targetPort": PORT, "protocol": "TCP"}]},
    });
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": format!("{name}-r{}", plan.revision), "namespace": namespace, "labels": selector},
        "binaryData": data,
    });
    Ok((
        serde_json::from_value(cm).map_err(object)?,
        serde_json::from_value(deployment).map_err(object)?,
        serde_json::from_value(service).map_err(object)?,
    ))
}

/// Applies a revision: its ConfigMap first, then the Service and the Deployment (whose
/// rolling update replaces the previous revision's pods one at a time).
pub async fn apply(cluster: &Cluster, plan: &ServingPlan) -> Result<(), KubeError> {
    let p = plan.clone();
    let ns = cluster.namespace.clone();
    let (cm, deployment, service) = tokio::task::spawn_blocking(move || build(&p, &ns))
        .await
        .map_err(object)??;
    let name = name_of(&plan.endpoint, &plan.deployment);
    let ns = &cluster.namespace;
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), ns);
    let cm_name = cm.metadata.name.clone().unwrap_or_default();
    apply_retrying(&maps, &cm_name, &cm)
        .await
        .map_err(api(format!(
            "cannot create ConfigMap {cm_name} in namespace `{ns}`"
        )))?;
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), ns);
    apply_retrying(&services, &name, &service)
        .await
        .map_err(api(format!(
            "cannot create Service {name} in namespace `{ns}`"
        )))?;
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), ns);
    apply_retrying(&deployments, &name, &deployment)
        .await
        .map_err(api(format!(
            "cannot create Deployment {name} in namespace `{ns}`"
        )))?;
    Ok(())
}

/// Selects a deployment's pods (and its ConfigMaps).
fn replicas_of(endpoint: &str, deployment: &str) -> ListParams {
    ListParams::default().labels(&format!(
        "{ENDPOINT_LABEL}={},{DEPLOYMENT_LABEL}={}",
        object_name(endpoint),
        object_name(deployment)
    ))
}

pub use crate::serving::{Observed, Rollout};

/// The address of a pod that should get requests: Ready, not terminating, with an IP. This is
/// the Endpoints controller's own rule, read from the Pods directly (see docs/decisions.md):
/// a terminating pod leaves the route table the moment it is marked, before Endpoints follow.
pub fn ready_address(p: &Pod) -> Option<String> {
    if p.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let status = p.status.as_ref()?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    let ip = status.pod_ip.as_ref().filter(|ip| !ip.is_empty())?;
    ready.then(|| format!("{ip}:{PORT}"))
}

/// Reads the deployment's pods and Deployment status; the rollout is complete only
/// once every replica runs `revision`.
pub async fn observe(
    cluster: &Cluster,
    endpoint: &str,
    deployment: &str,
    revision: u32,
) -> Result<Observed, KubeError> {
    let name = name_of(endpoint, deployment);
    let ns = &cluster.namespace;
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), ns);
    let list = pods.list(&replicas_of(endpoint, deployment)).await?;
    let mut ready: Vec<String> = list.items.iter().filter_map(ready_address).collect();
    ready.sort();
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), ns);
    let rollout = match deployments.get_opt(&name).await? {
        None => Rollout::Failed(format!("Deployment {name} is gone from namespace `{ns}`")),
        Some(d) => rollout_of(&d, revision, ready.len(), &list.items),
    };
    Ok(Observed { ready, rollout })
}

/// How `revision`'s rollout stands, from the Deployment, its pods and how many of them the
/// router can use.
fn rollout_of(d: &Deployment, revision: u32, ready: usize, pods: &[Pod]) -> Rollout {
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let applied = d
        .spec
        .as_ref()
        .and_then(|s| s.template.metadata.as_ref())
        .and_then(|m| m.labels.as_ref())
        .and_then(|l| l.get("berth.dev/revision"))
        .cloned();
    if applied != Some(revision.to_string()) {
        return Rollout::Progressing;
    }
    let generation = d.metadata.generation.unwrap_or(0);
    let st = d.status.clone().unwrap_or_default();
    let complete = st.observed_generation.unwrap_or(0) >= generation
        && st.updated_replicas.unwrap_or(0) == want
        && st.ready_replicas.unwrap_or(0) == want
        && st.replicas.unwrap_or(0) == want
        // Every wanted replica is ready for the router too.
        && ready >= usize::try_from(want).unwrap_or(0);
    if complete {
        return Rollout::Complete;
    }
    if let Some(reason) = pods.iter().find_map(pod_failure) {
        return Rollout::Failed(reason);
    }
    if let Some(reason) = past_deadline(st.conditions.as_deref()) {
        return Rollout::Failed(reason);
    }
    match unplaceable(st.conditions.as_deref(), pods) {
        Some(reason) => Rollout::Unplaceable(reason),
        None => Rollout::Progressing,
    }
}

/// Why a replica's pod cannot start by itself: a fatal waiting reason, or a container that
/// exited non-zero.
fn pod_failure(p: &Pod) -> Option<String> {
    let pod = p.metadata.name.clone().unwrap_or_default();
    let status = p.status.as_ref()?;
    let init = status.init_container_statuses.iter().flatten();
    for c in init.chain(status.container_statuses.iter().flatten()) {
        if let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref())
            && let Some(reason) = w.reason.as_deref()
            && super::observe::FATAL_WAITING.contains(&reason)
        {
            return Some(format!(
                "pod {pod} cannot start: {reason} ({}) in container {} with image `{}`",
                w.message.as_deref().unwrap_or("no message"),
                c.name,
                c.image
            ));
        }
        if let Some(t) = c.state.as_ref().and_then(|s| s.terminated.as_ref())
            && t.exit_code != 0
        {
            return Some(format!(
                "pod {pod}: container {} exited with code {}; see `berth online-deployment get-logs`",
                c.name, t.exit_code
            ));
        }
    }
    None
}

/// Why replicas cannot be placed: the Deployment's `ReplicaFailure` condition (a
/// ResourceQuota, LimitRange or webhook refused the pod), or a pod the scheduler cannot place.
fn unplaceable(conditions: Option<&[DeploymentCondition]>, pods: &[Pod]) -> Option<String> {
    if let Some(c) = conditions
        .into_iter()
        .flatten()
        .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
    {
        return Some(format!(
            "the ReplicaSet cannot create pods: {}",
            c.message.as_deref().unwrap_or_default()
        ));
    }
    pods.iter().find_map(|p| {
        let c = p
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
        Some(format!(
            "pod {}: {}",
            p.metadata.name.as_deref().unwrap_or_default(),
            c.message.as_deref().unwrap_or_default()
        ))
    })
}

/// Why the rollout stopped, when Kubernetes gave up on it: no progress within the
/// Deployment's `progressDeadlineSeconds` (ten minutes by default), so a replica that never
/// becomes ready fails the deployment instead of keeping it Creating for ever.
fn past_deadline(conditions: Option<&[DeploymentCondition]>) -> Option<String> {
    let c = conditions.into_iter().flatten().find(|c| {
        c.type_ == "Progressing"
            && c.status == "False"
            && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    })?;
    Some(format!(
        "the replicas made no progress within the rollout's deadline (ProgressDeadlineExceeded: {}); `berth online-deployment get-logs` shows what they said",
        c.message.as_deref().unwrap_or_default()
    ))
}

/// Sets a deployment's replica count through the scale subresource (the autoscaler's write).
pub async fn scale(
    cluster: &Cluster,
    endpoint: &str,
    deployment: &str,
    replicas: u32,
) -> Result<(), KubeError> {
    let api: Api<Deployment> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let patch = serde_json::json!({"spec": {"replicas": replicas}});
    api.patch_scale(
        &name_of(endpoint, deployment),
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
    .map_err(KubeError::from)
}

/// Deletes the Deployment, Service and every revision's ConfigMap.
pub async fn delete(cluster: &Cluster, endpoint: &str, deployment: &str) -> Result<(), KubeError> {
    let name = name_of(endpoint, deployment);
    let ns = &cluster.namespace;
    let params = DeleteParams {
        propagation_policy: Some(kube::api::PropagationPolicy::Background),
        ..DeleteParams::default()
    };
    let deployments: Api<Deployment> = Api::namespaced(cluster.client.clone(), ns);
    let services: Api<Service> = Api::namespaced(cluster.client.clone(), ns);
    let maps: Api<ConfigMap> = Api::namespaced(cluster.client.clone(), ns);
    let gone = |r: Result<(), kube::Error>| match r {
        Ok(()) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(e) => Err(KubeError::from(e)),
    };
    gone(deployments.delete(&name, &params).await.map(|_| ()))?;
    gone(services.delete(&name, &params).await.map(|_| ()))?;
    let lp = replicas_of(endpoint, deployment);
    gone(
        maps.delete_collection(&DeleteParams::default(), &lp)
            .await
            .map(|_| ()),
    )?;
    Ok(())
}

/// The last `lines` lines of each replica's log (pods/log).
pub async fn logs(
    cluster: &Cluster,
    endpoint: &str,
    deployment: &str,
    lines: usize,
) -> Result<String, KubeError> {
    let pods: Api<Pod> = Api::namespaced(cluster.client.clone(), &cluster.namespace);
    let lp = replicas_of(endpoint, deployment);
    let list = pods.list(&lp).await?;
    let mut out = String::new();
    for p in &list.items {
        let pod = p.metadata.name.clone().unwrap_or_default();
        out.push_str(&format!("==> pod {pod} <==\n"));
        let params = LogParams {
            container: Some("inference-server".into()),
            tail_lines: Some(lines as i64),
            ..LogParams::default()
        };
        match pods.logs(&pod, &params).await {
            Ok(text) => out.push_str(&text),
            Err(e) => out.push_str(&format!("(cannot read its log: {})\n", describe(&e))),
        }
    }
    Ok(out)
}

#[cfg(test)]
#[path = "serving_tests.rs"]
mod tests;
