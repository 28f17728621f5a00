//! A pipeline whose steps run on two computes: the local one and a Kubernetes compute (a real
//! control plane from `../shared/k8s-testenv`, the test kubelet running pods as local
//! processes). The cluster's step is the same batch/v1 Job any job is; the folder the local
//! step made reaches its pod, and what the pod writes comes back for the next local step.

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

#[test]
fn a_pipeline_runs_one_step_on_the_cluster_between_two_local_ones() {
    let cp = ControlPlane::start();
    let rt = k8s::runtime();
    let pods_dir = tempfile::tempdir().unwrap();
    let client = rt.block_on(cp.client());
    let kubelet = rt.block_on(Kubelet::start(client.clone(), pods_dir.path()));
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
    let jobs: Api<Job> = Api::namespaced(client.clone(), "azureml-workloads");
    let made = rt
        .block_on(jobs.get_opt(&object_name("kp_on_cluster")))
        .unwrap();
    assert!(made.is_some(), "the cluster's step is a batch/v1 Job");
    let result = job["outputs"]["result"]["path"].as_str().unwrap();
    let text = std::fs::read_to_string(std::path::Path::new(result).join("f.txt")).unwrap();
    assert_eq!(text, "MADE-LOCALLY\n");
}
