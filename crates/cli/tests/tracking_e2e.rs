//! End to end: a job's script logs through the unmodified `mlflow` client (from PyPI, built
//! by uv) to its own run on the server: autolog on scikit-learn, metrics with steps, an
//! artifact, a search; `job show` and `job metrics` read it back.

#![allow(clippy::unwrap_used)]

mod support;

use support::{Server, text, write};

const TRAIN: &str = r#"import os, mlflow
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

mlflow.autolog()
X, y = load_iris(return_X_y=True)
with mlflow.start_run() as run:
    assert run.info.run_id == os.environ["AZUREML_RUN_ID"], run.info.run_id
    LogisticRegression(max_iter=200).fit(X, y)
    for step in range(3):
        mlflow.log_metric("loss", 1.0 / (step + 1), step=step)
    mlflow.log_text("trained on iris", "notes/readme.txt")
    history = MlflowClient().get_metric_history(run.info.run_id, "loss")
    print("history", [m.value for m in history])
    found = mlflow.search_runs(filter_string="metrics.training_score > 0.5")
    print("found", list(found["run_id"]))
"#;

const CONDA: &str = "name: train-env\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.11\n  - pip\n  - pip:\n    - mlflow\n    - scikit-learn\n";

const JOB: &str = "$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json\ncommand: python train.py\ncode: src\nexperiment_name: iris-tracking\nenvironment:\n  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest\n  conda_file: conda.yml\ncompute: azureml:local\n";

#[test]
fn an_autologged_job_shows_its_metrics_params_and_artifacts() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "src/train.py", TRAIN);
    write(dir.path(), "conda.yml", CONDA);
    write(dir.path(), "job.yml", JOB);
    let run = [
        "job",
        "create",
        "--file",
        "job.yml",
        "--name",
        "iris_auto",
        "--stream",
    ];
    let out = s.cli_in(dir.path(), &run);
    let log = text(&out.stdout);
    assert!(out.status.success(), "{log}{}", text(&out.stderr));
    assert!(
        log.contains("history [1.0, 0.5, 0.3333333333333333]"),
        "{log}"
    );
    assert!(log.contains("found ['iris_auto']"), "{log}");

    let job = s.status("iris_auto");
    assert_eq!(job["metrics"]["loss"], 1.0 / 3.0);
    assert!(
        job["metrics"]["training_accuracy_score"].as_f64().unwrap() > 0.5,
        "{job}"
    );
    assert_eq!(
        job["params"]["max_iter"], "200",
        "autolog logs the estimator's params"
    );

    let points = s.json(&["job", "metrics", "--name", "iris_auto", "--metric", "loss"]);
    let steps: Vec<i64> = points
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["step"].as_i64().unwrap())
        .collect();
    assert_eq!(steps, [0, 1, 2]);

    // The run's artifacts are the job's outputs: `job download` fetches them.
    let down = dir.path().join("down");
    let dl = [
        "job",
        "download",
        "--name",
        "iris_auto",
        "--all",
        "--download-path",
    ];
    s.ok_in(dir.path(), &[&dl[..], &[down.to_str().unwrap()]].concat());
    let readme = walk(&down)
        .into_iter()
        .find(|p| p.ends_with("notes/readme.txt"));
    assert_eq!(
        std::fs::read_to_string(readme.expect("downloaded")).unwrap(),
        "trained on iris"
    );
}

/// A job's command gets its run's variables; its token is refused on another job's run.
#[test]
fn a_jobs_command_reaches_its_own_run_and_no_other() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "other.yml",
        "command: echo other\nname: other_job\n",
    );
    s.ok_in(
        dir.path(),
        &["job", "create", "--file", "other.yml", "--stream"],
    );
    write(dir.path(), "src/probe.py", PROBE);
    write(
        dir.path(),
        "probe.yml",
        "command: python probe.py\ncode: src\nname: probe_job\nexperiment_name: probes\n",
    );
    let out = s.ok_in(
        dir.path(),
        &["job", "create", "--file", "probe.yml", "--stream"],
    );
    let log = text(&out.stdout);
    assert!(log.contains("run probe_job in probes"), "{log}");
    assert!(log.contains("own 200"), "{log}");
    assert!(log.contains("other 403 PERMISSION_DENIED"), "{log}");
    assert_eq!(s.status("probe_job")["metrics"]["probe"], 1.0);
    assert!(s.status("other_job").get("metrics").is_none());
}

/// Logs a metric to its own run and then to another job's, with the standard library only.
const PROBE: &str = r#"import json, os, urllib.request, urllib.error
env = os.environ
print("run", env["MLFLOW_RUN_ID"], "in", env["MLFLOW_EXPERIMENT_NAME"])
def log(run):
    body = json.dumps({"run_id": run, "key": "probe", "value": 1, "timestamp": 1, "step": 0}).encode()
    req = urllib.request.Request(env["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/runs/log-metric", body,
        {"Authorization": "Bearer " + env["MLFLOW_TRACKING_TOKEN"], "Content-Type": "application/json"})
    try:
        return urllib.request.urlopen(req).status, ""
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)["error_code"]
print("own", *log(env["MLFLOW_RUN_ID"]))
print("other", *log("other_job"))
"#;

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// A running job's CPU and memory are sampled into its run as `system/*` metrics.
#[test]
fn a_running_jobs_cpu_and_memory_become_system_metrics() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("stop");
    // Holds 64 MiB and keeps a core busy until the flag appears.
    write(
        dir.path(),
        "src/busy.py",
        &format!(
            "import os\nheld = bytearray(64 << 20)\nfor i in range(0, len(held), 4096):\n    held[i] = 1\nwhile not os.path.exists({:?}):\n    pass\n",
            flag.to_str().unwrap()
        ),
    );
    write(
        dir.path(),
        "busy.yml",
        "command: python busy.py\ncode: src\nname: busy_job\n",
    );
    s.ok_in(dir.path(), &["job", "create", "--file", "busy.yml"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let metrics = loop {
        let job = s.status("busy_job");
        let m = job["metrics"].clone();
        if m.get("system/cpu_utilization_percentage").is_some()
            && m.get("system/memory_usage_megabytes").is_some()
        {
            break m;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no system metrics: {job}"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    };
    let exposition = s.metrics();
    std::fs::write(&flag, "").unwrap();
    assert!(
        exposition.contains("berth_job_memory_usage_megabytes{job=\"busy_job\"}"),
        "{exposition}"
    );
    // A busy loop: some CPU, however busy the machine (a loaded runner gave it 0.42 of a core).
    assert!(
        metrics["system/cpu_cores_used"].as_f64().unwrap() > 0.05,
        "{metrics}"
    );
    assert!(
        metrics["system/memory_usage_megabytes"].as_f64().unwrap() >= 64.0,
        "{metrics}"
    );
    // A share of the default instance type's limits (2 CPU, 2Gi).
    let share = metrics["system/memory_utilization_percentage"]
        .as_f64()
        .unwrap();
    // The job outlives the test's server (jobs outlive restarts): let it end before the
    // test's folder (and the flag) goes, or it keeps a core busy for every later test.
    std::fs::write(&flag, "").unwrap();
    s.ok_in(dir.path(), &["job", "stream", "--name", "busy_job"]);
    assert!(share >= 3.0, "{metrics}");
}
