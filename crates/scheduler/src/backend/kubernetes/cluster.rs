//! Reaching a cluster: a client from a kubeconfig, the checks `compute attach` makes before it
//! records a cluster, its capacity, and the InstanceTypes applied to it.

use std::collections::BTreeMap;

use super::error::{KubeError, api, object};
use berth_core::quantity::Quantity;
use berth_core::resources::Resources;
use berth_core::spec::compute::KubernetesTarget;
use berth_core::spec::instance_type::{API_VERSION, InstanceType};
use berth_core::yaml::Source;
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::{Namespace, Node};
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::ApiResource;
use kube::{Client, Config};
use serde_json::json;

/// A connected cluster and the namespace Berth's work goes to.
#[derive(Clone)]
pub struct Cluster {
    /// The client.
    pub client: Client,
    /// The namespace.
    pub namespace: String,
    /// The API server's address, for messages.
    pub server: String,
    /// Where pods reach the Berth server, to upload job outputs.
    pub server_url: Option<String>,
    /// The image pods copy the `berth` binary from.
    pub berth_image: String,
}

/// Where a pod finds its ServiceAccount's token and the cluster's CA.
const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A kubeconfig for the pod this server runs in: the API server from
/// `KUBERNETES_SERVICE_HOST`/`_PORT`, the ServiceAccount's token file (re-read as it rotates)
/// and CA from `$BERTH_SERVICE_ACCOUNT_DIR` (default: the standard mount).
fn in_cluster_kubeconfig() -> Result<String, KubeError> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").map_err(|_| {
        KubeError::Config("--in-cluster works only for a server running in a pod (KUBERNETES_SERVICE_HOST is not set); pass --kubeconfig instead".into())
    })?;
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
    let dir =
        std::env::var("BERTH_SERVICE_ACCOUNT_DIR").unwrap_or_else(|_| SERVICE_ACCOUNT_DIR.into());
    let dir = std::path::Path::new(&dir);
    for f in ["token", "ca.crt"] {
        if !dir.join(f).is_file() {
            return Err(KubeError::Config(format!(
                "--in-cluster: {} is missing; is a ServiceAccount token mounted?",
                dir.join(f).display()
            )));
        }
    }
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let doc = json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "in-cluster", "cluster": {
            "server": format!("https://{host}:{port}"),
            "certificate-authority": dir.join("ca.crt"),
        }}],
        "users": [{"name": "service-account", "user": {"tokenFile": dir.join("token")}}],
        "contexts": [{"name": "in-cluster", "context": {"cluster": "in-cluster", "user": "service-account"}}],
        "current-context": "in-cluster",
    });
    Ok(doc.to_string())
}

/// Builds a client from a kubeconfig's text, or the pod's own identity (no request is made).
pub async fn connect(target: &KubernetesTarget) -> Result<Cluster, KubeError> {
    let text = if target.in_cluster {
        in_cluster_kubeconfig()?
    } else {
        target.kubeconfig.clone()
    };
    let kubeconfig = Kubeconfig::from_yaml(&text)
        .map_err(|e| KubeError::Config(format!("the kubeconfig cannot be read: {e}")))?;
    if let Some(ctx) = &target.context
        && !kubeconfig.contexts.iter().any(|c| &c.name == ctx)
    {
        let known: Vec<&str> = kubeconfig
            .contexts
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        return Err(KubeError::Config(format!(
            "the kubeconfig has no context `{ctx}`; it has: {}",
            known.join(", ")
        )));
    }
    let options = KubeConfigOptions {
        context: target.context.clone(),
        ..KubeConfigOptions::default()
    };
    let config = Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .map_err(|e| KubeError::Config(format!("the kubeconfig cannot be used: {e}")))?;
    let server = config.cluster_url.to_string();
    let client = Client::try_from(config)
        .map_err(|e| KubeError::Config(format!("cannot make a client for {server}: {e}")))?;
    Ok(Cluster {
        client,
        namespace: target.namespace.clone(),
        server,
        server_url: target.server_url.clone(),
        berth_image: target
            .berth_image
            .clone()
            .or_else(|| std::env::var("BERTH_IMAGE").ok().filter(|i| !i.is_empty()))
            .unwrap_or_else(super::objects::berth_image),
    })
}

/// One line for a failed API call: the API server's own message when it sent one.
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        other => other.to_string(),
    }
}

/// The permissions Berth needs in a compute's namespace: (verb, group, resource).
const NAMESPACED: [(&str, &str, &str); 9] = [
    ("create", "batch", "jobs"),
    ("get", "batch", "jobs"),
    ("delete", "batch", "jobs"),
    ("create", "", "configmaps"),
    ("patch", "", "configmaps"),
    ("list", "", "pods"),
    ("get", "", "pods/log"),
    ("deletecollection", "", "pods"),
    ("list", "batch", "jobs"),
];
/// The cluster-wide ones.
const CLUSTER: [(&str, &str, &str); 2] = [
    ("list", "", "nodes"),
    ("list", "amlarc.azureml.com", "instancetypes"),
];

/// The checks before a cluster is attached: it answers, the credentials may do what Berth does,
/// and the namespace exists (or is made when `create_namespace`). Each failure says which.
pub async fn preflight(cluster: &Cluster, create_namespace: bool) -> Result<(), KubeError> {
    cluster
        .client
        .apiserver_version()
        .await
        .map_err(api(format!(
            "cannot reach the cluster at {}",
            cluster.server
        )))?;
    let ns = &cluster.namespace;
    let reviews: Api<SelfSubjectAccessReview> = Api::all(cluster.client.clone());
    let checks = NAMESPACED
        .iter()
        .map(|c| (c, Some(ns.as_str())))
        .chain(CLUSTER.iter().map(|c| (c, None)));
    for ((verb, group, resource), namespace) in checks {
        let (resource, sub) = resource.split_once('/').unwrap_or((resource, ""));
        let review: SelfSubjectAccessReview = serde_json::from_value(json!({
            "spec": {"resourceAttributes": {
                "verb": verb, "group": group, "resource": resource,
                "subresource": sub, "namespace": namespace.unwrap_or(""),
            }}
        }))
        .map_err(object)?;
        let answer = reviews
            .create(&PostParams::default(), &review)
            .await
            .map_err(api("cannot check permissions"))?;
        if !answer.status.is_some_and(|s| s.allowed) {
            let full = match (group.is_empty(), sub.is_empty()) {
                (true, true) => resource.to_string(),
                (true, false) => format!("{resource}/{sub}"),
                (false, _) => format!("{resource}.{group}"),
            };
            let place = namespace
                .map(|n| format!("in namespace `{n}`"))
                .unwrap_or_else(|| "cluster-wide".into());
            return Err(KubeError::Refused(format!(
                "the kubeconfig's user may not `{verb}` {full} {place}; grant it (docs/kubernetes.md lists the role Berth needs)"
            )));
        }
    }
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    let found = match namespaces.get_opt(ns).await {
        Ok(f) => f,
        // Users limited to their namespace may not read Namespaces: the checks above passed,
        // so it exists as far as they can tell.
        Err(kube::Error::Api(s)) if s.code == 403 && !create_namespace => return Ok(()),
        Err(e) => return Err(api(format!("cannot read namespace `{ns}`"))(e)),
    };
    if found.is_none() {
        if !create_namespace {
            return Err(KubeError::Refused(format!(
                "namespace `{ns}` does not exist in the cluster at {}; create it with `kubectl create namespace {ns}`, or pass --create-namespace",
                cluster.server
            )));
        }
        let obj: Namespace =
            serde_json::from_value(json!({"metadata": {"name": ns}})).map_err(object)?;
        namespaces
            .create(&PostParams::default(), &obj)
            .await
            .map_err(api(format!("cannot create namespace `{ns}`")))?;
    }
    Ok(())
}

/// The sum of the Nodes' allocatable CPU, memory and `nvidia.com/gpu`, and how many Nodes.
pub async fn capacity(cluster: &Cluster) -> Result<(Resources, usize), KubeError> {
    let nodes: Api<Node> = Api::all(cluster.client.clone());
    let list = nodes
        .list(&ListParams::default())
        .await
        .map_err(api("cannot list nodes"))?;
    let mut total = Resources::default();
    for node in &list.items {
        let Some(alloc) = node.status.as_ref().and_then(|s| s.allocatable.as_ref()) else {
            continue;
        };
        let q = |k: &str| {
            alloc
                .get(k)
                .and_then(|v| v.0.parse::<Quantity>().ok())
                .unwrap_or_default()
        };
        total = total.add(&Resources::new(
            q("cpu"),
            q("memory"),
            u32::try_from(q("nvidia.com/gpu").units_ceil()).unwrap_or(0),
        ));
    }
    Ok((total, list.items.len()))
}

fn instance_type_resource() -> ApiResource {
    ApiResource {
        group: "amlarc.azureml.com".into(),
        version: "v1alpha1".into(),
        api_version: API_VERSION.into(),
        kind: "InstanceType".into(),
        plural: "instancetypes".into(),
    }
}

/// Reads one InstanceType custom resource into Berth's form (the same checks as a file).
fn parse_instance_type(obj: &DynamicObject) -> Result<InstanceType, KubeError> {
    let name = obj.metadata.name.clone().unwrap_or_default();
    let doc = json!({
        "apiVersion": API_VERSION,
        "kind": "InstanceType",
        "metadata": {"name": name},
        "spec": obj.data.get("spec").cloned().unwrap_or_default(),
    });
    let text = doc.to_string();
    let origin = format!("instancetype/{name} in the cluster");
    let mut parsed = InstanceType::parse_file(&Source::new(&origin, &text))
        .map_err(|e| KubeError::Object(format!("{origin} is not usable: {e}")))?;
    parsed
        .pop()
        .ok_or_else(|| KubeError::Object(format!("{origin} is not usable")))
}

/// One InstanceType from the cluster; `None` when it is not there.
pub async fn instance_type(
    cluster: &Cluster,
    name: &str,
) -> Result<Option<InstanceType>, KubeError> {
    let api: Api<DynamicObject> = Api::all_with(cluster.client.clone(), &instance_type_resource());
    match api.get_opt(name).await {
        Ok(Some(obj)) => parse_instance_type(&obj).map(Some),
        Ok(None) => Ok(None),
        // No CRD installed: no InstanceTypes.
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(None),
        Err(e) => Err(super::error::api(format!(
            "cannot read instance type `{name}` from the cluster"
        ))(e)),
    }
}

/// Every InstanceType in the cluster, by name (ones that do not parse are reported as errors).
pub async fn instance_types(
    cluster: &Cluster,
) -> Result<BTreeMap<String, Result<InstanceType, KubeError>>, KubeError> {
    let api: Api<DynamicObject> = Api::all_with(cluster.client.clone(), &instance_type_resource());
    let list = match api.list(&ListParams::default()).await {
        Ok(l) => l,
        Err(kube::Error::Api(s)) if s.code == 404 => return Ok(BTreeMap::new()),
        Err(e) => {
            return Err(super::error::api(
                "cannot list instance types in the cluster",
            )(e));
        }
    };
    Ok(list
        .items
        .iter()
        .map(|o| {
            (
                o.metadata.name.clone().unwrap_or_default(),
                parse_instance_type(o),
            )
        })
        .collect())
}

/// The attached clusters by compute name: the one place that owns cluster connections,
/// shared by the job backend, the serving backend's plans and the server.
#[derive(Default)]
pub struct Clusters {
    by_compute: std::sync::RwLock<std::collections::HashMap<String, Cluster>>,
}

impl Clusters {
    /// `compute` is `cluster` from now on.
    pub fn attach(&self, compute: &str, cluster: Cluster) {
        if let Ok(mut c) = self.by_compute.write() {
            c.insert(compute.to_string(), cluster);
        }
    }

    /// `compute` is no longer connected.
    pub fn detach(&self, compute: &str) {
        if let Ok(mut c) = self.by_compute.write() {
            c.remove(compute);
        }
    }

    /// True when `compute` is an attached cluster.
    pub fn serves(&self, compute: &str) -> bool {
        self.by_compute
            .read()
            .is_ok_and(|c| c.contains_key(compute))
    }

    /// The cluster behind `compute`.
    pub fn get(&self, compute: &str) -> Option<Cluster> {
        self.by_compute.read().ok()?.get(compute).cloned()
    }
}
