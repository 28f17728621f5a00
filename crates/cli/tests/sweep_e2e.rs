//! Sweep jobs end to end: trials are child jobs with their parameters filled in, the best one
//! is found from the metric the trials log to their MLflow runs, a bandit policy stops the bad
//! ones, a sweep whose trials never log the metric says so, a canceled sweep cancels its
//! trials, and a bad sweep file is refused with where it is wrong.

#![allow(clippy::unwrap_used)]

mod support;

use support::{Server, text, write};

/// Logs `loss = (lr - 0.3)² + 0.1 / (step + 1)` for `STEPS` steps, `PAUSE` s apart, to its run
/// (standard library only).
const TRAIN: &str = r#"import argparse, json, os, time, urllib.request
p = argparse.ArgumentParser(); p.add_argument("--lr", type=float); a = p.parse_args()
env = os.environ
steps, pause = int(env.get("STEPS", "3")), float(env.get("PAUSE", "0"))
for step in range(steps):
    body = json.dumps({"run_id": env["MLFLOW_RUN_ID"], "key": env.get("METRIC", "loss"), "value": (a.lr - 0.3) ** 2 + 0.1 / (step + 1), "timestamp": int(time.time() * 1000), "step": step}).encode()
    urllib.request.urlopen(urllib.request.Request(env["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/runs/log-metric", body, {"Authorization": "Bearer " + env["MLFLOW_TRACKING_TOKEN"], "Content-Type": "application/json"}))
    time.sleep(pause)
"#;

fn sweep_file(values: &str, extra: &str, env: &str) -> String {
    format!(
        "$schema: https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json\ntype: sweep\nname: lr_sweep\ntrial:\n  code: src\n  command: python train.py --lr ${{{{search_space.lr}}}}\n  environment_variables:\n{env}compute: azureml:local\nsampling_algorithm: grid\nsearch_space:\n  lr:\n    type: choice\n    values: [{values}]\nobjective:\n  goal: minimize\n  primary_metric: loss\n{extra}"
    )
}

fn setup(yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "src/train.py", TRAIN);
    write(dir.path(), "sweep.yml", yaml);
    dir
}

#[test]
fn a_grid_sweep_runs_each_trial_as_a_child_job_and_names_the_best() {
    let s = Server::start(&[]);
    let dir = setup(&sweep_file(
        "0.1, 0.3, 0.5",
        "limits:\n  max_concurrent_trials: 2\n",
        "    STEPS: \"3\"\n",
    ));
    s.ok_in(
        dir.path(),
        &["job", "create", "--file", "sweep.yml", "--stream"],
    );
    let job = s.status("lr_sweep");
    assert_eq!(
        (job["type"].as_str(), job["status"].as_str()),
        (Some("sweep"), Some("Completed")),
        "{job}"
    );
    assert_eq!(job["sweep"]["best"]["params"]["lr"], 0.3, "{job}");
    assert_eq!(job["sweep"]["best"]["trial"], "lr_sweep_1");
    assert_eq!(
        job["command"], "python train.py --lr ${{search_space.lr}}",
        "the command as written"
    );
    let trials = s.json(&["job", "list", "--parent-job-name", "lr_sweep"]);
    let mut names: Vec<&str> = trials
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["lr_sweep_0", "lr_sweep_1", "lr_sweep_2"]);
    assert!(
        trials
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["status"] == "Completed" && t["parent_job_name"] == "lr_sweep")
    );
}

#[test]
fn a_bandit_policy_stops_the_bad_trials_and_the_best_is_the_optimum() {
    let s = Server::start(&[]);
    let values = "0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.1";
    let extra = "limits:\n  max_total_trials: 12\n  max_concurrent_trials: 3\nearly_termination:\n  type: bandit\n  slack_amount: 0.05\n  evaluation_interval: 1\n  delay_evaluation: 2\n";
    let dir = setup(&sweep_file(
        values,
        extra,
        "    STEPS: \"8\"\n    PAUSE: \"0.3\"\n",
    ));
    s.ok_in(
        dir.path(),
        &["job", "create", "--file", "sweep.yml", "--stream"],
    );
    let job = s.status("lr_sweep");
    assert_eq!(job["status"], "Completed", "{job}");
    assert_eq!(job["sweep"]["trials"].as_array().unwrap().len(), 12);
    assert_eq!(job["sweep"]["best"]["params"]["lr"], 0.3, "{job}");
    let stopped = job["sweep"]["stopped_early"].as_array().unwrap();
    assert!(!stopped.is_empty(), "{job}");
    for t in stopped {
        assert_eq!(s.status(t.as_str().unwrap())["status"], "Canceled");
    }
}

#[test]
fn a_sweep_whose_trials_never_log_the_metric_fails_and_says_so() {
    let s = Server::start(&[]);
    let dir = setup(&sweep_file("0.1, 0.3", "", "    METRIC: accuracy\n"));
    let out = s.cli_in(
        dir.path(),
        &["job", "create", "--file", "sweep.yml", "--stream"],
    );
    assert!(!out.status.success());
    let job = s.status("lr_sweep");
    assert_eq!(job["status"], "Failed");
    assert!(
        job["status_message"]
            .as_str()
            .unwrap()
            .contains("no trial logged the primary metric `loss`"),
        "{job}"
    );
}

#[test]
fn canceling_a_sweep_cancels_its_running_trials() {
    let s = Server::start(&[]);
    let dir = setup(&sweep_file(
        "0.1, 0.3",
        "",
        "    STEPS: \"600\"\n    PAUSE: \"0.1\"\n",
    ));
    s.ok_in(dir.path(), &["job", "create", "--file", "sweep.yml"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // The driver submits the trials just after the sweep is accepted: wait for them to exist.
    let running = |trial: &str| {
        let out = s.cli(&["job", "show", "--name", trial, "-o", "json"]);
        out.status.success() && text(&out.stdout).contains("\"status\": \"Running\"")
    };
    while !running("lr_sweep_0") {
        assert!(
            std::time::Instant::now() < deadline,
            "the first trial never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    s.ok_in(dir.path(), &["job", "cancel", "--name", "lr_sweep"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    for trial in ["lr_sweep_0", "lr_sweep_1"] {
        while s.status(trial)["status"] != "Canceled" {
            assert!(
                std::time::Instant::now() < deadline,
                "{trial} kept running: {}",
                s.status(trial)
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }
    assert_eq!(s.status("lr_sweep")["status"], "Canceled");
}

#[test]
fn a_grid_over_a_continuous_parameter_is_refused_with_where() {
    let s = Server::start(&[]);
    let yaml = sweep_file("0.1", "", "    STEPS: \"1\"\n").replace(
        "type: choice\n    values: [0.1]",
        "type: uniform\n    min_value: 0\n    max_value: 1",
    );
    let dir = setup(&yaml);
    let out = s.cli_in(dir.path(), &["job", "create", "--file", "sweep.yml"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("sweep.yml:") && err.contains("`lr` is continuous"),
        "{err}"
    );
    assert!(
        s.cli(&["job", "show", "--name", "lr_sweep"]).status.code() != Some(0),
        "nothing was stored"
    );
}

#[test]
fn name_and_set_apply_to_a_sweep_as_to_any_job() {
    let s = Server::start(&[]);
    let dir = setup(&sweep_file("0.1, 0.3, 0.5", "", "    STEPS: \"1\"\n"));
    let args = [
        "job",
        "create",
        "--file",
        "sweep.yml",
        "--name",
        "renamed",
        "--set",
        "limits.max_total_trials=2",
        "--stream",
    ];
    s.ok_in(dir.path(), &args);
    let job = s.status("renamed");
    assert_eq!(job["status"], "Completed", "{job}");
    let trials = job["sweep"]["trials"].as_array().unwrap();
    let names: Vec<&str> = trials.iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["renamed_0", "renamed_1"]);
}

#[test]
fn a_sweeps_trial_may_be_a_component_whose_inputs_are_swept() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "components/src/train.py", TRAIN);
    write(
        dir.path(),
        "components/train.yml",
        "$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json\ntype: command\nname: train_lr\ncode: ./src\ninputs:\n  lr:\n    type: number\n  steps:\n    type: integer\n    default: 2\ncommand: STEPS=${{inputs.steps}} python train.py --lr ${{inputs.lr}}\n",
    );
    write(
        dir.path(),
        "sweep.yml",
        "$schema: https://azuremlschemas.azureedge.net/latest/sweepJob.schema.json\ntype: sweep\nname: component_sweep\ntrial: ./components/train.yml\ninputs:\n  steps: 3\nsampling_algorithm: grid\nsearch_space:\n  lr:\n    type: choice\n    values: [0.1, 0.3]\nobjective:\n  goal: minimize\n  primary_metric: loss\n",
    );
    s.ok_in(
        dir.path(),
        &["job", "create", "--file", "sweep.yml", "--stream"],
    );
    let job = s.status("component_sweep");
    assert_eq!(job["status"], "Completed", "{job}");
    assert_eq!(job["sweep"]["best"]["params"]["lr"], 0.3, "{job}");
    let trial = s.status("component_sweep_1");
    assert_eq!(
        trial["command"], "STEPS=${{inputs.steps}} python train.py --lr 0.3",
        "the parameter is filled in; the sweep's input binds the component's: {trial}"
    );
    assert_eq!(trial["inputs"]["steps"]["value"], "3", "{trial}");
}

#[test]
fn a_sweep_goes_on_where_it_was_after_the_server_is_killed() {
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("go");
    write(dir.path(), "src/train.py", TRAIN);
    // Each trial logs its loss, then waits for the flag: the first is held while the server
    // dies, and ends while none runs.
    let yaml = sweep_file(
        "0.1, 0.3, 0.5",
        "limits:\n  max_concurrent_trials: 1\n",
        "    STEPS: \"1\"\n",
    )
    .replace(
        "command: python train.py --lr ${{search_space.lr}}",
        &format!(
            "command: python train.py --lr ${{{{search_space.lr}}}} && while [ ! -e {} ]; do sleep 0.05; done",
            flag.display()
        ),
    );
    write(dir.path(), "sweep.yml", &yaml);
    let s = Server::start(&[]);
    s.ok_in(dir.path(), &["job", "create", "--file", "sweep.yml"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let logged = || {
        let out = s.cli(&["job", "show", "--name", "lr_sweep_0", "-o", "json"]);
        out.status.success()
            && serde_json::from_slice::<serde_json::Value>(&out.stdout)
                .is_ok_and(|j| j["metrics"]["loss"].is_number())
    };
    while !logged() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first trial never logged its loss"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let home = s.kill9();
    std::fs::write(&flag, "").unwrap();
    let s = Server::start_in(home, &[], &[]);
    s.ok_in(dir.path(), &["job", "stream", "--name", "lr_sweep"]);
    let job = s.status("lr_sweep");
    assert_eq!(job["status"], "Completed", "{job}");
    assert_eq!(job["sweep"]["trials"].as_array().unwrap().len(), 3, "{job}");
    assert_eq!(job["sweep"]["best"]["params"]["lr"], 0.3, "{job}");
    assert_eq!(s.status("lr_sweep_0")["status"], "Completed");
}
