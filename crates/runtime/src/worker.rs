//! One Python worker process: started with the embedded shim, it imports `score.py`, runs
//! `init()`, then answers `run()` calls as length-prefixed JSON frames over a Unix socket.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::process::{Child, Command};

/// The shim every worker runs (`python -c`).
pub const SHIM: &str = include_str!("shim.py");

/// How to start a worker.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// The Python interpreter.
    pub python: String,
    /// The scoring script.
    pub script: PathBuf,
    /// `AZUREML_MODEL_DIR`, when there is a model.
    pub model_dir: Option<PathBuf>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// How long `init()` may take.
    pub init_timeout: Duration,
}

/// Why a worker could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkerError {
    /// The interpreter could not be started.
    #[error("cannot start `{python}`: {reason}")]
    Spawn {
        /// Interpreter.
        python: String,
        /// Cause.
        reason: String,
    },
    /// `init()` or the import raised.
    #[error("init() failed: {0}")]
    InitFailed(String),
    /// `init()` did not finish in time.
    #[error("init() did not finish within {0:?}")]
    InitTimeout(Duration),
    /// The worker died or broke the protocol.
    #[error("the scoring worker crashed: {0}")]
    Crashed(String),
}

/// What `run()` gave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOutcome {
    /// The result, as JSON text.
    Output(String),
    /// `run()` raised (or returned something not JSON-serialisable).
    ScriptError(String),
}

#[derive(Serialize)]
struct Request<'a> {
    body: &'a str,
    headers: &'a BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    ok: bool,
    #[serde(default)]
    output: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    ready: bool,
    #[serde(default)]
    init_error: Option<String>,
}

fn abstract_listener(name: &str) -> std::io::Result<UnixListener> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
    let listener = std::os::unix::net::UnixListener::bind_addr(&addr)?;
    listener.set_nonblocking(true)?;
    UnixListener::from_std(listener)
}

/// A started worker.
#[derive(Debug)]
pub struct Worker {
    child: Child,
    stream: UnixStream,
}

async fn write_frame(s: &mut UnixStream, bytes: &[u8]) -> std::io::Result<()> {
    let len = u32::try_from(bytes.len()).map_err(|_| std::io::Error::other("frame too large"))?;
    s.write_all(&len.to_be_bytes()).await?;
    s.write_all(bytes).await
}

async fn read_frame(s: &mut UnixStream) -> std::io::Result<Vec<u8>> {
    let mut head = [0u8; 4];
    s.read_exact(&mut head).await?;
    let mut body = vec![0u8; u32::from_be_bytes(head) as usize];
    s.read_exact(&mut body).await?;
    Ok(body)
}

impl Worker {
    /// Starts worker `id` and waits for `init()` to finish.
    pub async fn start(cfg: &WorkerConfig, id: u64) -> Result<Worker, WorkerError> {
        // An abstract socket: nothing on disk to leak when the replica is killed.
        let name = format!(
            "berth-{}-{id}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        );
        let listener = abstract_listener(&name).map_err(|e| WorkerError::Spawn {
            python: cfg.python.clone(),
            reason: format!("socket @{name}: {e}"),
        })?;
        let socket = format!("abstract:{name}");
        let mut cmd = Command::new(&cfg.python);
        cmd.arg("-c")
            .arg(SHIM)
            .arg(&socket)
            .arg(&cfg.script)
            .envs(&cfg.env)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(dir) = &cfg.model_dir {
            cmd.env("AZUREML_MODEL_DIR", dir);
        }
        if let Some(dir) = cfg.script.parent() {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().map_err(|e| WorkerError::Spawn {
            python: cfg.python.clone(),
            reason: e.to_string(),
        })?;
        let accepted = tokio::select! {
            a = listener.accept() => a.map_err(|e| WorkerError::Crashed(e.to_string())),
            status = child.wait() => Err(WorkerError::InitFailed(format!("the worker exited before it started ({})", status.map(|s| s.to_string()).unwrap_or_default()))),
            _ = tokio::time::sleep(cfg.init_timeout) => Err(WorkerError::InitTimeout(cfg.init_timeout)),
        };
        let (mut stream, _) = accepted?;
        let hello = tokio::time::timeout(cfg.init_timeout, read_frame(&mut stream))
            .await
            .map_err(|_| WorkerError::InitTimeout(cfg.init_timeout))?
            .map_err(|e| WorkerError::InitFailed(format!("the worker died during init(): {e}")))?;
        let reply: Reply =
            serde_json::from_slice(&hello).map_err(|e| WorkerError::Crashed(e.to_string()))?;
        if let Some(e) = reply.init_error {
            let _ = child.wait().await;
            return Err(WorkerError::InitFailed(e));
        }
        if !reply.ready {
            return Err(WorkerError::Crashed(
                "the worker did not report ready".into(),
            ));
        }
        Ok(Worker { child, stream })
    }

    /// Calls `run(body)`.
    pub async fn call(
        &mut self,
        body: &str,
        headers: &BTreeMap<String, String>,
    ) -> Result<RunOutcome, WorkerError> {
        let req = serde_json::to_vec(&Request { body, headers })
            .map_err(|e| WorkerError::Crashed(e.to_string()))?;
        let broke = |e: std::io::Error| WorkerError::Crashed(e.to_string());
        write_frame(&mut self.stream, &req).await.map_err(broke)?;
        let frame = read_frame(&mut self.stream).await.map_err(broke)?;
        let reply: Reply =
            serde_json::from_slice(&frame).map_err(|e| WorkerError::Crashed(e.to_string()))?;
        Ok(match (reply.ok, reply.output, reply.error) {
            (true, Some(out), _) => RunOutcome::Output(out),
            (_, _, Some(e)) => RunOutcome::ScriptError(e),
            _ => RunOutcome::ScriptError("the worker sent an empty answer".into()),
        })
    }

    /// Stops the worker now.
    pub async fn kill(mut self) -> Option<std::process::ExitStatus> {
        let _ = self.child.start_kill();
        self.child.wait().await.ok()
    }

    /// The worker's exit status, if it has exited.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}
