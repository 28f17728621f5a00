//! Berth's inference router (the data path): `POST /api/v1/endpoint/<endpoint>/score`.
//! Key auth, deployment pinning or a weighted choice by traffic, per-replica concurrency
//! slots with a bounded queue wait (429), request timeouts (504), no ready replica (503), a
//! scoring-script failure (502), and one retry on another replica when a connection fails
//! before anything was sent.

pub mod connect;
pub mod listen;
pub mod metrics;
pub mod selector;
pub mod slots;
pub mod tls;
pub mod token;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use berth_core::secret::constant_time_eq;
use berth_core::spec::deployment::RequestSettings;
use berth_core::spec::endpoint::TrafficSplit;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::json;

use slots::{ReplicaSet, Slot};

/// One deployment's route: its ready replicas and request settings.
#[derive(Clone, Debug)]
pub struct DeploymentRoute {
    /// Ready replicas with their slots.
    pub replicas: Arc<ReplicaSet>,
    /// The addresses, to tell whether a table update changed them.
    pub addrs: Vec<String>,
    /// Timeouts and slots.
    pub settings: RequestSettings,
    /// Metric handles, attached when the route is installed.
    pub metrics: Option<metrics::DeploymentMetrics>,
}

impl DeploymentRoute {
    /// A route to these replicas.
    pub fn new(addrs: Vec<String>, settings: RequestSettings) -> DeploymentRoute {
        DeploymentRoute {
            replicas: Arc::new(ReplicaSet::new(
                &addrs,
                settings.max_concurrent_requests_per_instance,
            )),
            addrs,
            settings,
            metrics: None,
        }
    }
}

/// How an endpoint's clients authenticate.
#[derive(Clone, Debug)]
pub enum RouteAuth {
    /// `Authorization: Bearer <key>`, any of these keys.
    Keys(Vec<String>),
    /// `Authorization: Bearer <token>`, signed with this key and not expired.
    Token(token::TokenKey),
}

/// One endpoint's route.
#[derive(Clone, Debug)]
pub struct EndpointRoute {
    /// How clients authenticate.
    pub auth: RouteAuth,
    /// A deployment that gets a copy of this share (percent) of requests; answers discarded.
    pub mirror: Option<(String, u32)>,
    /// Traffic weights.
    pub traffic: TrafficSplit,
    /// Deployments by name.
    pub deployments: HashMap<String, DeploymentRoute>,
}

/// Every endpoint the router serves.
pub type RouteTable = HashMap<String, EndpointRoute>;

/// The router's table for a published routes document.
pub fn table_from_doc(doc: &berth_core::serving::RoutesDoc) -> RouteTable {
    use berth_core::spec::endpoint::AuthMode;
    doc.endpoints
        .iter()
        .map(|ep| {
            let auth = match (ep.auth_mode, &ep.token_secret) {
                (AuthMode::AmlToken, Some(secret)) => {
                    RouteAuth::Token(token::TokenKey::new(secret.as_bytes()))
                }
                // A token endpoint without its secret accepts nothing rather than anything.
                (AuthMode::AmlToken, None) => RouteAuth::Keys(Vec::new()),
                (AuthMode::Key, _) => RouteAuth::Keys(ep.keys.clone()),
            };
            let deployments = ep
                .deployments
                .iter()
                .map(|d| {
                    (
                        d.name.clone(),
                        DeploymentRoute::new(d.replicas.clone(), d.request_settings),
                    )
                })
                .collect();
            let mirror = ep.mirror_traffic.target().map(|(d, w)| (d.to_string(), w));
            (
                ep.name.clone(),
                EndpointRoute {
                    auth,
                    mirror,
                    traffic: ep.traffic.clone(),
                    deployments,
                },
            )
        })
        .collect()
}

/// The router.
pub struct InferenceRouter {
    table: RwLock<Arc<RouteTable>>,
    client: Client<connect::ReplicaConnector, Full<Bytes>>,
    /// Prometheus metrics, served at `/metrics`.
    pub metrics: metrics::RouterMetrics,
    /// Largest request body (100 MiB, azureml-fe's limit).
    pub max_body_bytes: usize,
}

/// Why a request was not served, with its status.
#[derive(Debug, thiserror::Error)]
enum RouteError {
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
    fn status(&self) -> (StatusCode, &'static str) {
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
        (
            status,
            Json(json!({"error": {"code": code, "message": self.to_string()}})),
        )
            .into_response()
    }
}

impl InferenceRouter {
    /// A router with no endpoints.
    pub fn new() -> Arc<InferenceRouter> {
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connect::ReplicaConnector::new());
        Arc::new(InferenceRouter {
            table: RwLock::new(Arc::new(RouteTable::new())),
            client,
            metrics: metrics::RouterMetrics::default(),
            max_body_bytes: 100 << 20,
        })
    }

    /// Replaces the table, keeping the slots of deployments whose replicas did not change.
    pub fn update(&self, mut next: RouteTable) {
        let Ok(mut cur) = self.table.write() else {
            return;
        };
        for (ep, route) in next.iter_mut() {
            for (name, dep) in route.deployments.iter_mut() {
                if let Some(old) = cur.get(ep).and_then(|e| e.deployments.get(name))
                    && old.addrs == dep.addrs
                    && old.settings == dep.settings
                {
                    dep.replicas = Arc::clone(&old.replicas);
                }
            }
        }
        for (ep, route) in next.iter_mut() {
            for (name, dep) in route.deployments.iter_mut() {
                self.metrics.set_replicas(ep, name, dep.replicas.len());
                dep.metrics = Some(self.metrics.deployment(ep, name));
            }
        }
        *cur = Arc::new(next);
    }

    fn snapshot(&self) -> Arc<RouteTable> {
        self.table
            .read()
            .map(|t| Arc::clone(&t))
            .unwrap_or_default()
    }

    /// `(busy + queued) / replicas` of one deployment, for the autoscaler.
    pub fn utilization(&self, endpoint: &str, deployment: &str) -> Option<f64> {
        let t = self.snapshot();
        let d = t.get(endpoint)?.deployments.get(deployment)?;
        (!d.replicas.is_empty()).then(|| d.replicas.load() as f64 / d.replicas.len() as f64)
    }

    /// (busy + queued requests, ready replicas, slots per replica) of one deployment.
    pub fn load(&self, endpoint: &str, deployment: &str) -> Option<(usize, usize, u32)> {
        let t = self.snapshot();
        let d = t.get(endpoint)?.deployments.get(deployment)?;
        Some((
            d.replicas.load(),
            d.replicas.len(),
            d.settings.max_concurrent_requests_per_instance,
        ))
    }

    /// Sends a copy of a request to a shadow deployment in the background and drops the
    /// answer. Only when a slot is free at once: mirroring never queues or slows live traffic.
    fn mirror(
        &self,
        endpoint: &str,
        shadow: &str,
        d: &DeploymentRoute,
        headers: &HeaderMap,
        body: Bytes,
    ) {
        let Some(slot) = d.replicas.try_take(None) else {
            return;
        };
        let Some(uri) = slot.replica.score_uri.clone() else {
            return;
        };
        let mut req = hyper::Request::post(uri);
        if let Some(v) = headers.get(header::CONTENT_TYPE) {
            req = req.header(header::CONTENT_TYPE, v);
        }
        let Ok(req) = req.body(Full::new(body)) else {
            return;
        };
        let client = self.client.clone();
        let timeout = Duration::from_millis(d.settings.request_timeout_ms);
        let ok = d.metrics.as_ref().map(|m| m.ok.clone());
        let (endpoint, shadow) = (endpoint.to_string(), shadow.to_string());
        tokio::spawn(async move {
            let _slot = slot;
            let status = match tokio::time::timeout(timeout, client.request(req)).await {
                Ok(Ok(resp)) => {
                    let status = resp.status();
                    let _ = resp.into_body().collect().await;
                    status
                }
                _ => StatusCode::GATEWAY_TIMEOUT,
            };
            if status == StatusCode::OK
                && let Some(ok) = ok
            {
                ok.inc();
            }
            tracing::debug!(endpoint = %endpoint, deployment = %shadow, status = %status, "mirrored request");
        });
    }

    /// The HTTP application.
    pub fn app(self: Arc<Self>) -> Router {
        Router::new()
            .route("/api/v1/endpoint/{endpoint}/score", post(score))
            .route(
                "/metrics",
                axum::routing::get(|State(r): State<Arc<InferenceRouter>>| async move {
                    r.metrics.encode()
                }),
            )
            .layer(DefaultBodyLimit::max(self.max_body_bytes))
            .with_state(self)
    }

    async fn forward(
        &self,
        slot: &Slot,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<hyper::Response<hyper::body::Incoming>, (bool, String)> {
        let uri = slot.replica.score_uri.clone().ok_or((
            false,
            format!("`{}` is not a valid replica address", slot.replica.addr),
        ))?;
        let mut req = hyper::Request::post(uri);
        for name in [
            header::CONTENT_TYPE,
            header::HeaderName::from_static("x-request-id"),
            header::HeaderName::from_static("x-ms-client-request-id"),
        ] {
            if let Some(v) = headers.get(&name) {
                req = req.header(name, v);
            }
        }
        let req = req
            .body(Full::new(body))
            .map_err(|e| (false, e.to_string()))?;
        self.client
            .request(req)
            .await
            .map_err(|e| (e.is_connect(), e.to_string()))
    }

    /// Checks the endpoint and the credentials from the headers alone, so a request that will
    /// be refused is refused before its body is read. Returns the table it was checked in.
    fn admit(&self, endpoint: &str, headers: &HeaderMap) -> Result<Arc<RouteTable>, RouteError> {
        let table = self.snapshot();
        let ep = table
            .get(endpoint)
            .ok_or_else(|| RouteError::NoEndpoint(endpoint.to_string()))?;
        authorize(ep, endpoint, headers)?;
        Ok(table)
    }

    /// Sends an admitted request to a deployment of `endpoint` in `table`.
    async fn route(
        &self,
        table: &RouteTable,
        endpoint: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Response, RouteError> {
        let ep = table
            .get(endpoint)
            .ok_or_else(|| RouteError::NoEndpoint(endpoint.to_string()))?;
        let name = self.choose(ep, endpoint, headers, &body)?;
        let dep = ep
            .deployments
            .get(&name)
            .ok_or_else(|| RouteError::NoDeployment(endpoint.to_string(), name.clone()))?;
        if dep.replicas.is_empty() {
            return Err(RouteError::NoReplica(name));
        }
        let m = dep.metrics.clone();
        if let Some(m) = &m {
            m.in_flight.inc();
        }
        let _in_flight = scopeguard(|| {
            if let Some(m) = &m {
                m.in_flight.dec();
            }
        });
        let answer = self.call(dep, &name, headers, body).await?;
        if let Some(m) = &dep.metrics {
            m.queue_wait.observe(answer.queue_ms as f64 / 1e3);
            m.upstream.observe(answer.upstream.as_secs_f64());
            if status_is_ok(answer.parts.status) {
                m.ok.inc();
            }
        }
        Ok(respond(answer, &name))
    }

    /// The deployment that answers: the one pinned by `azureml-model-deployment`, else one
    /// drawn by the traffic split (with a mirrored copy to the shadow, when there is one).
    fn choose(
        &self,
        ep: &EndpointRoute,
        endpoint: &str,
        headers: &HeaderMap,
        body: &Bytes,
    ) -> Result<String, RouteError> {
        if let Some(pinned) = headers
            .get("azureml-model-deployment")
            .and_then(|v| v.to_str().ok())
        {
            return Ok(pinned.to_string());
        }
        let chosen = selector::choose(&ep.traffic, rand::random_range(0..100))
            .ok_or_else(|| RouteError::NoTraffic(endpoint.to_string()))?
            .to_string();
        if let Some((shadow, pct)) = &ep.mirror
            && *shadow != chosen
            && rand::random_range(0..100) < *pct
            && let Some(d) = ep.deployments.get(shadow)
        {
            self.mirror(endpoint, shadow, d, headers, body.clone());
        }
        Ok(chosen)
    }

    /// Sends the request to a replica of `dep` once a slot is free, and reads its answer
    /// within the request timeout. When nothing reached the first replica, another is tried.
    async fn call(
        &self,
        dep: &DeploymentRoute,
        name: &str,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Result<Answer, RouteError> {
        let s = dep.settings;
        let queued = Instant::now();
        let mut slot = dep
            .replicas
            .take(Duration::from_millis(s.max_queue_wait_ms))
            .await
            .ok_or_else(|| RouteError::Busy(name.to_string(), s.max_queue_wait_ms))?;
        let queue_ms = queued.elapsed().as_millis();
        let upstream = Instant::now();
        let timeout = Duration::from_millis(s.request_timeout_ms);
        let mut first =
            tokio::time::timeout(timeout, self.forward(&slot, headers, body.clone())).await;
        if let Ok(Err((true, _))) = &first
            && let Some(other) = dep.replicas.try_take(Some(&slot.replica.addr))
        {
            slot = other;
            first = tokio::time::timeout(timeout, self.forward(&slot, headers, body)).await;
        }
        let resp = match first {
            Err(_) => return Err(RouteError::Timeout(name.to_string(), s.request_timeout_ms)),
            Ok(Err((_, e))) => return Err(RouteError::Upstream(name.to_string(), e)),
            Ok(Ok(r)) => r,
        };
        let (parts, incoming) = resp.into_parts();
        let bytes = match tokio::time::timeout(
            timeout.saturating_sub(upstream.elapsed()),
            incoming.collect(),
        )
        .await
        {
            Ok(Ok(b)) => b.to_bytes(),
            Ok(Err(e)) => return Err(RouteError::Upstream(name.to_string(), e.to_string())),
            Err(_) => return Err(RouteError::Timeout(name.to_string(), s.request_timeout_ms)),
        };
        drop(slot);
        Ok(Answer {
            parts,
            bytes,
            queue_ms,
            upstream: upstream.elapsed(),
        })
    }
}

/// A replica's answer, read whole, and how long it waited for a slot and for the replica.
struct Answer {
    parts: hyper::http::response::Parts,
    bytes: Bytes,
    queue_ms: u128,
    upstream: Duration,
}

/// Checks the bearer key or token against the endpoint's.
fn authorize(ep: &EndpointRoute, endpoint: &str, headers: &HeaderMap) -> Result<(), RouteError> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| RouteError::Unauthorized("send Authorization: Bearer <key or token>; `berth online-endpoint get-credentials` shows it".into()))?
        .trim();
    match &ep.auth {
        RouteAuth::Keys(keys) => {
            if !keys
                .iter()
                .any(|k| constant_time_eq(k.as_bytes(), presented.as_bytes()))
            {
                return Err(RouteError::Unauthorized(
                    "the key is not valid for this endpoint".into(),
                ));
            }
        }
        RouteAuth::Token(key) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            key.verify(endpoint, presented, now)
                .map_err(|e| RouteError::Unauthorized(e.to_string()))?;
        }
    }
    Ok(())
}

/// The client's response: the replica's status (a failed `run()` becomes 502), its headers
/// less hop-by-hop ones, and which deployment answered with the time it took.
fn respond(answer: Answer, name: &str) -> Response {
    let Answer {
        parts,
        bytes,
        queue_ms,
        upstream,
    } = answer;
    let script_failed = parts.headers.get("x-ms-run-function-failed").is_some();
    let status = if parts.status == StatusCode::INTERNAL_SERVER_ERROR && script_failed {
        StatusCode::BAD_GATEWAY
    } else {
        parts.status
    };
    let mut out = Response::builder().status(status);
    for (k, v) in parts.headers.iter() {
        if k != header::CONNECTION && k != header::TRANSFER_ENCODING && k != header::CONTENT_LENGTH
        {
            out = out.header(k, v);
        }
    }
    let mut out = out
        .body(Body::from(bytes))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response());
    let h = out.headers_mut();
    if let Ok(v) = HeaderValue::from_str(name) {
        h.insert("azureml-model-deployment", v);
    }
    if let Ok(v) = HeaderValue::from_str(&queue_ms.to_string()) {
        h.insert("x-berth-queue-ms", v);
    }
    if let Ok(v) = HeaderValue::from_str(&upstream.as_millis().to_string()) {
        h.insert("x-berth-upstream-ms", v);
    }
    out
}

fn status_is_ok(s: StatusCode) -> bool {
    s == StatusCode::OK
}

/// Runs `f` when dropped.
struct Guard<F: FnMut()>(F);

impl<F: FnMut()> Drop for Guard<F> {
    fn drop(&mut self) {
        (self.0)();
    }
}

fn scopeguard<F: FnMut()>(f: F) -> Guard<F> {
    Guard(f)
}

/// The metrics label of requests to endpoints that do not exist: one for all of them, so
/// unauthenticated clients cannot grow `/metrics` without bound.
pub const UNKNOWN_ENDPOINT: &str = "(unknown)";

async fn score(
    State(router): State<Arc<InferenceRouter>>,
    Path(endpoint): Path<String>,
    request: axum::extract::Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let headers = parts.headers;
    let (label, resp) = match router.admit(&endpoint, &headers) {
        // Refused on the headers alone: the body is never read.
        Err(e) => {
            let label = match e {
                RouteError::NoEndpoint(_) => UNKNOWN_ENDPOINT,
                _ => endpoint.as_str(),
            };
            (label, e.into_response())
        }
        Ok(table) => {
            let resp = match axum::body::to_bytes(body, router.max_body_bytes).await {
                Ok(body) => match router.route(&table, &endpoint, &headers, body).await {
                    Ok(r) => r,
                    Err(e) => e.into_response(),
                },
                Err(e) => body_error(&e, router.max_body_bytes),
            };
            (endpoint.as_str(), resp)
        }
    };
    let deployment = resp
        .headers()
        .get("azureml-model-deployment")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    router
        .metrics
        .request(label, deployment, resp.status().as_u16());
    resp
}

/// The answer to a body that could not be read: too large, or cut off.
fn body_error(e: &axum::Error, limit: usize) -> Response {
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
