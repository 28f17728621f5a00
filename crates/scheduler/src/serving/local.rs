//! Replicas on the local compute: `berth runtime` processes ([`Replicas`]), started after the
//! revision's environment is built. `apply` returns at once; the start runs in a task whose
//! outcome `observe` reports.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::task::AbortHandle;

use super::{Observed, RevisionPlan, Rollout, ServingBackend, ServingError};
use crate::envs::{BuildLog, EnvCache};
use crate::replicas::{Liveness, ReplicaPlan, Replicas};

/// How long a replica may take to become ready (init() loading a large model).
const READY_TIMEOUT: Duration = Duration::from_secs(1200);

struct Start {
    revision: u32,
    rollout: Rollout,
    task: Option<AbortHandle>,
}

/// Deployments' replicas as processes on this machine.
pub struct LocalServing {
    replicas: Arc<Replicas>,
    envs: Arc<EnvCache>,
    runtime: Vec<String>,
    starts: Arc<Mutex<HashMap<String, Start>>>,
}

impl LocalServing {
    /// Replicas run `runtime` (`[<berth>, "runtime"]`) with environments from `envs`.
    pub fn new(replicas: Arc<Replicas>, envs: Arc<EnvCache>, runtime: Vec<String>) -> Self {
        LocalServing {
            replicas,
            envs,
            runtime,
            starts: Arc::default(),
        }
    }

    /// The replica processes (whose changes move the routes).
    pub fn replicas(&self) -> &Arc<Replicas> {
        &self.replicas
    }

    /// Ready replicas of a deployment.
    pub fn ready(&self, key: &str) -> Vec<String> {
        self.replicas.ready(key)
    }

    /// Replicas a deployment has, ready or starting.
    pub fn count(&self, key: &str) -> u32 {
        u32::try_from(self.replicas.count(key)).unwrap_or(u32::MAX)
    }

    fn replica_plan(&self, plan: &RevisionPlan, count: u32) -> ReplicaPlan {
        ReplicaPlan {
            runtime: self.runtime.clone(),
            script: plan.code.as_ref().map(|(dir, script)| dir.join(script)),
            model_dir: plan.model_dir.clone(),
            python: plan.python_env().map(|p| self.envs.location(p).python()),
            workers: plan.workers,
            request_timeout_ms: plan.request_timeout_ms,
            env: plan.env.clone().into_iter().collect(),
            dir: plan.dir.root().to_path_buf(),
            sockets: self.replicas.sockets().to_path_buf(),
            cgroups: Arc::clone(self.replicas.cgroups()),
            run_as: self.replicas.run_as().cloned(),
            memory_limit_bytes: u64::try_from(plan.instance_type.limits.memory.units_ceil()).ok(),
            count: count as usize,
            ready_timeout: READY_TIMEOUT,
            liveness: Liveness {
                initial_delay: Duration::from_secs(plan.liveness.initial_delay),
                period: Duration::from_secs(plan.liveness.period.max(1)),
                timeout: Duration::from_secs(plan.liveness.timeout.max(1)),
                failure_threshold: plan.liveness.failure_threshold,
            },
        }
    }

    fn set(&self, key: &str, start: Start) {
        if let Ok(mut m) = self.starts.lock()
            && let Some(old) = m.insert(key.to_string(), start)
            && let Some(task) = old.task
        {
            task.abort();
        }
    }
}

/// Builds the plan's environment (its log in the revision's `environment.log`).
async fn build_environment(envs: &EnvCache, plan: &RevisionPlan) -> Result<(), ServingError> {
    let (Some(env), Some(python)) = (&plan.environment, plan.python_env()) else {
        return Ok(());
    };
    let log_path = plan.dir.environment_log();
    let failed = |source| ServingError::Environment {
        log: log_path.clone(),
        source,
    };
    let mut log = BuildLog::append(&log_path).await.map_err(failed)?;
    log.line(&format!("[berth] environment from {}", env.source))
        .await;
    envs.ensure(python, &mut log)
        .await
        .map(|_| ())
        .map_err(failed)
}

impl ServingBackend for LocalServing {
    async fn apply(&self, plan: &RevisionPlan) -> Result<(), ServingError> {
        let key = plan.key();
        // Replicas already running are replaced without unavailability; else started.
        let running = self.replicas.count(&key) > 0;
        let replica_plan = self.replica_plan(plan, plan.replicas);
        let (replicas, envs, starts) = (
            Arc::clone(&self.replicas),
            Arc::clone(&self.envs),
            Arc::clone(&self.starts),
        );
        let (plan, task_key, revision) = (plan.clone(), key.clone(), plan.revision);
        let task = tokio::spawn(async move {
            let started = async {
                build_environment(&envs, &plan).await?;
                let started = if running {
                    replicas
                        .replace(&task_key, replica_plan, plan.drain())
                        .await
                } else {
                    replicas.start(&task_key, replica_plan).await
                };
                started.map_err(ServingError::from)
            }
            .await;
            let rollout = match started {
                Ok(_) => Rollout::Complete,
                Err(e) => Rollout::Failed(e.to_string()),
            };
            if let Ok(mut m) = starts.lock()
                && let Some(s) = m.get_mut(&task_key)
                && s.revision == revision
            {
                s.rollout = rollout;
                s.task = None;
            }
        });
        self.set(
            &key,
            Start {
                revision,
                rollout: Rollout::Progressing,
                task: Some(task.abort_handle()),
            },
        );
        Ok(())
    }

    async fn observe(&self, plan: &RevisionPlan) -> Result<Observed, ServingError> {
        let key = plan.key();
        let rollout = self
            .starts
            .lock()
            .ok()
            .and_then(|m| {
                m.get(&key)
                    .filter(|s| s.revision == plan.revision)
                    .map(|s| s.rollout.clone())
            })
            .unwrap_or(Rollout::Progressing);
        Ok(Observed {
            ready: self.replicas.ready(&key),
            rollout,
        })
    }

    async fn scale(&self, plan: &RevisionPlan, replicas: u32) -> Result<(), ServingError> {
        let key = plan.key();
        if self.replicas.count(&key) == 0 {
            return Err(ServingError::NotRunning);
        }
        self.replicas
            .resize(
                &key,
                &self.replica_plan(plan, replicas),
                replicas as usize,
                plan.drain(),
            )
            .await
            .map_err(ServingError::from)
    }

    async fn delete(&self, plan: &RevisionPlan) -> Result<(), ServingError> {
        let key = plan.key();
        // A start in flight must not install replicas after this.
        if let Some(task) = self
            .starts
            .lock()
            .ok()
            .and_then(|mut m| m.remove(&key))
            .and_then(|s| s.task)
        {
            task.abort();
        }
        self.replicas.stop(&key).await;
        Ok(())
    }

    async fn logs(&self, plan: &RevisionPlan, lines: usize) -> Result<String, ServingError> {
        let mut out = String::new();
        // Every replica that ever ran in this revision (autoscaling adds and removes them).
        for i in 0.. {
            let path = plan.dir.replica_log(i);
            let text = match tokio::fs::read_to_string(&path).await {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(source) => return Err(ServingError::Io { path, source }),
            };
            let all: Vec<&str> = text.lines().collect();
            out.push_str(&format!("==> replica {i} <==\n"));
            for l in &all[all.len().saturating_sub(lines)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        Ok(out)
    }
}
