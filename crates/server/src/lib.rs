//! Berth's control plane: the REST API (axum, thin handlers over services), its configuration
//! and the wiring of store, job manager and backend. `app` builds the router so tests run it
//! in-process; `run` binds, recovers unfinished jobs and serves until SIGTERM or Ctrl-C.

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
mod home_lock;
pub mod leadership;
mod local;
pub mod mlflow;
pub mod monitor;
pub mod openapi;
pub mod services;
pub mod standby;
pub mod studio;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::get;
use axum::{Json, Router};
use berth_router::listen::Limits;
use berth_scheduler::backend::dispatch::Backends;
use berth_scheduler::backend::local::LocalBackend;
use berth_scheduler::manager::JobManager;
use berth_store::Store;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tracing::info;

pub use config::ServerConfig;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Durable state.
    pub store: Store,
    /// The job manager.
    pub jobs: Arc<JobManager<Backends>>,
    /// The API token.
    pub token: Arc<str>,
    /// What standalone routers present: it opens `GET /api/routes` only.
    pub router_token: Arc<str>,
    /// `$BERTH_HOME`.
    pub home: Arc<PathBuf>,
    /// GPU UUIDs of this machine's local compute.
    pub gpus: Arc<[String]>,
    /// The inference router serving the scoring listener.
    pub router: Arc<berth_router::InferenceRouter>,
    /// Online deployments' replicas, on this machine and on clusters, and the controller that
    /// records how their revisions go.
    pub serving: Arc<berth_scheduler::serving::controller::Controller>,
    /// Base URL of the scoring listener.
    pub scoring_url: Arc<str>,
    /// Base URL of the API as this machine's jobs reach it (`MLFLOW_TRACKING_URI`).
    pub api_url: Arc<str>,
    /// The server's signing secret: never published; each `aml_token` endpoint's key and the
    /// revision file key are derived from it (`auth`).
    pub token_secret: Arc<str>,
    /// The routes published to routers (`GET /api/routes`), with their version.
    pub routes: Arc<tokio::sync::watch::Sender<Arc<berth_core::serving::RoutesDoc>>>,
    /// Built Python environments (`$BERTH_HOME/envs`), shared by jobs and replicas.
    pub envs: Arc<berth_scheduler::envs::EnvCache>,
    /// Where the routes stand against the store (`services::routes`).
    pub route_feed: Arc<services::routes::RouteFeed>,
    /// Where local jobs' cgroups are (the monitor reads their use).
    pub cgroups: Arc<berth_scheduler::cgroup::Hierarchies>,
    /// Each running local job's latest `system/*` sample, for `/metrics`.
    pub job_usage: Arc<monitor::LatestUsage>,
    /// How local jobs are contained (cgroups) and isolated (sandbox), for `compute show`.
    pub local_isolation: Arc<[String]>,
    /// The attached Kubernetes clusters, by compute.
    #[cfg(feature = "kubernetes")]
    pub clusters: Arc<berth_scheduler::backend::kubernetes::cluster::Clusters>,
}

/// What `$BERTH_HOME/server.json` holds, so the CLI and scripts find a running server.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ServerInfo {
    /// Base URL of the API.
    pub api_url: String,
    /// Base URL of the scoring (inference) listener.
    pub scoring_url: String,
    /// File holding the bearer token.
    pub token_file: String,
    /// The server's pid.
    pub pid: u32,
    /// Berth's version.
    pub version: String,
}

/// Why the server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The home folder is unusable.
    #[error("cannot use {path} as BERTH_HOME: {source}")]
    Home {
        /// Folder.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Another server holds the home folder.
    #[error(
        "another berth server is already using {0}; stop it, or start this one with another --home"
    )]
    Busy(PathBuf),
    /// An address cannot be bound.
    #[error(
        "cannot listen on {addr}: {source}; pick another address or port (port 0 picks a free one)"
    )]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The store failed to open.
    #[error("cannot open the database: {0}")]
    Store(#[from] berth_store::StoreError),
    /// Recovery failed.
    #[error("cannot recover unfinished jobs: {0}")]
    Recover(String),
    /// The scoring listener would be plain HTTP on a non-loopback address.
    #[error(
        "the scoring listener {0} is not on loopback and has no TLS: give --scoring-tls-cert and --scoring-tls-key (PEM), or set allow_insecure_connections: true for plain HTTP"
    )]
    InsecureScoring(SocketAddr),
    /// The replicas' socket folder cannot be made private.
    #[error("{0}")]
    Sockets(#[from] berth_scheduler::replicas::socket::SocketDirError),
    /// `--run-as` cannot be used.
    #[error("{0}")]
    RunAs(#[from] berth_scheduler::users::RunAsError),
    /// The API would be plain HTTP on a non-loopback address.
    #[error(
        "the API listener {0} is not on loopback and has no TLS: give --api-tls-cert and --api-tls-key (PEM), or --allow-insecure-api for plain HTTP"
    )]
    InsecureApi(SocketAddr),
    /// The TLS certificate or key is unusable.
    #[error("{0}")]
    Tls(#[from] berth_router::tls::TlsError),
}

/// The whole HTTP application.
pub fn app(state: AppState, max_body_bytes: usize) -> Router {
    use api::documented::{Access, Documented};
    let open = Documented::new(Access::Open)
        .at(
            "get",
            "/api/health",
            "liveness",
            get(|| async { Json(serde_json::json!({"status": "ok"})) }),
        )
        .at(
            "get",
            "/metrics",
            "Prometheus metrics: the router's, and jobs by status",
            get(metrics),
        );
    let limited = api::routes(state.clone())
        .merge(api::router_routes(state.clone()))
        .merge(mlflow::routes())
        .merge(open)
        .map_router(|r| r.layer(DefaultBodyLimit::max(max_body_bytes)));
    let mut all = limited
        .merge(api::pod_routes())
        .merge(mlflow::artifact_routes());
    all.ops.push(api::documented::Op {
        method: "get",
        path: "/api/openapi.json",
        summary: "this document",
        body: None,
        access: Access::Open,
    });
    let document = Arc::new(openapi::document(&all.ops));
    all.router
        .merge(studio::routes())
        .route(
            "/api/openapi.json",
            get(move || {
                let document = Arc::clone(&document);
                async move { Json(document) }
            }),
        )
        .with_state(state)
}

/// Prometheus metrics: the router's, and jobs by status.
async fn metrics(axum::extract::State(state): axum::extract::State<AppState>) -> String {
    let mut out = state.router.metrics.encode();
    let body = out.trim_end().trim_end_matches("# EOF").to_string();
    out = body;
    out.push_str("# HELP berth_jobs Jobs by status.\n# TYPE berth_jobs gauge\n");
    // One aggregate query: a scrape costs the same at ten jobs or ten million.
    let counts = state
        .store
        .count_by_status(berth_store::Kind::Job)
        .await
        .unwrap_or_default();
    for (status, n) in counts {
        out.push_str(&format!("berth_jobs{{status=\"{status}\"}} {n}\n"));
    }
    out.push_str(&state.job_usage.exposition());
    out.push_str("# EOF\n");
    out
}

/// The scoring listener: the inference router, and a JSON 404 for any other path.
fn scoring_app(router: Arc<berth_router::InferenceRouter>) -> Router {
    router.app().fallback(|uri: axum::http::Uri| async move {
        let body = berth_core::api::ErrorBody {
            error: berth_core::api::ErrorDetail {
                code: "EndpointNotFound".into(),
                message: format!("nothing is served at {}", uri.path()),
                hint: Some("scoring URIs look like /api/v1/endpoint/<endpoint>/score; `berth online-endpoint show` prints one".into()),
                position: None,
            },
        };
        (axum::http::StatusCode::NOT_FOUND, Json(body))
    })
}

/// Makes `$BERTH_HOME` if it is missing, readable by its owner only (it holds the API token
/// and the database with endpoint keys), whatever the umask.
fn make_home(home: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    if home.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(home)?;
    std::fs::set_permissions(home, std::fs::Permissions::from_mode(0o700))
}

/// Makes `path` (the database) readable by its owner only, creating it if it is missing;
/// SQLite gives its journal files the same mode.
fn private_file(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
}

pub(crate) fn home_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StartError + '_ {
    move |source| StartError::Home {
        path: path.to_path_buf(),
        source,
    }
}

/// The serving controller over this machine's replicas and the attached clusters; the router's
/// measurements drive its autoscaling, and it tells the server what to do on `events`.
fn serving_controller(
    config: &ServerConfig,
    store: &Store,
    envs: &Arc<berth_scheduler::envs::EnvCache>,
    router: &Arc<berth_router::InferenceRouter>,
    replicas: Arc<berth_scheduler::replicas::Replicas>,
    events: tokio::sync::mpsc::UnboundedSender<berth_scheduler::serving::controller::ServingEvent>,
) -> Arc<berth_scheduler::serving::controller::Controller> {
    let load_router = Arc::clone(router);
    berth_scheduler::serving::controller::Controller::new(
        store.clone(),
        Arc::new(berth_scheduler::serving::ServingBackends {
            local: berth_scheduler::serving::local::LocalServing::new(
                replicas,
                Arc::clone(envs),
                config.runtime.clone(),
            ),
            #[cfg(feature = "kubernetes")]
            kubernetes: Default::default(),
        }),
        events,
        Arc::new(move |endpoint: &str, deployment: &str| load_router.load(endpoint, deployment)),
    )
}

/// What the home holds that the server needs first.
struct OpenedHome {
    token: String,
    signing: String,
    store: Store,
    sockets: PathBuf,
}

/// Makes or opens the home: its token, signing key and store (private), without the leftovers
/// of an earlier server, and the replicas' socket folder.
/// `opened` is a store already open (a leader's, opened to take the lease); else it is opened
/// from `store_url`, or the home's SQLite file.
async fn open_home(
    home: &std::path::Path,
    store_url: Option<&str>,
    opened: Option<Store>,
) -> Result<OpenedHome, StartError> {
    make_home(home).map_err(home_error(home))?;
    std::fs::create_dir_all(home.join("jobs")).map_err(home_error(home))?;
    let token = auth::load_or_create_token(home).map_err(home_error(home))?;
    let signing =
        auth::load_or_create_secret(&home.join("token-signing-key")).map_err(home_error(home))?;
    let store = match (opened, store_url) {
        (Some(store), _) => store,
        (None, Some(url)) => Store::connect(url).await?,
        (None, None) => {
            private_file(&home.join("berth.db")).map_err(home_error(home))?;
            Store::open(&home.join("berth.db")).await?
        }
    };
    services::leftovers::remove(&store, home)
        .await
        .map_err(|e| StartError::Recover(e.to_string()))?;
    let sockets = berth_scheduler::replicas::socket::socket_dir(home)?;
    berth_scheduler::replicas::socket::remove_stale(&sockets);
    services::resources::ensure_local_compute(&store)
        .await
        .map_err(|e| StartError::Recover(e.to_string()))?;
    Ok(OpenedHome {
        token: token.to_string(),
        signing: signing.as_str().to_string(),
        store,
        sockets,
    })
}

/// Builds the state: opens the store, starts the manager, recovers jobs.
pub async fn build_state(
    config: &ServerConfig,
    api_url: &str,
    scoring_url: &str,
) -> Result<AppState, StartError> {
    build_state_on(config, api_url, scoring_url, None).await
}

/// [`build_state`] on a store already open, when there is one.
async fn build_state_on(
    config: &ServerConfig,
    api_url: &str,
    scoring_url: &str,
    store: Option<Store>,
) -> Result<AppState, StartError> {
    // Job folders last changed before this instant and owned by no job were left by an
    // interrupted submission; anything this server makes is newer.
    let started = std::time::SystemTime::now();
    let home = &config.home;
    let OpenedHome {
        token,
        signing,
        store,
        sockets,
    } = open_home(home, config.store.as_deref(), store).await?;
    let (capacity, gpu_ids) = local::local_capacity(config);
    let local::LocalIsolation {
        run_as,
        cgroups,
        lines: local_isolation,
    } = local::local_isolation(config)?;
    let envs = Arc::new(berth_scheduler::envs::EnvCache::new(home.join("envs")));
    #[cfg(feature = "kubernetes")]
    let clusters = Arc::new(berth_scheduler::backend::kubernetes::cluster::Clusters::default());
    #[cfg(feature = "kubernetes")]
    services::clusters::connect_stored(&store, &clusters).await;
    let backends = Backends::new(
        LocalBackend::new(config.supervisor.clone(), Arc::clone(&envs))
            .protecting(home.clone())
            .containing(cgroups.clone())
            .running_as(run_as.clone()),
        #[cfg(feature = "kubernetes")]
        Arc::clone(&clusters),
    );
    let jobs = JobManager::new(store.clone(), backends, capacity, gpu_ids.clone());
    jobs.recover()
        .await
        .map_err(|e| StartError::Recover(e.to_string()))?;
    let router = berth_router::InferenceRouter::new();
    let (events, serving_events) = tokio::sync::mpsc::unbounded_channel();
    let serving = serving_controller(
        config,
        &store,
        &envs,
        &router,
        berth_scheduler::replicas::Replicas::new(sockets, Arc::new(cgroups.clone()), run_as),
        events,
    );
    let state = AppState {
        store,
        jobs,
        router_token: auth::router_token(&token).into(),
        token: token.into(),
        home: Arc::new(home.clone()),
        gpus: gpu_ids.into(),
        router,
        serving,
        scoring_url: scoring_url.into(),
        api_url: api_url.into(),
        token_secret: signing.into(),
        routes: Arc::new(
            tokio::sync::watch::channel(Arc::new(berth_core::serving::RoutesDoc {
                epoch: rand::random::<u64>().max(1),
                ..Default::default()
            }))
            .0,
        ),
        envs,
        route_feed: Default::default(),
        local_isolation,
        cgroups: Arc::new(cgroups),
        job_usage: Default::default(),
        #[cfg(feature = "kubernetes")]
        clusters,
    };
    start_serving(&state, serving_events).await;
    let (st, home) = (state.store.clone(), home.clone());
    tokio::spawn(async move {
        services::leftovers::remove_orphan_job_folders(st, &home, started).await
    });
    monitor::start(state.clone());
    let retention = services::retention::Policy {
        default: config.retain_days,
        by_experiment: config.retain_days_by_experiment.clone(),
    };
    if !retention.is_empty() {
        services::retention::start(state.clone(), retention);
    }
    Ok(state)
}

/// Starts what follows the store and the serving events, and recovers the deployments.
async fn start_serving(
    state: &AppState,
    serving_events: tokio::sync::mpsc::UnboundedReceiver<
        berth_scheduler::serving::controller::ServingEvent,
    >,
) {
    let st = state.clone();
    tokio::spawn(async move { services::endpoints::serve_events(&st, serving_events).await });
    tokio::spawn(services::routes::follow(state.clone()));
    services::routes::settled(state).await;
    services::deployments::recover(state).await;
    services::sweeps::recover(state).await;
    services::pipelines::recover(state).await;
    #[cfg(feature = "kubernetes")]
    {
        let st = state.clone();
        tokio::spawn(async move { services::clusters::collect_orphans(&st).await });
    }
}

/// Runs the server until SIGTERM or Ctrl-C. Jobs keep running across a restart.
pub async fn run(config: ServerConfig) -> Result<(), StartError> {
    let home = config.home.clone();
    make_home(&home).map_err(home_error(&home))?;
    // Alone on its home's SQLite, a server holds the home before anything else; on a shared
    // database it first waits for the lease, serving the API as a standby meanwhile.
    let mut lock = match config.store {
        None => Some(home_lock::lock_home(&home)?),
        Some(_) => None,
    };
    let api = bind(config.api_listen).await?;
    let api_addr = api.local_addr().map_err(home_error(&home))?;
    let api_tls = api_tls(&config, api_addr)?;
    let api_scheme = if api_tls.is_some() { "https" } else { "http" };
    let (api_limits, scoring_limits) = listener_limits(&config);
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let stopped = |mut rx: tokio::sync::broadcast::Receiver<()>| async move {
        let _ = rx.recv().await;
    };
    let switch = standby::AppSwitch::new(standby::starting());
    let api_task = tokio::spawn(berth_router::listen::serve(
        api,
        switch.router(),
        api_tls,
        api_limits,
        stopped(stop_tx.subscribe()),
    ));
    let leadership = match &config.store {
        Some(url) => {
            let (leader_tx, leader_rx) = tokio::sync::watch::channel(String::new());
            switch.set(standby::app(leader_rx));
            let me = format!("{api_scheme}://{api_addr}");
            let l = leadership::lead(url, &me, &leader_tx).await?;
            // Leading from now on: renewed while the rest starts, and no longer forwarding.
            l.keep(leadership::advertised(
                config.advertise_url.as_deref(),
                api_scheme,
                api_addr,
            ));
            switch.set(standby::starting());
            Some(l)
        }
        None => None,
    };
    let lock = match lock.take() {
        Some(l) => l,
        None => home_lock::lock_home_waiting(&home).await?,
    };
    // Its memory and environment are nobody else's business, its jobs' least of all.
    berth_scheduler::sandbox::guard_server();
    let scoring = bind(config.scoring_listen).await?;
    let scoring_addr = scoring.local_addr().map_err(home_error(&home))?;
    let tls = scoring_tls(&config, scoring_addr)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let local_api = loopback_for(api_addr);
    // A leader's store is the one it took the lease on: one pool, migrated once.
    let state = build_state_on(
        &config,
        &format!("{api_scheme}://{local_api}"),
        &format!("{scheme}://{scoring_addr}"),
        leadership.as_ref().map(|l| l.store().clone()),
    )
    .await?;
    let router = Arc::clone(&state.router);
    let info = ServerInfo {
        api_url: format!("{api_scheme}://{api_addr}"),
        scoring_url: format!("{scheme}://{scoring_addr}"),
        token_file: auth::token_path(&home).to_string_lossy().into_owned(),
        pid: std::process::id(),
        version: env!("CARGO_PKG_VERSION").into(),
    };
    switch.set(app(state, config.max_body_bytes));
    announce(&home, &info)?;
    let scoring_task = tokio::spawn(berth_router::listen::serve_scoring(
        scoring,
        Arc::clone(&router),
        scoring_app(router),
        tls,
        scoring_limits,
        stopped(stop_tx.subscribe()),
    ));
    shutdown_signal().await;
    info!("shutting down; running jobs keep running and are re-attached at the next start");
    let _ = stop_tx.send(());
    // Followed log streams never end by themselves: give open requests a moment, then go.
    let grace = std::time::Duration::from_secs(3);
    let _ = tokio::time::timeout(grace, api_task).await;
    let _ = tokio::time::timeout(grace, scoring_task).await;
    if let Some(l) = &leadership {
        l.release().await;
    }
    let _ = std::fs::remove_file(home.join("server.json"));
    drop(lock);
    Ok(())
}

/// The address this machine's processes reach a listener at: loopback for a listener on
/// every interface.
fn loopback_for(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        std::net::IpAddr::V4(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, addr.port()))
        }
        std::net::IpAddr::V6(ip) if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port()))
        }
        _ => addr,
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind { addr, source })
}

/// The scoring listener's TLS: both files or neither, and plain HTTP only where allowed.
fn scoring_tls(
    config: &ServerConfig,
    scoring_addr: SocketAddr,
) -> Result<Option<berth_router::tls::ServerTls>, StartError> {
    match (&config.scoring_tls_cert, &config.scoring_tls_key) {
        (Some(cert), Some(key)) => Ok(Some(berth_router::tls::server_config(cert, key)?)),
        (None, None)
            if berth_router::tls::plaintext_allowed(
                &scoring_addr,
                config.allow_insecure_connections,
            ) =>
        {
            Ok(None)
        }
        (None, None) => Err(StartError::InsecureScoring(scoring_addr)),
        _ => Err(StartError::Tls(berth_router::tls::TlsError::Config(
            "give both --scoring-tls-cert and --scoring-tls-key".into(),
        ))),
    }
}

/// What each listener allows: the scoring side cannot take the descriptors the API needs.
fn listener_limits(config: &ServerConfig) -> (Limits, Limits) {
    let open_files = berth_router::listen::raise_open_files_limit();
    let (api, scoring) = berth_router::listen::split_open_files(open_files);
    let scoring = config.max_connections.unwrap_or(scoring);
    let idle = std::time::Duration::from_secs(config.idle_timeout_seconds);
    let limits = |max| Limits {
        idle_timeout: idle,
        ..Limits::with_max_connections(max)
    };
    info!(
        open_files,
        api_connections = api,
        scoring_connections = scoring,
        idle_timeout_s = config.idle_timeout_seconds,
        "listener limits"
    );
    (limits(api), limits(scoring))
}

/// The API's TLS: both files or neither, and plain HTTP only on loopback unless allowed.
fn api_tls(
    config: &ServerConfig,
    api_addr: SocketAddr,
) -> Result<Option<berth_router::tls::ServerTls>, StartError> {
    match (&config.api_tls_cert, &config.api_tls_key) {
        (Some(cert), Some(key)) => Ok(Some(berth_router::tls::server_config(cert, key)?)),
        (None, None)
            if berth_router::tls::plaintext_allowed(&api_addr, config.allow_insecure_api) =>
        {
            Ok(None)
        }
        (None, None) => Err(StartError::InsecureApi(api_addr)),
        _ => Err(StartError::Tls(berth_router::tls::TlsError::Config(
            "give both --api-tls-cert and --api-tls-key".into(),
        ))),
    }
}

/// Writes `server.json` (how the CLI finds this server) and says the server is ready.
fn announce(home: &std::path::Path, info: &ServerInfo) -> Result<(), StartError> {
    let info_bytes = serde_json::to_vec_pretty(info).unwrap_or_default();
    berth_scheduler::workdir::write_atomic(&home.join("server.json"), &info_bytes)
        .map_err(home_error(home))?;
    info!(api = %info.api_url, scoring = %info.scoring_url, home = %home.display(), "berth server ready");
    eprintln!(
        "berth server ready: API {} · scoring {} · home {}",
        info.api_url,
        info.scoring_url,
        home.display()
    );
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = ctrl_c.await;
            return;
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}
