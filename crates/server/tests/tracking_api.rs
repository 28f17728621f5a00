//! The MLflow tracking API in-process: what a job's token may touch, metric histories, and
//! bad input answered as MLflow answers it (a code and a message that says what to do).

#![allow(clippy::unwrap_used)]

mod support;

use axum::http::StatusCode;
use serde_json::{Value, json};
use support::{Api, api};

const M: &str = "/api/2.0/mlflow";

impl Api {
    /// Submits job `name` (it has a run from the start) and returns its MLflow token.
    async fn job_with_token(&self, name: &str) -> String {
        let (status, body) = self
            .submit(&format!("name: {name}\ncommand: echo hi\n"))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let rec = self
            .state
            .store
            .get::<berth_core::job::JobRecord>(berth_store::Kind::Job, name)
            .await
            .unwrap()
            .unwrap();
        let token = berth_server::mlflow::jobs::job_token(&self.state.token_secret, &rec.value);
        assert_eq!(rec.value.tracking.as_ref().unwrap().token, token);
        token
    }

    async fn workspace_run(&self) -> String {
        let (status, body) = self
            .call(
                "POST",
                &format!("{M}/runs/create"),
                Some(json!({"experiment_id": "0"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["run"]["info"]["run_id"].as_str().unwrap().to_string()
    }

    async fn mlflow(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call("POST", &format!("{M}/{path}"), Some(body)).await
    }
}

#[tokio::test]
async fn a_job_has_a_run_in_its_experiment_from_the_start() {
    let a = api().await;
    let yaml = "name: j1\nexperiment_name: iris\ncommand: echo hi\n";
    assert_eq!(a.submit(yaml).await.0, StatusCode::CREATED);
    let (status, body) = a
        .call("GET", &format!("{M}/runs/get?run_id=j1"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let exp = body["run"]["info"]["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let (_, e) = a
        .call(
            "GET",
            &format!("{M}/experiments/get?experiment_id={exp}"),
            None,
        )
        .await;
    assert_eq!(e["experiment"]["name"], "iris");
    assert_eq!(
        body["run"]["info"]["artifact_uri"],
        format!("mlflow-artifacts:/{exp}/j1/artifacts")
    );
}

#[tokio::test]
async fn a_jobs_token_logs_to_its_own_run_only() {
    let a = api().await;
    let t1 = a.job_with_token("j1").await;
    a.job_with_token("j2").await;
    let other = a.workspace_run().await;
    let metric =
        |run: &str| json!({"run_id": run, "key": "loss", "value": 0.5, "timestamp": 1, "step": 0});
    let (ok, _) = a
        .call_with(
            "POST",
            &format!("{M}/runs/log-metric"),
            Some(metric("j1")),
            Some(&t1),
        )
        .await;
    assert_eq!(ok, StatusCode::OK);
    for run in ["j2", other.as_str()] {
        let (status, body) = a
            .call_with(
                "POST",
                &format!("{M}/runs/log-metric"),
                Some(metric(run)),
                Some(&t1),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_eq!(body["error_code"], "PERMISSION_DENIED");
        let (status, _) = a
            .call_with(
                "GET",
                &format!("{M}/runs/get?run_id={run}"),
                None,
                Some(&t1),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }
    let (_, j2) = a
        .call("GET", &format!("{M}/runs/get?run_id=j2"), None)
        .await;
    assert_eq!(
        j2["run"]["data"]["metrics"],
        json!([]),
        "nothing reached job j2's run"
    );
    // A search with the job's token finds its own run only.
    let (_, found) = a
        .call_with(
            "POST",
            &format!("{M}/runs/search"),
            Some(json!({"experiment_ids": ["0", "1", "2"]})),
            Some(&t1),
        )
        .await;
    let ids: Vec<&str> = found["runs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["info"]["run_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["j1"]);
}

#[tokio::test]
async fn a_forged_job_token_is_refused() {
    let a = api().await;
    let t1 = a.job_with_token("j1").await;
    let forged = format!("j1.{}", "0".repeat(t1.len() - 3));
    for token in [forged.as_str(), "j1", "nobody.abc"] {
        let (status, body) = a
            .call_with("GET", &format!("{M}/runs/get?run_id=j1"), None, Some(token))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token}: {body}");
    }
}

#[tokio::test]
async fn a_history_reads_back_every_point_of_a_batch_in_order() {
    let a = api().await;
    let run = a.workspace_run().await;
    let metrics: Vec<Value> = (0..1000)
        .map(|i| json!({"key": "loss", "value": if i == 7 { json!("NaN") } else { json!(1.0 / (i + 1) as f64) }, "timestamp": 1000 + i, "step": i}))
        .collect();
    let (status, body) = a
        .mlflow("runs/log-batch", json!({"run_id": run, "metrics": metrics}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, h) = a
        .call(
            "GET",
            &format!("{M}/metrics/get-history?run_id={run}&metric_key=loss"),
            None,
        )
        .await;
    let points = h["metrics"].as_array().unwrap();
    assert_eq!(points.len(), 1000);
    assert!(
        points
            .iter()
            .enumerate()
            .all(|(i, p)| p["step"] == json!(i))
    );
    assert_eq!(points[7]["value"], "NaN");
    // Pages: 400 then the rest.
    let (_, page) = a
        .call(
            "GET",
            &format!("{M}/metrics/get-history?run_id={run}&metric_key=loss&max_results=400"),
            None,
        )
        .await;
    assert_eq!(page["metrics"].as_array().unwrap().len(), 400);
    assert_eq!(page["next_page_token"], "400");
}

#[tokio::test]
async fn a_non_numeric_metric_is_refused_and_names_the_metric() {
    let a = api().await;
    let run = a.workspace_run().await;
    let (status, body) = a
        .mlflow(
            "runs/log-metric",
            json!({"run_id": run, "key": "acc", "value": "high", "timestamp": 1}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error_code"], "INVALID_PARAMETER_VALUE");
    assert!(
        body["message"].as_str().unwrap().contains("`acc`"),
        "{body}"
    );
}

#[tokio::test]
async fn a_one_megabyte_param_is_refused_with_the_limit() {
    let a = api().await;
    let run = a.workspace_run().await;
    let (status, body) = a
        .mlflow(
            "runs/log-parameter",
            json!({"run_id": run, "key": "blob", "value": "x".repeat(1 << 20)}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("6000") && message.contains("artifact"),
        "{message}"
    );
    let (_, got) = a
        .call("GET", &format!("{M}/runs/get?run_id={run}"), None)
        .await;
    assert_eq!(got["run"]["data"]["params"], json!([]));
}

#[tokio::test]
async fn a_param_logged_twice_with_another_value_is_refused() {
    let a = api().await;
    let run = a.workspace_run().await;
    let p = |v: &str| json!({"run_id": run, "key": "alpha", "value": v});
    assert_eq!(
        a.mlflow("runs/log-parameter", p("0.1")).await.0,
        StatusCode::OK
    );
    assert_eq!(
        a.mlflow("runs/log-parameter", p("0.1")).await.0,
        StatusCode::OK
    );
    let (status, body) = a.mlflow("runs/log-parameter", p("0.2")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["message"].as_str().unwrap().contains("already `0.1`"),
        "{body}"
    );
}

#[tokio::test]
async fn the_history_of_a_metric_never_logged_names_the_ones_that_were() {
    let a = api().await;
    let run = a.workspace_run().await;
    a.mlflow(
        "runs/log-metric",
        json!({"run_id": run, "key": "loss", "value": 1, "timestamp": 1}),
    )
    .await;
    let (status, body) = a
        .call(
            "GET",
            &format!("{M}/metrics/get-history?run_id={run}&metric_key=acc"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error_code"], "RESOURCE_DOES_NOT_EXIST");
    assert!(
        body["message"].as_str().unwrap().ends_with("it has loss"),
        "{body}"
    );
}

#[tokio::test]
async fn a_jobs_artifacts_land_in_its_outputs_and_stay_inside() {
    let a = api().await;
    let t1 = a.job_with_token("j1").await;
    a.job_with_token("j2").await;
    let (_, run) = a
        .call("GET", &format!("{M}/runs/get?run_id=j1"), None)
        .await;
    let exp = run["run"]["info"]["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let base = format!("/api/2.0/mlflow-artifacts/artifacts/{exp}");
    let put = a
        .send_raw(
            "PUT",
            &format!("{base}/j1/artifacts/plots/roc.txt"),
            &t1,
            "curve",
        )
        .await;
    assert_eq!(put, StatusCode::OK);
    let landed = a.home.path().join("jobs/j1/code/outputs/plots/roc.txt");
    assert_eq!(std::fs::read_to_string(landed).unwrap(), "curve");
    let (_, listed) = a
        .call_with(
            "GET",
            &format!("/api/2.0/mlflow-artifacts/artifacts?path={exp}/j1/artifacts/plots"),
            None,
            Some(&t1),
        )
        .await;
    assert_eq!(
        listed["files"],
        json!([{"path": "roc.txt", "is_dir": false, "file_size": 5}])
    );
    assert_eq!(
        a.send_raw("PUT", &format!("{base}/j2/artifacts/x.txt"), &t1, "no")
            .await,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        a.send_raw(
            "PUT",
            &format!("{base}/j1/artifacts/../../escape.txt"),
            &t1,
            "no"
        )
        .await,
        StatusCode::BAD_REQUEST
    );
    assert!(!a.home.path().join("jobs/j1/escape.txt").exists());
}
