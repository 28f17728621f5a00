//! The replica's HTTP routes, shaped like `azureml-inference-server-http`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::pool::ScoreError;
use crate::worker::RunOutcome;
use crate::{Replica, Scorer};

/// The routes.
pub fn app(replica: Arc<Replica>) -> Router {
    let limit = replica.config.max_body_bytes;
    Router::new()
        .route("/", get(|| async { "Healthy" }))
        .route("/ready", get(ready))
        .route(
            "/score",
            axum::routing::post(score).options(|| async { StatusCode::OK }),
        )
        .route("/swagger.json", get(swagger))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(replica)
}

async fn ready(State(r): State<Arc<Replica>>) -> Response {
    match r.scorer.get() {
        Some(Scorer::Python(p)) if p.alive() == 0 => (
            StatusCode::SERVICE_UNAVAILABLE,
            "no scoring worker is alive",
        )
            .into_response(),
        Some(_) => (StatusCode::OK, "Ready").into_response(),
        None => (StatusCode::SERVICE_UNAVAILABLE, "init() is still running").into_response(),
    }
}

/// The request id to echo; `None` when the client sent one that is too long (431).
fn request_id(headers: &HeaderMap) -> Option<String> {
    match headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
        Some(id) if id.len() > 100 => None,
        Some(id) => Some(id.to_string()),
        None => {
            let b: [u8; 16] = rand::random();
            Some(format!(
                "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
                u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
                u16::from_be_bytes([b[4], b[5]]),
                u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
                (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
                u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
            ))
        }
    }
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"message": message}))).into_response()
}

async fn score(State(r): State<Arc<Replica>>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(id) = request_id(&headers) else {
        let status = StatusCode::from_u16(431).unwrap_or(StatusCode::BAD_REQUEST);
        return error(status, "x-request-id is longer than 100 characters");
    };
    let mut resp = score_inner(&r, &headers, &body).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    if let Some(v) = headers.get("x-ms-client-request-id") {
        resp.headers_mut()
            .insert("x-ms-client-request-id", v.clone());
    }
    resp
}

async fn score_inner(r: &Replica, headers: &HeaderMap, body: &[u8]) -> Response {
    let Some(scorer) = r.scorer.get() else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the replica is not ready: init() is still running",
        );
    };
    let Ok(text) = std::str::from_utf8(body) else {
        return error(StatusCode::BAD_REQUEST, "the request body is not UTF-8");
    };
    if text.trim().is_empty() {
        return error(
            StatusCode::BAD_REQUEST,
            "the request body is empty; send JSON",
        );
    }
    let pool = match scorer {
        Scorer::Python(pool) => pool,
        Scorer::Onnx(model) => return score_onnx(model, text),
    };
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("the request body is not valid JSON: {e}"),
        );
    }
    let hdrs: BTreeMap<String, String> = headers
        .iter()
        .filter_map(|(k, v)| {
            v.to_str()
                .ok()
                .map(|v| (k.as_str().to_string(), v.to_string()))
        })
        .collect();
    let started = Instant::now();
    let outcome = pool
        .score(
            text.to_string(),
            hdrs,
            r.config.max_queue_wait,
            r.config.request_timeout,
        )
        .await;
    let ms = started.elapsed().as_millis().to_string();
    let mut resp = answer(outcome);
    if let Ok(v) = HeaderValue::from_str(&ms) {
        resp.headers_mut().insert("x-ms-run-fn-exec-ms", v);
    }
    resp
}

/// Scores an ONNX model inline: small models answer in microseconds, faster than a thread hop.
fn score_onnx(model: &crate::onnx::OnnxModel, text: &str) -> Response {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                &format!("the request body is not valid JSON: {e}"),
            );
        }
    };
    match model.score(&value) {
        Ok(out) => Json(out).into_response(),
        Err(e) => error(StatusCode::BAD_REQUEST, &e),
    }
}

/// The HTTP answer for how a `run()` call went: its JSON, or Azure's statuses for a failed
/// script (500 with `x-ms-run-function-failed`), a full queue, a timeout or a crash.
fn answer(outcome: Result<RunOutcome, ScoreError>) -> Response {
    match outcome {
        Ok(RunOutcome::Output(json_text)) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            json_text,
        )
            .into_response(),
        Ok(RunOutcome::ScriptError(e)) => {
            let mut resp = error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("run() failed: {e}"),
            );
            resp.headers_mut()
                .insert("x-ms-run-function-failed", HeaderValue::from_static("True"));
            resp
        }
        Err(e @ ScoreError::Busy(_)) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
        Err(e @ ScoreError::Timeout(_)) => error(StatusCode::GATEWAY_TIMEOUT, &e.to_string()),
        Err(e @ ScoreError::Crashed(_)) => {
            let mut resp = error(StatusCode::BAD_GATEWAY, &e.to_string());
            resp.headers_mut()
                .insert("x-ms-run-function-failed", HeaderValue::from_static("True"));
            resp
        }
    }
}

async fn swagger(State(r): State<Arc<Replica>>) -> Json<serde_json::Value> {
    let script = match &r.config.script {
        Some(s) => s
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        None => "the ONNX model".into(),
    };
    Json(json!({
        "swagger": "2.0",
        "info": {"title": format!("Berth scoring runtime for {script}"), "version": env!("CARGO_PKG_VERSION")},
        "schemes": ["http"],
        "consumes": ["application/json"],
        "produces": ["application/json"],
        "paths": {
            "/": {"get": {"summary": "liveness", "responses": {"200": {"description": "Healthy"}}}},
            "/score": {"post": {
                "summary": "calls run() with the request body",
                "parameters": [{"name": "body", "in": "body", "required": true, "schema": {"type": "object"}}],
                "responses": {
                    "200": {"description": "run()'s return value as JSON"},
                    "400": {"description": "the body is empty or not JSON"},
                    "500": {"description": "run() raised"},
                    "502": {"description": "the worker crashed"},
                    "504": {"description": "run() took too long"}
                }
            }}
        }
    }))
}
