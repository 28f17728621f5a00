//! Pipeline jobs end to end, from Azure ML shaped files: a registered component, a component
//! file and an inline step pass a folder from step to step as child jobs; a failing step fails
//! its dependants (and, without `continue_on_step_failure`, stops the rest); a rerun reuses
//! the unchanged deterministic steps; a bad pipeline is refused whole with nothing stored.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use support::{Server, text, write};

/// A component registered with `berth component create`: writes its input text to a folder.
const PREP: &str =
    "$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
type: command
name: prep_data
version: 1
display_name: Prepare
inputs:
  raw:
    type: uri_file
  suffix:
    type: string
    optional: true
outputs:
  clean:
    type: uri_folder
code: ./prep_src
command: sh prep.sh ${{inputs.raw}} ${{outputs.clean}} $[[${{inputs.suffix}}]]
";

/// A component file the pipeline names by path.
const TRAIN: &str =
    "$schema: https://azuremlschemas.azureedge.net/latest/commandComponent.schema.json
type: command
name: train_model
inputs:
  data:
    type: uri_folder
  epochs:
    type: integer
    default: 3
outputs:
  model:
    type: uri_folder
command: >-
  echo \"model from $(cat ${{inputs.data}}/clean.txt) after ${{inputs.epochs}} epochs\"
  > ${{outputs.model}}/model.txt
";

fn pipeline(score_deterministic: bool) -> String {
    format!(
        "$schema: https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json
type: pipeline
display_name: three steps
experiment_name: pipelines
inputs:
  raw:
    type: uri_file
    path: ./data/raw.txt
  epochs: 5
outputs:
  scored:
    type: uri_folder
settings:
  default_compute: azureml:serverless
jobs:
  prep:
    type: command
    component: azureml:prep_data@latest
    inputs:
      raw: ${{{{parent.inputs.raw}}}}
  train:
    component: ./components/train.yml
    inputs:
      data: ${{{{parent.jobs.prep.outputs.clean}}}}
      epochs: ${{{{parent.inputs.epochs}}}}
  score:
    component:
      type: command
      is_deterministic: {score_deterministic}
      inputs:
        model:
          type: uri_folder
      outputs:
        scores:
          type: uri_folder
      command: cat ${{{{inputs.model}}}}/model.txt > ${{{{outputs.scores}}}}/scores.txt && date +%s%N >> ${{{{outputs.scores}}}}/scores.txt
    inputs:
      model: ${{{{parent.jobs.train.outputs.model}}}}
    outputs:
      scores: ${{{{parent.outputs.scored}}}}
"
    )
}

fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "prep_src/prep.sh",
        "tr a-z A-Z < \"$1\" > \"$2/clean.txt\"\nprintf '%s' \"$3\" >> \"$2/clean.txt\"\n",
    );
    write(dir.path(), "prep.yml", PREP);
    write(dir.path(), "components/train.yml", TRAIN);
    write(dir.path(), "data/raw.txt", "iris");
    write(dir.path(), "pipeline.yml", &pipeline(false));
    dir
}

fn register_prep(s: &Server, dir: &Path) {
    s.ok_in(dir, &["component", "create", "--file", "prep.yml"]);
}

fn read(path: &str, file: &str) -> String {
    std::fs::read_to_string(Path::new(path).join(file)).unwrap()
}

#[test]
fn a_three_step_pipeline_passes_a_folder_from_step_to_step() {
    let s = Server::start(&[]);
    let dir = project();
    register_prep(&s, dir.path());
    let shown = s.json(&["component", "show", "--name", "prep_data"]);
    assert_eq!(shown["version"], "1", "{shown}");
    s.ok_in(
        dir.path(),
        &[
            "job",
            "create",
            "--file",
            "pipeline.yml",
            "--name",
            "p1",
            "--stream",
        ],
    );
    let job = s.status("p1");
    assert_eq!(
        (job["type"].as_str(), job["status"].as_str()),
        (Some("pipeline"), Some("Completed")),
        "{job}"
    );
    for step in ["prep", "train", "score"] {
        assert_eq!(
            job["pipeline"]["jobs"][step]["status"], "Completed",
            "{job}"
        );
        assert_eq!(job["pipeline"]["jobs"][step]["job"], format!("p1_{step}"));
    }
    assert_eq!(job["pipeline"]["jobs"]["prep"]["component"], "prep_data:1");
    let scored = job["outputs"]["scored"]["path"].as_str().unwrap();
    assert!(
        read(scored, "scores.txt").starts_with("model from IRIS after 5 epochs\n"),
        "the folder went prep → train → score: {}",
        read(scored, "scores.txt")
    );
    let children = s.json(&["job", "list", "--parent-job-name", "p1"]);
    let mut names: Vec<&str> = children
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["p1_prep", "p1_score", "p1_train"]);
    let train = s.status("p1_train");
    assert_eq!(
        train["compute"], "azureml:local",
        "serverless runs on the local compute"
    );
    assert_eq!(train["experiment_name"], "pipelines");
}

#[test]
fn a_rerun_reuses_the_unchanged_deterministic_steps() {
    let s = Server::start(&[]);
    let dir = project();
    register_prep(&s, dir.path());
    s.ok_in(
        dir.path(),
        &[
            "job",
            "create",
            "--file",
            "pipeline.yml",
            "--name",
            "first",
            "--stream",
        ],
    );
    s.ok_in(
        dir.path(),
        &[
            "job",
            "create",
            "--file",
            "pipeline.yml",
            "--name",
            "second",
            "--stream",
        ],
    );
    let job = s.status("second");
    assert_eq!(job["status"], "Completed", "{job}");
    let steps = &job["pipeline"]["jobs"];
    assert_eq!(steps["prep"]["reused_from"], "first_prep", "{job}");
    assert_eq!(steps["train"]["reused_from"], "first_train", "{job}");
    assert!(
        steps["score"]["reused_from"].is_null(),
        "is_deterministic: false runs again: {job}"
    );
    assert_eq!(steps["score"]["job"], "second_score");
    assert!(
        read(
            job["outputs"]["scored"]["path"].as_str().unwrap(),
            "scores.txt"
        )
        .starts_with("model from IRIS")
    );
    // Changed input contents run the steps that read them again.
    write(dir.path(), "data/raw.txt", "wine");
    s.ok_in(
        dir.path(),
        &[
            "job",
            "create",
            "--file",
            "pipeline.yml",
            "--name",
            "third",
            "--stream",
        ],
    );
    let job = s.status("third");
    assert!(
        job["pipeline"]["jobs"]["prep"]["reused_from"].is_null(),
        "{job}"
    );
    assert!(
        read(
            job["outputs"]["scored"]["path"].as_str().unwrap(),
            "scores.txt"
        )
        .starts_with("model from WINE")
    );
    // force_rerun runs everything.
    s.ok_in(
        dir.path(),
        &[
            "job",
            "create",
            "--file",
            "pipeline.yml",
            "--name",
            "fourth",
            "--set",
            "settings.force_rerun=true",
            "--stream",
        ],
    );
    let job = s.status("fourth");
    for step in ["prep", "train", "score"] {
        assert!(
            job["pipeline"]["jobs"][step]["reused_from"].is_null(),
            "{job}"
        );
    }
}

const FAILING: &str = "type: pipeline
settings:
  continue_on_step_failure: CONTINUE
jobs:
  a:
    command: mkdir -p ${{outputs.o}} && echo a > ${{outputs.o}}/a
    outputs:
      o:
  b:
    command: echo failing && exit 3
    inputs:
      x: ${{parent.jobs.a.outputs.o}}
    outputs:
      o:
  c:
    command: ls ${{inputs.x}}
    inputs:
      x: ${{parent.jobs.b.outputs.o}}
  d:
    command: sleep SLEEP
";

#[test]
fn a_failing_step_skips_its_dependants_and_the_others_finish() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.yml",
        &FAILING.replace("CONTINUE", "true").replace("SLEEP", "1"),
    );
    let out = s.cli_in(
        dir.path(),
        &[
            "job", "create", "--file", "p.yml", "--name", "pf", "--stream",
        ],
    );
    assert!(!out.status.success());
    let job = s.status("pf");
    assert_eq!(job["status"], "Failed", "{job}");
    assert!(
        job["status_message"]
            .as_str()
            .unwrap()
            .contains("step b failed"),
        "{job}"
    );
    let steps = &job["pipeline"]["jobs"];
    assert_eq!(steps["a"]["status"], "Completed");
    assert_eq!(steps["b"]["status"], "Failed");
    assert_eq!(steps["c"]["status"], "Skipped", "{job}");
    assert_eq!(
        steps["d"]["status"], "Completed",
        "an independent step still runs: {job}"
    );
}

#[test]
fn without_continue_on_step_failure_a_failure_cancels_the_running_steps() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.yml",
        &FAILING.replace("CONTINUE", "false").replace("SLEEP", "600"),
    );
    let out = s.cli_in(
        dir.path(),
        &[
            "job", "create", "--file", "p.yml", "--name", "ps", "--stream",
        ],
    );
    assert!(!out.status.success());
    let job = s.status("ps");
    assert_eq!(job["status"], "Failed", "{job}");
    assert_eq!(job["pipeline"]["jobs"]["c"]["status"], "Skipped", "{job}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while s.status("ps_d")["status"] != "Canceled" {
        assert!(
            Instant::now() < deadline,
            "d kept running: {}",
            s.status("ps_d")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn canceling_a_pipeline_cancels_its_running_steps() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "p.yml",
        "type: pipeline\njobs:\n  long:\n    command: sleep 600\n    outputs:\n      o:\n  after:\n    command: ls ${{inputs.x}}\n    inputs:\n      x: ${{parent.jobs.long.outputs.o}}\n",
    );
    s.ok_in(
        dir.path(),
        &["job", "create", "--file", "p.yml", "--name", "pc"],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let running = || {
        let out = s.cli(&["job", "show", "--name", "pc_long", "-o", "json"]);
        out.status.success() && text(&out.stdout).contains("\"status\": \"Running\"")
    };
    while !running() {
        assert!(Instant::now() < deadline, "the step never ran");
        std::thread::sleep(Duration::from_millis(100));
    }
    s.ok_in(dir.path(), &["job", "cancel", "--name", "pc"]);
    while s.status("pc_long")["status"] != "Canceled" {
        assert!(Instant::now() < deadline, "the step kept running");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(s.status("pc")["status"], "Canceled");
    assert!(s.status("pc")["pipeline"]["jobs"]["after"]["job"].is_null());
}

#[test]
fn a_bad_pipeline_is_refused_whole_and_nothing_is_stored() {
    let s = Server::start(&[]);
    let dir = project();
    let bad = "type: pipeline
jobs:
  a:
    command: echo ${{inputs.x}}
    inputs:
      x: ${{parent.jobs.c.outputs.o}}
    outputs:
      o:
  b:
    component: ./components/train.yml
    inputs:
      data: ${{parent.jobs.a.outputs.nothing}}
  c:
    command: cat ${{inputs.f}}
    inputs:
      f:
        type: uri_file
        path: ${{parent.jobs.a.outputs.o}}
    outputs:
      o:
  d:
    component: azureml:never_registered:1
";
    write(dir.path(), "bad.yml", bad);
    let out = s.cli_in(
        dir.path(),
        &["job", "create", "--file", "bad.yml", "--name", "bad"],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("step `d`: component `never_registered:1` is not registered"),
        "{err}"
    );
    write(
        dir.path(),
        "bad.yml",
        &bad.replace("  d:\n    component: azureml:never_registered:1\n", ""),
    );
    let out = s.cli_in(
        dir.path(),
        &["job", "create", "--file", "bad.yml", "--name", "bad"],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    for says in [
        "bad.yml:",
        "step `a` has no output `nothing`",
        "input `f` is a uri_file but step `a`'s output `o` is a uri_folder",
        "in a circle: a → c → a",
    ] {
        assert!(err.contains(says), "missing {says:?} in:\n{err}");
    }
    let jobs = s.json(&["job", "list"]);
    assert_eq!(jobs.as_array().unwrap().len(), 0, "nothing stored: {jobs}");
}

/// Logs `loss = (lr - 0.3)²` to its run and writes it to its model folder.
const SWEEP_TRAIN: &str = r#"import json, os, sys, time, urllib.request
lr, out = float(sys.argv[1]), sys.argv[2]
env = os.environ
body = json.dumps({"run_id": env["MLFLOW_RUN_ID"], "key": "loss", "value": (lr - 0.3) ** 2, "timestamp": int(time.time() * 1000), "step": 0}).encode()
urllib.request.urlopen(urllib.request.Request(env["MLFLOW_TRACKING_URI"] + "/api/2.0/mlflow/runs/log-metric", body, {"Authorization": "Bearer " + env["MLFLOW_TRACKING_TOKEN"], "Content-Type": "application/json"}))
open(os.path.join(out, "lr.txt"), "w").write(str(lr))
"#;

#[test]
fn a_pipeline_runs_a_sweep_step_and_a_nested_pipeline_component() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "src/train.py", SWEEP_TRAIN);
    write(
        dir.path(),
        "train.yml",
        "type: command\nname: sweep_train\ncode: ./src\ninputs:\n  lr:\n    type: number\noutputs:\n  model:\n    type: uri_folder\ncommand: python train.py ${{inputs.lr}} ${{outputs.model}}\n",
    );
    write(
        dir.path(),
        "inner.yml",
        "$schema: https://azuremlschemas.azureedge.net/latest/pipelineComponent.schema.json\ntype: pipeline\nname: inner\ninputs:\n  model:\n    type: uri_folder\noutputs:\n  report:\n    type: uri_folder\njobs:\n  describe:\n    command: echo \"best lr $(cat ${{inputs.m}}/lr.txt)\" > ${{outputs.r}}/report.txt\n    inputs:\n      m: ${{parent.inputs.model}}\n    outputs:\n      r: ${{parent.outputs.report}}\n",
    );
    write(
        dir.path(),
        "p.yml",
        "type: pipeline\noutputs:\n  report:\njobs:\n  tune:\n    type: sweep\n    trial: ./train.yml\n    search_space:\n      lr:\n        type: choice\n        values: [0.1, 0.3, 0.5]\n    sampling_algorithm: grid\n    objective:\n      goal: minimize\n      primary_metric: loss\n    limits:\n      max_concurrent_trials: 3\n  report:\n    type: pipeline\n    component: ./inner.yml\n    inputs:\n      model: ${{parent.jobs.tune.outputs.model}}\n    outputs:\n      report: ${{parent.outputs.report}}\n",
    );
    s.cli_in(
        dir.path(),
        &[
            "job", "create", "--file", "p.yml", "--name", "pn", "--stream",
        ],
    );
    let job = s.status("pn");
    assert_eq!(job["status"], "Completed", "{job}");
    let sweep = s.status("pn_tune");
    assert_eq!(
        (sweep["type"].as_str(), sweep["parent_job_name"].as_str()),
        (Some("sweep"), Some("pn"))
    );
    assert_eq!(sweep["sweep"]["best"]["params"]["lr"], 0.3, "{sweep}");
    let inner = s.status("pn_report");
    assert_eq!(inner["type"], "pipeline");
    assert_eq!(
        inner["pipeline"]["jobs"]["describe"]["job"],
        "pn_report_describe"
    );
    let report = job["outputs"]["report"]["path"].as_str().unwrap();
    assert_eq!(read(report, "report.txt"), "best lr 0.3\n");
}

#[test]
fn a_pipeline_goes_on_where_it_was_after_the_server_is_killed() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let flag = dir.path().join("go");
    write(
        dir.path(),
        "p.yml",
        &format!(
            "type: pipeline\njobs:\n  first:\n    command: while [ ! -e {flag} ]; do sleep 0.05; done; echo one > ${{{{outputs.o}}}}/one\n    outputs:\n      o:\n  second:\n    command: cat ${{{{inputs.x}}}}/one\n    inputs:\n      x: ${{{{parent.jobs.first.outputs.o}}}}\n",
            flag = flag.display()
        ),
    );
    s.ok_in(
        dir.path(),
        &["job", "create", "--file", "p.yml", "--name", "pr"],
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let running = || {
        let out = s.cli(&["job", "show", "--name", "pr_first", "-o", "json"]);
        out.status.success() && text(&out.stdout).contains("\"status\": \"Running\"")
    };
    while !running() {
        assert!(Instant::now() < deadline, "the first step never ran");
        std::thread::sleep(Duration::from_millis(50));
    }
    let home = s.kill9();
    // The step ends while no server runs.
    std::fs::write(&flag, "").unwrap();
    let s = Server::start_in(home, &[], &[]);
    s.ok_in(dir.path(), &["job", "stream", "--name", "pr"]);
    let job = s.status("pr");
    assert_eq!(job["status"], "Completed", "{job}");
    assert_eq!(
        job["pipeline"]["jobs"]["second"]["status"], "Completed",
        "{job}"
    );
    assert_eq!(s.status("pr_first")["status"], "Completed");
}

#[test]
fn outputs_go_to_the_default_datastore_and_an_unknown_one_is_refused() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    let store = tempfile::tempdir().unwrap();
    let yaml = "type: pipeline\nsettings:\n  default_datastore: azureml:shared\njobs:\n  make:\n    command: echo hi > ${{outputs.o}}/hi.txt\n    outputs:\n      o:\n";
    write(dir.path(), "p.yml", yaml);
    let out = s.cli_in(
        dir.path(),
        &["job", "create", "--file", "p.yml", "--name", "pd"],
    );
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("datastore `shared` does not exist")
            && err.contains("berth datastore create --name shared"),
        "{err}"
    );
    s.ok_in(
        dir.path(),
        &[
            "datastore",
            "create",
            "--name",
            "shared",
            "--path",
            store.path().to_str().unwrap(),
        ],
    );
    s.ok_in(
        dir.path(),
        &[
            "job", "create", "--file", "p.yml", "--name", "pd", "--stream",
        ],
    );
    assert_eq!(s.status("pd")["status"], "Completed");
    let written = store.path().join("azureml/pd_make/o/hi.txt");
    assert_eq!(
        std::fs::read_to_string(&written).unwrap(),
        "hi\n",
        "Azure's layout: <datastore>/azureml/<job>/<output>/"
    );
}

#[test]
fn serverless_is_the_local_compute_for_a_command_job_too() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "job.yml",
        "command: echo ok\ncompute: azureml:serverless\nname: sl\n",
    );
    s.ok_in(
        dir.path(),
        &["job", "create", "--file", "job.yml", "--stream"],
    );
    let job = s.status("sl");
    assert_eq!(
        (job["status"].as_str(), job["compute"].as_str()),
        (Some("Completed"), Some("azureml:local")),
        "{job}"
    );
}
