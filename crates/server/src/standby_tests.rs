//! The standby's forwarding, against a stand-in leader on port 0.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::StatusCode;
use axum::routing::any;
use tower::ServiceExt;

use super::*;

/// A leader that answers with what it got: method, path and query, whether it was marked
/// forwarded, and the body.
async fn echo_leader() -> String {
    let app = Router::new().fallback(any(|req: Request| async move {
        let (parts, body) = req.into_parts();
        let body = to_bytes(body, 1 << 20).await.unwrap_or_default();
        format!(
            "{} {} forwarded={} {}",
            parts.method,
            parts.uri,
            parts.headers.contains_key(FORWARDED),
            String::from_utf8_lossy(&body)
        )
    }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn send(app: Router, req: Request) -> (StatusCode, String) {
    let answer = app.oneshot(req).await.unwrap();
    let status = answer.status();
    let body = to_bytes(answer.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned())
}

fn post(path: &str, body: &str) -> Request {
    Request::post(path)
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn a_request_goes_on_to_the_leader_as_it_came() {
    let (_tx, rx) = watch::channel(echo_leader().await);
    let (status, body) = send(app(rx), post("/api/jobs?x=1", "{\"a\":1}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "POST /api/jobs?x=1 forwarded=true {\"a\":1}");
}

#[tokio::test]
async fn a_leader_that_does_not_answer_is_a_clear_503() {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let (_tx, rx) = watch::channel(format!("http://{closed}"));
    let (status, body) = send(app(rx), post("/api/jobs", "{}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("NotLeader"), "{body}");
    assert!(
        body.contains(&format!("the leader at http://{closed} does not answer"))
            && body.contains("takes over once its lease lapses"),
        "{body}"
    );
}

#[tokio::test]
async fn a_leader_that_took_the_request_and_did_not_answer_may_have_acted_on_it() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Reads the request, then closes without an answer (a leader dying mid-request).
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (mut conn, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = conn.read(&mut buf).await;
    });
    let (_tx, rx) = watch::channel(format!("http://{addr}"));
    let (status, body) = send(app(rx), post("/api/jobs", "{}")).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert!(
        body.contains("LeaderLost") && body.contains("may have been acted on"),
        "{body}"
    );
}

#[tokio::test]
async fn a_request_another_standby_forwarded_is_not_forwarded_again() {
    let (_tx, rx) = watch::channel(echo_leader().await);
    let mut req = post("/api/jobs", "{}");
    req.headers_mut()
        .insert(FORWARDED, HeaderValue::from_static("standby"));
    let (status, body) = send(app(rx), req).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("no server leads yet"), "{body}");
}

#[tokio::test]
async fn with_no_leader_known_the_answer_says_so() {
    let (_tx, rx) = watch::channel(String::new());
    let (status, body) = send(app(rx), post("/api/jobs", "{}")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        body.contains("no server leads on its database yet"),
        "{body}"
    );
}

#[tokio::test]
async fn the_leader_is_followed_when_it_changes() {
    let (tx, rx) = watch::channel(String::new());
    let standby = app(rx);
    tx.send_replace(echo_leader().await);
    let (status, body) = send(standby, post("/api/health", "")).await;
    assert_eq!(
        (status, body.starts_with("POST /api/health")),
        (StatusCode::OK, true)
    );
}

#[tokio::test]
async fn the_switch_serves_the_new_app_from_when_it_is_set() {
    let switch = AppSwitch::new(starting());
    let (status, _) = send(switch.router(), post("/api/jobs", "")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    switch.set(Router::new().fallback(|| async { "leading" }));
    let (status, body) = send(switch.router(), post("/api/jobs", "")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "leading"));
}
