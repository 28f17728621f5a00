//! The router against real backends on port 0: auth, split, pinning, 429/502/503/504, retry.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::routing::post;
use berth_core::spec::deployment::RequestSettings;
use berth_core::spec::endpoint::TrafficSplit;
use berth_router::{DeploymentRoute, EndpointRoute, InferenceRouter, RouteAuth};
use http_body_util::BodyExt;
use tower::ServiceExt;

/// A backend that answers its name; `{"sleep_ms": n}` delays, `{"fail": true}` acts like a
/// failing score.py.
async fn backend(name: &'static str) -> String {
    let app = Router::new().route(
        "/score",
        post(move |body: Bytes| async move {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            if let Some(ms) = v["sleep_ms"].as_u64() {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if v["fail"].as_bool() == Some(true) {
                let mut h = HeaderMap::new();
                h.insert("x-ms-run-function-failed", "True".parse().unwrap());
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    h,
                    "run() failed: ValueError: boom".to_string(),
                );
            }
            (StatusCode::OK, HeaderMap::new(), format!("\"{name}\""))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

fn settings(slots: u32, wait_ms: u64, timeout_ms: u64) -> RequestSettings {
    RequestSettings {
        request_timeout_ms: timeout_ms,
        max_concurrent_requests_per_instance: slots,
        max_queue_wait_ms: wait_ms,
    }
}

async fn setup(traffic: &str, s: RequestSettings) -> (Arc<InferenceRouter>, Router) {
    let blue = backend("blue").await;
    let green = backend("green").await;
    let deployments = HashMap::from([
        ("blue".to_string(), DeploymentRoute::new(vec![blue], s)),
        ("green".to_string(), DeploymentRoute::new(vec![green], s)),
        ("empty".to_string(), DeploymentRoute::new(vec![], s)),
    ]);
    let ep = EndpointRoute {
        mirror: None,
        auth: RouteAuth::Keys(vec!["k1".into(), "k2".into()]),
        traffic: TrafficSplit::parse_cli(traffic).unwrap(),
        deployments,
    };
    let router = InferenceRouter::new();
    router.update(HashMap::from([("ep".to_string(), ep)]));
    let app = Arc::clone(&router).app();
    (router, app)
}

async fn score(app: &Router, key: &str, pin: Option<&str>, body: &str) -> (StatusCode, String) {
    let mut req = Request::post("/api/v1/endpoint/ep/score")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json");
    if let Some(p) = pin {
        req = req.header("azureml-model-deployment", p);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

#[tokio::test]
async fn keys_split_and_pinning() {
    let (_, app) = setup("blue=90 green=10", settings(4, 500, 2000)).await;
    assert_eq!(
        score(&app, "nope", None, "{}").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        score(&app, "k2", Some("green"), "{}").await,
        (StatusCode::OK, "\"green\"".into())
    );
    assert_eq!(
        score(&app, "k1", Some("red"), "{}").await.0,
        StatusCode::NOT_FOUND
    );
    let mut green = 0;
    for _ in 0..200 {
        let (s, b) = score(&app, "k1", None, "{}").await;
        assert_eq!(s, StatusCode::OK);
        green += usize::from(b.contains("green"));
    }
    assert!((5..=45).contains(&green), "green got {green} of 200 at 10%");
    let req = Request::get("/metrics").body(Body::empty()).unwrap();
    let bytes = app
        .clone()
        .oneshot(req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let metrics = String::from_utf8_lossy(&bytes).into_owned();
    assert!(
        metrics.contains(
            r#"berth_router_requests_total{endpoint="ep",deployment="green",code="200"}"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("berth_router_upstream_seconds_bucket"),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"berth_router_ready_replicas{endpoint="ep",deployment="blue"} 1"#),
        "{metrics}"
    );
    let req = Request::post("/api/v1/endpoint/other/score")
        .header("authorization", "Bearer k1")
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        app.clone().oneshot(req).await.unwrap().status(),
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn no_traffic_no_replica_and_script_failure() {
    let (_, app) = setup("blue=0", settings(1, 100, 2000)).await;
    let (s, b) = score(&app, "k1", None, "{}").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert!(b.contains("no deployment with traffic"), "{b}");
    let (s, b) = score(&app, "k1", Some("empty"), "{}").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    assert!(b.contains("no ready replica"), "{b}");
    let (s, b) = score(&app, "k1", Some("blue"), r#"{"fail": true}"#).await;
    assert_eq!(s, StatusCode::BAD_GATEWAY);
    assert!(b.contains("ValueError: boom"), "{b}");
}

#[tokio::test]
async fn full_slots_give_429_and_slow_answers_504() {
    let (router, app) = setup("blue=100", settings(1, 100, 300)).await;
    let slow = {
        let app = app.clone();
        tokio::spawn(async move { score(&app, "k1", None, r#"{"sleep_ms": 250}"#).await })
    };
    // Wait until the slow request holds the only slot.
    while router.utilization("ep", "blue") != Some(1.0) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let (s, b) = score(&app, "k1", None, "{}").await;
    assert_eq!(s, StatusCode::TOO_MANY_REQUESTS, "{b}");
    assert_eq!(slow.await.unwrap().0, StatusCode::OK);
    let (s, b) = score(&app, "k1", None, r#"{"sleep_ms": 1000}"#).await;
    assert_eq!(s, StatusCode::GATEWAY_TIMEOUT, "{b}");
}

#[tokio::test]
async fn a_refused_connection_is_retried_on_another_replica() {
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let live = backend("live").await;
    let s = settings(1, 100, 2000);
    let ep = EndpointRoute {
        mirror: None,
        auth: RouteAuth::Keys(vec!["k".into()]),
        traffic: TrafficSplit::parse_cli("d=100").unwrap(),
        deployments: HashMap::from([("d".to_string(), DeploymentRoute::new(vec![dead, live], s))]),
    };
    let router = InferenceRouter::new();
    router.update(HashMap::from([("ep".to_string(), ep)]));
    let app = router.app();
    for _ in 0..5 {
        assert_eq!(
            score(&app, "k", None, "{}").await,
            (StatusCode::OK, "\"live\"".into())
        );
    }
}

#[tokio::test]
async fn serves_http2_with_prior_knowledge() {
    let (_, app) = setup("blue=100", settings(4, 500, 2000)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .http2_only(true)
        .build_http::<http_body_util::Full<Bytes>>();
    let req = hyper::Request::post(format!("http://{addr}/api/v1/endpoint/ep/score"))
        .header("authorization", "Bearer k1")
        .body(http_body_util::Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.version(), hyper::Version::HTTP_2);
    assert_eq!(resp.status(), StatusCode::OK);
}

#[tokio::test]
async fn mirror_traffic_copies_a_share_and_discards_the_answers() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&seen);
    let shadow = Router::new().route(
        "/score",
        post(move || {
            let counter = Arc::clone(&counter);
            async move {
                counter.fetch_add(1, Ordering::Relaxed);
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "shadow answers are dropped",
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shadow_addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, shadow).await });
    let live = backend("live").await;
    let s = settings(4, 500, 2000);
    let ep = EndpointRoute {
        mirror: Some(("shadow".into(), 50)),
        auth: RouteAuth::Keys(vec!["k".into()]),
        traffic: TrafficSplit::parse_cli("live=100").unwrap(),
        deployments: HashMap::from([
            ("live".to_string(), DeploymentRoute::new(vec![live], s)),
            (
                "shadow".to_string(),
                DeploymentRoute::new(vec![shadow_addr], s),
            ),
        ]),
    };
    let router = InferenceRouter::new();
    router.update(HashMap::from([("ep".to_string(), ep)]));
    let app = router.app();
    for _ in 0..200 {
        assert_eq!(
            score(&app, "k", None, "{}").await,
            (StatusCode::OK, "\"live\"".into())
        );
    }
    // Pinned requests are never mirrored.
    for _ in 0..50 {
        assert_eq!(score(&app, "k", Some("live"), "{}").await.0, StatusCode::OK);
    }
    // Mirrored copies finish in the background.
    for _ in 0..2000 {
        if seen.load(Ordering::Relaxed) >= 60 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let n = seen.load(Ordering::Relaxed);
    assert!((60..=140).contains(&n), "the shadow got {n} of 200 at 50%");
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_with_a_reason() {
    let (_, app) = setup("blue=100", settings(4, 500, 2000)).await;
    let big = "x".repeat((100 << 20) + 1);
    let (status, body) = score(&app, "k1", None, &big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(
        body.contains("BadRequestBody") && body.contains("could not be read"),
        "{body}"
    );
}

/// Serves `app` on a loopback port; returns its address.
async fn serve(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

/// Announces a 50 MB body, sends 1 KB of it, and reads the answer: a request refused on its
/// headers is answered without the rest of the body ever being sent.
async fn answer_before_body(addr: &str, path: &str, key: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: 50000000\r\n\r\n"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&[b' '; 1024]).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(10), conn.read(&mut buf))
        .await
        .expect("an answer before the body was sent")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn a_refused_request_is_answered_before_its_body_is_read() {
    let (_, app) = setup("blue=100", settings(4, 500, 2000)).await;
    let addr = serve(app).await;
    let wrong_key = answer_before_body(&addr, "/api/v1/endpoint/ep/score", "nope").await;
    assert!(wrong_key.starts_with("HTTP/1.1 401"), "{wrong_key}");
    let no_endpoint = answer_before_body(&addr, "/api/v1/endpoint/nowhere/score", "k1").await;
    assert!(no_endpoint.starts_with("HTTP/1.1 404"), "{no_endpoint}");
}

#[tokio::test]
async fn unknown_endpoints_share_one_metrics_label() {
    let (_, app) = setup("blue=100", settings(4, 500, 2000)).await;
    for i in 0..30 {
        let req = Request::post(format!("/api/v1/endpoint/probe-{i}/score"))
            .header("authorization", "Bearer x")
            .body(Body::from("{}"))
            .unwrap();
        let resp = app.clone().oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    }
    let req = Request::get("/metrics").body(Body::empty()).unwrap();
    let bytes = app
        .clone()
        .oneshot(req)
        .await
        .unwrap()
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let metrics = String::from_utf8_lossy(&bytes);
    assert!(!metrics.contains("probe-"), "{metrics}");
    assert!(metrics.contains("(unknown)"), "{metrics}");
}
