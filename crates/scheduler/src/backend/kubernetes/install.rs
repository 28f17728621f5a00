//! The extension install on a cluster: health checks before anything is applied (with codes
//! in Azure's E4xxxx numbering), apply and record, readiness, update and delete. What was
//! installed, and with which public settings, is recorded in ConfigMap `berth-extension` in
//! `azureml`, so `update` and `delete` know what `create` made.

use std::collections::BTreeMap;

use berth_core::extension::config::ExtensionConfig;
use berth_core::extension::render::{MANAGED_BY, NAMESPACE};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Secret};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Client;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::FIELD_MANAGER;
use super::apply;
use super::cluster::describe;
use super::error::{KubeError, api, object};

/// The ConfigMap that records an install.
pub const RECORD: &str = "berth-extension";
const CRD_NAME: &str = "instancetypes.amlarc.azureml.com";

/// One problem the health check found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `E4xxxx`; below E45000 blocks the install, above is a warning.
    pub code: &'static str,
    /// Azure's name for the check (or Berth's, where Azure has none).
    pub check: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl Finding {
    /// True when the install cannot go on.
    pub fn is_critical(&self) -> bool {
        self.code < "E45000"
    }
}

fn finding(code: &'static str, check: &'static str, message: String) -> Finding {
    Finding {
        code,
        check,
        message,
    }
}

/// What `create` recorded.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The extension's name.
    pub name: String,
    /// The public settings (`--config`); protected ones stay only in their Secret.
    pub settings: BTreeMap<String, String>,
    /// True when `create` made the `azureml` namespace (so `delete` removes it).
    pub created_namespace: bool,
    /// Berth's version that installed it.
    pub version: String,
}

fn managed(labels: Option<&BTreeMap<String, String>>) -> bool {
    labels.is_some_and(|l| l.get(MANAGED_BY.0).map(String::as_str) == Some(MANAGED_BY.1))
}

async fn allowed(
    client: &Client,
    verb: &str,
    group: &str,
    resource: &str,
    ns: &str,
) -> Result<bool, KubeError> {
    let reviews: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let review: SelfSubjectAccessReview = serde_json::from_value(json!({
        "spec": {"resourceAttributes": {"verb": verb, "group": group, "resource": resource, "namespace": ns}}
    }))
    .map_err(object)?;
    let answer = reviews
        .create(&PostParams::default(), &review)
        .await
        .map_err(api("cannot check permissions"))?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// Checks the cluster before an install or update. An empty list means all is well.
pub async fn health_check(client: &Client, cfg: &ExtensionConfig) -> Vec<Finding> {
    if let Err(e) = client.apiserver_version().await {
        return vec![finding(
            "E45003",
            "BAD_NETWORK_CONNECTIVITY",
            format!("cannot reach the cluster's API server: {}", describe(&e)),
        )];
    }
    let mut out = permission_findings(client).await;
    out.extend(node_findings(client, cfg).await);
    out.extend(conflict_findings(client).await);
    out
}

/// What the kubeconfig's user may not do that an install needs.
async fn permission_findings(client: &Client) -> Vec<Finding> {
    let mut out = Vec::new();
    for (verb, group, resource, ns) in [
        (
            "create",
            "apiextensions.k8s.io",
            "customresourcedefinitions",
            "",
        ),
        ("create", "rbac.authorization.k8s.io", "clusterroles", ""),
        (
            "create",
            "rbac.authorization.k8s.io",
            "clusterrolebindings",
            "",
        ),
        ("create", "", "namespaces", ""),
        ("create", "apps", "deployments", NAMESPACE),
        ("create", "", "secrets", NAMESPACE),
        ("create", "", "services", NAMESPACE),
        ("create", "", "persistentvolumeclaims", NAMESPACE),
    ] {
        match allowed(client, verb, group, resource, ns).await {
            Ok(true) => {}
            Ok(false) => {
                let full = if group.is_empty() {
                    resource.to_string()
                } else {
                    format!("{resource}.{group}")
                };
                let place = if ns.is_empty() {
                    "cluster-wide".to_string()
                } else {
                    format!("in namespace `{ns}`")
                };
                out.push(finding(
                    "E40008",
                    "PERMISSION_DENIED",
                    format!("the kubeconfig's user may not `{verb}` {full} {place}; install with a cluster-admin kubeconfig"),
                ));
            }
            Err(e) => out.push(finding("E40000", "UNKNOWN_ERROR", e.to_string())),
        }
    }
    out
}

/// Too few nodes (matching the node selector) for the routers.
async fn node_findings(client: &Client, cfg: &ExtensionConfig) -> Option<Finding> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = match nodes.list(&ListParams::default()).await {
        Ok(list) => list,
        Err(e) => {
            return Some(finding(
                "E40000",
                "UNKNOWN_ERROR",
                format!("cannot list nodes: {}", describe(&e)),
            ));
        }
    };
    if list.items.is_empty() {
        return Some(finding(
            "E40002",
            "INSUFFICIENT_NODE",
            "the cluster has no nodes, so nothing can run; add a node pool first".into(),
        ));
    }
    let matching = list
        .items
        .iter()
        .filter(|n| {
            let labels = n.metadata.labels.clone().unwrap_or_default();
            cfg.node_selector
                .iter()
                .all(|(k, v)| labels.get(k) == Some(v))
        })
        .count();
    let needed = if cfg.router_ha { 3 } else { 1 };
    if matching >= needed {
        return None;
    }
    let why = if cfg.node_selector.is_empty() {
        String::new()
    } else {
        let sel: Vec<String> = cfg
            .node_selector
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(" matching nodeSelector {}", sel.join(","))
    };
    let fix = if cfg.router_ha {
        "add nodes, or set inferenceRouterHA=False for one router replica"
    } else {
        "add a node with those labels, or change nodeSelector"
    };
    Some(finding(
        "E40002",
        "INSUFFICIENT_NODE",
        format!("{needed} node(s){why} are needed and {matching} exist; {fix}"),
    ))
}

/// Software already in the cluster that Berth's would clash with (Azure ML's extension).
async fn conflict_findings(client: &Client) -> Vec<Finding> {
    let mut out = Vec::new();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    match crds.get_opt(CRD_NAME).await {
        Ok(Some(crd)) if !managed(crd.metadata.labels.as_ref()) => out.push(finding(
            "E40009",
            "INSTANCETYPE_CRD_CONFLICT",
            format!("CRD {CRD_NAME} exists and was not installed by Berth (Azure ML's extension?); uninstall that first, or keep it and attach the cluster without the extension"),
        )),
        Ok(_) => {}
        Err(e) => out.push(finding("E40000", "UNKNOWN_ERROR", format!("cannot read CRD {CRD_NAME}: {}", describe(&e)))),
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    for name in ["azureml-fe", "berth-router", "berth-server"] {
        if let Ok(Some(d)) = deployments.get_opt(name).await
            && !managed(d.metadata.labels.as_ref())
        {
            out.push(finding(
                "E45005",
                "AZUREML_FE_DEPLOYMENT_CONFLICT",
                format!("Deployment {NAMESPACE}/{name} exists and was not made by Berth; scoring requests may reach it instead"),
            ));
        }
    }
    out
}

/// The install recorded in the cluster, if any.
pub async fn read_record(client: &Client) -> Result<Option<Record>, KubeError> {
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let found = maps
        .get_opt(RECORD)
        .await
        .map_err(api(format!("cannot read ConfigMap {NAMESPACE}/{RECORD}")))?;
    let Some(cm) = found else { return Ok(None) };
    let text = cm
        .data
        .and_then(|d| d.get("record").cloned())
        .unwrap_or_default();
    serde_json::from_str(&text).map(Some).map_err(|e| {
        KubeError::Object(format!(
            "ConfigMap {NAMESPACE}/{RECORD} is damaged ({e}); delete it and install again"
        ))
    })
}

/// True when the `azureml` namespace exists.
pub async fn namespace_exists(client: &Client) -> Result<bool, KubeError> {
    let ns: Api<Namespace> = Api::all(client.clone());
    Ok(ns.get_opt(NAMESPACE).await?.is_some())
}

/// What an existing install keeps in its Secrets, so that an update keeps it too.
#[derive(Default)]
pub struct ExistingSecrets {
    /// The API token.
    pub token: Option<String>,
    /// The router's TLS PEM pair (certificate, key).
    pub tls: Option<(String, String)>,
    /// The external PostgreSQL's URL (`storeUrl`).
    pub store_url: Option<String>,
}

/// The Secrets of an existing install.
pub async fn existing_secrets(client: &Client) -> ExistingSecrets {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), NAMESPACE);
    let field = |s: &Secret, k: &str| {
        s.data
            .as_ref()
            .and_then(|d| d.get(k))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    };
    let read = |name: &'static str| {
        let secrets = secrets.clone();
        async move { secrets.get_opt(name).await.ok().flatten() }
    };
    ExistingSecrets {
        token: read("berth-api-token")
            .await
            .and_then(|s| field(&s, "token")),
        tls: read("berth-router-tls")
            .await
            .and_then(|s| field(&s, "cert.pem").zip(field(&s, "key.pem"))),
        store_url: read("berth-store").await.and_then(|s| field(&s, "url")),
    }
}

/// Applies every manifest in order, then the record; `progress` hears each object.
pub async fn apply_all(
    client: &Client,
    docs: &[Value],
    record: &Record,
    mut progress: impl FnMut(&str),
) -> Result<(), KubeError> {
    for doc in docs {
        apply::apply(client, doc).await?;
        progress(&apply::label(doc));
    }
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": RECORD, "namespace": NAMESPACE, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
        "data": {"record": serde_json::to_string_pretty(record).map_err(object)?},
    });
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    maps.patch(
        RECORD,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&cm),
    )
    .await
    .map_err(api("cannot record the install"))?;
    Ok(())
}

/// Deletes, in reverse order, each manifest's object (the namespace only when `create` made
/// it); returns what was deleted.
pub async fn delete_all(
    client: &Client,
    docs: &[Value],
    record: &Record,
) -> Result<Vec<String>, KubeError> {
    let mut deleted = Vec::new();
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NAMESPACE);
    let _ = maps.delete(RECORD, &Default::default()).await;
    for doc in docs.iter().rev() {
        if doc["kind"] == "Namespace" && !record.created_namespace {
            continue;
        }
        if apply::delete(client, doc).await? {
            deleted.push(apply::label(doc));
        }
    }
    Ok(deleted)
}

/// One component's readiness.
#[derive(Clone, Debug, Serialize)]
pub struct Component {
    /// `Deployment azureml/berth-router`, ...
    pub name: String,
    /// Ready replicas over wanted ones (`1/1`), or `present` / `missing`.
    pub ready: String,
    /// Why it is not ready, when known (the scheduler's message, a container's reason).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Each manifest's object, and each Deployment's and StatefulSet's readiness, with the reason a pod is stuck.
pub async fn components(client: &Client, docs: &[Value]) -> Result<Vec<Component>, KubeError> {
    let mut out = Vec::new();
    let pods: Api<Pod> = Api::namespaced(client.clone(), NAMESPACE);
    for doc in docs {
        let live = apply::get(client, doc).await?;
        let name = apply::label(doc);
        let Some(obj) = live else {
            out.push(Component {
                name,
                ready: "missing".into(),
                reason: None,
            });
            continue;
        };
        if doc["kind"] != "Deployment" && doc["kind"] != "StatefulSet" {
            out.push(Component {
                name,
                ready: "present".into(),
                reason: None,
            });
            continue;
        }
        let want = obj.data["spec"]["replicas"].as_i64().unwrap_or(1);
        let ready = obj.data["status"]["readyReplicas"].as_i64().unwrap_or(0);
        let mut reason = None;
        if ready < want {
            let component = doc["metadata"]["labels"]["app.kubernetes.io/component"]
                .as_str()
                .unwrap_or_default();
            let lp =
                ListParams::default().labels(&format!("app.kubernetes.io/component={component}"));
            if let Ok(list) = pods.list(&lp).await {
                reason = list.items.iter().find_map(pod_problem);
            }
        }
        out.push(Component {
            name,
            ready: format!("{ready}/{want}"),
            reason,
        });
    }
    Ok(out)
}

fn pod_problem(p: &Pod) -> Option<String> {
    let name = p.metadata.name.clone().unwrap_or_default();
    let status = p.status.as_ref()?;
    if let Some(c) = status
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    {
        return Some(format!(
            "pod {name}: {}",
            c.message.clone().unwrap_or_default()
        ));
    }
    status.container_statuses.iter().flatten().find_map(|c| {
        let w = c.state.as_ref()?.waiting.as_ref()?;
        Some(format!(
            "pod {name}: {} {}",
            w.reason.clone().unwrap_or_default(),
            w.message.clone().unwrap_or_default()
        ))
    })
}

/// Azure's provisioning state from the components: Succeeded when every object exists and
/// every Deployment is ready, Failed when a pod cannot be placed or started, else Creating.
pub fn provisioning_state(components: &[Component]) -> &'static str {
    let ready = components
        .iter()
        .all(|c| c.ready == "present" || c.ready.split_once('/').is_some_and(|(a, b)| a == b));
    if ready {
        "Succeeded"
    } else if components.iter().any(|c| c.reason.is_some()) {
        "Failed"
    } else {
        "Creating"
    }
}
