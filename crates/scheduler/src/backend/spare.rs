//! A spare job supervisor, started ahead of the next job so that a job's start costs neither an
//! exec of the Berth binary nor a cgroup migration. The spare is `berth job-supervise --next`,
//! moved by the server into a cgroup of its own (`.spare-<hex>`) while nothing waits on it.
//! A job takes it and the spare's cgroup becomes the job's: the spare is told the job's folder
//! (and that cgroup) on its standard input, starts the command from inside it, then leaves it.
//! (cgroup v2 cannot rename a cgroup, so the job keeps the spare's cgroup name; the server
//! records it in the job's folder.) A spare whose server goes away reads the end of its input
//! and exits.
//!
//! Why: on the first write to a `cgroup.procs` file after a quiet spell, the kernel waits out an
//! RCU grace period (measured here at about 11 ms, against 0.1 ms for the writes right after).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::process::{Child, Command};

use crate::cgroup::{Hierarchies, JobCgroup};
use crate::supervisor::{Handover, Placed};

/// The prefix of a spare's cgroup (job names start with a letter or digit).
const SPARE_PREFIX: &str = ".spare-";

/// A started spare, in its cgroup when there are cgroups.
struct Spare {
    child: Child,
    input: std::fs::File,
    cgroup: Option<JobCgroup>,
}

/// The one spare a local backend keeps ready.
pub struct Spares {
    supervisor: Vec<String>,
    cgroups: Arc<Hierarchies>,
    /// Where a spare goes back to once it started a job's command: the server's cgroups.
    home_procs: Vec<PathBuf>,
    ready: Mutex<Option<Spare>>,
    filling: AtomicBool,
}

impl std::fmt::Debug for Spares {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spares")
            .field("supervisor", &self.supervisor)
            .finish()
    }
}

/// A job a spare took: its supervisor process, and the job's cgroup.
pub struct Taken {
    /// The supervisor.
    pub child: Child,
    /// Its pid.
    pub pid: u32,
    /// The cgroup the job runs in (the spare's), when there are cgroups.
    pub cgroup: Option<JobCgroup>,
}

impl Spares {
    /// Spares running `supervisor --next`, in cgroups of `cgroups`. Removes the empty cgroups
    /// an earlier server left (spares', and replicas' `.replica-*`; their names start with a dot).
    pub fn new(supervisor: Vec<String>, cgroups: Arc<Hierarchies>) -> Arc<Spares> {
        for base in cgroups.bases() {
            let Ok(entries) = std::fs::read_dir(&base) else {
                continue;
            };
            for e in entries.flatten() {
                if e.file_name().to_string_lossy().starts_with('.') {
                    let _ = std::fs::remove_dir(e.path());
                }
            }
        }
        Arc::new(Spares {
            supervisor,
            home_procs: crate::cgroup::own_procs_files().unwrap_or_default(),
            cgroups,
            ready: Mutex::new(None),
            filling: AtomicBool::new(false),
        })
    }

    /// Starts a spare in the background, unless one is ready or starting.
    pub fn refill(self: &Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.ready.lock().is_ok_and(|r| r.is_some()) || self.filling.swap(true, Ordering::AcqRel)
        {
            return;
        }
        let me = Arc::clone(self);
        rt.spawn(async move {
            let started = {
                let me = Arc::clone(&me);
                tokio::task::spawn_blocking(move || me.start()).await
            };
            match started {
                Ok(Ok(spare)) => {
                    if let Ok(mut r) = me.ready.lock() {
                        *r = Some(spare);
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot start a spare job supervisor"),
                Err(_) => {}
            }
            me.filling.store(false, Ordering::Release);
        });
    }

    /// Starts `supervisor --next` and moves it into a cgroup of its own (the slow part).
    fn start(&self) -> std::io::Result<Spare> {
        let (program, args) = self
            .supervisor
            .split_first()
            .ok_or_else(|| std::io::Error::other("no supervisor command is configured"))?;
        let cgroup = self
            .cgroups
            .job(&format!("{SPARE_PREFIX}{:016x}", rand::random::<u64>()));
        if let Some(c) = &cgroup {
            c.create(None, crate::cgroup::DEFAULT_PIDS_MAX)?;
        }
        let mut child = Command::new(program)
            .args(args)
            .arg("--next")
            .env_clear()
            .envs(crate::sandbox::clean_environment(std::env::vars()))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .kill_on_drop(false)
            .spawn()?;
        let input = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("no input to the spare"))?
            .into_owned_fd()?;
        let pid = child.id().unwrap_or(0);
        if let Some(c) = &cgroup
            && let Err(e) = c.take_in(pid)
        {
            let _ = child.start_kill();
            return Err(e);
        }
        Ok(Spare {
            child,
            input: std::fs::File::from(input),
            cgroup,
        })
    }

    /// Hands the job in `dir` to the ready spare; `None` when there is none (or it is gone),
    /// and the caller starts a supervisor the slow way.
    pub fn take(self: &Arc<Self>, dir: &Path) -> Option<Taken> {
        let spare = self.ready.lock().ok()?.take();
        self.refill();
        let mut spare = spare?;
        if !matches!(spare.child.try_wait(), Ok(None)) {
            self.discard(spare);
            return None;
        }
        let cgroup = spare.cgroup.clone();
        let handover = Handover {
            dir: dir.to_path_buf(),
            placed: cgroup.clone().map(|cgroup| Placed {
                cgroup,
                leave_to: self.home_procs.clone(),
            }),
        };
        let mut line = serde_json::to_vec(&handover).ok()?;
        line.push(b'\n');
        // Closing its input after the line: the spare reads one job, then never again.
        let Spare {
            mut child,
            mut input,
            ..
        } = spare;
        if input.write_all(&line).is_err() {
            let _ = child.start_kill();
            return None;
        }
        drop(input);
        let pid = child.id()?;
        Some(Taken { child, pid, cgroup })
    }

    fn discard(&self, mut spare: Spare) {
        let _ = spare.child.start_kill();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = spare.child.wait().await;
                if let Some(c) = spare.cgroup {
                    c.empty_and_remove(std::time::Duration::from_secs(5)).await;
                }
            });
        }
    }
}
