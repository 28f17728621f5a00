//! The scoring listener over real sockets (`listen::serve_scoring`): plain HTTP/1.1 scoring
//! requests on the router's own path, kept alive, with everything else handed to the general
//! server on the same connection; replicas reached over the router's own kept-alive
//! connections, including replicas that answer in chunks or close idle connections.

#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::routing::post;
use berth_core::spec::deployment::RequestSettings;
use berth_core::spec::endpoint::TrafficSplit;
use berth_router::listen::{Limits, serve_scoring};
use berth_router::{DeploymentRoute, EndpointRoute, InferenceRouter, RouteAuth};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const SETTINGS: RequestSettings = RequestSettings {
    request_timeout_ms: 2000,
    max_concurrent_requests_per_instance: 4,
    max_queue_wait_ms: 500,
};

/// A router for endpoint `ep` (key `k`) with one deployment `d` on `replica`, served on a
/// loopback port by `serve_scoring`; returns its address.
async fn scoring_listener(replica: String) -> String {
    scoring_listener_with(replica, SETTINGS).await
}

async fn scoring_listener_with(replica: String, settings: RequestSettings) -> String {
    let ep = EndpointRoute {
        mirror: None,
        auth: RouteAuth::Keys(vec!["k".into()]),
        traffic: TrafficSplit::parse_cli("d=100").unwrap(),
        deployments: HashMap::from([(
            "d".to_string(),
            DeploymentRoute::new(vec![replica], settings),
        )]),
    };
    let router = InferenceRouter::new();
    router.update(HashMap::from([("ep".to_string(), ep)]));
    let app = Arc::clone(&router).app();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(serve_scoring(
        listener,
        router,
        app,
        None,
        Limits::with_max_connections(64),
        std::future::pending(),
    ));
    addr
}

/// A replica that echoes the body it got with the content type it got, counting connections.
async fn echo_replica() -> (String, Arc<AtomicUsize>) {
    let app = Router::new().route(
        "/score",
        post(|headers: axum::http::HeaderMap, body: Bytes| async move {
            if &body[..] == b"slow" {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            let ct = headers
                .get("content-type")
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default();
            (
                [
                    ("x-replica", "echo".to_string()),
                    ("x-seen-content-type", ct),
                ],
                body,
            )
        }),
    );
    serve_counting(app).await
}

/// Serves `app` on a loopback port, counting the connections it accepts.
async fn serve_counting(app: Router) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let count = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&count);
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            seen.fetch_add(1, Ordering::Relaxed);
            let app = app.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                    let app = app.clone();
                    async move { tower::ServiceExt::oneshot(app, req.map(Body::new)).await }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, count)
}

/// A response read off a kept-alive connection: status, headers (lower-case names), body.
struct Answer {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

async fn read_answer(r: &mut BufReader<TcpStream>) -> Answer {
    let mut line = String::new();
    r.read_line(&mut line).await.unwrap();
    let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    let mut headers = HashMap::new();
    loop {
        let mut h = String::new();
        r.read_line(&mut h).await.unwrap();
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (k, v) = h.split_once(':').unwrap();
        headers.insert(k.to_ascii_lowercase(), v.trim().to_string());
    }
    let len: usize = headers["content-length"].parse().unwrap();
    let mut body = vec![0; len];
    r.read_exact(&mut body).await.unwrap();
    Answer {
        status,
        headers,
        body: String::from_utf8(body).unwrap(),
    }
}

fn score_request(key: &str, body: &str) -> String {
    format!(
        "POST /api/v1/endpoint/ep/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn requests_on_one_kept_alive_connection_reuse_one_replica_connection() {
    let (replica, connections) = echo_replica().await;
    let addr = scoring_listener(replica).await;
    let mut conn = BufReader::new(TcpStream::connect(&addr).await.unwrap());
    for i in 0..20 {
        let body = format!("{{\"i\": {i}}}");
        conn.get_mut()
            .write_all(score_request("k", &body).as_bytes())
            .await
            .unwrap();
        let a = read_answer(&mut conn).await;
        assert_eq!(a.status, 200);
        assert_eq!(a.body, body);
        assert_eq!(a.headers["azureml-model-deployment"], "d");
        assert_eq!(a.headers["x-replica"], "echo");
        assert_eq!(a.headers["x-seen-content-type"], "application/json");
        assert!(a.headers.contains_key("x-berth-upstream-ms"));
        assert!(a.headers.contains_key("date"));
        assert!(!a.headers.contains_key("connection"));
    }
    assert_eq!(connections.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn other_requests_on_the_same_connection_go_to_the_general_server() {
    let (replica, _) = echo_replica().await;
    let addr = scoring_listener(replica).await;
    let mut conn = BufReader::new(TcpStream::connect(&addr).await.unwrap());
    conn.get_mut()
        .write_all(score_request("k", "{}").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_answer(&mut conn).await.status, 200);
    // A chunked scoring request, then the metrics, on the same connection.
    conn.get_mut()
        .write_all(
            b"POST /api/v1/endpoint/ep/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
        )
        .await
        .unwrap();
    let chunked = read_answer(&mut conn).await;
    assert_eq!((chunked.status, chunked.body.as_str()), (200, "{}"));
    conn.get_mut()
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let metrics = read_answer(&mut conn).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .contains(r#"berth_router_requests_total{endpoint="ep",deployment="d",code="200"} 2"#),
        "{}",
        metrics.body
    );
}

#[tokio::test]
async fn a_refused_request_closes_the_connection_without_reading_the_body() {
    let (replica, _) = echo_replica().await;
    let addr = scoring_listener(replica).await;
    for (key, path, status) in [
        ("nope", "/api/v1/endpoint/ep/score", 401),
        ("k", "/api/v1/endpoint/nowhere/score", 404),
    ] {
        let mut conn = BufReader::new(TcpStream::connect(&addr).await.unwrap());
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {key}\r\nContent-Length: 50000000\r\n\r\n"
        );
        conn.get_mut().write_all(head.as_bytes()).await.unwrap();
        conn.get_mut().write_all(&[b' '; 1024]).await.unwrap();
        let a = tokio::time::timeout(Duration::from_secs(10), read_answer(&mut conn))
            .await
            .expect("an answer before the body was sent");
        assert_eq!(a.status, status, "{}", a.body);
        assert_eq!(a.headers["connection"], "close");
        assert!(a.body.contains("\"code\""), "{}", a.body);
    }
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_on_its_length() {
    let (replica, _) = echo_replica().await;
    let addr = scoring_listener(replica).await;
    let mut conn = BufReader::new(TcpStream::connect(&addr).await.unwrap());
    let head = format!(
        "POST /api/v1/endpoint/ep/score HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\nContent-Length: {}\r\n\r\n",
        (100 << 20) + 1
    );
    conn.get_mut().write_all(head.as_bytes()).await.unwrap();
    let a = read_answer(&mut conn).await;
    assert_eq!(a.status, 413);
    assert!(a.body.contains("byte limit"), "{}", a.body);
}

/// Serves `answer` (raw bytes) to every request on every connection, after reading the
/// request's head and body.
async fn raw_replica(answer: &'static str, keep_alive: bool) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut r = BufReader::new(tcp);
                loop {
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if r.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        let lower = line.to_ascii_lowercase();
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; len];
                    r.read_exact(&mut body).await.unwrap();
                    r.get_mut().write_all(answer.as_bytes()).await.unwrap();
                    if !keep_alive {
                        // Closed once the answer is out, as an idle timeout would.
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_chunked_answer_is_relayed_whole() {
    let replica = raw_replica(
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\n[1,\r\n2\r\n2,\r\n2\r\n3]\r\n0\r\n\r\n",
        true,
    )
    .await;
    let addr = scoring_listener(replica).await;
    let mut conn = BufReader::new(TcpStream::connect(&addr).await.unwrap());
    for _ in 0..3 {
        conn.get_mut()
            .write_all(score_request("k", "{}").as_bytes())
            .await
            .unwrap();
        let a = read_answer(&mut conn).await;
        assert_eq!((a.status, a.body.as_str()), (200, "[1,2,3]"));
        assert!(!a.headers.contains_key("transfer-encoding"));
    }
}

#[tokio::test]
async fn a_replica_connection_closed_while_idle_is_replaced_not_failed() {
    // Each connection carries one answer and is then closed without a word: the router's
    // next request on it finds it gone and goes again on a new one.
    let replica = raw_replica("HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\n[ok]", false).await;
    let addr = scoring_listener(replica).await;
    let mut conn = BufReader::new(TcpStream::connect(&addr).await.unwrap());
    for _ in 0..10 {
        conn.get_mut()
            .write_all(score_request("k", "{}").as_bytes())
            .await
            .unwrap();
        let a = read_answer(&mut conn).await;
        assert_eq!((a.status, a.body.as_str()), (200, "[ok]"));
    }
}

#[tokio::test]
async fn a_slow_answer_times_out_and_the_connection_serves_the_next_request() {
    let (replica, _) = echo_replica().await;
    let settings = RequestSettings {
        request_timeout_ms: 200,
        ..SETTINGS
    };
    let addr = scoring_listener_with(replica, settings).await;
    let mut conn = BufReader::new(TcpStream::connect(&addr).await.unwrap());
    // The request timer is shared by the connection's requests: it fires, is armed again, and
    // a request that does not take long is not cut short by an earlier deadline.
    for (body, status) in [("slow", 504), ("{}", 200), ("slow", 504), ("{}", 200)] {
        conn.get_mut()
            .write_all(score_request("k", body).as_bytes())
            .await
            .unwrap();
        let a = read_answer(&mut conn).await;
        assert_eq!(a.status, status, "{}", a.body);
        if status == 504 {
            assert!(a.body.contains("request_timeout_ms (200 ms)"), "{}", a.body);
        }
    }
}
