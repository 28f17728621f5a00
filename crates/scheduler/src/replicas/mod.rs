//! Deployment replicas on the local compute: each replica is a `berth runtime` process. They
//! are started together, counted ready when the runtime writes its address (after `init()`),
//! restarted when they die (liveness), and stopped on delete. They outlive the server (their
//! own process group, not killed when the server goes) and a restarted server adopts them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::watch;
use tracing::{info, warn};

mod liveness;
mod process;
pub mod socket;

pub use liveness::Liveness;
use liveness::unhealthy;

pub use process::ReplicaProcess;

/// Why replicas did not start or scale; the message is the deployment's reason.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// The replica's folder or log could not be made.
    #[error("cannot write {path}: {source}")]
    Io {
        /// What could not be written.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No `[<berth>, "runtime"]` to start replicas with.
    #[error("no runtime command is configured")]
    NoRuntime,
    /// The runtime could not be started.
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The replica ended before it was ready: its log's `init() failed` line, else its last.
    #[error("{reason} ({status})")]
    Died {
        /// From the replica's log.
        reason: String,
        /// How its process ended.
        status: std::process::ExitStatus,
    },
    /// The replica was not ready in time.
    #[error("the replica was not ready within {}s: {reason}", after.as_secs())]
    NotReady {
        /// The time it had.
        after: Duration,
        /// From the replica's log.
        reason: String,
    },
    /// There are no replicas to scale.
    #[error("the deployment is not running")]
    NotRunning,
}

/// How to run one deployment's replicas.
#[derive(Clone, Debug)]
pub struct ReplicaPlan {
    /// `[<berth>, "runtime"]`.
    pub runtime: Vec<String>,
    /// The scoring script; `None` serves the model folder's `.onnx` natively.
    pub script: Option<PathBuf>,
    /// The model folder.
    pub model_dir: Option<PathBuf>,
    /// The interpreter for score.py (a built environment's); `None` is the runtime's default.
    pub python: Option<PathBuf>,
    /// Python workers per replica.
    pub workers: usize,
    /// `request_timeout_ms`, so a hung `run()` is replaced.
    pub request_timeout_ms: u64,
    /// Environment variables for score.py.
    pub env: Vec<(String, String)>,
    /// Folder for logs and ready files.
    pub dir: PathBuf,
    /// Folder for the replicas' Unix sockets ([`socket::socket_dir`]).
    pub sockets: PathBuf,
    /// Where each replica gets a cgroup of its own (`.replica-<its socket's name>`).
    pub cgroups: Arc<crate::cgroup::Hierarchies>,
    /// The instance type's memory limit, for each replica's cgroup.
    pub memory_limit_bytes: Option<u64>,
    /// Run replicas as this user (`--run-as`; the server is root).
    pub run_as: Option<crate::users::RunAs>,
    /// How many replicas.
    pub count: usize,
    /// How long a replica may take to become ready.
    pub ready_timeout: Duration,
    /// Liveness probe: a replica that fails it this many times in a row is restarted.
    pub liveness: Liveness,
}

#[derive(Default)]
struct Running {
    addrs: Vec<Option<String>>,
    stopping: bool,
    /// Replicas at or past this index are being retired (scale-in).
    wanted: usize,
}

impl Running {
    fn retired(&self, i: usize) -> bool {
        self.stopping || i >= self.wanted
    }
}

/// Every deployment's replicas, keyed `endpoint/deployment`.
pub struct Replicas {
    running: Mutex<HashMap<String, Arc<Mutex<Running>>>>,
    changed: watch::Sender<u64>,
    sockets: PathBuf,
    cgroups: Arc<crate::cgroup::Hierarchies>,
    run_as: Option<crate::users::RunAs>,
}

fn replica_log(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("replica-{i}.log"))
}

fn ready_file(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("replica-{i}.addr"))
}

fn pid_file(dir: &Path, i: usize) -> PathBuf {
    dir.join(format!("replica-{i}.pid"))
}

/// Why a replica did not start, from its log: the `init() failed` line, else the last line.
pub fn failure_reason(log: &Path) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .rev()
        .find(|l| l.contains("init() failed"))
        .or(lines.last())
        .map(|l| l.trim_start_matches("error: ").to_string())
        .unwrap_or_else(|| "the replica exited without a message".into())
}

impl Replicas {
    /// No replicas yet; their sockets will be in `sockets` ([`socket::socket_dir`]), each in a
    /// cgroup of `cgroups` where there are cgroups, run as `user` when one is given (the
    /// server being root).
    pub fn new(
        sockets: PathBuf,
        cgroups: Arc<crate::cgroup::Hierarchies>,
        user: Option<crate::users::RunAs>,
    ) -> Arc<Replicas> {
        Arc::new(Replicas {
            running: Mutex::new(HashMap::new()),
            changed: watch::channel(0).0,
            sockets,
            cgroups,
            run_as: user,
        })
    }

    /// The user replicas run as, when not the server's.
    pub fn run_as(&self) -> Option<&crate::users::RunAs> {
        self.run_as.as_ref()
    }

    /// Where replicas get their cgroups.
    pub fn cgroups(&self) -> &Arc<crate::cgroup::Hierarchies> {
        &self.cgroups
    }

    /// The folder of the replicas' sockets.
    pub fn sockets(&self) -> &Path {
        &self.sockets
    }

    /// Ticks whenever a replica becomes ready or goes away.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Addresses of the ready replicas of a deployment.
    pub fn ready(&self, key: &str) -> Vec<String> {
        let Ok(map) = self.running.lock() else {
            return Vec::new();
        };
        map.get(key)
            .and_then(|r| {
                r.lock()
                    .ok()
                    .map(|r| r.addrs.iter().flatten().cloned().collect())
            })
            .unwrap_or_default()
    }

    fn spawn(plan: &ReplicaPlan, i: usize) -> Result<(Child, PathBuf), ReplicaError> {
        let ready = ready_file(&plan.dir, i);
        let _ = std::fs::remove_file(&ready);
        let log_path = replica_log(&plan.dir, i);
        let io = |source| ReplicaError::Io {
            path: log_path.clone(),
            source,
        };
        let log = std::fs::File::create(&log_path).map_err(io)?;
        let (program, args) = plan.runtime.split_first().ok_or(ReplicaError::NoRuntime)?;
        let socket = match &plan.run_as {
            Some(who) => {
                // Its socket's folder and its revision's folder (its ready file) are its own.
                socket::fresh_for(&plan.sockets, who)
                    .and_then(|s| crate::users::give(&plan.dir, who).map(|_| s))
                    .map_err(io)?
            }
            None => socket::fresh(&plan.sockets),
        };
        let listen = format!("{}{}", berth_core::address::UNIX_PREFIX, socket.display());
        let cgroup = replica_cgroup(plan, &listen).filter(|c| {
            c.create(plan.memory_limit_bytes, crate::cgroup::DEFAULT_PIDS_MAX)
                .map_err(
                    |e| warn!(error = %e, "cannot make a replica's cgroup; its process group only"),
                )
                .is_ok()
        });
        let mut cmd = Command::new(program);
        cmd.args(args)
            .args(
                plan.script
                    .iter()
                    .flat_map(|s| [std::ffi::OsStr::new("--script"), s.as_os_str()]),
            )
            .args(["--listen", &listen, "--workers", &plan.workers.to_string()])
            .args(["--request-timeout-ms", &plan.request_timeout_ms.to_string()])
            .arg("--ready-file")
            .arg(&ready)
            .args(
                plan.python
                    .iter()
                    .flat_map(|p| [std::ffi::OsStr::new("--python"), p.as_os_str()]),
            )
            // The server's own variables (its token among them) stay with the server.
            .env_clear()
            .envs(crate::sandbox::clean_environment(std::env::vars()))
            .envs(plan.env.iter().map(|(k, v)| (k, v)))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(io)?)
            .stderr(log)
            // Its own group, and not killed with this handle: it outlives the server.
            .process_group(0)
            .kill_on_drop(false);
        if let Some(m) = &plan.model_dir {
            cmd.arg("--model-dir").arg(m);
        }
        // The runtime joins it first thing, before it starts its Python workers (or, run as
        // another user, waits until the server has moved it there).
        for procs in cgroup.iter().flat_map(|c| c.procs_files()) {
            cmd.arg("--cgroup-procs").arg(procs);
        }
        if let Some(who) = &plan.run_as {
            cmd.uid(who.uid)
                .gid(who.gid)
                .env("HOME", &who.home)
                .env("USER", &who.name)
                .env("LOGNAME", &who.name);
        }
        let child = cmd.spawn().map_err(|source| ReplicaError::Spawn {
            program: program.clone(),
            source,
        })?;
        if let Some(pid) = child.id() {
            let _ = std::fs::write(pid_file(&plan.dir, i), pid.to_string());
            if let (Some(_), Some(c)) = (&plan.run_as, cgroup) {
                tokio::task::spawn_blocking(move || {
                    if let Err(e) = c.take_in(pid) {
                        warn!(error = %e, "cannot move a replica into its cgroup");
                    }
                });
            }
        }
        Ok((child, ready))
    }

    /// Waits until the replica wrote its address, died, or ran out of time.
    async fn wait_ready(
        child: &mut Child,
        ready: &Path,
        timeout: Duration,
        log: &Path,
    ) -> Result<String, ReplicaError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Ok(addr) = std::fs::read_to_string(ready) {
                return Ok(addr.trim().to_string());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(ReplicaError::Died {
                    reason: failure_reason(log),
                    status,
                });
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(ReplicaError::NotReady {
                    after: timeout,
                    reason: failure_reason(log),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Starts every replica of a plan and waits until all are ready; on failure stops the ones
    /// it started and says why. Touches nothing that is already running.
    async fn launch(plan: &ReplicaPlan) -> Result<Vec<(Child, String)>, ReplicaError> {
        std::fs::create_dir_all(&plan.dir).map_err(|source| ReplicaError::Io {
            path: plan.dir.clone(),
            source,
        })?;
        let mut children = Vec::new();
        for i in 0..plan.count {
            children.push(Self::spawn(plan, i)?);
        }
        let mut started: Vec<(Child, String)> = Vec::new();
        let mut failure = None;
        for (i, (mut child, ready)) in children.into_iter().enumerate() {
            if failure.is_some() {
                let _ = child.kill().await;
                continue;
            }
            match Self::wait_ready(
                &mut child,
                &ready,
                plan.ready_timeout,
                &replica_log(&plan.dir, i),
            )
            .await
            {
                Ok(a) => started.push((child, a)),
                Err(reason) => {
                    let _ = child.kill().await;
                    failure = Some(reason);
                }
            }
        }
        if let Some(reason) = failure {
            for (mut c, _) in started {
                let _ = c.kill().await;
            }
            return Err(reason);
        }
        Ok(started)
    }

    /// Puts started replicas in service under `key`; returns what was there before.
    fn install(
        self: &Arc<Self>,
        key: &str,
        plan: &ReplicaPlan,
        started: Vec<(ReplicaProcess, String)>,
    ) -> (Vec<String>, Option<Arc<Mutex<Running>>>) {
        let addrs: Vec<String> = started.iter().map(|(_, a)| a.clone()).collect();
        let state = Arc::new(Mutex::new(Running {
            addrs: addrs.iter().cloned().map(Some).collect(),
            stopping: false,
            wanted: addrs.len(),
        }));
        let old = self
            .running
            .lock()
            .ok()
            .and_then(|mut m| m.insert(key.to_string(), Arc::clone(&state)));
        for (i, (child, _)) in started.into_iter().enumerate() {
            self.watch_replica(key.to_string(), Arc::clone(&state), plan.clone(), i, child);
        }
        self.changed.send_modify(|v| *v += 1);
        info!(deployment = %key, replicas = plan.count, "deployment ready");
        (addrs, old)
    }

    /// Starts a deployment's replicas (stopping any it had) and waits until all are ready.
    pub async fn start(
        self: &Arc<Self>,
        key: &str,
        plan: ReplicaPlan,
    ) -> Result<Vec<String>, ReplicaError> {
        let running_here = self.running.lock().is_ok_and(|m| m.contains_key(key));
        if !running_here && let Some(adopted) = Self::adopt(&plan).await {
            info!(deployment = %key, replicas = adopted.len(), "adopted the replicas a previous server started");
            return Ok(self.install(key, &plan, adopted).0);
        }
        self.stop(key).await;
        let started = Self::launch(&plan).await?;
        Ok(self.install(key, &plan, children(started)).0)
    }

    /// The replicas of `plan` a previous server left running, if every one of them is alive
    /// and ready; otherwise none (those alive are stopped, and the caller starts afresh).
    async fn adopt(plan: &ReplicaPlan) -> Option<Vec<(ReplicaProcess, String)>> {
        let mut found = Vec::new();
        for i in 0..plan.count {
            let ready = ready_file(&plan.dir, i);
            let addr = std::fs::read_to_string(&ready).ok();
            match (process::adopt(&pid_file(&plan.dir, i), &ready), addr) {
                (Some(p), Some(a)) => found.push((p, a.trim().to_string())),
                (Some(mut p), None) => p.kill().await,
                (None, _) => {}
            }
        }
        if found.len() == plan.count && plan.count > 0 {
            return Some(found);
        }
        for (mut p, _) in found {
            p.kill().await;
        }
        None
    }

    /// Replaces a deployment's replicas with no unavailability: the new set starts beside the
    /// old one, takes over once all are ready, and the old set stops after `drain` so requests
    /// in flight finish. If the new set fails, the old one keeps serving.
    pub async fn replace(
        self: &Arc<Self>,
        key: &str,
        plan: ReplicaPlan,
        drain: Duration,
    ) -> Result<Vec<String>, ReplicaError> {
        let started = Self::launch(&plan).await?;
        let (addrs, old) = self.install(key, &plan, children(started));
        if let Some(old) = old {
            let me = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(drain).await;
                if let Ok(mut s) = old.lock() {
                    s.stopping = true;
                }
                me.changed.send_modify(|v| *v += 1);
            });
        }
        Ok(addrs)
    }

    /// Restarts a replica that dies, until the deployment is stopped.
    fn watch_replica(
        self: &Arc<Self>,
        key: String,
        state: Arc<Mutex<Running>>,
        plan: ReplicaPlan,
        i: usize,
        mut child: ReplicaProcess,
    ) {
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                let stop_rx = me.subscribe();
                let addr = state
                    .lock()
                    .ok()
                    .and_then(|s| s.addrs.get(i).cloned().flatten());
                let retire = tokio::select! {
                    _ = child.wait() => false,
                    _ = stopped(stop_rx, &state, i) => { child.kill().await; true }
                    reason = unhealthy(addr.clone(), plan.liveness) => {
                        warn!(deployment = %key, replica = i, reason = %reason, "liveness probe failed; killing the replica");
                        child.kill().await;
                        false
                    }
                };
                if let Some(a) = &addr {
                    socket::remove(a);
                    // What the replica left (its Python workers) goes with it.
                    if let Some(c) = replica_cgroup(&plan, a) {
                        c.empty_and_remove(Duration::from_secs(5)).await;
                    }
                }
                if retire {
                    return;
                }
                if state.lock().map(|s| s.retired(i)).unwrap_or(true) {
                    return;
                }
                warn!(deployment = %key, replica = i, "replica exited; restarting it");
                if let Some(a) = state.lock().ok().as_mut().and_then(|s| s.addrs.get_mut(i)) {
                    *a = None;
                }
                me.changed.send_modify(|v| *v += 1);
                tokio::time::sleep(Duration::from_millis(500)).await;
                match Self::spawn(&plan, i) {
                    Ok((mut c, ready)) => match Self::wait_ready(
                        &mut c,
                        &ready,
                        plan.ready_timeout,
                        &replica_log(&plan.dir, i),
                    )
                    .await
                    {
                        Ok(addr) => {
                            if let Some(a) =
                                state.lock().ok().as_mut().and_then(|s| s.addrs.get_mut(i))
                            {
                                *a = Some(addr);
                            }
                            me.changed.send_modify(|v| *v += 1);
                            child = ReplicaProcess::Child(c);
                        }
                        Err(reason) => {
                            warn!(deployment = %key, replica = i, reason = %reason, "replica restart failed")
                        }
                    },
                    Err(e) => warn!(deployment = %key, error = %e, "cannot restart replica"),
                }
            }
        });
    }

    /// What each ready replica of deployment `key` uses now (from its cgroup), where there
    /// are cgroups.
    pub fn usage(&self, key: &str) -> Vec<crate::cgroup::Usage> {
        self.ready(key)
            .iter()
            .filter_map(|addr| {
                let cgroup = self
                    .cgroups
                    .job(&format!(".replica-{}", socket::random_part(addr)?))?;
                Some(cgroup.usage())
            })
            .collect()
    }

    /// How many replicas a deployment has (ready or starting).
    pub fn count(&self, key: &str) -> usize {
        let Ok(map) = self.running.lock() else {
            return 0;
        };
        map.get(key)
            .and_then(|r| r.lock().ok().map(|r| r.wanted))
            .unwrap_or(0)
    }

    /// Scales a running deployment to `n` replicas: new ones start and join when ready; removed
    /// ones leave the routes at once and stop after `drain`, so requests in flight finish.
    pub async fn resize(
        self: &Arc<Self>,
        key: &str,
        plan: &ReplicaPlan,
        n: usize,
        drain: Duration,
    ) -> Result<(), ReplicaError> {
        let state = self
            .running
            .lock()
            .ok()
            .and_then(|m| m.get(key).cloned())
            .ok_or(ReplicaError::NotRunning)?;
        let current = state
            .lock()
            .map(|s| s.wanted)
            .map_err(|_| ReplicaError::NotRunning)?;
        if n > current {
            for i in current..n {
                let (mut child, ready) = Self::spawn(plan, i)?;
                let addr = Self::wait_ready(
                    &mut child,
                    &ready,
                    plan.ready_timeout,
                    &replica_log(&plan.dir, i),
                )
                .await?;
                if let Ok(mut s) = state.lock() {
                    if s.addrs.len() <= i {
                        s.addrs.resize(i + 1, None);
                    }
                    s.addrs[i] = Some(addr);
                    s.wanted = i + 1;
                }
                self.watch_replica(
                    key.to_string(),
                    Arc::clone(&state),
                    plan.clone(),
                    i,
                    ReplicaProcess::Child(child),
                );
                self.changed.send_modify(|v| *v += 1);
            }
        } else if n < current {
            if let Ok(mut s) = state.lock() {
                s.addrs.truncate(n);
            }
            self.changed.send_modify(|v| *v += 1);
            let me = Arc::clone(self);
            tokio::spawn(async move {
                tokio::time::sleep(drain).await;
                if let Ok(mut s) = state.lock() {
                    s.wanted = s.wanted.min(n).max(s.addrs.len());
                }
                me.changed.send_modify(|v| *v += 1);
            });
        }
        info!(deployment = %key, from = current, to = n, "deployment scaled");
        Ok(())
    }

    /// Stops a deployment's replicas.
    pub async fn stop(&self, key: &str) {
        let state = self.running.lock().ok().and_then(|mut m| m.remove(key));
        if let Some(s) = state {
            if let Ok(mut s) = s.lock() {
                s.stopping = true;
                s.addrs.iter_mut().for_each(|a| *a = None);
            }
            self.changed.send_modify(|v| *v += 1);
        }
    }
}

/// The cgroup of the replica at `addr`, where there are cgroups: named after its socket's
/// random part (the socket's name, or its folder's for a replica run as another user).
fn replica_cgroup(plan: &ReplicaPlan, addr: &str) -> Option<crate::cgroup::JobCgroup> {
    plan.cgroups
        .job(&format!(".replica-{}", socket::random_part(addr)?))
}

fn children(started: Vec<(Child, String)>) -> Vec<(ReplicaProcess, String)> {
    started
        .into_iter()
        .map(|(c, a)| (ReplicaProcess::Child(c), a))
        .collect()
}

async fn stopped(mut rx: watch::Receiver<u64>, state: &Arc<Mutex<Running>>, i: usize) {
    loop {
        if state.lock().map(|s| s.retired(i)).unwrap_or(true) {
            return;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
