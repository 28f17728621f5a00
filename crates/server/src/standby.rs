//! What a standby serves while it waits for the leader lease: every API request goes on to the
//! leader as it came (reads and writes, streams and long polls included), so that a client or
//! a router pointed at any of the servers is answered. When the leader does not answer (it just
//! died, and this standby takes over once its lease lapses), or cannot be reached from here,
//! the answer is a 503 `NotLeader` that says so, and nothing was done. When the leader took the
//! request and then did not answer, it is a 502 `LeaderLost`: it may have been acted on.
//!
//! The API listener is bound before the lease is won and serves through an [`AppSwitch`]: the
//! standby's forwarding app first, the server's own app from the moment it leads.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Uri, header};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tower::ServiceExt;

use crate::error::ApiError;

/// Marks a request a standby forwarded: a second standby does not forward it again.
pub const FORWARDED: &str = "x-berth-forwarded";

/// How long a forwarded request may wait for the head of the leader's answer: longer than the
/// routes' long poll (30 s).
const ANSWER_WITHIN: Duration = Duration::from_secs(40);

/// The router the API listener serves, swapped when the server starts to lead.
#[derive(Clone)]
pub struct AppSwitch(Arc<RwLock<Router>>);

impl AppSwitch {
    /// A switch serving `first`.
    pub fn new(first: Router) -> AppSwitch {
        AppSwitch(Arc::new(RwLock::new(first)))
    }

    /// Serves `next` from now on (requests under way finish where they started).
    pub fn set(&self, next: Router) {
        if let Ok(mut cur) = self.0.write() {
            *cur = next;
        }
    }

    /// The router to serve: it hands each request to the current one.
    pub fn router(&self) -> Router {
        let me = self.clone();
        Router::new().fallback(move |req: Request| {
            let current = me.0.read().map(|r| r.clone()).map_err(|_| ());
            async move {
                match current {
                    Ok(app) => app.oneshot(req).await.into_response(),
                    Err(_) => {
                        ApiError::Internal("the API switch is poisoned".into()).into_response()
                    }
                }
            }
        })
    }
}

/// What answers before the server leads or knows whether it will: 503, starting.
pub fn starting() -> Router {
    Router::new().fallback(|| async {
        ApiError::NotLeader("this server is starting; send the request again in a moment".into())
    })
}

/// The standby's app: forwards every request to the leader whose API URL `leader` holds
/// (empty while none is known).
pub fn app(leader: watch::Receiver<String>) -> Router {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(Duration::from_secs(3)));
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Body> =
        Client::builder(TokioExecutor::new()).build(connector);
    Router::new().fallback(move |req: Request| {
        let (client, leader) = (client.clone(), leader.borrow().clone());
        async move {
            forward(&client, &leader, req)
                .await
                .unwrap_or_else(IntoResponse::into_response)
        }
    })
}

/// Headers that belong to one connection, not to the request or answer.
const HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    header::HOST,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

async fn forward(
    client: &Client<HttpConnector, Body>,
    leader: &str,
    mut req: Request,
) -> Result<Response, ApiError> {
    if req.headers().contains_key(FORWARDED) {
        return Err(ApiError::NotLeader(
            "this server is a standby, and so is the one that forwarded the request here: no server leads yet; send it again in a few seconds".into(),
        ));
    }
    if leader.is_empty() {
        return Err(ApiError::NotLeader(
            "this server is a standby and no server leads on its database yet; send the request again in a few seconds".into(),
        ));
    }
    if !leader.starts_with("http://") {
        return Err(ApiError::NotLeader(format!(
            "this server is a standby; it forwards only to a plain-HTTP leader, and the leader's API is {leader}: send the request there"
        )));
    }
    let path = req
        .uri()
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_string();
    let uri: Uri = format!("{}{path}", leader.trim_end_matches('/'))
        .parse()
        .map_err(|e| {
            ApiError::NotLeader(format!(
                "this server is a standby; the leader's API URL `{leader}` is not usable ({e})"
            ))
        })?;
    *req.uri_mut() = uri;
    // The leader is reached over HTTP/1.1, whatever the client spoke to this standby.
    *req.version_mut() = axum::http::Version::HTTP_11;
    let headers = req.headers_mut();
    for h in HOP_BY_HOP {
        headers.remove(h);
    }
    headers.insert(FORWARDED, HeaderValue::from_static("standby"));
    let unreachable = |why: String| {
        ApiError::NotLeader(format!(
            "this server is a standby, and the leader at {leader} does not answer ({why}); if it died, this standby takes over once its lease lapses, within {} s: send the request again then",
            crate::leadership::LEASE_MS / 1000
        ))
    };
    // Once the request may have reached the leader, it may have been acted on: say so rather
    // than invite the client to send it again elsewhere.
    let lost = |why: String| {
        ApiError::LeaderLost(format!(
            "this server is a standby; the leader at {leader} took the request but did not finish answering ({why})"
        ))
    };
    let answer = tokio::time::timeout(ANSWER_WITHIN, client.request(req))
        .await
        .map_err(|_| lost(format!("nothing within {} s", ANSWER_WITHIN.as_secs())))?
        .map_err(|e| {
            if e.is_connect() {
                unreachable(root_cause(&e))
            } else {
                lost(root_cause(&e))
            }
        })?;
    let (mut parts, body) = answer.into_parts();
    for h in [header::CONNECTION, header::TRANSFER_ENCODING] {
        parts.headers.remove(h);
    }
    Ok(Response::from_parts(parts, Body::new(body)))
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

#[cfg(test)]
#[path = "standby_tests.rs"]
mod tests;
