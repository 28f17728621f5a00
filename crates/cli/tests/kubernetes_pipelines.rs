//! A pipeline whose steps run on two computes: the local one and a Kubernetes compute (a real
//! control plane from `../shared/k8s-testenv`, the test kubelet running pods as local
//! processes). The cluster's step is the same batch/v1 Job any job is; the folder the local
//! step made reaches its pod, and what the pod writes comes back for the next local step. A
//! sweep's trials on the cluster are such Jobs too, and log their metric to the server from
//! their pods.

#![allow(clippy::unwrap_used)]

#[path = "support/k8s.rs"]
mod k8s;
#[path = "support/kubelet.rs"]
mod kubelet;
mod support;

use berth_scheduler::backend::kubernetes::objects::object_name;
use k8s::{ControlPlane, apply_instance_types};
use k8s_openapi::api::batch::v1::Job;
use kube::api::Api;
use kubelet::{Kubelet, NodeSpec};
use support::{BERTH, Server, write};
// support/k8s.rs reads these from the test's root.
#[allow(unused_imports)]
use support::{seed_dir, text};

/// A control plane with one 4-core node run by the test kubelet, and a server with it
/// attached as `aks-compute`.
struct Cluster {
    _cp: ControlPlane,
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    _kubelet: Kubelet,
    _pods: tempfile::TempDir,
    s: Server,
}

fn cluster() -> Cluster {
    let cp = ControlPlane::start();
    let rt = k8s::runtime();
    let pods = tempfile::tempdir().unwrap();
    let client = rt.block_on(cp.client());
    let kubelet = rt.block_on(Kubelet::start(client.clone(), pods.path()));
    kubelet.image_file("/usr/local/bin/berth", BERTH);
    rt.block_on(kubelet.add_node(NodeSpec::new("cpu-node", "4", "16Gi", 0, &[])));
    rt.block_on(apply_instance_types(&client));
    let s = Server::start(&[]);
    let api_url = s.api_url.clone();
    k8s::attach_cluster(
        &s,
        &cp,
        &[
            "--server-url",
            &api_url,
            "--berth-image",
            "registry.example/berth:test",
        ],
    );
    Cluster {
        _cp: cp,
        rt,
        client,
        _kubelet: kubelet,
        _pods: pods,
        s,
    }
}

impl Cluster {
    /// Whether the job's batch/v1 Job was made on the cluster.
    fn made(&self, job: &str) -> bool {
        let jobs: Api<Job> = Api::namespaced(self.client.clone(), "azureml-workloads");
        self.rt
            .block_on(jobs.get_opt(&object_name(job)))
            .unwrap()
            .is_some()
    }
}

#[test]
fn a_pipeline_runs_one_step_on_the_cluster_between_two_local_ones() {
    let c = cluster();
    let s = &c.s;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.yml",
        "$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
settings:
  default_compute: azureml:local
jobs:
  make:
    command: echo made-locally > ${{outputs.o}}/f.txt
    outputs:
      o:
  on_cluster:
    command: tr a-z A-Z < ${{inputs.x}}/f.txt > ${{outputs.o}}/f.txt
    compute: azureml:aks-compute
    resources:
      instance_type: cpu-small
    inputs:
      x: ${{parent.jobs.make.outputs.o}}
    outputs:
      o:
  back:
    command: cat ${{inputs.x}}/f.txt > ${{outputs.o}}/f.txt
    inputs:
      x: ${{parent.jobs.on_cluster.outputs.o}}
    outputs:
      o: ${{parent.outputs.result}}
outputs:
  result:
",
    );
    s.ok_in(
        dir.path(),
        &[
            "job", "create", "--file", "p.yml", "--name", "kp", "--stream",
        ],
    );
    let job = s.status("kp");
    assert_eq!(job["status"], "Completed", "{job}");
    assert_eq!(s.status("kp_on_cluster")["compute"], "azureml:aks-compute");
    assert_eq!(s.status("kp_make")["compute"], "azureml:local");
    assert!(
        c.made("kp_on_cluster"),
        "the cluster's step is a batch/v1 Job"
    );
    let result = job["outputs"]["result"]["path"].as_str().unwrap();
    let text = std::fs::read_to_string(std::path::Path::new(result).join("f.txt")).unwrap();
    assert_eq!(text, "MADE-LOCALLY\n");
}

/// Logs `loss = (lr - 0.3)²` to its run through the tracking API (standard library only).
const TRAIN: &str = r#"import argparse, json, os, time, urllib.request
p = argparse.ArgumentParser(); p.add_argument("--lr", type=float); a = p.parse_args()
env = os.environ
body = json.dumps({"run_id": env["MLFLOW_RUN_ID"], "key": "loss", "value": (a.lr - 0.3) ** 2, "timestamp": int(time.time() * 1000), "step": 0}).encode()
urllib.request.urlopen(urllib.request.Request(env["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/runs/log-metric", body, {"Authorization": "Bearer " + env["MLFLOW_TRACKING_TOKEN"], "Content-Type": "application/json"}))
"#;

#[test]
fn a_sweeps_trials_run_on_the_cluster_and_log_from_their_pods() {
    let c = cluster();
    let s = &c.s;
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "src/train.py", TRAIN);
    write(
        dir.path(),
        "sweep.yml",
        "$schema: https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json
type: sweep
name: ks
trial:
  code: src
  command: python3 train.py --lr ${{search_space.lr}}
compute: azureml:aks-compute
resources:
  instance_type: cpu-small
sampling_algorithm: grid
search_space:
  lr:
    type: choice
    values: [0.1, 0.3]
objective:
  goal: minimize
  primary_metric: loss
limits:
  max_concurrent_trials: 2
",
    );
    s.ok_in(
        dir.path(),
        &["job", "create", "--file", "sweep.yml", "--stream"],
    );
    let job = s.status("ks");
    assert_eq!(job["status"], "Completed", "{job}");
    assert_eq!(job["sweep"]["best"]["params"]["lr"], 0.3, "{job}");
    for trial in ["ks_0", "ks_1"] {
        assert_eq!(s.status(trial)["compute"], "azureml:aks-compute");
        assert!(c.made(trial), "{trial} is a batch/v1 Job");
    }
}
