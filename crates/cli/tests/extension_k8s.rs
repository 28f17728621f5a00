//! The extension's manifests against a real Kubernetes API server (1.20, from
//! `../shared/k8s-testenv`): everything applies with server-side apply, the InstanceType CRD
//! accepts the seed's instance types as written and refuses bad ones.

#![allow(clippy::unwrap_used)]

#[path = "support/k8s.rs"]
mod k8s;
#[path = "support/kubelet.rs"]
mod kubelet;
mod support;

use std::process::Command;

use k8s::ControlPlane;
use serde_json::Value;
use support::{BERTH, seed_dir, text};

trait Apply {
    async fn apply(&self, client: &reqwest::Client, doc: &Value) -> (u16, String);
}

impl Apply for ControlPlane {
    /// Server-side apply of one object; returns the HTTP status and body.
    async fn apply(&self, client: &reqwest::Client, doc: &Value) -> (u16, String) {
        let kind = doc["kind"].as_str().unwrap();
        let name = doc["metadata"]["name"].as_str().unwrap();
        let path = match kind {
            "Namespace" => format!("/api/v1/namespaces/{name}"),
            "CustomResourceDefinition" => {
                format!("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            }
            "InstanceType" => format!("/apis/amlarc.azureml.com/v1alpha1/instancetypes/{name}"),
            "ClusterRole" | "ClusterRoleBinding" => format!(
                "/apis/rbac.authorization.k8s.io/v1/{}s/{name}",
                kind.to_lowercase()
            ),
            "Deployment" | "StatefulSet" => format!(
                "/apis/apps/v1/namespaces/azureml/{}s/{name}",
                kind.to_lowercase()
            ),
            "ServiceAccount" | "Secret" | "PersistentVolumeClaim" | "Service" => {
                format!("/api/v1/namespaces/azureml/{}s/{name}", kind.to_lowercase())
            }
            other => panic!("no path for {other}"),
        };
        // A new CRD takes a moment to be served.
        for _ in 0..100 {
            let resp = client
                .patch(format!(
                    "{}{path}?fieldManager=berth&force=true",
                    self.server
                ))
                .bearer_auth(&self.token)
                .header("content-type", "application/apply-patch+yaml")
                .body(doc.to_string())
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body = resp.text().await.unwrap_or_default();
            if status == 404 && kind == "InstanceType" {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
            return (status, body);
        }
        (404, "the InstanceType API never appeared".into())
    }
}

fn render(args: &[&str]) -> Vec<Value> {
    render_with(args, &[])
}

fn render_with(args: &[&str], protected: &[&str]) -> Vec<Value> {
    let mut cmd = Command::new(BERTH);
    cmd.args(["extension", "render", "-o", "json", "--config"])
        .args(args);
    if !protected.is_empty() {
        cmd.arg("--config-protected").args(protected);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A real API server, a runtime, and an HTTP client for it (its certificate is self-signed).
fn api_server() -> (ControlPlane, tokio::runtime::Runtime, reqwest::Client) {
    let cp = ControlPlane::start();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    (cp, rt, client)
}

#[test]
fn the_extension_applies_and_its_crd_validates_instance_types() {
    let (cp, rt, client) = api_server();
    rt.block_on(async {
        let docs = render(&[
            "enableTraining=True",
            "enableInference=True",
            "inferenceRouterServiceType=LoadBalancer",
            "allowInsecureConnections=True",
            "nodeSelector.agentpool=cpupool",
        ]);
        assert!(docs.iter().any(|d| d["kind"] == "Deployment" && d["metadata"]["name"] == "berth-router"));
        for d in &docs {
            let (status, body) = cp.apply(&client, d).await;
            assert!((200..300).contains(&status), "{} {}: {status} {body}", d["kind"], d["metadata"]["name"]);
        }
        // Applying the same manifests again changes nothing and still succeeds.
        for d in &docs {
            assert!((200..300).contains(&cp.apply(&client, d).await.0));
        }
        // `kubectl apply -f instance-types.yaml`, the seed's file as written.
        let seed = std::fs::read_to_string(seed_dir().join("instance-types.yaml")).unwrap();
        let types: Vec<Value> = serde_saphyr::from_multiple(&seed).unwrap();
        assert_eq!(types.len(), 3);
        for t in &types {
            let (status, body) = cp.apply(&client, t).await;
            assert!((200..300).contains(&status), "{}: {status} {body}", t["metadata"]["name"]);
        }
        let bad = |name: &str, requests: Value| {
            serde_json::json!({
                "apiVersion": "amlarc.azureml.com/v1alpha1",
                "kind": "InstanceType",
                "metadata": {"name": name},
                "spec": {"resources": {"requests": requests, "limits": {"cpu": "1", "memory": "1Gi"}}},
            })
        };
        for (name, requests, why) in [
            ("zero-cpu", serde_json::json!({"cpu": "0", "memory": "1Gi"}), "should match"),
            ("zero-int", serde_json::json!({"cpu": 0, "memory": "1Gi"}), "must not validate"),
            ("no-memory", serde_json::json!({"cpu": "1"}), "Required value"),
        ] {
            let (status, body) = cp.apply(&client, &bad(name, requests)).await;
            assert_eq!(status, 422, "{name}: {body}");
            assert!(body.contains(why), "{name}: {body}");
        }
    });
}

#[test]
fn the_server_ha_manifests_apply_on_their_own_and_with_an_external_store() {
    let (cp, rt, client) = api_server();
    rt.block_on(async {
        let ha = render(&[
            "enableTraining=True",
            "serverHA=True",
            "serverStorageClass=azurefile-csi",
        ]);
        assert!(
            ha.iter()
                .any(|d| d["kind"] == "StatefulSet" && d["metadata"]["name"] == "berth-postgres")
        );
        let external = render_with(
            &[
                "enableTraining=True",
                "serverHA=True",
                "serverStorageClass=azurefile-csi",
            ],
            &["storeUrl=postgres://berth:pw@db.example:5432/berth"],
        );
        assert!(!external.iter().any(|d| d["kind"] == "StatefulSet"));
        // The API server validates each (the second set replaces the first's server and volume).
        for d in ha.iter().chain(&external) {
            let (status, body) = cp.apply(&client, d).await;
            assert!(
                (200..300).contains(&status),
                "{} {}: {status} {body}",
                d["kind"],
                d["metadata"]["name"]
            );
        }
    });
}

fn berth(kubeconfig: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(BERTH)
        .args(args)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap()
}

#[test]
fn extension_create_show_update_delete_on_a_real_api_server() {
    use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
    use kube::api::{Api, ListParams, PostParams};
    use kubelet::{Kubelet, NodeSpec};

    let cp = ControlPlane::start();
    let kc = cp.kubeconfig();
    let rt = k8s::runtime();
    let client = rt.block_on(cp.client());
    let pods_dir = tempfile::tempdir().unwrap();
    let kubelet = rt.block_on(Kubelet::start(client.clone(), pods_dir.path()));
    kubelet.simulate("azureml");
    let settings = [
        "--config",
        "enableTraining=True",
        "enableInference=True",
        "inferenceRouterServiceType=LoadBalancer",
        "allowInsecureConnections=True",
    ];
    let create: Vec<&str> = [
        "extension",
        "create",
        "--name",
        "berth",
        "--cluster-name",
        "c",
        "--timeout",
        "60",
    ]
    .into_iter()
    .chain(settings)
    .collect();

    // No nodes: the health check refuses, and nothing is installed.
    let out = berth(&kc, &create);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("E40002 INSUFFICIENT_NODE"),
        "{}",
        text(&out.stderr)
    );
    let out = berth(&kc, &["extension", "show", "--name", "berth"]);
    assert!(
        text(&out.stderr).contains("not installed"),
        "{}",
        text(&out.stderr)
    );

    // One node, but the router is highly available by default: three are needed.
    rt.block_on(kubelet.add_node(NodeSpec::new("n1", "4", "16Gi", 0, &[])));
    let out = berth(&kc, &create);
    assert!(
        text(&out.stderr).contains("3 node(s) are needed and 1 exist"),
        "{}",
        text(&out.stderr)
    );

    // Another product's InstanceType CRD is a conflict.
    rt.block_on(kubelet.add_node(NodeSpec::new("n2", "4", "16Gi", 0, &[])));
    rt.block_on(kubelet.add_node(NodeSpec::new("n3", "4", "16Gi", 0, &[])));
    rt.block_on(kubelet.add_volume("pv-1", "10Gi"));
    let mut foreign = berth_core::extension::render::instance_type_crd();
    foreign["metadata"]["labels"] = serde_json::json!({});
    rt.block_on(berth_scheduler::backend::kubernetes::apply::apply(
        &client, &foreign,
    ))
    .unwrap();
    let out = berth(&kc, &create);
    assert!(
        text(&out.stderr).contains("E40009"),
        "{}",
        text(&out.stderr)
    );
    rt.block_on(berth_scheduler::backend::kubernetes::apply::delete(
        &client, &foreign,
    ))
    .unwrap();
    // Something of the user's that Berth must leave alone.
    let user_cm: ConfigMap =
        serde_json::from_value(serde_json::json!({"metadata": {"name": "mine"}})).unwrap();
    let default_maps: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    rt.block_on(default_maps.create(&PostParams::default(), &user_cm))
        .unwrap();

    // Create applies everything and waits for readiness.
    let mut ok = false;
    for _ in 0..50 {
        // The foreign CRD takes a moment to go.
        let out = berth(&kc, &create);
        if out.status.success() {
            assert!(
                text(&out.stdout).contains("Succeeded"),
                "{}",
                text(&out.stdout)
            );
            assert!(
                text(&out.stderr).contains("applied Deployment azureml/berth-router"),
                "{}",
                text(&out.stderr)
            );
            // It says what to do next.
            assert!(
                text(&out.stderr).contains(
                    "berth compute attach --type Kubernetes --name aks-compute --in-cluster"
                ),
                "{}",
                text(&out.stderr)
            );
            ok = true;
            break;
        }
        assert!(
            text(&out.stderr).contains("E40009"),
            "{}",
            text(&out.stderr)
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(ok);
    let out = berth(&kc, &["extension", "show", "--name", "berth", "-o", "json"]);
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["provisioningState"], "Succeeded", "{shown}");
    assert_eq!(shown["configurationSettings"]["enableInference"], "True");
    let router = shown["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "Deployment azureml/berth-router")
        .unwrap();
    assert_eq!(router["ready"], "3/3");
    // The seed's `kubectl logs -n azureml -l app.kubernetes.io/component=gateway` finds them.
    let pods: Api<Pod> = Api::namespaced(client.clone(), "azureml");
    let gateway = rt
        .block_on(pods.list(&ListParams::default().labels("app.kubernetes.io/component=gateway")))
        .unwrap();
    assert_eq!(gateway.items.len(), 3);
    let out = berth(&kc, &create);
    assert!(
        text(&out.stderr).contains("already installed"),
        "{}",
        text(&out.stderr)
    );

    // Update changes only what changed.
    let out = berth(
        &kc,
        &[
            "extension",
            "update",
            "--name",
            "berth",
            "--config",
            "inferenceRouterServiceType=NodePort",
        ],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let log = text(&out.stderr);
    assert!(
        log.contains("Service azureml/berth-router configured"),
        "{log}"
    );
    assert!(
        log.contains("Deployment azureml/berth-server unchanged"),
        "{log}"
    );
    assert!(
        log.contains("CustomResourceDefinition instancetypes.amlarc.azureml.com unchanged"),
        "{log}"
    );
    let services: Api<Service> = Api::namespaced(client.clone(), "azureml");
    let svc = rt.block_on(services.get("berth-router")).unwrap();
    assert_eq!(svc.spec.unwrap().type_.as_deref(), Some("NodePort"));

    // Delete removes what create made, and nothing else.
    let out = berth(&kc, &["extension", "delete", "--name", "berth", "--yes"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let crd = rt
        .block_on(berth_scheduler::backend::kubernetes::apply::get(
            &client,
            &berth_core::extension::render::instance_type_crd(),
        ))
        .unwrap();
    assert!(crd.is_none_or(|c| c.metadata.deletion_timestamp.is_some()));
    let role = serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": "berth"}});
    assert!(
        rt.block_on(berth_scheduler::backend::kubernetes::apply::get(
            &client, &role
        ))
        .unwrap()
        .is_none()
    );
    assert!(rt.block_on(default_maps.get_opt("mine")).unwrap().is_some());
    let out = berth(&kc, &["extension", "show", "--name", "berth"]);
    assert!(
        text(&out.stderr).contains("not installed"),
        "{}",
        text(&out.stderr)
    );
    drop(kubelet);
}
