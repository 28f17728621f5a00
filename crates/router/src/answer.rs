//! What a client gets back: why a request was not served (an error with its status and a
//! JSON body), or a replica's answer with the headers the router adds; the same for the
//! router's own HTTP path and for hyper's.

use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::{UNKNOWN_ENDPOINT, upstream};

/// Why a request was not served, with its status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RouteError {
    #[error("no online endpoint named `{0}`")]
    NoEndpoint(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("endpoint `{0}` has no deployment named `{1}`")]
    NoDeployment(String, String),
    #[error(
        "endpoint `{0}` has no deployment with traffic; set it with `berth online-endpoint update --traffic`"
    )]
    NoTraffic(String),
    #[error("deployment `{0}` has no ready replica")]
    NoReplica(String),
    #[error("deployment `{0}` is at capacity: no slot freed within max_queue_wait_ms ({1} ms)")]
    Busy(String, u64),
    #[error("deployment `{0}` did not answer within request_timeout_ms ({1} ms)")]
    Timeout(String, u64),
    #[error("deployment `{0}` could not be reached: {1}")]
    Upstream(String, String),
}

impl RouteError {
    /// The metrics label of a request to `endpoint` refused this way: one label for every
    /// endpoint that does not exist.
    pub(crate) fn label<'a>(&self, endpoint: &'a str) -> &'a str {
        match self {
            RouteError::NoEndpoint(_) => UNKNOWN_ENDPOINT,
            _ => endpoint,
        }
    }

    pub(crate) fn status(&self) -> (StatusCode, &'static str) {
        match self {
            RouteError::NoEndpoint(_) => (StatusCode::NOT_FOUND, "EndpointNotFound"),
            RouteError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "Unauthorized"),
            RouteError::NoDeployment(..) => (StatusCode::NOT_FOUND, "DeploymentNotFound"),
            RouteError::NoTraffic(_) => (StatusCode::NOT_FOUND, "NoTraffic"),
            RouteError::NoReplica(_) => (StatusCode::SERVICE_UNAVAILABLE, "NoReadyReplica"),
            RouteError::Busy(..) => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequests"),
            RouteError::Timeout(..) => (StatusCode::GATEWAY_TIMEOUT, "RequestTimeout"),
            RouteError::Upstream(..) => (StatusCode::BAD_GATEWAY, "UpstreamFailed"),
        }
    }
}

impl IntoResponse for RouteError {
    fn into_response(self) -> Response {
        let (status, code) = self.status();
        json_response(status, error_body(code, &self.to_string()))
    }
}

/// The body of an error answer: `{"error": {"code", "message"}}`.
pub(crate) fn error_body(code: &str, message: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"error": {"code": code, "message": message}})).unwrap_or_default()
}

pub(crate) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Headers of an answer that the router sets, not the replica.
pub(crate) const SET_BY_ROUTER: [&str; 3] = [
    "azureml-model-deployment",
    "x-berth-queue-ms",
    "x-berth-upstream-ms",
];

/// A replica's answer, read whole, and how long it waited for a slot and for the replica.
pub(crate) struct Answer {
    pub(crate) reply: upstream::Reply,
    pub(crate) queue_ms: u128,
    pub(crate) upstream: Duration,
    /// The deployment's counter of 200 answers, looked up once per route-table update.
    pub(crate) ok: Option<prometheus_client::metrics::counter::Counter>,
}

impl Answer {
    /// The replica's headers the client gets: all but those the router sets.
    pub(crate) fn replica_headers(&self) -> impl Iterator<Item = (&str, &Bytes)> {
        self.reply
            .headers
            .iter()
            .filter(|(k, _)| !SET_BY_ROUTER.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v))
    }

    /// The headers the router sets: which deployment (`name`) answered, and how long the
    /// request waited for a slot and for the replica.
    pub(crate) fn router_headers(&self, name: &str) -> [(&'static str, String); 3] {
        [
            (SET_BY_ROUTER[0], name.to_string()),
            (SET_BY_ROUTER[1], self.queue_ms.to_string()),
            (SET_BY_ROUTER[2], self.upstream.as_millis().to_string()),
        ]
    }

    /// The client's status: the replica's, except that a failed `run()` is 502.
    pub(crate) fn status(&self) -> StatusCode {
        let status = StatusCode::from_u16(self.reply.status).unwrap_or(StatusCode::BAD_GATEWAY);
        if status == StatusCode::INTERNAL_SERVER_ERROR
            && self.reply.header("x-ms-run-function-failed").is_some()
        {
            StatusCode::BAD_GATEWAY
        } else {
            status
        }
    }
}

/// The client's response: the answer's status and the replica's headers, and which
/// deployment answered with the time it took.
pub(crate) fn respond(answer: Answer, name: &str) -> Response {
    let mut out = Response::new(Body::from(answer.reply.body.clone()));
    *out.status_mut() = answer.status();
    let h = out.headers_mut();
    for (k, v) in answer.replica_headers() {
        if let (Ok(k), Ok(v)) = (
            header::HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_maybe_shared(v.clone()),
        ) {
            h.append(k, v);
        }
    }
    for (k, v) in answer.router_headers(name) {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    }
    out
}

/// The answer to a body that could not be read: too large, or cut off.
pub(crate) fn body_error(e: &axum::Error, limit: usize) -> Response {
    let too_large = std::error::Error::source(e)
        .is_some_and(|s| s.is::<http_body_util::LengthLimitError>())
        || e.to_string().contains("length limit");
    let (status, message) = if too_large {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body could not be read: it is over the {limit} byte limit"),
        )
    } else {
        (
            StatusCode::BAD_REQUEST,
            format!("the request body could not be read: {e}"),
        )
    };
    (
        status,
        Json(json!({"error": {"code": "BadRequestBody", "message": message}})),
    )
        .into_response()
}
