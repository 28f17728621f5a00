//! The extension's manifests against a real Kubernetes API server (1.20, from
//! `../shared/k8s-testenv`): everything applies with server-side apply, the InstanceType CRD
//! accepts the seed's instance types as written and refuses bad ones.

#![allow(clippy::unwrap_used)]

#[path = "support/k8s.rs"]
mod k8s;
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
            "Deployment" => format!("/apis/apps/v1/namespaces/azureml/deployments/{name}"),
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
    let out = Command::new(BERTH)
        .args(["extension", "render", "-o", "json", "--config"])
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_extension_applies_and_its_crd_validates_instance_types() {
    let cp = ControlPlane::start();
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder().danger_accept_invalid_certs(true).build().unwrap();
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
