//! The manifests of the in-cluster install, in namespace `azureml`: the InstanceType CRD and
//! `defaultinstancetype`, RBAC, the Berth server (state on a PVC) and the router with a Service
//! of the configured type, and its TLS Secret.

use serde_json::{Value, json};

use super::config::{ExtensionConfig, Tls};

/// The namespace every component goes into.
pub const NAMESPACE: &str = "azureml";
/// The label every object Berth creates carries (for cleanup and adoption).
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "berth");

pub(super) fn labels(component: &str) -> Value {
    json!({
        "app.kubernetes.io/name": "berth",
        "app.kubernetes.io/component": component,
        "app.kubernetes.io/part-of": "berth",
        MANAGED_BY.0: MANAGED_BY.1,
    })
}

pub(super) fn meta(name: &str, component: &str, namespaced: bool) -> Value {
    let mut m = json!({"name": name, "labels": labels(component)});
    if namespaced {
        m["namespace"] = json!(NAMESPACE);
    }
    m
}

/// A non-zero Kubernetes quantity: at least one non-zero digit, an optional suffix.
const NON_ZERO_QUANTITY: &str =
    r"^([0-9]*[1-9][0-9]*(\.[0-9]*)?|[0-9]*\.[0-9]*[1-9][0-9]*)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$";

fn quantity_schema() -> Value {
    // Kubernetes' own int-or-string shape; the pattern checks strings, `not` refuses integer 0.
    json!({"x-kubernetes-int-or-string": true, "anyOf": [{"type": "integer"}, {"type": "string"}], "pattern": NON_ZERO_QUANTITY, "not": {"enum": [0]}})
}

fn resource_list(required: bool) -> Value {
    let mut s = json!({
        "type": "object",
        // Unknown resources are pruned by the API server (structural schemas forbid mixing
        // `properties` with `additionalProperties`).
        "properties": {"cpu": quantity_schema(), "memory": quantity_schema(), "nvidia.com/gpu": quantity_schema()},
    });
    if required {
        s["required"] = json!(["cpu", "memory"]);
    }
    s
}

/// The `instancetypes.amlarc.azureml.com` CRD: cluster-scoped, v1alpha1, cpu and memory
/// required and non-zero in requests and limits, printer columns for kubectl.
pub fn instance_type_crd() -> Value {
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "instancetypes.amlarc.azureml.com", "labels": labels("crd")},
        "spec": {
            "group": "amlarc.azureml.com",
            "scope": "Cluster",
            "names": {"plural": "instancetypes", "singular": "instancetype", "kind": "InstanceType", "listKind": "InstanceTypeList", "shortNames": ["it"]},
            "versions": [{
                "name": "v1alpha1",
                "served": true,
                "storage": true,
                "additionalPrinterColumns": [
                    {"name": "CPU request", "type": "string", "jsonPath": ".spec.resources.requests.cpu"},
                    {"name": "Memory request", "type": "string", "jsonPath": ".spec.resources.requests.memory"},
                    {"name": "CPU limit", "type": "string", "jsonPath": ".spec.resources.limits.cpu"},
                    {"name": "Memory limit", "type": "string", "jsonPath": ".spec.resources.limits.memory"},
                    {"name": "GPU", "type": "string", "jsonPath": ".spec.resources.limits.nvidia\\.com/gpu"},
                ],
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "required": ["spec"],
                    "properties": {"spec": {
                        "type": "object",
                        "required": ["resources"],
                        "properties": {
                            "nodeSelector": {"type": "object", "additionalProperties": {"type": "string"}},
                            "resources": {
                                "type": "object",
                                "required": ["requests", "limits"],
                                "properties": {"requests": resource_list(true), "limits": resource_list(true)},
                            },
                        },
                    }},
                }},
            }],
        },
    })
}

fn pod_spec(cfg: &ExtensionConfig, container: Value, extra: Value) -> Value {
    let mut spec = json!({
        "serviceAccountName": "berth",
        "securityContext": {"runAsNonRoot": true, "runAsUser": 65532, "fsGroup": 65532},
        "containers": [container],
    });
    if !cfg.node_selector.is_empty() {
        spec["nodeSelector"] = json!(cfg.node_selector);
    }
    if let (Value::Object(s), Value::Object(e)) = (&mut spec, extra) {
        s.extend(e);
    }
    spec
}

fn container(
    cfg: &ExtensionConfig,
    name: &str,
    args: Vec<String>,
    port: u16,
    limits: (&str, &str),
) -> Value {
    json!({
        "name": name,
        "image": cfg.image,
        "args": args,
        "ports": [{"containerPort": port, "name": "http", "protocol": "TCP"}],
        "env": [
            // Job and deployment pods copy `berth` from the same image.
            {"name": "BERTH_IMAGE", "value": cfg.image},
        ],
        "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"cpu": limits.0, "memory": limits.1}},
        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
    })
}

/// The secrets the manifests carry.
pub struct Credentials<'a> {
    /// The server's API token.
    pub api_token: &'a str,
    /// What routers present (it reads the routes and nothing else).
    pub router_token: &'a str,
    /// The in-cluster PostgreSQL's password (`serverHA` without `storeUrl`).
    pub store_password: &'a str,
}

/// Every manifest, in apply order.
pub fn render(cfg: &ExtensionConfig, creds: &Credentials<'_>) -> Vec<Value> {
    let mut docs = base(cfg, creds.api_token);
    docs.extend(super::state::manifests(cfg, creds.store_password));
    docs.extend(server(cfg));
    if let Some(service_type) = cfg.service_type {
        docs.extend(router(cfg, service_type.as_str(), creds.router_token));
    }
    docs
}

/// The namespace, the InstanceType CRD with its default, RBAC, the API token and the state
/// volume.
fn base(cfg: &ExtensionConfig, api_token: &str) -> Vec<Value> {
    // With serverHA both server replicas mount the home: ReadWriteMany, of the class given.
    let mut home =
        json!({"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}});
    if cfg.server_ha {
        home["accessModes"] = json!(["ReadWriteMany"]);
    }
    if let Some(class) = &cfg.server_storage_class {
        home["storageClassName"] = json!(class);
    }
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": meta(NAMESPACE, "namespace", false)}),
        instance_type_crd(),
        json!({
            "apiVersion": "amlarc.azureml.com/v1alpha1",
            "kind": "InstanceType",
            "metadata": meta("defaultinstancetype", "instance-type", false),
            "spec": {"resources": {"requests": {"cpu": "100m", "memory": "2Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}},
        }),
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta("berth", "rbac", true)}),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": meta("berth", "rbac", false),
            "rules": [
                {"apiGroups": ["amlarc.azureml.com"], "resources": ["instancetypes"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": ["batch"], "resources": ["jobs"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch", "delete", "deletecollection"]},
                {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
                {"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
                {"apiGroups": [""], "resources": ["services", "configmaps"], "verbs": ["get", "list", "watch", "create", "patch", "delete"]},
                {"apiGroups": [""], "resources": ["endpoints", "nodes", "events"], "verbs": ["get", "list", "watch"]},
                {"apiGroups": [""], "resources": ["namespaces"], "verbs": ["get", "create"]},
            ],
        }),
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": meta("berth", "rbac", false),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "berth"},
            "subjects": [{"kind": "ServiceAccount", "name": "berth", "namespace": NAMESPACE}],
        }),
        secret("berth-api-token", "server", api_token),
        json!({
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": meta(home_claim(cfg), "server", true),
            "spec": home,
        }),
    ]
}

/// The server's volume. A shared one (serverHA) has its own name: a claim's access modes
/// cannot change, so turning serverHA on makes a new claim instead of failing.
fn home_claim(cfg: &ExtensionConfig) -> &'static str {
    if cfg.server_ha {
        "berth-state-shared"
    } else {
        "berth-state"
    }
}

/// The server's Deployment and Service.
fn server(cfg: &ExtensionConfig) -> [Value; 2] {
    let mut server = container(
        cfg,
        "server",
        [
            "server",
            "--home",
            "/var/lib/berth",
            "--api-listen",
            "0.0.0.0:8700",
            "--scoring-listen",
            "127.0.0.1:8701",
            // Reached inside the cluster through its ClusterIP Service.
            "--allow-insecure-api",
        ]
        .map(String::from)
        .to_vec(),
        8700,
        ("1", "512Mi"),
    );
    server["volumeMounts"] = json!([{"name": "state", "mountPath": "/var/lib/berth"}]);
    // Where pods reach the server (job outputs, large files): `compute attach --in-cluster`
    // uses it unless --server-url is given.
    if let Some(env) = server["env"].as_array_mut() {
        env.push(json!({"name": "BERTH_SERVER_URL", "value": format!("http://berth-server.{NAMESPACE}.svc:8700")}));
        env.push(json!({"name": "BERTH_API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "berth-api-token", "key": "token"}}}));
        env.extend(super::state::server_env(cfg));
    }
    let selector =
        json!({"app.kubernetes.io/name": "berth", "app.kubernetes.io/component": "server"});
    let mut extra = json!({"volumes": [{"name": "state", "persistentVolumeClaim": {"claimName": home_claim(cfg)}}]});
    // One server at a time on SQLite; with serverHA a leader and a standby, on two nodes
    // where there are two, and a rollout that never leaves none.
    let (replicas, strategy) = if cfg.server_ha {
        extra["affinity"] = json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 100, "podAffinityTerm": {"labelSelector": {"matchLabels": selector}, "topologyKey": "kubernetes.io/hostname"}}
        ]}});
        (
            2,
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}),
        )
    } else {
        (1, json!({"type": "Recreate"}))
    };
    let deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta("berth-server", "server", true),
        "spec": {
            "replicas": replicas,
            "strategy": strategy,
            "selector": {"matchLabels": selector},
            "template": {
                "metadata": {"labels": labels("server")},
                "spec": pod_spec(cfg, server, extra),
            },
        },
    });
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta("berth-server", "server", true),
        "spec": {"type": "ClusterIP", "selector": {"app.kubernetes.io/name": "berth", "app.kubernetes.io/component": "server"}, "ports": [{"name": "http", "port": 8700, "targetPort": 8700, "protocol": "TCP"}]},
    });
    [deployment, service]
}

fn secret(name: &str, component: &str, token: &str) -> Value {
    secret_with(name, component, "token", token)
}

/// An Opaque Secret in the namespace holding one `key`.
pub(super) fn secret_with(name: &str, component: &str, key: &str, value: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta(name, component, true),
        "type": "Opaque",
        "stringData": {key: value},
    })
}

fn router(cfg: &ExtensionConfig, service_type: &str, router_token: &str) -> Vec<Value> {
    // What routers present to the server: it reads the routes and nothing else.
    let mut docs = vec![secret("berth-router-token", "gateway", router_token)];
    let mut args: Vec<String> = ["router", "--listen", "0.0.0.0:8443"]
        .map(String::from)
        .to_vec();
    let mut volumes = json!([]);
    match &cfg.tls {
        Tls::Insecure => args.push("--allow-insecure-connections".into()),
        Tls::Pem { cert, key, .. } => {
            docs.push(json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": meta("berth-router-tls", "gateway", true),
                "type": "Opaque",
                "stringData": {"cert.pem": cert, "key.pem": key},
            }));
            volumes = json!([{"name": "tls", "secret": {"secretName": "berth-router-tls"}}]);
        }
        Tls::Secret { name, .. } => {
            volumes = json!([{"name": "tls", "secret": {"secretName": name}}])
        }
    }
    let tls = cfg.tls != Tls::Insecure;
    if tls {
        args.extend(
            [
                "--tls-cert",
                "/etc/berth/tls/cert.pem",
                "--tls-key",
                "/etc/berth/tls/key.pem",
            ]
            .map(String::from),
        );
    }
    let mut c = container(cfg, "router", args, 8443, ("1", "256Mi"));
    if let Some(env) = c["env"].as_array_mut() {
        env.push(json!({"name": "BERTH_SERVER", "value": format!("http://berth-server.{NAMESPACE}.svc:8700")}));
        env.push(json!({"name": "BERTH_ROUTER_TOKEN", "valueFrom": {"secretKeyRef": {"name": "berth-router-token", "key": "token"}}}));
    }
    if tls {
        c["volumeMounts"] =
            json!([{"name": "tls", "mountPath": "/etc/berth/tls", "readOnly": true}]);
    }
    // `gateway`, as Azure's router pods: the seed's `kubectl logs -l
    // app.kubernetes.io/component=gateway` finds Berth's.
    let selector =
        json!({"app.kubernetes.io/name": "berth", "app.kubernetes.io/component": "gateway"});
    let mut extra = json!({"volumes": volumes});
    if cfg.router_ha {
        extra["affinity"] = json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": selector}, "topologyKey": "kubernetes.io/hostname"}
        ]}});
    }
    docs.push(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta("berth-router", "gateway", true),
        "spec": {
            "replicas": if cfg.router_ha { 3 } else { 1 },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0}},
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": labels("gateway")}, "spec": pod_spec(cfg, c, extra)},
        },
    }));
    let mut service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta("berth-router", "gateway", true),
        "spec": {"type": service_type, "selector": selector, "ports": [{"name": if tls { "https" } else { "http" }, "port": if tls { 443 } else { 80 }, "targetPort": 8443, "protocol": "TCP"}]},
    });
    if cfg.internal_load_balancer {
        service["metadata"]["annotations"] =
            json!({"service.beta.kubernetes.io/azure-load-balancer-internal": "true"});
    }
    docs.push(service);
    docs
}

/// The manifests as one multi-document YAML stream (for `kubectl apply -f`).
pub fn to_yaml(docs: &[Value]) -> Result<String, String> {
    let mut out = String::new();
    for d in docs {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(d).map_err(|e| e.to_string())?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    const CREDS: Credentials<'static> = Credentials {
        api_token: "t",
        router_token: "r",
        store_password: "p",
    };

    fn config(public: &[(&str, &str)]) -> ExtensionConfig {
        let m: BTreeMap<String, String> = public
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ExtensionConfig::parse(&m, &BTreeMap::new()).unwrap_or_else(|e| panic!("{e}"))
    }

    fn kinds(docs: &[Value]) -> Vec<String> {
        docs.iter()
            .map(|d| {
                format!(
                    "{}/{}",
                    d["kind"].as_str().unwrap_or(""),
                    d["metadata"]["name"].as_str().unwrap_or("")
                )
            })
            .collect()
    }

    #[test]
    fn the_server_tells_job_pods_which_image_holds_berth() {
        let docs = render(
            &config(&[("enableTraining", "True"), ("image", "reg.example/berth:2")]),
            &CREDS,
        );
        let server = docs
            .iter()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "berth-server")
            .unwrap_or_else(|| panic!("no server"));
        let c = &server["spec"]["template"]["spec"]["containers"][0];
        assert_eq!(c["image"], "reg.example/berth:2");
        let env = c["env"].as_array().unwrap_or_else(|| panic!("no env"));
        assert!(
            env.iter()
                .any(|e| e["name"] == "BERTH_IMAGE" && e["value"] == "reg.example/berth:2")
        );
        assert!(env.iter().any(|e| e["name"] == "BERTH_SERVER_URL"
            && e["value"] == "http://berth-server.azureml.svc:8700"));
    }

    #[test]
    fn training_only_has_no_router() {
        let docs = render(&config(&[("enableTraining", "True")]), &CREDS);
        let k = kinds(&docs);
        assert!(
            k.contains(&"CustomResourceDefinition/instancetypes.amlarc.azureml.com".to_string())
        );
        assert!(k.contains(&"Deployment/berth-server".to_string()));
        assert!(!k.iter().any(|k| k.contains("router")), "{k:?}");
    }

    #[test]
    fn inference_adds_a_router_with_ha_and_the_service_type() {
        let cfg = config(&[
            ("enableInference", "True"),
            ("inferenceRouterServiceType", "nodePort"),
            ("allowInsecureConnections", "True"),
            ("nodeSelector.pool", "ml"),
        ]);
        let docs = render(&cfg, &CREDS);
        let router = docs
            .iter()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "berth-router")
            .cloned()
            .unwrap_or_default();
        assert_eq!(router["spec"]["replicas"], 3);
        assert!(router["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"].is_object());
        assert_eq!(
            router["spec"]["template"]["spec"]["nodeSelector"]["pool"],
            "ml"
        );
        let svc = docs
            .iter()
            .find(|d| d["kind"] == "Service" && d["metadata"]["name"] == "berth-router")
            .cloned()
            .unwrap_or_default();
        assert_eq!(svc["spec"]["type"], "NodePort");
        assert_eq!(svc["spec"]["ports"][0]["port"], 80);
        for d in docs.iter().filter(|d| d["kind"] == "Deployment") {
            assert_eq!(
                d["spec"]["template"]["spec"]["nodeSelector"]["pool"], "ml",
                "every pod gets the node selector"
            );
        }
        let cfg = config(&[
            ("enableInference", "True"),
            ("inferenceRouterServiceType", "clusterIP"),
            ("allowInsecureConnections", "True"),
            ("inferenceRouterHA", "False"),
        ]);
        let router = render(&cfg, &CREDS)
            .into_iter()
            .find(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "berth-router")
            .unwrap_or_default();
        assert_eq!(router["spec"]["replicas"], 1);
        assert!(router["spec"]["template"]["spec"]["affinity"].is_null());
    }

    #[test]
    fn yaml_round_trips_and_the_crd_accepts_the_seed_shapes() {
        let docs = render(&config(&[("enableTraining", "True")]), &CREDS);
        let yaml = to_yaml(&docs).unwrap_or_default();
        let back: Vec<Value> = serde_saphyr::from_multiple(&yaml).unwrap_or_default();
        assert_eq!(back.len(), docs.len());
        let pattern = regex_lite_matches;
        for ok in ["2", "500m", "16Gi", "0.5", "1.5Gi"] {
            assert!(pattern(ok), "{ok} should pass");
        }
        for bad in ["0", "0m", "0.0", "", "-1", "abc"] {
            assert!(!pattern(bad), "{bad} should fail");
        }
    }

    /// The CRD's non-zero pattern, checked by hand (the API server runs the real one).
    fn regex_lite_matches(s: &str) -> bool {
        let body = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let suffix = &s[body.len()..];
        let suffix_ok = [
            "", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
        ]
        .contains(&suffix);
        let digits_ok = !body.is_empty()
            && body.chars().all(|c| c.is_ascii_digit() || c == '.')
            && body.matches('.').count() <= 1;
        suffix_ok && digits_ok && body.chars().any(|c| ('1'..='9').contains(&c))
    }
}
