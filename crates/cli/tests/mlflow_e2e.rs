//! End-to-end: an MLflow model deployed without code. A Berth job trains a small scikit-learn
//! model and saves it with MLflow (real `mlflow` from PyPI, built by uv); the model is registered
//! from the job's outputs; the deployment's environment comes from the model's own conda.yaml,
//! and the endpoint answers MLflow's and Azure's request formats.

#![allow(clippy::unwrap_used)]

mod support;

use support::{Server, text, write};

const TRAIN: &str = "import mlflow, pandas as pd
from mlflow.models import infer_signature
from sklearn.linear_model import LinearRegression

X = pd.DataFrame({'a': [1.0, 2.0, 3.0, 4.0], 'b': [0.0, 1.0, 0.0, 1.0]})
y = 2 * X.a + 3 * X.b + 1
model = LinearRegression().fit(X, y)
mlflow.sklearn.save_model(model, 'outputs/model', signature=infer_signature(X, model.predict(X)),
                          serialization_format='cloudpickle')
";

const CONDA: &str = "name: train-env\nchannels:\n  - conda-forge\ndependencies:\n  - python=3.11\n  - pip\n  - pip:\n    - mlflow\n    - scikit-learn\n    - pandas\n    - cloudpickle\n";

fn invoke(s: &Server, dir: &std::path::Path, body: &str) -> (bool, String) {
    write(dir, "request.json", body);
    let out = s.cli_in(
        dir,
        &[
            "online-endpoint",
            "invoke",
            "--name",
            "mlflow-ep",
            "--request-file",
            "request.json",
        ],
    );
    (
        out.status.success(),
        format!("{}{}", text(&out.stdout), text(&out.stderr)),
    )
}

#[test]
fn an_mlflow_model_deploys_without_code_and_answers_mlflow_and_azure_formats() {
    let s = Server::start(&[]);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "src/train.py", TRAIN);
    write(dir.path(), "conda.yml", CONDA);
    write(
        dir.path(),
        "job.yml",
        "$schema: https://azuremlschemas.azureedge.net/latest/commandJob.schema.json\ncommand: python train.py\ncode: src\nenvironment:\n  image: mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu20.04:latest\n  conda_file: conda.yml\ncompute: azureml:local\n",
    );
    s.ok_in(
        dir.path(),
        &[
            "job",
            "create",
            "--file",
            "job.yml",
            "--name",
            "train_mlflow",
            "--stream",
        ],
    );
    assert_eq!(s.status("train_mlflow")["status"], "Completed");
    s.ok_in(
        dir.path(),
        &[
            "model",
            "create",
            "--name",
            "regression",
            "--type",
            "mlflow_model",
            "--path",
            "azureml://jobs/train_mlflow/outputs/artifacts/paths/outputs/model/",
        ],
    );
    write(
        dir.path(),
        "endpoint.yml",
        "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json\nname: mlflow-ep\nauth_mode: key\n",
    );
    write(
        dir.path(),
        "deployment.yml",
        "$schema: https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json\nname: blue\nendpoint_name: mlflow-ep\nmodel: azureml:regression@latest\ninstance_type: Standard_DS3_v2\ninstance_count: 1\n",
    );
    s.ok_in(
        dir.path(),
        &["online-endpoint", "create", "--file", "endpoint.yml"],
    );
    s.ok_in(
        dir.path(),
        &[
            "online-deployment",
            "create",
            "--file",
            "deployment.yml",
            "--all-traffic",
        ],
    );
    let env_log = std::fs::read_to_string(
        s.home
            .path()
            .join("deployments/mlflow-ep/blue/rev-1/environment.log"),
    )
    .unwrap_or_default();
    assert!(env_log.contains("conda.yaml"), "{env_log}");

    let (ok, out) = invoke(
        &s,
        dir.path(),
        r#"{"dataframe_split": {"columns": ["a", "b"], "data": [[5.0, 1.0], [0.0, 0.0]]}}"#,
    );
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let p: Vec<f64> = serde_json::from_value(v["predictions"].clone()).unwrap();
    assert!(
        (p[0] - 14.0).abs() < 1e-6 && (p[1] - 1.0).abs() < 1e-6,
        "{out}"
    );

    // Azure's format answers with the predictions themselves.
    let (ok, out) = invoke(
        &s,
        dir.path(),
        r#"{"input_data": {"columns": ["a", "b"], "index": [0], "data": [[1.0, 1.0]]}}"#,
    );
    assert!(ok, "{out}");
    let p: Vec<f64> = serde_json::from_str(&out).unwrap();
    assert!((p[0] - 6.0).abs() < 1e-6, "{out}");

    let (ok, out) = invoke(
        &s,
        dir.path(),
        r#"{"dataframe_records": [{"a": 2.0, "b": 0.0}]}"#,
    );
    assert!(ok && out.contains("5.0"), "{out}");

    let (ok, out) = invoke(&s, dir.path(), r#"{"rows": [[1, 2]]}"#);
    assert!(!ok && out.contains("exactly one of"), "{out}");
}
