//! Python environments for jobs and replicas: a conda file's translation, built by `uv` into a
//! virtual environment under `$BERTH_HOME/envs/<key>`, once per definition and shared by
//! everything that names the same one. A build happens in `envs/.building/` and is renamed into
//! place only when complete, so the cache never holds half an environment.

mod uv;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use berth_core::conda::PythonEnv;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

pub use uv::Uv;

/// Bumped when the way environments are built changes, so old builds are not reused.
const LAYOUT: &str = "berth-env-v1";
/// Written last into a finished environment.
const MARKER: &str = "berth-env.json";

/// Why an environment could not be made ready.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// `uv` is not installed.
    #[error(
        "`uv` is needed to build environments and was not found (looked for $BERTH_UV, then `uv` on the PATH); install it with `pip install uv`"
    )]
    UvMissing,
    /// No Python interpreter at all.
    #[error("no Python interpreter was found on this machine: {0}")]
    NoPython(String),
    /// The installer failed; its own error line.
    #[error("the environment build failed: {0}")]
    Install(String),
    /// A file or folder of the cache could not be written.
    #[error("cannot write {path}: {source}")]
    Io {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

fn io_at(path: &Path) -> impl FnOnce(std::io::Error) -> EnvError + '_ {
    move |source| EnvError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A ready environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadyEnv {
    /// Its folder (`VIRTUAL_ENV`).
    pub path: PathBuf,
}

impl ReadyEnv {
    /// The folder to put first on the PATH.
    pub fn bin(&self) -> PathBuf {
        self.path.join("bin")
    }
    /// Its interpreter.
    pub fn python(&self) -> PathBuf {
        self.bin().join("python")
    }
}

/// What a finished environment records about itself.
#[derive(Debug, Serialize, Deserialize)]
struct Marker {
    definition: PythonEnv,
    interpreter: String,
    #[serde(with = "time::serde::rfc3339")]
    built_at: time::OffsetDateTime,
}

/// The cache key of an environment: a digest of everything that defines it.
pub fn key(env: &PythonEnv) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    // Each part is length-prefixed, so no two lists of parts hash the same bytes.
    let python = env.python.as_deref().unwrap_or("default");
    for part in [LAYOUT, python]
        .into_iter()
        .chain(env.requirements.iter().map(String::as_str))
    {
        ctx.update(&(part.len() as u64).to_le_bytes());
        ctx.update(part.as_bytes());
    }
    ctx.finish().as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Where progress and the installer's output go: a job's log or a replica's.
pub struct BuildLog {
    file: tokio::fs::File,
}

impl BuildLog {
    /// Appends to the file at `path`.
    pub async fn append(path: &Path) -> Result<BuildLog, EnvError> {
        if let Some(parent) = path.parent() {
            tokio::fs::create_dir_all(parent)
                .await
                .map_err(io_at(parent))?;
        }
        let file = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(io_at(path))?;
        Ok(BuildLog { file })
    }

    /// Writes to an open file (a pod's standard output, for one).
    pub fn to(file: tokio::fs::File) -> BuildLog {
        BuildLog { file }
    }

    /// Writes one line (best effort: a log that cannot be written must not fail the build).
    pub async fn line(&mut self, text: &str) {
        let _ = self.file.write_all(format!("{text}\n").as_bytes()).await;
    }
}

/// The environments under one folder.
#[derive(Debug)]
pub struct EnvCache {
    root: PathBuf,
    uv: Option<Uv>,
    building: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl EnvCache {
    /// The cache in `root` (normally `$BERTH_HOME/envs`), building with `uv` when found.
    pub fn new(root: PathBuf) -> EnvCache {
        // Builds that a killed server left behind are never finished: clear them.
        let _ = std::fs::remove_dir_all(root.join(".building"));
        EnvCache {
            root,
            uv: Uv::find(),
            building: Mutex::new(HashMap::new()),
        }
    }

    /// Where an environment lives once built (whether or not it is built yet).
    pub fn location(&self, env: &PythonEnv) -> ReadyEnv {
        ReadyEnv {
            path: self.root.join(key(env)),
        }
    }

    fn ready(&self, env: &PythonEnv) -> Option<ReadyEnv> {
        let at = self.location(env);
        at.path.join(MARKER).is_file().then_some(at)
    }

    fn lock_for(&self, key: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self
            .building
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(map.entry(key.to_string()).or_default())
    }

    /// Returns the built environment, building it first if needed. Two callers needing the same
    /// new environment share one build. Dropping the future stops the build and removes what
    /// it made.
    pub async fn ensure(&self, env: &PythonEnv, log: &mut BuildLog) -> Result<ReadyEnv, EnvError> {
        let started = Instant::now();
        let key = key(env);
        if let Some(ready) = self.ready(env) {
            log.line(&format!(
                "[berth] environment {key} ({}) is cached at {}",
                env.summary(),
                ready.path.display()
            ))
            .await;
            return Ok(ready);
        }
        let lock = self.lock_for(&key);
        let guard = match lock.try_lock() {
            Ok(g) => g,
            Err(_) => {
                log.line(&format!(
                    "[berth] waiting for environment {key}, which another job or replica is building"
                ))
                .await;
                lock.lock().await
            }
        };
        if let Some(ready) = self.ready(env) {
            log.line(&format!(
                "[berth] environment {key} is ready (built by another job)"
            ))
            .await;
            return Ok(ready);
        }
        let uv = self.uv.as_ref().ok_or(EnvError::UvMissing)?;
        log.line(&format!(
            "[berth] building environment {key}: {}",
            env.summary()
        ))
        .await;
        for s in &env.skipped {
            log.line(&format!(
                "[berth] conda package `{s}` has no PyPI equivalent and is left out (PyPI wheels bring their own libraries)"
            ))
            .await;
        }
        let ready = self.build(uv, env, &key, log).await?;
        drop(guard);
        log.line(&format!(
            "[berth] environment {key} built in {:.1} s at {}",
            started.elapsed().as_secs_f64(),
            ready.path.display()
        ))
        .await;
        Ok(ready)
    }

    async fn build(
        &self,
        uv: &Uv,
        env: &PythonEnv,
        key: &str,
        log: &mut BuildLog,
    ) -> Result<ReadyEnv, EnvError> {
        let staging = self.root.join(".building");
        tokio::fs::create_dir_all(&staging)
            .await
            .map_err(io_at(&staging))?;
        let tmp = Staging(staging.join(format!("{key}-{:016x}", rand::random::<u64>())));
        let interpreter = uv.interpreter(env.python.as_deref(), log).await?;
        uv.venv(&interpreter, &tmp.0, log).await?;
        if !env.requirements.is_empty() {
            let reqs = tmp.0.join("berth-requirements.txt");
            tokio::fs::write(&reqs, env.requirements.join("\n") + "\n")
                .await
                .map_err(io_at(&reqs))?;
            uv.install(&tmp.0.join("bin").join("python"), &reqs, log)
                .await?;
        }
        let marker = Marker {
            definition: env.clone(),
            interpreter: interpreter.display().to_string(),
            built_at: time::OffsetDateTime::now_utc(),
        };
        let bytes = serde_json::to_vec_pretty(&marker).unwrap_or_default();
        let marker_path = tmp.0.join(MARKER);
        tokio::fs::write(&marker_path, bytes)
            .await
            .map_err(io_at(&marker_path))?;
        let dest = self.root.join(key);
        // A folder there without a marker is an unfinished build from an older layout.
        if dest.exists() && !dest.join(MARKER).is_file() {
            let _ = tokio::fs::remove_dir_all(&dest).await;
        }
        tokio::fs::rename(&tmp.0, &dest)
            .await
            .map_err(io_at(&dest))?;
        Ok(ReadyEnv { path: dest })
    }
}

/// A build folder, removed unless it was renamed into the cache.
struct Staging(PathBuf);

impl Drop for Staging {
    fn drop(&mut self) {
        if self.0.exists() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(python: Option<&str>, reqs: &[&str]) -> PythonEnv {
        PythonEnv {
            python: python.map(String::from),
            requirements: reqs.iter().map(|s| s.to_string()).collect(),
            skipped: Vec::new(),
        }
    }

    #[test]
    fn the_key_depends_on_the_interpreter_and_every_requirement() {
        let a = key(&env(Some("3.10"), &["numpy==1.26.*"]));
        assert_eq!(a, key(&env(Some("3.10"), &["numpy==1.26.*"])));
        assert_ne!(a, key(&env(Some("3.11"), &["numpy==1.26.*"])));
        assert_ne!(a, key(&env(Some("3.10"), &["numpy==1.26.*", "six"])));
        assert_ne!(a, key(&env(None, &["numpy==1.26.*"])));
        assert_eq!(a.len(), 24);
    }

    #[test]
    fn skipped_conda_packages_do_not_change_the_key() {
        let mut e = env(Some("3.10"), &["six"]);
        let before = key(&e);
        e.skipped.push("mkl".into());
        assert_eq!(before, key(&e));
    }

    #[test]
    fn requirements_that_only_join_differently_do_not_collide() {
        assert_ne!(key(&env(None, &["a", "b"])), key(&env(None, &["a\0b"])));
    }
}
