//! The local backend: each job is a supervisor process (`berth job-supervise`) on this machine,
//! running the command in its own process group inside the job's folder.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::interpolate::interpolate;
use berth_core::job::{JobRecord, ResolvedInput};
use berth_core::spec::data::{DataType, InputMode};
use berth_core::spec::environment::ResolvedEnvironment;
use rustix::process::{Pid, test_kill_process};
use tokio::process::{Child, Command};

use super::{Backend, BackendError, Phase, Progress, Reattach, RunHandle};
use crate::envs::{BuildLog, EnvCache, ReadyEnv};
use crate::supervisor::{Ending, RunPlan, RunResult};
use crate::workdir::{JobDir, copy_tree, write_atomic};

/// Runs jobs as supervised local processes.
#[derive(Debug)]
pub struct LocalBackend {
    supervisor: Vec<String>,
    children: Mutex<HashMap<String, Child>>,
    http: reqwest::Client,
    envs: Arc<EnvCache>,
    protect: Option<PathBuf>,
    cgroups: Arc<crate::cgroup::Hierarchies>,
    run_as: Option<crate::users::RunAs>,
    /// A supervisor started ahead of the next job (with cgroups set up: [`Self::containing`]).
    spares: Option<Arc<super::spare::Spares>>,
}

impl LocalBackend {
    /// `supervisor` is the command that supervises one job, given its folder as the last
    /// argument: normally `[<path to berth>, "job-supervise"]`. Jobs' Python environments are
    /// built into `envs`.
    pub fn new(supervisor: Vec<String>, envs: Arc<EnvCache>) -> Self {
        // Berth uses rustls with ring everywhere; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        LocalBackend {
            supervisor,
            children: Mutex::new(HashMap::new()),
            http: reqwest::Client::new(),
            envs,
            protect: None,
            cgroups: Arc::new(crate::cgroup::Hierarchies::Unavailable(
                "not set up for this backend".into(),
            )),
            run_as: None,
            spares: None,
        }
    }

    /// Jobs' commands run as `user` (the server being root).
    pub fn running_as(mut self, user: Option<crate::users::RunAs>) -> Self {
        self.run_as = user;
        self
    }

    /// Jobs run each in a cgroup of `cgroups` (where it can make them).
    pub fn containing(mut self, cgroups: crate::cgroup::Hierarchies) -> Self {
        self.cgroups = Arc::new(cgroups);
        let spares = super::spare::Spares::new(self.supervisor.clone(), Arc::clone(&self.cgroups));
        spares.refill();
        self.spares = Some(spares);
        self
    }

    /// Jobs run in a sandbox that keeps them out of `home` (the server's), their own folder,
    /// inputs, outputs and environment excepted.
    pub fn protecting(mut self, home: PathBuf) -> Self {
        self.protect = Some(home);
        self
    }

    /// The sandbox of a job with `inputs` (paths or values) and its environment `python`.
    fn sandbox(
        &self,
        job: &JobRecord,
        inputs: &BTreeMap<String, String>,
        python: Option<&ReadyEnv>,
    ) -> Option<crate::sandbox::Sandbox> {
        let protect = self.protect.clone()?;
        let mut read_write = vec![PathBuf::from(&job.workdir)];
        for o in job.outputs.values() {
            let p = PathBuf::from(&o.path);
            read_write.extend(p.parent().map(Path::to_path_buf));
            read_write.push(p);
        }
        let mut read_only: Vec<PathBuf> = inputs
            .values()
            .map(PathBuf::from)
            .filter(|p| p.is_absolute())
            .collect();
        read_only.extend(python.map(|r| r.path.clone()));
        if let Some(who) = &self.run_as {
            read_write.push(who.home.join(".cache"));
        }
        Some(crate::sandbox::Sandbox {
            protect,
            read_write,
            read_only,
        })
    }

    async fn fetch(&self, input: &str, url: &str, dest: &Path) -> Result<(), BackendError> {
        let failed = |reason: String| BackendError::Download {
            input: input.to_string(),
            from: url.to_string(),
            reason,
        };
        let resp = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(failed(format!("HTTP {}", resp.status())));
        }
        let bytes = resp.bytes().await.map_err(|e| failed(e.to_string()))?;
        tokio::fs::write(dest, &bytes)
            .await
            .map_err(|source| BackendError::Io {
                what: format!("write {}", dest.display()),
                source,
            })
    }

    async fn resolve_input(
        &self,
        dir: &JobDir,
        name: &str,
        input: &ResolvedInput,
    ) -> Result<String, BackendError> {
        match input {
            ResolvedInput::Literal { value } => Ok(value.clone()),
            ResolvedInput::Path {
                path,
                mode: InputMode::Download,
                ..
            } => {
                let src = PathBuf::from(path);
                let dest_dir = dir.inputs().join(name);
                let file_name = src
                    .file_name()
                    .map(|n| n.to_owned())
                    .unwrap_or_else(|| name.into());
                let dest = dest_dir.join(file_name);
                let (s, d) = (src.clone(), dest.clone());
                tokio::task::spawn_blocking(move || {
                    std::fs::create_dir_all(d.parent().unwrap_or(&d))?;
                    if s.is_dir() {
                        copy_tree(&s, &d).map(|_| ())
                    } else {
                        std::fs::copy(&s, &d).map(|_| ())
                    }
                })
                .await
                .map_err(|e| BackendError::Prepare(e.to_string()))?
                .map_err(|e| BackendError::Download {
                    input: name.to_string(),
                    from: path.clone(),
                    reason: e.to_string(),
                })?;
                Ok(dest.to_string_lossy().into_owned())
            }
            ResolvedInput::Path { path, .. } => Ok(path.clone()),
            ResolvedInput::Url {
                url,
                mode: InputMode::Direct,
                ..
            } => Ok(url.clone()),
            ResolvedInput::Url { url, data_type, .. } => {
                let dest_dir = dir.inputs().join(name);
                tokio::fs::create_dir_all(&dest_dir)
                    .await
                    .map_err(|source| BackendError::Io {
                        what: format!("create {}", dest_dir.display()),
                        source,
                    })?;
                let dest = dest_dir.join(berth_core::job::url_file_name(url));
                self.fetch(name, url, &dest).await?;
                let seen = if *data_type == DataType::UriFile {
                    dest
                } else {
                    dest_dir
                };
                Ok(seen.to_string_lossy().into_owned())
            }
        }
    }

    fn plan(
        &self,
        job: &JobRecord,
        gpus: &[String],
        inputs: BTreeMap<String, String>,
        python: Option<&ReadyEnv>,
    ) -> Result<RunPlan, BackendError> {
        let dir = JobDir::new(&job.workdir);
        let outputs: BTreeMap<String, String> = job
            .outputs
            .iter()
            .map(|(k, o)| (k.clone(), o.path.clone()))
            .collect();
        let command = interpolate(&job.spec.command, &inputs, &outputs)?;
        let mut env = job.spec.environment_variables.clone();
        env.insert("AZUREML_RUN_ID".into(), job.name.clone());
        env.insert(
            "AZUREML_EXPERIMENT_NAME".into(),
            job.experiment_name.clone(),
        );
        env.insert(
            "AZUREML_ARM_PROJECT_NAME".into(),
            job.experiment_name.clone(),
        );
        env.insert("AZUREML_COMPUTE".into(), job.compute.clone());
        env.insert(
            "AZUREML_INSTANCE_TYPE".into(),
            job.instance_type.name.clone(),
        );
        env.insert("PYTHONUNBUFFERED".into(), "1".into());
        env.insert("CUDA_VISIBLE_DEVICES".into(), gpus.join(","));
        job.local_tracking_env(&mut env);
        for (k, v) in &inputs {
            env.insert(format!("AZURE_ML_INPUT_{k}"), v.clone());
        }
        for (k, v) in &outputs {
            env.insert(format!("AZURE_ML_OUTPUT_{k}"), v.clone());
        }
        if let Some(ready) = python {
            let path = std::env::var_os("PATH").unwrap_or_default();
            let joined = std::env::join_paths(
                std::iter::once(ready.bin()).chain(std::env::split_paths(&path)),
            )
            .map_err(|e| {
                BackendError::Prepare(format!("cannot put the environment on the PATH: {e}"))
            })?;
            env.insert("PATH".into(), joined.to_string_lossy().into_owned());
            env.insert(
                "VIRTUAL_ENV".into(),
                ready.path.to_string_lossy().into_owned(),
            );
        }
        let mut preamble = environment_lines(job.environment.as_ref(), python);
        preamble.push(format!(
            "[berth] job {} on compute {} with instance type {} (limits {}); GPUs: {}",
            job.name,
            job.compute,
            job.instance_type.name,
            job.instance_type.limits,
            if gpus.is_empty() {
                "none".to_string()
            } else {
                gpus.join(",")
            }
        ));
        preamble.push(format!("[berth] command: {command}"));
        Ok(RunPlan {
            command,
            cwd: dir.code().to_string_lossy().into_owned(),
            env,
            timeout_seconds: job.spec.timeout_seconds,
            memory_limit_bytes: u64::try_from(job.instance_type.limits.memory.units_ceil()).ok(),
            instance_type: job.instance_type.name.clone(),
            sandbox: self.sandbox(job, &inputs, python),
            cgroup: self.cgroups.job(&job.name),
            output_paths: outputs.values().cloned().collect(),
            run_as: self.run_as.clone(),
            preamble,
        })
    }
}

/// What the log says about the job's environment before the command starts.
fn environment_lines(env: Option<&ResolvedEnvironment>, python: Option<&ReadyEnv>) -> Vec<String> {
    let machine = "the local compute runs jobs with this machine's interpreter and tools";
    let Some(env) = env else {
        return vec![format!("[berth] {machine}")];
    };
    let mut lines = Vec::new();
    match python {
        Some(ready) => lines.push(format!(
            "[berth] environment {}: Python from {}",
            env.source,
            ready.path.display()
        )),
        None if env.image.is_none() => lines.push(format!(
            "[berth] environment `{}` is recorded but not built: {machine}",
            env.source
        )),
        None => {}
    }
    if let Some(image) = &env.image {
        let what = if python.is_some() {
            "the conda file is built into a virtual environment"
        } else {
            machine
        };
        lines.push(format!(
            "[berth] environment image `{image}` is recorded but not pulled: {what}"
        ));
    }
    lines
}

fn alive(pid: u32) -> bool {
    Pid::from_raw(pid as i32).is_some_and(|p| test_kill_process(p).is_ok())
}

/// True when `pid` is a supervisor of the job in `dir` (guards against a reused pid): one
/// started for it names the folder; a spare that took it works in it.
fn is_supervisor_of(pid: u32, dir: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let named = args.contains(&dir.as_os_str().as_encoded_bytes());
    let works_in = || {
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).ok();
        cwd.is_some() && cwd == dir.canonicalize().ok()
    };
    alive(pid) && args.contains(&b"job-supervise".as_slice()) && (named || works_in())
}

fn read_result(dir: &JobDir) -> Option<RunResult> {
    std::fs::read(dir.result())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
}

impl Backend for LocalBackend {
    async fn prepare(&self, job: &JobRecord, gpus: &[String]) -> Result<(), BackendError> {
        self.prepare_folder(job, gpus).await
    }

    async fn launch(&self, job: &JobRecord) -> Result<RunHandle, BackendError> {
        self.start_supervisor(job)
            .await
            .map(RunHandle::supervised_by)
    }

    async fn wait(&self, job: &JobRecord, run: RunHandle, progress: Progress) -> RunResult {
        self.wait_supervisor(job, run.supervisor_pid().unwrap_or(0), progress)
            .await
    }
    async fn cancel(&self, job: &JobRecord) {
        let dir = JobDir::new(&job.workdir);
        let _ = std::fs::write(dir.cancel_flag(), b"");
        // If the supervisor is gone, stop the command's group directly.
        let sup = std::fs::read_to_string(dir.supervisor_pid())
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if sup.is_none_or(|p| !is_supervisor_of(p, dir.root()))
            && let Some(pg) = std::fs::read_to_string(dir.process_group())
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .and_then(Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(pg, rustix::process::Signal::KILL);
        }
    }

    async fn reattach(&self, job: &JobRecord) -> Reattach {
        let dir = JobDir::new(&job.workdir);
        let pid = std::fs::read_to_string(dir.supervisor_pid())
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        match pid {
            Some(p) if is_supervisor_of(p, dir.root()) => {
                Reattach::Running(RunHandle::supervised_by(p))
            }
            _ => match read_result(&dir) {
                Some(r) => Reattach::Finished(r),
                None => Reattach::Lost,
            },
        }
    }
}

impl LocalBackend {
    async fn prepare_folder(&self, job: &JobRecord, gpus: &[String]) -> Result<(), BackendError> {
        let dir = JobDir::new(&job.workdir);
        let mut folders = vec![dir.code()];
        for o in job.outputs.values() {
            let p = PathBuf::from(&o.path);
            folders.push(if o.data_type == DataType::UriFile {
                p.parent().map(Path::to_path_buf).unwrap_or(p)
            } else {
                p
            });
        }
        // Azure ML's conventions: what the command writes to ./outputs is kept as the job's
        // artifacts; ./logs is there for its own logs.
        folders.extend(["outputs", "logs"].map(|c| dir.code().join(c)));
        for folder in folders {
            tokio::fs::create_dir_all(&folder)
                .await
                .map_err(|source| BackendError::Io {
                    what: format!("create {}", folder.display()),
                    source,
                })?;
        }
        let mut inputs = BTreeMap::new();
        for (name, input) in &job.inputs {
            inputs.insert(name.clone(), self.resolve_input(&dir, name, input).await?);
        }
        let python = match job.environment.as_ref().and_then(|e| e.python.as_ref()) {
            Some(definition) => {
                let mut log = BuildLog::append(&dir.log()).await?;
                Some(self.envs.ensure(definition, &mut log).await?)
            }
            None => None,
        };
        let plan = self.plan(job, gpus, inputs, python.as_ref())?;
        let bytes = serde_json::to_vec_pretty(&plan)
            .map_err(|e| BackendError::Prepare(format!("cannot encode the run plan: {e}")))?;
        write_atomic(&dir.plan(), &bytes).map_err(|source| BackendError::Io {
            what: "write the run plan".into(),
            source,
        })
    }

    /// The job's cgroup: a spare's it took, else the one named after it.
    fn job_cgroup(&self, dir: &JobDir, name: &str) -> Option<crate::cgroup::JobCgroup> {
        job_cgroup(&self.cgroups, dir, name)
    }

    async fn start_supervisor(&self, job: &JobRecord) -> Result<u32, BackendError> {
        let dir = JobDir::new(&job.workdir);
        let (program, args) = self
            .supervisor
            .split_first()
            .ok_or_else(|| BackendError::Launch("no supervisor command is configured".into()))?;
        if let Some(spare) = self.spares.as_ref().and_then(|s| s.take(dir.root())) {
            if let Some(c) = &spare.cgroup
                && let Ok(bytes) = serde_json::to_vec(c)
            {
                let _ = write_atomic(&dir.cgroup(), &bytes);
            }
            let _ = std::fs::write(dir.supervisor_pid(), spare.pid.to_string());
            if let Ok(mut children) = self.children.lock() {
                children.insert(job.name.clone(), spare.child);
            }
            return Ok(spare.pid);
        }
        let log_path = dir.root().join("supervisor.log");
        let io = |source| BackendError::Io {
            what: format!("create {}", log_path.display()),
            source,
        };
        let log = std::fs::File::create(&log_path).map_err(io)?;
        let child = Command::new(program)
            .args(args)
            .arg(dir.root())
            // The server's own variables (its token among them) stay with the server.
            .env_clear()
            .envs(crate::sandbox::clean_environment(std::env::vars()))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().map_err(io)?)
            .stderr(log)
            .process_group(0)
            .kill_on_drop(false)
            .spawn()
            .map_err(|e| {
                BackendError::Launch(format!("cannot start the job supervisor `{program}`: {e}"))
            })?;
        let pid = child
            .id()
            .ok_or_else(|| BackendError::Launch("the job supervisor exited at once".into()))?;
        let _ = std::fs::write(dir.supervisor_pid(), pid.to_string());
        if let Ok(mut children) = self.children.lock() {
            children.insert(job.name.clone(), child);
        }
        Ok(pid)
    }

    async fn wait_supervisor(&self, job: &JobRecord, pid: u32, progress: Progress) -> RunResult {
        let _ = progress.send(Phase::Running);
        let dir = JobDir::new(&job.workdir);
        let child = self
            .children
            .lock()
            .ok()
            .and_then(|mut c| c.remove(&job.name));
        match child {
            Some(mut c) => {
                let _ = c.wait().await;
            }
            None => {
                // Not our child (re-attached after a restart): watch the pid.
                while is_supervisor_of(pid, dir.root()) {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
        // A job that killed its supervisor may have left processes behind: its capacity is
        // free only once its cgroup is empty.
        if let Some(c) = self.job_cgroup(&dir, &job.name)
            && !c.empty_and_remove(Duration::from_secs(10)).await
        {
            tracing::warn!(job = %job.name, "processes of the job survive SIGKILL in its cgroup");
        }
        read_result(&dir).unwrap_or_else(|| RunResult {
            ending: Ending::Failed,
            exit_code: None,
            message: "the job supervisor ended without recording a result; see supervisor.log in the job folder".into(),
        })
    }
}

/// A local job's cgroup: the spare supervisor's it took (recorded in its folder), else the one
/// named after it.
pub fn job_cgroup(
    cgroups: &crate::cgroup::Hierarchies,
    dir: &JobDir,
    name: &str,
) -> Option<crate::cgroup::JobCgroup> {
    std::fs::read(dir.cgroup())
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .or_else(|| cgroups.job(name))
}
