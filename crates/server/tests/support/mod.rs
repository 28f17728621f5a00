//! The API in-process (axum `oneshot`) on a fresh home: the fixture the server's tests share.

#![allow(clippy::unwrap_used, dead_code)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use berth_server::config::{ConfigLayer, ServerConfig};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

pub struct Api {
    pub app: axum::Router,
    pub token: String,
    pub home: tempfile::TempDir,
    pub state: berth_server::AppState,
}

pub async fn api_with(max_body: Option<usize>) -> Api {
    let home = tempfile::tempdir().unwrap();
    let flags = ConfigLayer {
        max_body_bytes: max_body,
        local_cpu: Some("2".parse().unwrap()),
        ..Default::default()
    };
    let config = ServerConfig::load(home.path(), ConfigLayer::default(), flags, None).unwrap();
    let state = berth_server::build_state(&config, "http://127.0.0.1:9", "http://127.0.0.1:9")
        .await
        .unwrap();
    let token = state.token.to_string();
    Api {
        app: berth_server::app(state.clone(), config.max_body_bytes),
        token,
        home,
        state,
    }
}

pub async fn api() -> Api {
    api_with(None).await
}

impl Api {
    pub async fn call_with(
        &self,
        method: &str,
        uri: &str,
        body: Option<Value>,
        token: Option<&str>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let body = match body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                Body::from(b.to_string())
            }
            None => Body::empty(),
        };
        let resp = self
            .app
            .clone()
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    pub async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let t = self.token.clone();
        self.call_with(method, uri, body, Some(&t)).await
    }

    pub async fn submit(&self, yaml: &str) -> (StatusCode, Value) {
        let base = self.home.path().to_string_lossy().into_owned();
        self.call(
            "POST",
            "/api/jobs",
            Some(json!({"file": "job.yaml", "yaml": yaml, "base_dir": base})),
        )
        .await
    }

    /// Sends `body` to `uri` with `method` and a bearer `token`; the status.
    pub async fn send_raw(&self, method: &str, uri: &str, token: &str, body: &str) -> StatusCode {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header("authorization", format!("Bearer {token}"))
            .body(Body::from(body.to_string()))
            .unwrap();
        self.app.clone().oneshot(req).await.unwrap().status()
    }
}
