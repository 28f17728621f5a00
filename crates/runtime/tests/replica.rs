//! A replica with real Python workers, driven in-process through its HTTP routes.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use berth_runtime::worker::WorkerError;
use berth_runtime::{Replica, RuntimeConfig, app};
use http_body_util::BodyExt;
use tower::ServiceExt;

const SCORE: &str = r#"
import json, os, time
model = None
def init():
    global model
    with open(os.path.join(os.environ["AZUREML_MODEL_DIR"], "model.json")) as f:
        model = json.load(f)
def run(raw_data):
    data = json.loads(raw_data)
    if data.get("raise"):
        raise ValueError("bad input: " + str(data["raise"]))
    if data.get("hang"):
        time.sleep(60)
    if data.get("crash"):
        os._exit(9)
    if data.get("slow"):
        time.sleep(0.3)
    if data.get("set"):
        return {1, 2}
    print("scoring", data)
    return {"prediction": [model["w"] * x for x in data["data"]]}
"#;

fn config(dir: &Path, script: &str, workers: usize) -> RuntimeConfig {
    std::fs::write(dir.join("score.py"), script).unwrap();
    std::fs::create_dir_all(dir.join("model")).unwrap();
    std::fs::write(dir.join("model/model.json"), r#"{"w": 2}"#).unwrap();
    RuntimeConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        script: Some(dir.join("score.py")),
        model_dir: Some(dir.join("model")),
        workers,
        python: "python3".into(),
        request_timeout: Duration::from_millis(1500),
        max_queue_wait: Duration::from_millis(2000),
        max_body_bytes: 1 << 20,
        env: Default::default(),
        ready_file: None,
    }
}

async fn replica(dir: &Path, workers: usize) -> axum::Router {
    let r = Replica::new(config(dir, SCORE, workers));
    r.start_workers().await.unwrap();
    app(Arc::clone(&r))
}

async fn call(
    app: &axum::Router,
    method: &str,
    uri: &str,
    body: &str,
) -> (StatusCode, String, axum::http::HeaderMap) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .header("x-request-id", "req-1")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        String::from_utf8_lossy(&bytes).into_owned(),
        headers,
    )
}

#[tokio::test]
async fn scores_with_the_model_and_echoes_the_request_id() {
    let dir = tempfile::tempdir().unwrap();
    let app = replica(dir.path(), 1).await;
    assert_eq!(call(&app, "GET", "/", "").await.1, "Healthy");
    assert_eq!(call(&app, "GET", "/ready", "").await.0, StatusCode::OK);
    let (s, body, headers) = call(&app, "POST", "/score", r#"{"data": [1, 2, 3]}"#).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    assert_eq!(body, r#"{"prediction": [2, 4, 6]}"#);
    assert_eq!(headers["x-request-id"], "req-1");
    assert!(headers.contains_key("x-ms-run-fn-exec-ms"));
    let (s, swagger, _) = call(&app, "GET", "/swagger.json", "").await;
    assert_eq!(s, StatusCode::OK);
    assert!(swagger.contains("\"/score\""));
}

#[tokio::test]
async fn script_errors_and_bad_bodies_get_clear_answers() {
    let dir = tempfile::tempdir().unwrap();
    let app = replica(dir.path(), 1).await;
    let (s, body, headers) = call(&app, "POST", "/score", r#"{"raise": "x"}"#).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("ValueError: bad input: x"), "{body}");
    assert_eq!(headers["x-ms-run-function-failed"], "True");
    let (s, body, _) = call(&app, "POST", "/score", r#"{"set": 1}"#).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert!(body.contains("not JSON-serializable"), "{body}");
    let (s, body, _) = call(&app, "POST", "/score", "").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("empty"), "{body}");
    let (s, body, _) = call(&app, "POST", "/score", "{not json").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("not valid JSON"), "{body}");
    assert_eq!(
        call(&app, "POST", "/score", r#"{"data": [1]}"#).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn a_hung_or_crashed_worker_costs_one_request() {
    let dir = tempfile::tempdir().unwrap();
    let app = replica(dir.path(), 1).await;
    let (s, body, _) = call(&app, "POST", "/score", r#"{"hang": true}"#).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert!(body.contains("restarted"), "{body}");
    let (s, body, _) = call(&app, "POST", "/score", r#"{"data": [5]}"#).await;
    assert_eq!(
        (s, body.as_str()),
        (StatusCode::OK, r#"{"prediction": [10]}"#)
    );
    let (s, body, _) = call(&app, "POST", "/score", r#"{"crash": true}"#).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY, "{body}");
    assert!(body.contains("crashed"), "{body}");
    let (s, _, _) = call(&app, "POST", "/score", r#"{"data": [5]}"#).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn init_failures_name_the_python_error() {
    let dir = tempfile::tempdir().unwrap();
    let r = Replica::new(config(
        dir.path(),
        "def init():\n    raise RuntimeError('no model here')\ndef run(d):\n    return d\n",
        2,
    ));
    let err = r.start_workers().await.unwrap_err();
    assert_eq!(
        err,
        WorkerError::InitFailed("RuntimeError: no model here".into())
    );
    let r = Replica::new(config(dir.path(), "def init(:\n", 1));
    let err = r.start_workers().await.unwrap_err().to_string();
    assert!(err.starts_with("init() failed: SyntaxError"), "{err}");
    let r = Replica::new(config(dir.path(), "def init():\n    pass\n", 1));
    let err = r.start_workers().await.unwrap_err().to_string();
    assert!(err.contains("does not define run()"), "{err}");
    let app = app(Replica::new(config(dir.path(), SCORE, 1)));
    assert_eq!(
        call(&app, "GET", "/ready", "").await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[tokio::test]
async fn a_client_that_goes_away_does_not_take_the_worker_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let app = replica(dir.path(), 1).await;
    // Drop the request while run() is busy, as a client closing its connection does.
    let gone = tokio::time::timeout(
        Duration::from_millis(50),
        call(&app, "POST", "/score", r#"{"slow": true, "data": [1]}"#),
    )
    .await;
    assert!(gone.is_err(), "the slow request should still be running");
    let (s, body, _) = call(&app, "POST", "/score", r#"{"data": [4]}"#).await;
    assert_eq!(
        (s, body.as_str()),
        (StatusCode::OK, r#"{"prediction": [8]}"#)
    );
}

#[tokio::test]
async fn onnx_models_are_served_natively_and_match_the_reference() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/onnx");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path(), SCORE, 1);
    cfg.script = None;
    cfg.model_dir = Some(example.join("model"));
    let r = Replica::new(cfg);
    r.start().await.unwrap();
    let app = app(Arc::clone(&r));
    assert_eq!(call(&app, "GET", "/ready", "").await.0, StatusCode::OK);
    let request = std::fs::read_to_string(example.join("sample-request.json")).unwrap();
    let (s, body, _) = call(&app, "POST", "/score", &request).await;
    assert_eq!(s, StatusCode::OK, "{body}");
    let got: serde_json::Value = serde_json::from_str(&body).unwrap();
    let want: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(example.join("expected-output.json")).unwrap(),
    )
    .unwrap();
    let (got, want) = (got["y"].as_array().unwrap(), want["y"].as_array().unwrap());
    assert_eq!(got.len(), want.len());
    for (g, w) in got.iter().zip(want) {
        for (a, b) in g.as_array().unwrap().iter().zip(w.as_array().unwrap()) {
            assert!(
                (a.as_f64().unwrap() - b.as_f64().unwrap()).abs() < 1e-5,
                "{g} vs {w}"
            );
        }
    }
    let (s, body, _) = call(&app, "POST", "/score", r#"{"data": [[1, 2]]}"#).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{body}");
    let (s, body, _) = call(&app, "POST", "/score", r#"{"data": [[1, 2, 3], [4]]}"#).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("ragged"), "{body}");
    let (s, body, _) = call(&app, "POST", "/score", r#"{"rows": []}"#).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(body.contains("send {") && body.contains("data"), "{body}");
}
