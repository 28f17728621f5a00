//! Training jobs on a Kubernetes compute, against a real control plane (Kubernetes 1.20 from
//! `../shared/k8s-testenv`) with the test kubelet running pods as local processes. Each test
//! starts from the same fixture: a control plane of its own with one CPU node, and a server
//! with the seed's datastore (attached to the cluster, but for the attach errors' test).

#![allow(clippy::unwrap_used)]

#[path = "support/k8s.rs"]
mod k8s;
#[path = "support/kubelet.rs"]
mod kubelet;
mod support;

use std::path::Path;
use std::time::Duration;

use berth_scheduler::backend::kubernetes::objects::object_name;
use k8s::{ControlPlane, apply_instance_types, eventually};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::ResourceQuota;
use kube::api::{Api, DeleteParams, PostParams};
use kubelet::{Kubelet, NodeSpec};
use support::{BERTH, Server, seed_dir, text, write};

fn last_job() -> String {
    LAST.with(|l| l.borrow().clone())
}

/// Writes a job file for the cluster and submits it; returns the job's name.
fn submit(s: &Server, dir: &Path, file: &str, body: &str) -> String {
    write(
        dir,
        file,
        &format!("{body}compute: azureml:aks-compute\nresources:\n  instance_type: cpu-small\n"),
    );
    s.tsv(dir, &["job", "create", "--file", file], "name")
}

fn status(s: &Server, job: &str) -> serde_json::Value {
    let v = s.json(&["job", "show", "--name", job]);
    LAST.with(|l| *l.borrow_mut() = v.to_string());
    v
}

thread_local! {
    static LAST: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Attaches compute `name` with a kubeconfig file and `extra` flags, expecting a refusal;
/// returns stderr.
fn attach_refused(s: &Server, name: &str, kubeconfig: &Path, extra: &[&str]) -> String {
    let kc = kubeconfig.display().to_string();
    let mut args = vec![
        "compute",
        "attach",
        "--type",
        "Kubernetes",
        "--name",
        name,
        "--kubeconfig",
        &kc,
    ];
    args.extend_from_slice(extra);
    let out = s.cli(&args);
    assert!(!out.status.success());
    text(&out.stderr)
}

/// A cluster with one CPU node and a server, attached to it or not yet.
/// Fields drop in order: the server, the kubelet's pods, then the control plane.
struct Cluster {
    s: Server,
    kubelet: Kubelet,
    rt: tokio::runtime::Runtime,
    client: kube::Client,
    jobs: Api<Job>,
    dir: tempfile::TempDir,
    pods_dir: tempfile::TempDir,
    cp: ControlPlane,
}

/// The fixture before `compute attach`.
fn cluster() -> Cluster {
    let cp = ControlPlane::start();
    let rt = k8s::runtime();
    let pods_dir = tempfile::tempdir().unwrap();
    let client = rt.block_on(cp.client());
    let kubelet = rt.block_on(Kubelet::start(client.clone(), pods_dir.path()));
    // Berth's image holds the berth binary; here it is the one under test.
    kubelet.image_file("/usr/local/bin/berth", BERTH);
    kubelet.image_file("/usr/local/bin/uv", &k8s::uv_binary());
    rt.block_on(kubelet.add_node(NodeSpec::new(
        "cpu-node",
        "4",
        "16Gi",
        0,
        &[("agentpool", "cpupool")],
    )));
    rt.block_on(apply_instance_types(&client));
    let s = Server::start(&[]);
    s.ok_in(
        &seed_dir(),
        &[
            "datastore",
            "create",
            "--name",
            "mydata",
            "--path",
            "./data",
        ],
    );
    Cluster {
        jobs: Api::namespaced(client.clone(), "azureml-workloads"),
        s,
        kubelet,
        rt,
        client,
        dir: tempfile::tempdir().unwrap(),
        pods_dir,
        cp,
    }
}

/// The fixture attached as compute `aks-compute`; pods upload outputs to this server (in a
/// cluster: the in-cluster server's Service).
fn attached() -> Cluster {
    let c = cluster();
    let api_url = c.s.api_url.clone();
    k8s::attach_cluster(
        &c.s,
        &c.cp,
        &[
            "--server-url",
            &api_url,
            "--berth-image",
            "registry.example/berth:test",
        ],
    );
    c
}

#[test]
fn attach_says_what_is_wrong_and_show_describes_the_cluster() {
    let c = cluster();
    let (s, rt, client, cp, pods_dir) = (&c.s, &c.rt, &c.client, &c.cp, &c.pods_dir);
    // Attach errors first: a namespace that does not exist, a broken kubeconfig.
    let err = attach_refused(s, "x", &cp.kubeconfig(), &["--namespace", "nowhere"]);
    assert!(err.contains("namespace `nowhere` does not exist"), "{err}");
    let broken = write(pods_dir.path(), "bad-kubeconfig", "clusters: [}");
    let err = attach_refused(s, "x", &broken, &[]);
    assert!(err.contains("kubeconfig cannot be read"), "{err}");
    // A cluster that does not answer.
    let text_kc = std::fs::read_to_string(cp.kubeconfig()).unwrap();
    let dead = write(
        pods_dir.path(),
        "dead-kubeconfig",
        &text_kc.replace(&cp.server, "https://127.0.0.1:1"),
    );
    let err = attach_refused(s, "x", &dead, &[]);
    assert!(
        err.contains("cannot reach the cluster at https://127.0.0.1:1"),
        "{err}"
    );
    // Credentials without the permissions Berth needs: the verb and resource are named.
    let limited = rt.block_on(k8s::token_for_new_service_account(client, "limited"));
    let weak = write(
        pods_dir.path(),
        "weak-kubeconfig",
        &text_kc.replace(&cp.token, &limited),
    );
    let err = attach_refused(s, "x", &weak, &[]);
    assert!(
        err.contains("may not `create` jobs.batch in namespace `default`"),
        "{err}"
    );

    let api_url = s.api_url.clone();
    k8s::attach_cluster(
        s,
        cp,
        &[
            "--server-url",
            &api_url,
            "--berth-image",
            "registry.example/berth:test",
        ],
    );
    let shown = s.json(&["compute", "show", "--name", "aks-compute"]);
    assert_eq!(shown["type"], "kubernetes");
    assert_eq!(shown["kubernetes"]["namespace"], "azureml-workloads");
    assert!(shown["kubernetes"].get("kubeconfig").is_none(), "{shown}");
    assert_eq!(shown["cluster"]["nodes"], 1);
    assert_eq!(shown["capacity"]["cpu"], "4");
    let types: Vec<&str> = shown["cluster"]["instance_types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(types, ["cpu-large", "cpu-small", "gpu-training"]);
    let err = attach_refused(s, "aks-compute", &cp.kubeconfig(), &[]);
    assert!(err.contains("already exists"), "{err}");
}

#[test]
fn the_seed_job_waits_for_a_gpu_node_then_completes_and_its_model_comes_back() {
    let c = attached();
    let (s, rt, jobs) = (&c.s, &c.rt, &c.jobs);
    let seed = seed_dir();
    let kubelet = &c.kubelet;
    // The seed's job asks for gpu-training: no node has a GPU yet, so it waits in Queued with
    // the scheduler's own message.
    let job = s.tsv(
        &seed,
        &["job", "create", "--file", "training-job.yaml"],
        "name",
    );
    eventually(
        "the scheduler's reason",
        Duration::from_secs(30),
        last_job,
        || {
            let v = status(s, &job);
            v["status"] == "Queued"
                && v["status_message"]
                    .as_str()
                    .is_some_and(|r| r.contains("0/1 nodes are available"))
        },
    );
    let why = status(s, &job)["status_message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        why.contains("node affinity") || why.contains("nvidia.com/gpu"),
        "{why}"
    );

    // A GPU node arrives: the job runs and completes, its log copied from pods/log.
    rt.block_on(kubelet.add_node(NodeSpec::new(
        "gpu-node",
        "8",
        "64Gi",
        1,
        &[("agentpool", "gpupool")],
    )));
    eventually(
        "the seed's job to complete",
        Duration::from_secs(60),
        last_job,
        || {
            let v = status(s, &job);
            assert_ne!(v["status"], "Failed", "{v}");
            v["status"] == "Completed"
        },
    );
    let log = text(&s.ok_in(&seed, &["job", "stream", "--name", &job]).stdout);
    assert!(log.contains("epoch"), "{log}");
    assert!(log.contains("[berth] uploaded output `model`"), "{log}");
    // The model the pod wrote came back to the server.
    let dest = tempfile::tempdir().unwrap();
    s.ok_in(
        &seed,
        &[
            "job",
            "download",
            "--name",
            &job,
            "--output-name",
            "model",
            "--download-path",
            dest.path().to_str().unwrap(),
        ],
    );
    let found = berth_scheduler::workdir::list_files(dest.path()).unwrap();
    assert!(
        found
            .iter()
            .any(|(p, size)| p.ends_with("model.json") && *size > 0),
        "{found:?}"
    );
    let k8s_job = rt.block_on(jobs.get(&object_name(&job))).unwrap();
    let pod_spec = k8s_job.spec.unwrap().template.spec.unwrap();
    let init = pod_spec.init_containers.clone().unwrap();
    assert_eq!(
        init[0].image.as_deref(),
        Some("registry.example/berth:test")
    );
    assert_eq!(pod_spec.node_selector.unwrap()["agentpool"], "gpupool");
    let limits = pod_spec.containers[0]
        .resources
        .clone()
        .unwrap()
        .limits
        .unwrap();
    assert_eq!(limits["nvidia.com/gpu"].0, "1");
}

#[test]
fn a_conda_environment_is_built_in_the_pod_and_outputs_come_back() {
    let c = attached();
    let s = &c.s;
    // A conda file is built in the pod before the command (its progress in the job's log),
    // and what the job writes to ./outputs and ./logs comes back as its artifacts.
    let envjob = tempfile::tempdir().unwrap();
    write(
        envjob.path(),
        "conda.yml",
        "name: six-env\ndependencies:\n  - python=3.11\n  - pip:\n    - six==1.16.0\n",
    );
    let with_env = submit(
        s,
        envjob.path(),
        "job.yaml",
        "command: python -c \"import six; print('six', six.__version__)\" && mkdir outputs/model && echo w > outputs/model/w.txt && echo step > logs/train.log\nenvironment:\n  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest\n  conda_file: conda.yml\n",
    );
    eventually(
        "the job with an environment to complete",
        Duration::from_secs(120),
        last_job,
        || {
            let v = status(s, &with_env);
            assert_ne!(v["status"], "Failed", "{v}");
            v["status"] == "Completed"
        },
    );
    let log = text(
        &s.ok_in(envjob.path(), &["job", "stream", "--name", &with_env])
            .stdout,
    );
    assert!(log.contains("[berth] building environment"), "{log}");
    assert!(log.contains("six 1.16.0"), "{log}");
    let dest = tempfile::tempdir().unwrap();
    s.ok_in(
        envjob.path(),
        &[
            "job",
            "download",
            "--name",
            &with_env,
            "--all",
            "--download-path",
            dest.path().to_str().unwrap(),
        ],
    );
    let read = |rel: &str| std::fs::read_to_string(dest.path().join(rel)).unwrap_or_default();
    assert_eq!(read("artifacts/outputs/model/w.txt").trim(), "w");
    assert_eq!(read("artifacts/logs/train.log").trim(), "step");
}

/// A pod reaches its job's MLflow run through the compute's server URL, with its own token;
/// `berth job-run` logs what the command uses there too.
#[test]
fn a_pods_command_logs_metrics_to_its_jobs_run() {
    let c = attached();
    let s = &c.s;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "src/log.py",
        "held = bytearray(32 << 20)\nfor i in range(0, len(held), 4096): held[i] = 1\nimport json, os, time, urllib.request\nenv = os.environ\nbody = json.dumps({'run_id': env['MLFLOW_RUN_ID'], 'key': 'acc', 'value': 0.9, 'timestamp': 1, 'step': 0}).encode()\nurllib.request.urlopen(urllib.request.Request(env['MLFLOW_TRACKING_URI'] + '/api/2.0/mlflow/runs/log-metric', body, {'Authorization': 'Bearer ' + env['MLFLOW_TRACKING_TOKEN'], 'Content-Type': 'application/json'}))\n# Two samples (every 5 s) while the 32 MiB are held, however slowly it started.\ntime.sleep(11)\n",
    );
    let job = submit(
        s,
        dir.path(),
        "job.yaml",
        "command: python log.py\ncode: src\n",
    );
    eventually(
        "the job to complete",
        Duration::from_secs(60),
        last_job,
        || {
            let v = status(s, &job);
            assert_ne!(v["status"], "Failed", "{v}");
            v["status"] == "Completed"
        },
    );
    let metrics = status(s, &job)["metrics"].clone();
    assert_eq!(metrics["acc"], 0.9);
    // Sampled in the pod every 5 s while the command held 32 MiB (allocated first thing).
    assert!(
        metrics["system/memory_usage_megabytes"]
            .as_f64()
            .unwrap_or(0.0)
            >= 32.0,
        "{metrics}"
    );
}

#[test]
fn cancel_deletes_the_job_and_its_pod() {
    let c = attached();
    let (s, rt, jobs, dir) = (&c.s, &c.rt, &c.jobs, &c.dir);
    // Cancel deletes the Job and its pod.
    let flag = dir.path().join("go");
    let gated = submit(
        s,
        dir.path(),
        "job.yaml",
        &format!(
            "command: while [ ! -f {} ]; do sleep 0.05; done; echo gated done\n",
            flag.display()
        ),
    );
    eventually(
        "the gated job to run",
        Duration::from_secs(30),
        last_job,
        || status(s, &gated)["status"] == "Running",
    );
    s.ok_in(dir.path(), &["job", "cancel", "--name", &gated]);
    eventually(
        "the canceled job",
        Duration::from_secs(30),
        last_job,
        || status(s, &gated)["status"] == "Canceled",
    );
    eventually(
        "the Job to be deleted",
        Duration::from_secs(30),
        last_job,
        || {
            rt.block_on(jobs.get_opt(&object_name(&gated)))
                .unwrap()
                .is_none()
        },
    );
    // The test kubelet does not stop a deleted pod's process: let the command end, or it
    // outlives the test.
    std::fs::write(&flag, "").unwrap();
    let flag_text = flag.display().to_string();
    let polling = || {
        support::pids().any(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .is_ok_and(|c| c.contains(&flag_text))
        })
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while polling() {
        assert!(
            std::time::Instant::now() < deadline,
            "the pod's command kept running"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_resource_quota_keeps_a_job_queued_with_the_controllers_reason() {
    let c = attached();
    let (s, rt, dir) = (&c.s, &c.rt, &c.dir);
    let client = &c.client;
    // A ResourceQuota that admits no pod: the job waits in Queued with the Job controller's
    // reason, and runs once the quota is lifted.
    let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), "azureml-workloads");
    let quota: ResourceQuota = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "no-pods"}, "spec": {"hard": {"pods": "0"}}
    }))
    .unwrap();
    rt.block_on(quotas.create(&PostParams::default(), &quota))
        .unwrap();
    // Admission enforces a quota once its controller has recorded it.
    eventually(
        "the quota controller",
        Duration::from_secs(30),
        String::new,
        || {
            rt.block_on(quotas.get("no-pods"))
                .ok()
                .and_then(|q| q.status?.hard)
                .is_some()
        },
    );
    let quota_job = submit(
        s,
        dir.path(),
        "quota.yaml",
        "command: echo past the quota\n",
    );
    eventually(
        "the quota's reason",
        Duration::from_secs(30),
        last_job,
        || {
            let v = status(s, &quota_job);
            v["status"] == "Queued"
                && v["status_message"]
                    .as_str()
                    .is_some_and(|m| m.contains("exceeded quota: no-pods"))
        },
    );
    rt.block_on(quotas.delete("no-pods", &DeleteParams::default()))
        .unwrap();
    eventually(
        "the job past the quota",
        Duration::from_secs(60),
        last_job,
        || status(s, &quota_job)["status"] == "Completed",
    );
}

#[test]
fn a_timeout_a_failing_command_and_an_unknown_instance_type_say_why() {
    let c = attached();
    let (s, dir) = (&c.s, &c.dir);
    // limits.timeout becomes activeDeadlineSeconds.
    let slow = submit(
        s,
        dir.path(),
        "slow.yaml",
        "command: sleep 60\nlimits:\n  timeout: 2\n",
    );
    eventually("the deadline", Duration::from_secs(60), last_job, || {
        status(s, &slow)["status"] == "Failed"
    });
    let v = status(s, &slow);
    assert!(
        v["status_message"]
            .as_str()
            .unwrap()
            .contains("limits.timeout"),
        "{v}"
    );

    // A non-zero exit code comes back with the log.
    let failing = submit(
        s,
        dir.path(),
        "fail.yaml",
        "command: echo about to fail; exit 3\n",
    );
    eventually("the failure", Duration::from_secs(30), last_job, || {
        status(s, &failing)["status"] == "Failed"
    });
    let v = status(s, &failing);
    assert!(
        v["status_message"].as_str().unwrap().contains("code 3"),
        "{v}"
    );
    let log = text(&s.cli(&["job", "stream", "--name", &failing]).stdout);
    assert!(log.contains("about to fail"), "{log}");

    // An instance type the cluster does not have.
    write(
        dir.path(),
        "nope.yaml",
        "command: echo\ncompute: azureml:aks-compute\nresources:\n  instance_type: huge\n",
    );
    let out = s.cli_in(dir.path(), &["job", "create", "--file", "nope.yaml"]);
    assert!(
        text(&out.stderr).contains("does not exist in the cluster"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn inputs_too_large_for_a_config_map_are_fetched_by_the_pod() {
    let c = attached();
    let (s, dir) = (&c.s, &c.dir);
    // Inputs too large for a ConfigMap: the pod's init container fetches them from the server;
    // a URL input in download mode is downloaded by the same init container.
    let remote = support::serve_once("remote,data\n");
    let weights: Vec<u8> = (0..1_500_000u32)
        .map(|i| (i.wrapping_mul(7919) % 251) as u8)
        .collect();
    std::fs::write(dir.path().join("big.bin"), &weights).unwrap();
    let fetched = submit(
        s,
        dir.path(),
        "big.yaml",
        &format!(
            "command: cksum < ${{{{inputs.data}}}} && cat ${{{{inputs.remote}}}}\ninputs:\n  data:\n    type: uri_file\n    path: ./big.bin\n  remote:\n    type: uri_file\n    path: {remote}\n    mode: download\n"
        ),
    );
    eventually("the large job", Duration::from_secs(30), last_job, || {
        let v = status(s, &fetched);
        assert_ne!(v["status"], "Failed", "{v}");
        v["status"] == "Completed"
    });
    let expected = std::process::Command::new("sh")
        .arg("-c")
        .arg("cksum < big.bin")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let log = text(&s.cli(&["job", "stream", "--name", &fetched]).stdout);
    assert!(log.contains("fetches them from the Berth server"), "{log}");
    assert!(log.contains(text(&expected.stdout).trim()), "{log}");
    assert!(log.contains("remote,data"), "{log}");
    // What the init container fetched is in the job's log too.
    assert!(log.contains("[berth] fetched `inputs/data`"), "{log}");
    assert!(log.contains("downloads the URL inputs"), "{log}");
    std::fs::remove_file(dir.path().join("big.bin")).unwrap();

    // A URL the pod cannot download: the init container fails, the job says which and why.
    let missing = support::serve_status(404, "no such blob");
    let broken = submit(
        s,
        dir.path(),
        "missing.yaml",
        &format!(
            "command: echo never\ninputs:\n  remote:\n    type: uri_file\n    path: {missing}\n    mode: download\n"
        ),
    );
    eventually(
        "the fetch failure",
        Duration::from_secs(30),
        last_job,
        || status(s, &broken)["status"] == "Failed",
    );
    let v = status(s, &broken);
    let why = v["status_message"].as_str().unwrap();
    assert!(
        why.contains(
            "init container `berth-fetch` (image `registry.example/berth:test`) exited with code 1"
        ),
        "{v}"
    );
    let log = text(&s.cli(&["job", "stream", "--name", &broken]).stdout);
    assert!(log.contains("HTTP 404 Not Found: no such blob"), "{log}");
    assert!(!log.contains("never"), "{log}");
}

#[test]
fn a_restarted_server_adopts_a_running_job_and_deletes_orphans_and_detach_waits_for_work() {
    let Cluster {
        s,
        kubelet,
        rt,
        jobs,
        dir,
        cp,
        ..
    } = attached();
    // The server dies while a job runs; the new one adopts the Job and sees it finish.
    let flag2 = dir.path().join("go2");
    let adopted = submit(
        &s,
        dir.path(),
        "job2.yaml",
        &format!(
            "command: while [ ! -f {} ]; do sleep 0.05; done; echo adopted\n",
            flag2.display()
        ),
    );
    eventually("the job to run", Duration::from_secs(30), last_job, || {
        status(&s, &adopted)["status"] == "Running"
    });
    // A compute with running work is not detached without --force.
    let out = s.cli(&["compute", "detach", "--name", "aks-compute", "--yes"]);
    assert!(
        text(&out.stderr).contains("unfinished job"),
        "{}",
        text(&out.stderr)
    );
    // Something Berth made for a job it no longer knows (as if canceled while it was down).
    let ghost: Job = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "ghost", "labels": {"app.kubernetes.io/managed-by": "berth", "berth.dev/job": "ghost"},
            "annotations": {"berth.dev/job-name": "ghost", "berth.dev/compute": "aks-compute"}},
        "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never",
            "containers": [{"name": "job", "image": "x", "command": ["sleep", "300"]}]}}},
    }))
    .unwrap();
    rt.block_on(jobs.create(&Default::default(), &ghost))
        .unwrap();
    let home = s.kill9();
    let s = Server::start_in(home, &[], &[]);
    eventually(
        "the orphaned Job to be deleted",
        Duration::from_secs(30),
        last_job,
        || rt.block_on(jobs.get_opt("ghost")).unwrap().is_none(),
    );
    assert_eq!(status(&s, &adopted)["status"], "Running");
    std::fs::write(&flag2, "").unwrap();
    eventually(
        "the adopted job to complete",
        Duration::from_secs(30),
        last_job,
        || status(&s, &adopted)["status"] == "Completed",
    );

    // Detaching refuses while work is unfinished, and succeeds when there is none.
    s.ok_in(
        dir.path(),
        &["compute", "detach", "--name", "aks-compute", "--yes"],
    );
    // The server goes before the kubelet's pods and the control plane.
    drop(s);
    drop(kubelet);
    drop(cp);
}

#[test]
fn a_server_in_a_pod_attaches_its_own_cluster_with_its_service_account() {
    let c = attached();
    let (s, dir) = (&c.s, &c.dir);
    let cp = &c.cp;
    // The server the extension installs attaches the cluster it runs in as its ServiceAccount.
    let sa = tempfile::tempdir().unwrap();
    std::fs::write(sa.path().join("token"), &cp.token).unwrap();
    std::fs::copy(
        cp.dir.path().join("certs/apiserver.crt"),
        sa.path().join("ca.crt"),
    )
    .unwrap();
    let port = cp.server.rsplit(':').next().unwrap().to_string();
    let pod_env = [
        ("KUBERNETES_SERVICE_HOST", "127.0.0.1"),
        ("KUBERNETES_SERVICE_PORT", port.as_str()),
        ("BERTH_SERVICE_ACCOUNT_DIR", sa.path().to_str().unwrap()),
        ("BERTH_SERVER_URL", "http://berth-server.azureml.svc:8700"),
    ];
    let in_pod = Server::start_in(tempfile::tempdir().unwrap(), &[], &pod_env);
    in_pod.ok_in(
        dir.path(),
        &[
            "compute",
            "attach",
            "--type",
            "Kubernetes",
            "--name",
            "here",
            "--in-cluster",
            "--namespace",
            "azureml-workloads",
        ],
    );
    let here = in_pod.json(&["compute", "show", "--name", "here"]);
    assert_eq!(here["cluster"]["nodes"], 1);
    // Its pods reach it at its own Service, as the extension tells it.
    assert_eq!(
        here["kubernetes"]["server_url"],
        "http://berth-server.azureml.svc:8700"
    );
    drop(in_pod);
    let out = s.cli(&[
        "compute",
        "attach",
        "--type",
        "Kubernetes",
        "--name",
        "y",
        "--in-cluster",
    ]);
    assert!(
        text(&out.stderr).contains("works only for a server running in a pod"),
        "{}",
        text(&out.stderr)
    );
}
