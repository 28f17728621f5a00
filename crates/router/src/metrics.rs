//! The router's Prometheus metrics: requests by endpoint, deployment and status; latency split
//! into queue wait and upstream time; requests in flight; ready replicas.

use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Endpoint and deployment.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeploymentLabels {
    /// Endpoint.
    pub endpoint: String,
    /// Deployment (empty when none was chosen).
    pub deployment: String,
}

/// Endpoint, deployment and HTTP status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Endpoint.
    pub endpoint: String,
    /// Deployment.
    pub deployment: String,
    /// HTTP status code.
    pub code: u16,
}

fn latency() -> Histogram {
    // 50 µs to ~26 s.
    Histogram::new(exponential_buckets(0.00005, 2.0, 20))
}

/// Endpoint, deployment and direction of a scaling decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ScaleLabels {
    /// Endpoint.
    pub endpoint: String,
    /// Deployment.
    pub deployment: String,
    /// `out` or `in`.
    pub direction: String,
}

/// One deployment's metric handles, looked up once per route-table update, not per request.
#[derive(Clone, Debug)]
pub struct DeploymentMetrics {
    /// Requests holding or waiting for a slot.
    pub in_flight: Gauge,
    /// Queue wait.
    pub queue_wait: Histogram,
    /// Upstream time.
    pub upstream: Histogram,
    /// Requests answered 200.
    pub ok: Counter,
}

/// Every router metric.
pub struct RouterMetrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    queue_wait: Family<DeploymentLabels, Histogram, fn() -> Histogram>,
    upstream: Family<DeploymentLabels, Histogram, fn() -> Histogram>,
    in_flight: Family<DeploymentLabels, Gauge>,
    replicas: Family<DeploymentLabels, Gauge>,
    scale: Family<ScaleLabels, Counter>,
}

impl Default for RouterMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("berth_router");
        let requests = Family::<RequestLabels, Counter>::default();
        let queue_wait =
            Family::<DeploymentLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        let upstream =
            Family::<DeploymentLabels, Histogram, fn() -> Histogram>::new_with_constructor(latency);
        let in_flight = Family::<DeploymentLabels, Gauge>::default();
        let replicas = Family::<DeploymentLabels, Gauge>::default();
        registry.register(
            "requests",
            "Scoring requests by endpoint, deployment and status",
            requests.clone(),
        );
        registry.register(
            "queue_wait_seconds",
            "Time spent waiting for a replica slot",
            queue_wait.clone(),
        );
        registry.register(
            "upstream_seconds",
            "Time the replica took to answer",
            upstream.clone(),
        );
        registry.register(
            "in_flight",
            "Requests holding or waiting for a slot",
            in_flight.clone(),
        );
        registry.register(
            "ready_replicas",
            "Ready replicas per deployment",
            replicas.clone(),
        );
        let scale = Family::<ScaleLabels, Counter>::default();
        registry.register(
            "autoscale_decisions",
            "Autoscaler decisions by direction",
            scale.clone(),
        );
        RouterMetrics {
            registry: Mutex::new(registry),
            requests,
            queue_wait,
            upstream,
            in_flight,
            replicas,
            scale,
        }
    }
}

impl RouterMetrics {
    /// Counts a finished request.
    pub fn request(&self, endpoint: &str, deployment: &str, code: u16) {
        self.requests
            .get_or_create(&RequestLabels {
                endpoint: endpoint.into(),
                deployment: deployment.into(),
                code,
            })
            .inc();
    }

    /// Records how long a request waited and how long the replica took.
    pub fn timing(&self, endpoint: &str, deployment: &str, queue: Duration, upstream: Duration) {
        let l = DeploymentLabels {
            endpoint: endpoint.into(),
            deployment: deployment.into(),
        };
        self.queue_wait
            .get_or_create(&l)
            .observe(queue.as_secs_f64());
        self.upstream
            .get_or_create(&l)
            .observe(upstream.as_secs_f64());
    }

    /// The in-flight gauge of a deployment.
    pub fn in_flight(&self, endpoint: &str, deployment: &str) -> Gauge {
        self.in_flight
            .get_or_create(&DeploymentLabels {
                endpoint: endpoint.into(),
                deployment: deployment.into(),
            })
            .clone()
    }

    /// The handles of one deployment.
    pub fn deployment(&self, endpoint: &str, deployment: &str) -> DeploymentMetrics {
        let l = DeploymentLabels {
            endpoint: endpoint.into(),
            deployment: deployment.into(),
        };
        let ok = RequestLabels {
            endpoint: endpoint.into(),
            deployment: deployment.into(),
            code: 200,
        };
        DeploymentMetrics {
            in_flight: self.in_flight.get_or_create(&l).clone(),
            queue_wait: self.queue_wait.get_or_create(&l).clone(),
            upstream: self.upstream.get_or_create(&l).clone(),
            ok: self.requests.get_or_create(&ok).clone(),
        }
    }

    /// Counts an autoscaler decision.
    pub fn scaled(&self, endpoint: &str, deployment: &str, out: bool) {
        let direction = if out { "out" } else { "in" };
        self.scale
            .get_or_create(&ScaleLabels {
                endpoint: endpoint.into(),
                deployment: deployment.into(),
                direction: direction.into(),
            })
            .inc();
    }

    /// Sets a deployment's ready replicas.
    pub fn set_replicas(&self, endpoint: &str, deployment: &str, n: usize) {
        self.replicas
            .get_or_create(&DeploymentLabels {
                endpoint: endpoint.into(),
                deployment: deployment.into(),
            })
            .set(n as i64);
    }

    /// Registers more metrics (the server's) in the same registry.
    pub fn register(
        &self,
        name: &str,
        help: &str,
        metric: impl prometheus_client::registry::Metric,
    ) {
        if let Ok(mut r) = self.registry.lock() {
            r.register(name, help, metric);
        }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Ok(r) = self.registry.lock() {
            let _ = prometheus_client::encoding::text::encode(&mut out, &r);
        }
        out
    }
}
