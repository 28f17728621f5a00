//! Berth's inference router (the data path): `POST /api/v1/endpoint/<endpoint>/score`.
//! Key auth, deployment pinning or a weighted choice by traffic, per-replica concurrency
//! slots with a bounded queue wait (429), request timeouts (504), no ready replica (503), a
//! scoring-script failure (502), and one retry on another replica when a connection fails
//! before anything was sent. Plain HTTP/1.1 scoring requests take a path of the router's own
//! ([`fast`]), and every request reaches its replica over the router's own kept-alive
//! connections ([`upstream`]).

mod answer;
mod fast;
pub mod listen;
pub mod metrics;
pub mod selector;
pub mod slots;
pub mod tls;
pub mod token;
pub mod upstream;
mod wire;

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use berth_core::secret::constant_time_eq;
use berth_core::spec::deployment::RequestSettings;
use berth_core::spec::endpoint::TrafficSplit;
use tokio::time::Sleep;

use answer::{Answer, RouteError, body_error, respond};
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
    upstream: Arc<upstream::Upstream>,
    /// Prometheus metrics, served at `/metrics`.
    pub metrics: metrics::RouterMetrics,
    /// Largest request body (100 MiB, azureml-fe's limit).
    pub max_body_bytes: usize,
}

impl InferenceRouter {
    /// A router with no endpoints.
    pub fn new() -> Arc<InferenceRouter> {
        Arc::new(InferenceRouter {
            table: RwLock::new(Arc::new(RouteTable::new())),
            upstream: Arc::default(),
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
        // Connections kept to replicas that left the table are closed.
        let addrs: std::collections::HashSet<&str> = next
            .values()
            .flat_map(|r| r.deployments.values())
            .flat_map(|d| d.addrs.iter().map(String::as_str))
            .collect();
        self.upstream.retain(&addrs);
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
        let Some(target) = slot.replica.target.clone() else {
            return;
        };
        let content_type = headers.get(header::CONTENT_TYPE);
        let kept: Vec<(&str, &[u8])> = content_type
            .iter()
            .map(|v| ("content-type", v.as_bytes()))
            .collect();
        let request = upstream::request(&target, &kept, &body);
        let up = Arc::clone(&self.upstream);
        let timeout = Duration::from_millis(d.settings.request_timeout_ms);
        let ok = d.metrics.as_ref().map(|m| m.ok.clone());
        let (endpoint, shadow) = (endpoint.to_string(), shadow.to_string());
        tokio::spawn(async move {
            let sent = up.send(&slot.replica.addr, &target, &request);
            let status = match tokio::time::timeout(timeout, sent).await {
                Ok(Ok(reply)) => {
                    StatusCode::from_u16(reply.status).unwrap_or(StatusCode::BAD_GATEWAY)
                }
                _ => StatusCode::GATEWAY_TIMEOUT,
            };
            drop(slot);
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

    /// Sends the request to the slot's replica and reads its answer. The error says whether
    /// nothing reached the replica (so another may be tried).
    async fn forward(
        &self,
        slot: &Slot,
        headers: &HeaderMap,
        body: &[u8],
    ) -> Result<upstream::Reply, (bool, String)> {
        let target = slot.replica.target.as_ref().ok_or((
            false,
            format!("`{}` is not a valid replica address", slot.replica.addr),
        ))?;
        let kept: Vec<(&str, &[u8])> = FORWARDED
            .iter()
            .filter_map(|name| Some((*name, headers.get(*name)?.as_bytes())))
            .collect();
        let request = upstream::request(target, &kept, body);
        self.upstream
            .send(&slot.replica.addr, target, &request)
            .await
            .map_err(|e| (matches!(e, upstream::SendError::Connect(_)), e.to_string()))
    }

    /// Counts a finished request: a 200 from a deployment on its cached counter.
    fn count(
        &self,
        endpoint: &str,
        deployment: &str,
        status: StatusCode,
        ok: Option<prometheus_client::metrics::counter::Counter>,
    ) {
        match ok {
            Some(ok) if status == StatusCode::OK => {
                ok.inc();
            }
            _ => self.metrics.request(endpoint, deployment, status.as_u16()),
        }
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

    /// Sends an admitted request to a deployment of `endpoint` in `table`: the answer and the
    /// deployment that gave it.
    async fn route(
        &self,
        table: &RouteTable,
        endpoint: &str,
        headers: &HeaderMap,
        body: Bytes,
        timer: Pin<&mut Sleep>,
    ) -> Result<(Answer, String), RouteError> {
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
        let mut answer = self.call(dep, &name, headers, body, timer).await?;
        if let Some(m) = &dep.metrics {
            m.queue_wait.observe(answer.queue_ms as f64 / 1e3);
            m.upstream.observe(answer.upstream.as_secs_f64());
            answer.ok = Some(m.ok.clone());
        }
        Ok((answer, name))
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
    /// within the request timeout, kept by `timer`. When nothing reached the first replica,
    /// another is tried.
    async fn call(
        &self,
        dep: &DeploymentRoute,
        name: &str,
        headers: &HeaderMap,
        body: Bytes,
        mut timer: Pin<&mut Sleep>,
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
        let mut first = within(timer.as_mut(), timeout, self.forward(&slot, headers, &body)).await;
        if let Some(Err((true, _))) = &first
            && let Some(other) = dep.replicas.try_take(Some(&slot.replica.addr))
        {
            slot = other;
            first = within(timer.as_mut(), timeout, self.forward(&slot, headers, &body)).await;
        }
        drop(slot);
        match first {
            None => Err(RouteError::Timeout(name.to_string(), s.request_timeout_ms)),
            Some(Err((_, e))) => Err(RouteError::Upstream(name.to_string(), e)),
            Some(Ok(reply)) => Ok(Answer {
                reply,
                queue_ms,
                upstream: upstream.elapsed(),
                ok: None,
            }),
        }
    }
}

/// Runs `f` until `limit` from now, on `timer`: a connection's requests share one timer, moved
/// later at each (cheap), where a new timer each time wakes the runtime's driver to arm it.
async fn within<T>(
    mut timer: Pin<&mut Sleep>,
    limit: Duration,
    f: impl std::future::Future<Output = T>,
) -> Option<T> {
    timer.as_mut().reset(tokio::time::Instant::now() + limit);
    tokio::select! {
        biased;
        v = f => Some(v),
        _ = timer => None,
    }
}

/// A timer for [`within`], not yet armed.
pub(crate) fn request_timer() -> Sleep {
    tokio::time::sleep(Duration::from_secs(3600))
}

/// The request headers a replica gets.
const FORWARDED: [&str; 3] = ["content-type", "x-request-id", "x-ms-client-request-id"];

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
    let mut ok = None;
    let (label, resp) = match router.admit(&endpoint, &headers) {
        // Refused on the headers alone: the body is never read.
        Err(e) => (e.label(&endpoint), e.into_response()),
        Ok(table) => {
            let resp = match axum::body::to_bytes(body, router.max_body_bytes).await {
                Ok(body) => match router
                    .route(
                        &table,
                        &endpoint,
                        &headers,
                        body,
                        std::pin::pin!(request_timer()),
                    )
                    .await
                {
                    Ok((answer, name)) => {
                        ok = answer.ok.clone();
                        respond(answer, &name)
                    }
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
    router.count(label, deployment, resp.status(), ok);
    resp
}
