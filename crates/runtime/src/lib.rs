//! Berth's scoring runtime (`berth runtime`): serves one deployment replica. It hosts a
//! Python `score.py` in a pool of worker processes (`init()` once each, `run()` per request)
//! and answers the routes `azureml-inference-server-http` users rely on: `GET /` (liveness),
//! `GET /ready`, `POST /score`, `GET /swagger.json`.

mod http;
pub mod onnx;
pub mod pool;
pub mod worker;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::OnceCell;

pub use berth_core::address::ListenAddr;
pub use http::app;
use pool::Pool;
use worker::{WorkerConfig, WorkerError};

/// Everything one replica needs.
#[derive(Clone, Debug)]
pub struct RuntimeConfig {
    /// Address to serve on (port 0 picks one; `unix:/path` a socket only this user can open).
    pub listen: ListenAddr,
    /// The scoring script (`score.py`); without one, the model folder's `.onnx` file is served
    /// natively.
    pub script: Option<PathBuf>,
    /// The model folder (`AZUREML_MODEL_DIR`).
    pub model_dir: Option<PathBuf>,
    /// Worker processes.
    pub workers: usize,
    /// Python interpreter.
    pub python: String,
    /// How long `run()` may take before its worker is replaced (`SCORING_TIMEOUT_MS`).
    pub request_timeout: Duration,
    /// How long a request may wait for a free worker.
    pub max_queue_wait: Duration,
    /// Largest request body.
    pub max_body_bytes: usize,
    /// Extra environment for the workers.
    pub env: BTreeMap<String, String>,
    /// Written with the bound address once the replica is ready.
    pub ready_file: Option<PathBuf>,
}

/// Why the runtime stopped.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The address could not be bound.
    #[error("cannot listen on {0}: {1}")]
    Bind(ListenAddr, std::io::Error),
    /// The workers could not start (`init()` raised, the interpreter is missing...).
    #[error("{0}")]
    Workers(#[from] WorkerError),
    /// The ONNX model could not be loaded.
    #[error("{0}")]
    Model(String),
    /// Serving failed.
    #[error("serving failed: {0}")]
    Serve(std::io::Error),
}

/// What answers `/score`.
pub enum Scorer {
    /// `score.py` in Python workers.
    Python(Arc<Pool>),
    /// A native ONNX model.
    Onnx(Arc<onnx::OnnxModel>),
}

/// State shared by the handlers.
pub struct Replica {
    scorer: OnceCell<Scorer>,
    config: RuntimeConfig,
}

impl Replica {
    /// A replica whose workers are not started yet.
    pub fn new(config: RuntimeConfig) -> Arc<Replica> {
        Arc::new(Replica {
            scorer: OnceCell::new(),
            config,
        })
    }

    /// Starts the workers (or loads the ONNX model); the replica is ready when this returns Ok.
    pub async fn start(&self) -> Result<(), RuntimeError> {
        let c = &self.config;
        let Some(script) = &c.script else {
            let dir = c.model_dir.as_ref().ok_or_else(|| {
                RuntimeError::Model(
                    "give a scoring script, or a model folder with a .onnx file".into(),
                )
            })?;
            let path = onnx::find_model(dir).ok_or_else(|| {
                RuntimeError::Model(format!(
                    "{} holds no .onnx file and no scoring script was given",
                    dir.display()
                ))
            })?;
            let model = tokio::task::spawn_blocking(move || onnx::OnnxModel::load(&path))
                .await
                .map_err(|e| RuntimeError::Model(e.to_string()))?
                .map_err(RuntimeError::Model)?;
            let _ = self.scorer.set(Scorer::Onnx(Arc::new(model)));
            return Ok(());
        };
        self.start_workers_for(script.clone())
            .await
            .map_err(RuntimeError::Workers)
    }

    /// Starts the Python workers; the replica is ready when this returns Ok.
    pub async fn start_workers(&self) -> Result<(), WorkerError> {
        match self.config.script.clone() {
            Some(s) => self.start_workers_for(s).await,
            None => Err(WorkerError::InitFailed("no scoring script".into())),
        }
    }

    async fn start_workers_for(&self, script: PathBuf) -> Result<(), WorkerError> {
        let c = &self.config;
        let cfg = WorkerConfig {
            python: c.python.clone(),
            script,
            model_dir: c.model_dir.clone(),
            env: c.env.clone(),
            init_timeout: Duration::from_secs(600),
        };
        let pool = Pool::start(cfg, c.workers).await?;
        let _ = self.scorer.set(Scorer::Python(pool));
        Ok(())
    }
}

/// A bound listener of either kind.
enum Bound {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Bound {
    /// Binds `listen`; a Unix socket replaces a stale one and is made 0600.
    fn bind(listen: &ListenAddr) -> Result<(Bound, ListenAddr), RuntimeError> {
        let fail = |e| RuntimeError::Bind(listen.clone(), e);
        match listen {
            ListenAddr::Tcp(a) => {
                let l = std::net::TcpListener::bind(a).map_err(fail)?;
                l.set_nonblocking(true).map_err(fail)?;
                let l = TcpListener::from_std(l).map_err(fail)?;
                let bound = ListenAddr::Tcp(l.local_addr().map_err(fail)?);
                Ok((Bound::Tcp(l), bound))
            }
            ListenAddr::Unix(p) => {
                use std::os::unix::fs::{FileTypeExt, PermissionsExt};
                if std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_socket()) {
                    let _ = std::fs::remove_file(p);
                }
                let l = UnixListener::bind(p).map_err(fail)?;
                std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o600))
                    .map_err(fail)?;
                Ok((Bound::Unix(l), listen.clone()))
            }
        }
    }

    fn serve(self, app: axum::Router) -> tokio::task::JoinHandle<std::io::Result<()>> {
        match self {
            Bound::Tcp(l) => tokio::spawn(axum::serve(l, app).into_future()),
            Bound::Unix(l) => tokio::spawn(axum::serve(l, app).into_future()),
        }
    }
}

/// Serves until the workers fail to start, or forever.
pub async fn run(config: RuntimeConfig) -> Result<(), RuntimeError> {
    let (listener, addr) = Bound::bind(&config.listen)?;
    let replica = Replica::new(config.clone());
    let server = listener.serve(app(Arc::clone(&replica)));
    eprintln!("berth runtime listening on {addr} (liveness now, ready after init())");
    if let Err(e) = replica.start().await {
        server.abort();
        return Err(e);
    }
    if let Some(f) = &config.ready_file {
        let tmp = f.with_extension("tmp");
        let _ = std::fs::write(&tmp, addr.to_string()).and_then(|_| std::fs::rename(&tmp, f));
    }
    match &config.script {
        Some(_) => eprintln!(
            "berth runtime ready on {addr} with {} worker(s)",
            config.workers.max(1)
        ),
        None => eprintln!("berth runtime ready on {addr} serving the ONNX model natively"),
    }
    match server.await {
        Ok(r) => r.map_err(RuntimeError::Serve),
        Err(e) => Err(RuntimeError::Serve(std::io::Error::other(e))),
    }
}
