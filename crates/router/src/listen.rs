//! Serving a listener so that no client can hold it: at most `max_connections` at once (the
//! others are closed as they arrive), a TLS handshake and a request's headers each within
//! `handshake_timeout`/`header_timeout`, and a connection with nothing in flight closed after
//! `idle_timeout`. A response being streamed (a followed log) keeps its connection open.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::tls::ServerTls;

/// How long and how many: what one listener allows its clients.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// Time to send a request's headers once the connection waits for them.
    pub header_timeout: Duration,
    /// Time a connection may stay open with no request or response in flight.
    pub idle_timeout: Duration,
    /// Time to finish the TLS handshake.
    pub handshake_timeout: Duration,
}

impl Limits {
    /// `max_connections` with the default timeouts (10 s for headers and handshakes, 60 s
    /// idle, as nginx's keep-alive is 75 s and a load balancer's about 60 s).
    pub fn with_max_connections(max_connections: usize) -> Self {
        Limits {
            max_connections,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Raises this process's soft limit on open files to its hard limit; returns the limit now
/// in force (what connection caps are carved from).
pub fn raise_open_files_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if limit.current < limit.maximum {
        limit.current = limit.maximum;
        let _ = setrlimit(Resource::Nofile, limit);
    }
    getrlimit(Resource::Nofile).current.unwrap_or(u64::MAX)
}

/// Connection caps for a server with an API and a scoring listener, from the open-files
/// limit: 256 descriptors are kept for files, jobs and the store; of the rest the scoring
/// listener gets three quarters and the API a quarter, so neither can starve the other.
pub fn split_open_files(open_files: u64) -> (usize, usize) {
    let spare = open_files.saturating_sub(256).min(1 << 20) as usize;
    let api = (spare / 4).max(16);
    let scoring = (spare - spare / 4).max(16);
    (api, scoring)
}

/// Serves `app` on `listener` (over TLS when `tls` is given) within `limits`, until
/// `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<ServerTls>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    accept(listener, limits, shutdown, move |tcp| {
        let (app, acceptor) = (app.clone(), acceptor.clone());
        async move { plain_or_tls(tcp, app, acceptor, limits).await }
    })
    .await
}

/// Serves a scoring listener: `app` with `router`'s scoring route, whose plain HTTP/1.1
/// requests take the router's own path (TLS connections are served by `app` alone).
pub async fn serve_scoring(
    listener: TcpListener,
    router: Arc<crate::InferenceRouter>,
    app: Router,
    tls: Option<ServerTls>,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
) {
    let acceptor = tls.map(TlsAcceptor::from);
    accept(listener, limits, shutdown, move |tcp| {
        let (app, acceptor, router) = (app.clone(), acceptor.clone(), Arc::clone(&router));
        async move {
            match acceptor {
                None => crate::fast::connection(tcp, router, app, limits).await,
                Some(_) => plain_or_tls(tcp, app, acceptor, limits).await,
            }
        }
    })
    .await
}

async fn plain_or_tls(tcp: TcpStream, app: Router, acceptor: Option<TlsAcceptor>, limits: Limits) {
    match acceptor {
        None => connection(tcp, app, limits).await,
        Some(acceptor) => {
            let handshake = acceptor.accept(tcp);
            if let Ok(Ok(tls)) = tokio::time::timeout(limits.handshake_timeout, handshake).await {
                connection(tls, app, limits).await;
            }
        }
    }
}

/// Accepts connections until `shutdown`, at most `limits.max_connections` at once, each
/// served by `serve_one` in a task of its own.
async fn accept<F, Fut>(
    listener: TcpListener,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    serve_one: F,
) where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut refused = 0u64;
    tokio::pin!(shutdown);
    loop {
        let tcp = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    // Out of descriptors or similar: wait a moment instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut shutdown => return,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            refused += 1;
            if refused.is_power_of_two() {
                tracing::warn!(
                    max = limits.max_connections,
                    refused,
                    "connection limit reached; closing new connections"
                );
            }
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let served = serve_one(tcp);
        tokio::spawn(async move {
            let _slot = slot;
            served.await;
        });
    }
}

/// What a connection has in flight, and when that last changed.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    since_ms: AtomicU64,
    epoch: std::sync::OnceLock<Instant>,
}

impl Activity {
    fn now_ms(&self) -> u64 {
        self.epoch.get_or_init(Instant::now).elapsed().as_millis() as u64
    }

    fn touch(&self) {
        self.since_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// How long the connection has had nothing in flight (zero while something is).
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        Duration::from_millis(
            self.now_ms()
                .saturating_sub(self.since_ms.load(Ordering::Relaxed)),
        )
    }

    fn start(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InFlight(Arc::clone(self))
    }
}

/// A request or its response body in flight; done when dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A response body that keeps its request in flight until it is sent or dropped.
struct Tracked {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pub(crate) async fn connection<I>(io: I, app: Router, limits: Limits)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::default());
    activity.touch();
    let seen = Arc::clone(&activity);
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let in_flight = seen.start();
        let app = app.clone();
        async move {
            let resp = tower_service::Service::call(&mut app.clone(), req.map(Body::new)).await;
            resp.map(|r| {
                r.map(|inner| {
                    Body::new(Tracked {
                        inner,
                        _in_flight: in_flight,
                    })
                })
            })
        }
    });
    let mut builder = Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(limits.idle_timeout / 2)
        .keep_alive_timeout(limits.header_timeout);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    let tick = (limits.idle_timeout / 4).max(Duration::from_millis(10));
    let mut closing = false;
    loop {
        tokio::select! {
            _ = conn.as_mut() => return,
            _ = tokio::time::sleep(tick) => {}
        }
        let idle = activity.idle_for();
        if idle >= limits.idle_timeout && !closing {
            conn.as_mut().graceful_shutdown();
            closing = true;
        } else if closing && idle >= limits.idle_timeout + limits.header_timeout {
            // Nothing in flight and the client did not close: drop it.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_api_keeps_a_quarter_of_the_open_files() {
        assert_eq!(split_open_files(1024), (192, 576));
        assert_eq!(split_open_files(100), (16, 16));
    }
}
