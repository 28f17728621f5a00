//! Online deployments on a Kubernetes compute, against a real control plane (Kubernetes 1.20)
//! with the test kubelet running `berth runtime` for each pod. Each test starts from the same
//! fixture: a control plane of its own, one node, the seed's endpoint and its blue deployment
//! (a Deployment and a headless Service whose ready Pods the router finds).

#![allow(clippy::unwrap_used)]

#[path = "support/k8s.rs"]
mod k8s;
#[path = "support/kubelet.rs"]
mod kubelet;
mod support;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use berth_scheduler::backend::kubernetes::serving::name_of;
use k8s::{ControlPlane, apply_instance_types, eventually};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Service};
use kube::api::{Api, ListParams};
use kubelet::{Kubelet, NodeSpec};
use support::{BERTH, Server, http_post, seed_dir, text};

fn invoke(uri: &str, key: &str, pin: Option<&str>) -> (u16, String) {
    let body = std::fs::read_to_string(seed_dir().join("sample-request.json")).unwrap();
    let auth = format!("Bearer {key}");
    let mut headers = vec![
        ("Authorization", auth.as_str()),
        ("Content-Type", "application/json"),
    ];
    if let Some(d) = pin {
        headers.push(("azureml-model-deployment", d));
    }
    http_post(uri, &headers, &body)
}

/// `online-deployment show` of one of the seed endpoint's deployments.
fn show(s: &Server, deployment: &str) -> serde_json::Value {
    s.json(&[
        "online-deployment",
        "show",
        "--name",
        deployment,
        "--endpoint-name",
        "my-model-endpoint",
    ])
}

/// A cluster with the seed's endpoint and blue deployment ready, and a server attached to it.
/// Fields drop in order: the server, the kubelet's containers, then the control plane.
struct Cluster {
    s: Server,
    kubelet: Kubelet,
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    deployments: Api<Deployment>,
    uri: String,
    key: String,
    work: tempfile::TempDir,
    _pods: tempfile::TempDir,
    cp: ControlPlane,
}

const NS: &str = "azureml-workloads";

/// Starts the fixture: blue is Succeeded with two ready replicas.
fn blue() -> Cluster {
    let cp = ControlPlane::start();
    let rt = k8s::runtime();
    let client = rt.block_on(cp.client());
    let pods = tempfile::tempdir().unwrap();
    let kubelet = rt.block_on(Kubelet::start(client.clone(), pods.path()));
    // Berth's image holds the berth binary; here it is the one under test.
    kubelet.image_file("/usr/local/bin/berth", BERTH);
    kubelet.image_file("/usr/local/bin/uv", &k8s::uv_binary());
    rt.block_on(kubelet.add_node(NodeSpec::new("node-1", "16", "64Gi", 0, &[])));
    rt.block_on(apply_instance_types(&client));

    let s = Server::start(&[]);
    // Pods fetch what is too large for a ConfigMap from this server.
    let api_url = s.api_url.clone();
    k8s::attach_cluster(&s, &cp, &["--server-url", &api_url]);
    support::serving::model_and_endpoint(&s);
    let out = s.cli_in(
        &seed_dir(),
        &[
            "online-deployment",
            "create",
            "--file",
            "deployment.yaml",
            "--all-traffic",
        ],
    );
    assert!(
        out.status.success(),
        "{}\n{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    let shown = show(&s, "blue");
    assert_eq!(shown["provisioning_state"], "Succeeded", "{shown}");
    assert_eq!(shown["ready_replicas"], 2, "{shown}");
    let (uri, key, _) = support::serving::endpoint_access(&s);
    Cluster {
        deployments: Api::namespaced(client.clone(), NS),
        s,
        kubelet,
        rt,
        client,
        uri,
        key,
        work: tempfile::tempdir().unwrap(),
        _pods: pods,
        cp,
    }
}

#[test]
fn blue_becomes_a_deployment_and_a_headless_service_and_answers() {
    let c = blue();
    let (rt, client) = (&c.rt, &c.client);
    let name = name_of("my-model-endpoint", "blue");
    let d = rt.block_on(c.deployments.get(&name)).unwrap();
    assert_eq!(d.status.unwrap().ready_replicas, Some(2));
    let strategy = d.spec.unwrap().strategy.unwrap().rolling_update.unwrap();
    assert_eq!(serde_json::to_value(strategy.max_unavailable).unwrap(), 0);
    // The seed's `kubectl get pods -n azureml-workloads -l app=azureml-inference` lists them.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let inference = rt
        .block_on(pods.list(&ListParams::default().labels("app=azureml-inference")))
        .unwrap();
    assert_eq!(inference.items.len(), 2);
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    assert_eq!(
        rt.block_on(services.get(&name))
            .unwrap()
            .spec
            .unwrap()
            .cluster_ip
            .as_deref(),
        Some("None")
    );
    let (status, body) = invoke(&c.uri, &c.key, None);
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["predictions"], serde_json::json!([2.5, 1.5]));
    assert_eq!(answer["variant"], "blue");
}

#[test]
fn green_beside_blue_splits_and_pins() {
    let c = blue();
    let (s, uri, key) = (&c.s, &c.uri, &c.key);
    let seed = seed_dir();
    s.ok_in(
        &seed,
        &[
            "online-deployment",
            "create",
            "--file",
            "green-deployment.yaml",
        ],
    );
    s.ok_in(
        &seed,
        &[
            "online-endpoint",
            "update",
            "-n",
            "my-model-endpoint",
            "--traffic",
            "blue=50 green=50",
        ],
    );
    let (status, body) = invoke(uri, key, Some("green"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("green"), "{body}");
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..60 {
        let (status, body) = invoke(uri, key, None);
        assert_eq!(status, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        seen.insert(v["variant"].as_str().unwrap().to_string());
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    s.ok_in(
        &seed,
        &[
            "online-endpoint",
            "update",
            "-n",
            "my-model-endpoint",
            "--traffic",
            "blue=100 green=0",
        ],
    );
}

#[test]
fn a_rolling_update_of_blue_under_load_loses_no_request() {
    // Kubernetes replaces one replica at a time and no request fails.
    let c = blue();
    let (s, uri, key) = (&c.s, &c.uri, &c.key);
    let seed = seed_dir();
    let work = &c.work;
    std::fs::create_dir_all(work.path().join("score")).unwrap();
    std::fs::copy(
        seed.join("score/score.py"),
        work.path().join("score/score.py"),
    )
    .unwrap();
    let updated = std::fs::read_to_string(seed.join("deployment.yaml")).unwrap()
        + "environment_variables:\n  MODEL_VARIANT: blue-v2\n";
    std::fs::write(work.path().join("deployment.yaml"), updated).unwrap();
    let done = Arc::new(AtomicUsize::new(0));
    let load = support::serving::load(uri.clone(), key.clone(), 400, Arc::clone(&done));
    support::serving::wait_for(&done, 20);
    let out = s.cli_in(
        work.path(),
        &["online-deployment", "update", "--file", "deployment.yaml"],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    eventually(
        "the rolling update",
        Duration::from_secs(60),
        String::new,
        || show(s, "blue")["provisioning_state"] == "Succeeded",
    );
    let failed = load.join().unwrap();
    assert_eq!(failed, 0, "requests failed during the rolling update");
    let (_, body) = invoke(uri, key, None);
    assert!(body.contains("blue-v2"), "{body}");
    let logs = text(
        &s.ok_in(
            &seed,
            &[
                "online-deployment",
                "get-logs",
                "--name",
                "blue",
                "--endpoint-name",
                "my-model-endpoint",
            ],
        )
        .stdout,
    );
    assert!(logs.contains("==> pod"), "{logs}");
}

#[test]
fn the_autoscaler_scales_out_and_unplaceable_replicas_say_why() {
    let c = blue();
    let (s, uri, key, rt, work) = (&c.s, &c.uri, &c.key, &c.rt, &c.work);
    let deployments = &c.deployments;
    let seed = seed_dir();
    std::fs::create_dir_all(work.path().join("auto")).unwrap();
    std::fs::write(
        work.path().join("auto/score.py"),
        "import time\n\ndef init():\n    pass\n\ndef run(raw):\n    time.sleep(0.05)\n    return {\"variant\": \"auto\"}\n",
    )
    .unwrap();
    std::fs::write(
        work.path().join("auto.yaml"),
        "name: auto\nendpoint_name: my-model-endpoint\ncode_configuration:\n  code: ./auto\n  scoring_script: score.py\ninstance_type: cpu-small\nscale_settings:\n  type: target_utilization\n  min_instances: 1\n  max_instances: 3\n  target_utilization_percentage: 50\n  polling_interval: 1\nrequest_settings:\n  request_timeout_ms: 5000\n  max_concurrent_requests_per_instance: 1\n  max_queue_wait_ms: 5000\n",
    )
    .unwrap();
    s.ok_in(
        work.path(),
        &[
            "online-deployment",
            "create",
            "--file",
            "auto.yaml",
            "--all-traffic",
        ],
    );
    let auto = name_of("my-model-endpoint", "auto");
    let replicas = || {
        rt.block_on(deployments.get(&auto))
            .unwrap()
            .spec
            .unwrap()
            .replicas
            .unwrap_or(0)
    };
    assert_eq!(replicas(), 1);
    let done = Arc::new(AtomicUsize::new(0));
    let clients: Vec<_> = (0..4)
        .map(|_| support::serving::load(uri.clone(), key.clone(), 100, Arc::clone(&done)))
        .collect();
    eventually(
        "the autoscaler to add a replica",
        Duration::from_secs(30),
        String::new,
        || replicas() >= 2,
    );
    let failed: usize = clients.into_iter().map(|c| c.join().unwrap()).sum();
    assert_eq!(failed, 0, "requests failed while scaling out");
    eventually(
        "the new replica to be ready",
        Duration::from_secs(30),
        String::new,
        || show(s, "auto")["ready_replicas"].as_u64().unwrap_or(0) >= 2,
    );
    s.ok_in(
        &seed,
        &[
            "online-endpoint",
            "update",
            "-n",
            "my-model-endpoint",
            "--traffic",
            "blue=100 auto=0",
        ],
    );

    // Replicas the scheduler cannot place (no GPU node): the deployment says why while it waits.
    std::fs::write(
        work.path().join("gpu.yaml"),
        std::fs::read_to_string(work.path().join("auto.yaml"))
            .unwrap()
            .replace("name: auto", "name: gpu")
            .replace("cpu-small", "gpu-training"),
    )
    .unwrap();
    s.ok_in(
        work.path(),
        &[
            "online-deployment",
            "create",
            "--file",
            "gpu.yaml",
            "--no-wait",
        ],
    );
    eventually(
        "the scheduler's reason",
        Duration::from_secs(30),
        String::new,
        || {
            let v = show(s, "gpu");
            v["provisioning_state"] == "Creating"
                && v["reason"].as_str().is_some_and(|r| {
                    r.contains("replicas cannot be placed") && r.contains("nodes are available")
                })
        },
    );
    s.ok_in(
        &seed,
        &[
            "online-deployment",
            "delete",
            "--name",
            "gpu",
            "--endpoint-name",
            "my-model-endpoint",
            "--yes",
        ],
    );
}

#[test]
fn a_model_too_large_for_a_config_map_is_fetched_by_the_pods() {
    let c = blue();
    let (s, uri, key, rt, work) = (&c.s, &c.uri, &c.key, &c.rt, &c.work);
    let deployments = &c.deployments;
    // A model too large for a ConfigMap: the pods' init container fetches it from the server.
    let weights: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(7919) % 251) as u8)
        .collect();
    let sum: u64 = weights.iter().map(|&b| u64::from(b)).sum();
    std::fs::create_dir_all(work.path().join("big-model")).unwrap();
    std::fs::write(work.path().join("big-model/weights.bin"), &weights).unwrap();
    std::fs::create_dir_all(work.path().join("big-score")).unwrap();
    std::fs::write(
        work.path().join("big-score/score.py"),
        "import os\n\ndef init():\n    global total\n    with open(os.path.join(os.environ['AZUREML_MODEL_DIR'], 'big-model', 'weights.bin'), 'rb') as f:\n        total = sum(f.read())\n\ndef run(raw):\n    return {'variant': 'big', 'sum': total}\n",
    )
    .unwrap();
    std::fs::write(
        work.path().join("big.yaml"),
        "name: big\nendpoint_name: my-model-endpoint\nmodel:\n  path: ./big-model\ncode_configuration:\n  code: ./big-score\n  scoring_script: score.py\ninstance_type: cpu-small\ninstance_count: 1\n",
    )
    .unwrap();
    s.ok_in(
        work.path(),
        &["online-deployment", "create", "--file", "big.yaml"],
    );
    let big = rt
        .block_on(deployments.get(&name_of("my-model-endpoint", "big")))
        .unwrap();
    let init = big
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .init_containers
        .unwrap();
    assert_eq!(init[1].name, "berth-fetch");
    let (status, body) = invoke(uri, key, Some("big"));
    assert_eq!(status, 200, "{body}");
    let answer: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["sum"], sum, "{body}");
    // After an update, revision 1's token still opens revision 1's files (its replicas may
    // start again while a rollout runs or after it failed), and nothing else.
    let (url, token) = (
        init[1].command.clone().unwrap()[3].clone(),
        init[1].env.clone().unwrap()[0].value.clone().unwrap(),
    );
    std::fs::write(
        work.path().join("big.yaml"),
        std::fs::read_to_string(work.path().join("big.yaml")).unwrap()
            + "environment_variables:\n  MODEL_VARIANT: big-v2\n",
    )
    .unwrap();
    s.ok_in(
        work.path(),
        &["online-deployment", "update", "--file", "big.yaml"],
    );
    let get = |url: &str| {
        rt.block_on(async {
            let r = reqwest::Client::new()
                .get(url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        })
    };
    let (status, listing) = get(&url);
    assert_eq!(status, 200, "{listing}");
    let listing: Vec<serde_json::Value> = serde_json::from_str(&listing).unwrap();
    assert!(
        listing
            .iter()
            .any(|f| f["path"] == "model/big-model/weights.bin" && f["size"] == 1_500_000),
        "{listing:?}"
    );
    let (status, body) = get(&url.replace("/revisions/1/", "/revisions/2/"));
    assert_eq!(status, 401, "{body}");
}

#[test]
fn a_conda_environment_is_built_in_each_pod() {
    let c = blue();
    let (s, uri, key, work) = (&c.s, &c.uri, &c.key, &c.work);
    std::fs::create_dir_all(work.path().join("toml")).unwrap();
    std::fs::write(
        work.path().join("toml/score.py"),
        "import json, sys, tomli_w\n\ndef init():\n    pass\n\ndef run(raw):\n    return {'toml': tomli_w.dumps({'a': 1}), 'prefix': sys.prefix}\n",
    )
    .unwrap();
    std::fs::write(
        work.path().join("toml.yaml"),
        "name: toml\nendpoint_name: my-model-endpoint\ncode_configuration:\n  code: ./toml\n  scoring_script: score.py\nenvironment:\n  image: mcr.microsoft.com/azureml/minimal-ubuntu22.04-py39-cpu-inference:latest\n  conda_file:\n    dependencies:\n      - python=3.11\n      - pip:\n        - tomli-w==1.0.0\ninstance_type: cpu-small\ninstance_count: 1\n",
    )
    .unwrap();
    s.ok_in(
        work.path(),
        &["online-deployment", "create", "--file", "toml.yaml"],
    );
    let (status, body) = invoke(uri, key, Some("toml"));
    assert_eq!(status, 200, "{body}");
    // The test kubelet keeps the berth-env volume in a folder named after it.
    assert!(
        body.contains("a = 1") && body.contains("vol-berth-env"),
        "{body}"
    );
}

#[test]
fn a_restarted_server_adopts_what_runs_and_delete_leaves_nothing() {
    let Cluster {
        s,
        key,
        rt,
        client,
        deployments,
        kubelet,
        cp,
        ..
    } = blue();
    let seed = seed_dir();
    s.ok_in(
        &seed,
        &[
            "online-deployment",
            "create",
            "--file",
            "green-deployment.yaml",
        ],
    );
    let home = s.kill9();
    let s = Server::start_in(home, &[], &[]);
    let uri = s.tsv(
        &seed,
        &["online-endpoint", "show", "-n", "my-model-endpoint"],
        "scoring_uri",
    );
    eventually(
        "the adopted replicas to serve",
        Duration::from_secs(30),
        String::new,
        || invoke(&uri, &key, None).0 == 200,
    );

    // The compute cannot be detached while an endpoint is on it.
    let out = s.cli(&["compute", "detach", "--name", "aks-compute", "--yes"]);
    assert!(
        text(&out.stderr).contains("serves online endpoint(s) my-model-endpoint"),
        "{}",
        text(&out.stderr)
    );

    // Delete removes the Deployment, Service and ConfigMaps.
    s.ok_in(
        &seed,
        &[
            "online-deployment",
            "delete",
            "--name",
            "green",
            "--endpoint-name",
            "my-model-endpoint",
            "--yes",
        ],
    );
    let green = name_of("my-model-endpoint", "green");
    let services: Api<Service> = Api::namespaced(client.clone(), NS);
    assert!(rt.block_on(deployments.get_opt(&green)).unwrap().is_none());
    assert!(rt.block_on(services.get_opt(&green)).unwrap().is_none());
    let maps: Api<ConfigMap> = Api::namespaced(client.clone(), NS);
    let left = rt
        .block_on(maps.list(&ListParams::default().labels("berth.dev/deployment=green")))
        .unwrap();
    assert!(left.items.is_empty());
    // The server goes before the kubelet's containers and the control plane.
    drop(s);
    drop(kubelet);
    drop(cp);
}
