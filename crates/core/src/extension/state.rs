//! Where the in-cluster server keeps its state, as manifests: nothing more for SQLite on its
//! volume; a Secret with the URL for an external PostgreSQL (`storeUrl`); for `serverHA`
//! without one, a PostgreSQL StatefulSet of its own (one replica on its own volume, password in
//! a Secret). And what the server's containers are told: `BERTH_STORE`, and the address a
//! standby forwards to while this replica leads.

use serde_json::{Value, json};

use super::config::{ExtensionConfig, StateStore};
use super::render::{NAMESPACE, labels, meta, secret_with};

/// The in-cluster PostgreSQL's Service, StatefulSet and Secret name.
pub const POSTGRES: &str = "berth-postgres";

/// The objects the state needs, before the server's.
pub fn manifests(cfg: &ExtensionConfig, store_password: &str) -> Vec<Value> {
    match &cfg.store {
        StateStore::Home => Vec::new(),
        StateStore::External { url } => vec![secret_with("berth-store", "server", "url", url)],
        StateStore::InCluster { image } => postgres(cfg, image, store_password),
    }
}

fn postgres(cfg: &ExtensionConfig, image: &str, password: &str) -> Vec<Value> {
    let selector =
        json!({"app.kubernetes.io/name": "berth", "app.kubernetes.io/component": "postgres"});
    let mut spec = json!({
        // The image's own user (999), which owns what it writes under the volume.
        "securityContext": {"runAsNonRoot": true, "runAsUser": 999, "runAsGroup": 999, "fsGroup": 999},
        "containers": [{
            "name": "postgres",
            "image": image,
            "ports": [{"containerPort": 5432, "name": "postgres", "protocol": "TCP"}],
            "env": [
                {"name": "POSTGRES_USER", "value": "berth"},
                {"name": "POSTGRES_DB", "value": "berth"},
                {"name": "POSTGRES_PASSWORD", "valueFrom": {"secretKeyRef": {"name": POSTGRES, "key": "password"}}},
                {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
            ],
            "readinessProbe": {"exec": {"command": ["pg_isready", "-U", "berth", "-d", "berth"]}, "periodSeconds": 5},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "2", "memory": "1Gi"}},
            "volumeMounts": [{"name": "data", "mountPath": "/var/lib/postgresql/data"}],
            "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}},
        }],
    });
    if !cfg.node_selector.is_empty() {
        spec["nodeSelector"] = json!(cfg.node_selector);
    }
    vec![
        secret_with(POSTGRES, "postgres", "password", password),
        json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": meta(POSTGRES, "postgres", true),
            "spec": {"type": "ClusterIP", "selector": selector, "ports": [{"name": "postgres", "port": 5432, "targetPort": 5432, "protocol": "TCP"}]},
        }),
        json!({
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": meta(POSTGRES, "postgres", true),
            "spec": {
                "serviceName": POSTGRES,
                "replicas": 1,
                "selector": {"matchLabels": selector},
                "template": {"metadata": {"labels": labels("postgres")}, "spec": spec},
                "volumeClaimTemplates": [{
                    "metadata": {"name": "data", "labels": labels("postgres")},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "8Gi"}}},
                }],
            },
        }),
    ]
}

/// The server container's environment for its state: `BERTH_STORE` (from a Secret), and, on
/// PostgreSQL, the pod's own API address for a standby to forward to.
pub fn server_env(cfg: &ExtensionConfig) -> Vec<Value> {
    let store = match &cfg.store {
        StateStore::Home => return Vec::new(),
        StateStore::External { .. } => vec![
            json!({"name": "BERTH_STORE", "valueFrom": {"secretKeyRef": {"name": "berth-store", "key": "url"}}}),
        ],
        StateStore::InCluster { .. } => vec![
            json!({"name": "BERTH_STORE_PASSWORD", "valueFrom": {"secretKeyRef": {"name": POSTGRES, "key": "password"}}}),
            // Kubernetes expands $(VAR) from the variables above it.
            json!({"name": "BERTH_STORE", "value": format!("postgres://berth:$(BERTH_STORE_PASSWORD)@{POSTGRES}.{NAMESPACE}.svc:5432/berth")}),
        ],
    };
    let mut env = store;
    env.push(json!({"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}));
    env.push(json!({"name": "BERTH_ADVERTISE_URL", "value": "http://$(POD_IP):8700"}));
    env
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::extension::render::{Credentials, render};

    fn docs(public: &[(&str, &str)], protected: &[(&str, &str)]) -> Vec<Value> {
        let map = |kv: &[(&str, &str)]| -> BTreeMap<String, String> {
            kv.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let cfg =
            ExtensionConfig::parse(&map(public), &map(protected)).unwrap_or_else(|e| panic!("{e}"));
        render(
            &cfg,
            &Credentials {
                api_token: "t",
                router_token: "r",
                store_password: "pw",
            },
        )
    }

    fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> Option<&'a Value> {
        docs.iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
    }

    fn env(server: &Value) -> Vec<Value> {
        server["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    fn named<'a>(env: &'a [Value], name: &str) -> Option<&'a Value> {
        env.iter().find(|e| e["name"] == name)
    }

    #[test]
    fn server_ha_runs_two_servers_on_an_in_cluster_postgresql_and_a_shared_volume() {
        let docs = docs(
            &[
                ("enableTraining", "True"),
                ("serverHA", "True"),
                ("serverStorageClass", "azurefile-csi"),
            ],
            &[],
        );
        let server = find(&docs, "Deployment", "berth-server").unwrap_or(&Value::Null);
        assert_eq!(server["spec"]["replicas"], 2);
        assert_eq!(server["spec"]["strategy"]["type"], "RollingUpdate");
        assert!(server["spec"]["template"]["spec"]["affinity"]["podAntiAffinity"].is_object());
        let env = env(server);
        assert_eq!(
            named(&env, "BERTH_STORE").map(|e| e["value"].clone()),
            Some(json!(
                "postgres://berth:$(BERTH_STORE_PASSWORD)@berth-postgres.azureml.svc:5432/berth"
            ))
        );
        // The password comes before the URL that expands it.
        let at = |n: &str| env.iter().position(|e| e["name"] == n);
        assert!(at("BERTH_STORE_PASSWORD") < at("BERTH_STORE"));
        assert_eq!(
            named(&env, "BERTH_ADVERTISE_URL").map(|e| e["value"].clone()),
            Some(json!("http://$(POD_IP):8700"))
        );
        let pvc =
            find(&docs, "PersistentVolumeClaim", "berth-state-shared").unwrap_or(&Value::Null);
        assert_eq!(pvc["spec"]["accessModes"], json!(["ReadWriteMany"]));
        assert_eq!(pvc["spec"]["storageClassName"], "azurefile-csi");
        let pg = find(&docs, "StatefulSet", POSTGRES).unwrap_or(&Value::Null);
        assert_eq!(
            pg["spec"]["template"]["spec"]["containers"][0]["image"],
            "postgres:16-alpine"
        );
        assert_eq!(
            find(&docs, "Secret", POSTGRES).map(|s| s["stringData"]["password"].clone()),
            Some(json!("pw"))
        );
        assert!(find(&docs, "Service", POSTGRES).is_some());
        // Applied before the server that connects to it.
        let index = |kind: &str, name: &str| {
            docs.iter()
                .position(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        };
        assert!(index("StatefulSet", POSTGRES) < index("Deployment", "berth-server"));
    }

    #[test]
    fn a_store_url_is_kept_in_a_secret_and_no_postgresql_is_run() {
        let docs = docs(
            &[("enableTraining", "True")],
            &[("storeUrl", "postgres://berth:s3cret@db.example:5432/berth")],
        );
        assert!(find(&docs, "StatefulSet", POSTGRES).is_none());
        let secret = find(&docs, "Secret", "berth-store").unwrap_or(&Value::Null);
        assert_eq!(
            secret["stringData"]["url"],
            "postgres://berth:s3cret@db.example:5432/berth"
        );
        let server = find(&docs, "Deployment", "berth-server").unwrap_or(&Value::Null);
        assert_eq!(server["spec"]["replicas"], 1, "one server without serverHA");
        let env = env(server);
        assert_eq!(
            named(&env, "BERTH_STORE").map(|e| e["valueFrom"]["secretKeyRef"]["name"].clone()),
            Some(json!("berth-store"))
        );
        assert!(
            !server.to_string().contains("s3cret"),
            "the password is only in the Secret"
        );
    }

    #[test]
    fn without_either_the_server_keeps_sqlite_on_its_volume() {
        let docs = docs(&[("enableTraining", "True")], &[]);
        let server = find(&docs, "Deployment", "berth-server").unwrap_or(&Value::Null);
        assert_eq!(server["spec"]["strategy"]["type"], "Recreate");
        assert!(named(&env(server), "BERTH_STORE").is_none());
        let pvc = find(&docs, "PersistentVolumeClaim", "berth-state").unwrap_or(&Value::Null);
        assert_eq!(pvc["spec"]["accessModes"], json!(["ReadWriteOnce"]));
    }
}
