//! End-to-end: models and data assets from Azure ML's YAML, laid out as Azure lays them out,
//! versioned, and named by deployments and jobs with `azureml:<name>:<version>` and `@latest`.

#![allow(clippy::unwrap_used)]

mod support;

use std::path::Path;

use support::{Server, text, write};

/// An endpoint, and a deployment of `model` whose score.py answers with `reply` (Python).
fn endpoint_with(s: &Server, dir: &Path, model: &str, reply: &str) {
    write(
        dir,
        "score/score.py",
        &format!(
            "import json, os\n\nroot = None\n\ndef init():\n    global root\n    root = os.environ['AZUREML_MODEL_DIR']\n\ndef run(raw):\n    return {reply}\n"
        ),
    );
    write(
        dir,
        "endpoint.yml",
        "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json\nname: assets-ep\nauth_mode: key\n",
    );
    write(
        dir,
        "deployment.yml",
        &format!(
            "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json\nname: blue\nendpoint_name: assets-ep\nmodel: {model}\ncode_configuration:\n  code: score\n  scoring_script: score.py\ninstance_type: Standard_DS3_v2\ninstance_count: 1\n"
        ),
    );
    write(dir, "request.json", "{\"data\": [[1, 2]]}");
    s.ok_in(
        dir,
        &["online-endpoint", "create", "--file", "endpoint.yml"],
    );
    s.ok_in(
        dir,
        &[
            "online-deployment",
            "create",
            "--file",
            "deployment.yml",
            "--all-traffic",
        ],
    );
}

fn invoke(s: &Server, dir: &Path) -> serde_json::Value {
    let out = s.ok_in(
        dir,
        &[
            "online-endpoint",
            "invoke",
            "--name",
            "assets-ep",
            "--request-file",
            "request.json",
        ],
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_registered_folder_keeps_its_name_under_azureml_model_dir() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "model/sklearn_regression_model.pkl",
        "weights-v1",
    );
    write(
        dir.path(),
        "model.yml",
        "$schema: https://azuremlschemas.azureedge.net/latest/model.schema.json\nname: sklearn-regression\npath: model\ndescription: Model created from a local folder.\ntags:\n  framework: sklearn\n",
    );
    let created = s.ok_in(
        dir.path(),
        &["model", "create", "--file", "model.yml", "-o", "json"],
    );
    let created: serde_json::Value = serde_json::from_slice(&created.stdout).unwrap();
    assert_eq!(created["version"], "1");
    assert_eq!(created["type"], "custom_model");
    assert_eq!(created["tags"]["framework"], "sklearn");
    endpoint_with(
        &s,
        dir.path(),
        "azureml:sklearn-regression@latest",
        "{'weights': open(os.path.join(root, 'model/sklearn_regression_model.pkl')).read()}",
    );
    assert_eq!(invoke(&s, dir.path())["weights"], "weights-v1");
}

#[test]
fn versions_count_up_and_latest_is_the_last_registered() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "m.pkl", "one");
    let create = |extra: &[&str]| {
        let mut args = vec!["model", "create", "--name", "m", "--path", "m.pkl"];
        args.extend(extra);
        s.cli_in(dir.path(), &args)
    };
    assert!(create(&[]).status.success());
    write(dir.path(), "m.pkl", "two");
    assert!(create(&["--type", "custom_model"]).status.success());
    let latest = s.json(&["model", "show", "--name", "m", "--label", "latest"]);
    assert_eq!(latest["version"], "2");
    // A file sits directly in AZUREML_MODEL_DIR.
    let stored = Path::new(latest["path"].as_str().unwrap()).join("m.pkl");
    assert_eq!(std::fs::read_to_string(stored).unwrap(), "two");
    let again = create(&["--version", "2"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("never change"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(
        s.json(&["model", "list", "--name", "m"])
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn an_inline_model_is_copied_at_create_time_not_used_in_place() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "weights/w.txt", "before");
    endpoint_with(
        &s,
        dir.path(),
        "\n  path: weights",
        "{'w': open(os.path.join(root, 'weights/w.txt')).read()}",
    );
    write(dir.path(), "weights/w.txt", "after");
    assert_eq!(invoke(&s, dir.path())["w"], "before");
    // Anonymous versions are not listed with the registered ones.
    assert!(s.json(&["model", "list"]).as_array().unwrap().is_empty());
}

#[test]
fn bad_model_files_are_refused_with_nothing_stored() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "plain/model.pkl", "x");
    write(
        dir.path(),
        "mlflow.yml",
        "name: not-mlflow\npath: plain\ntype: mlflow_model\n",
    );
    let err = text(
        &s.cli_in(dir.path(), &["model", "create", "-f", "mlflow.yml"])
            .stderr,
    );
    assert!(
        err.contains("mlflow.yml:2:") && err.contains("no MLmodel"),
        "{err}"
    );
    write(dir.path(), "m.yml", "name: m\npath: plain\n");
    let err = text(
        &s.cli_in(
            dir.path(),
            &["model", "create", "-f", "m.yml", "--set", "colour=red"],
        )
        .stderr,
    );
    assert!(err.contains("unknown field `colour`"), "{err}");
    let err = text(
        &s.cli_in(dir.path(), &["model", "show", "--name", "nope"])
            .stderr,
    );
    assert!(err.contains("nope@latest"), "{err}");
    assert!(s.json(&["model", "list"]).as_array().unwrap().is_empty());
    assert!(
        std::fs::read_dir(s.home.path().join("models/blobs"))
            .map_or(true, |mut d| d.next().is_none())
    );
}

/// A job that prints the first line of its `data` input.
fn reading_job(dir: &Path, input: &str, data_type: &str) {
    write(
        dir,
        "job.yml",
        &format!(
            "$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json\ncommand: head -n1 ${{{{inputs.data}}}}{suffix}\ninputs:\n  data:\n    type: {data_type}\n    path: {input}\ncompute: azureml:local\n",
            suffix = if data_type == "uri_folder" {
                "/rows.csv"
            } else {
                ""
            }
        ),
    );
}

#[test]
fn data_assets_are_job_inputs_by_version_and_by_latest() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "v1/rows.csv", "first-version\n");
    write(dir.path(), "v2/rows.csv", "second-version\n");
    write(
        dir.path(),
        "data.yml",
        "$schema: https://azuremlschemas.azureedge.net/latest/data.schema.json\nname: rows\nversion: 1\ntype: uri_folder\npath: v1\ndescription: Rows.\n",
    );
    s.ok_in(dir.path(), &["data", "create", "--file", "data.yml"]);
    s.ok_in(
        dir.path(),
        &[
            "data",
            "create",
            "--file",
            "data.yml",
            "--version",
            "2",
            "--set",
            "path=v2",
        ],
    );
    write(dir.path(), "v1/rows.csv", "changed-after-registering\n");
    for (input, expected) in [
        ("azureml:rows:1", "first-version"),
        ("azureml:rows@latest", "second-version"),
    ] {
        reading_job(dir.path(), input, "uri_folder");
        let out = s.ok_in(
            dir.path(),
            &["job", "create", "--file", "job.yml", "--stream"],
        );
        assert!(
            text(&out.stdout).contains(expected),
            "{input}: {}",
            text(&out.stdout)
        );
    }
}

#[test]
fn a_file_data_asset_and_a_missing_one() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "titanic.csv", "PassengerId,Survived\n");
    s.ok_in(
        dir.path(),
        &[
            "data",
            "create",
            "--name",
            "titanic",
            "--type",
            "uri_file",
            "--path",
            "titanic.csv",
        ],
    );
    reading_job(dir.path(), "azureml:titanic@latest", "uri_file");
    let out = s.ok_in(
        dir.path(),
        &["job", "create", "--file", "job.yml", "--stream"],
    );
    assert!(
        text(&out.stdout).contains("PassengerId"),
        "{}",
        text(&out.stdout)
    );
    let wrong = s.cli_in(
        dir.path(),
        &["data", "create", "--name", "t2", "--path", "titanic.csv"],
    );
    assert!(
        text(&wrong.stderr).contains("use `type: uri_file`"),
        "{}",
        text(&wrong.stderr)
    );
    reading_job(dir.path(), "azureml:nothing@latest", "uri_file");
    let out = s.cli_in(dir.path(), &["job", "create", "--file", "job.yml"]);
    let err = text(&out.stderr);
    assert!(
        err.contains("job.yml:") && err.contains("data asset `nothing@latest` does not exist"),
        "{err}"
    );
    // Only the first job was stored.
    assert_eq!(s.json(&["job", "list"]).as_array().unwrap().len(), 1);
}

#[test]
fn a_model_is_registered_from_a_jobs_outputs() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "job.yml",
        "command: mkdir -p outputs/model && echo trained > outputs/model/w.txt\ncompute: azureml:local\n",
    );
    s.ok_in(
        dir.path(),
        &[
            "job", "create", "--file", "job.yml", "--name", "train_1", "--stream",
        ],
    );
    let m = s.ok_in(
        dir.path(),
        &[
            "model",
            "create",
            "--name",
            "from-job",
            "--path",
            "azureml://jobs/train_1/outputs/artifacts/paths/outputs/model/",
            "-o",
            "json",
        ],
    );
    let m: serde_json::Value = serde_json::from_slice(&m.stdout).unwrap();
    let w = Path::new(m["path"].as_str().unwrap()).join("model/w.txt");
    assert_eq!(std::fs::read_to_string(w).unwrap().trim(), "trained");
}
