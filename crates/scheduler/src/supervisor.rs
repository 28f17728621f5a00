//! The per-job supervisor: `berth job-supervise <dir>` runs one job's command in its own
//! process group, writes its output to the job's log, enforces `limits.timeout` and the
//! memory limit, obeys cancel, and writes how it ended to `result.json`. It outlives a
//! crashed server, which re-attaches to it on restart.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_core::job::FailureKind;
use rustix::process::{Pid, Signal, kill_process_group};
use serde::{Deserialize, Serialize};
use tokio::process::Command;

use crate::workdir::{JobDir, write_atomic};

/// What to run: written by the backend, read by the supervisor.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunPlan {
    /// The command, interpolated, run with `/bin/sh -c`.
    pub command: String,
    /// Working folder.
    pub cwd: String,
    /// Environment added to the clean one (`sandbox::clean_environment`).
    pub env: BTreeMap<String, String>,
    /// What the job may reach of the server's home; `None`: everything its user may.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<crate::sandbox::Sandbox>,
    /// Folders of the job's outputs, given to `run_as` with its folder.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_paths: Vec<String>,
    /// The user the command runs as (`--run-as`); `None`: the supervisor's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_as: Option<crate::users::RunAs>,
    /// The job's cgroup; `None`: its process group only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<crate::cgroup::JobCgroup>,
    /// `limits.timeout`.
    pub timeout_seconds: Option<u64>,
    /// Memory limit of the process tree, in bytes.
    pub memory_limit_bytes: Option<u64>,
    /// The instance type's name, for messages.
    pub instance_type: String,
    /// Lines written at the top of the log before the command starts.
    pub preamble: Vec<String>,
}

/// How a run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ending {
    /// Exit code 0.
    Succeeded,
    /// Non-zero exit or killed by a signal.
    Failed,
    /// Killed for using too much memory.
    OOMKilled,
    /// Killed at `limits.timeout`.
    DeadlineExceeded,
    /// Killed on request.
    Canceled,
    /// The command could not be started.
    StartFailed,
    /// Its inputs, working folder or environment could not be prepared.
    PreparationFailed,
}

impl Ending {
    /// The failure category a job that ended this way gets; `None` when it did not fail.
    pub fn failure_kind(self) -> Option<FailureKind> {
        match self {
            Ending::Succeeded | Ending::Canceled => None,
            Ending::Failed => Some(FailureKind::NonZeroExit),
            Ending::OOMKilled => Some(FailureKind::OOMKilled),
            Ending::DeadlineExceeded => Some(FailureKind::DeadlineExceeded),
            Ending::StartFailed => Some(FailureKind::StartFailed),
            Ending::PreparationFailed => Some(FailureKind::PreparationFailed),
        }
    }
}

impl RunResult {
    /// A run that ended before its command started.
    pub fn not_started(ending: Ending, message: impl Into<String>) -> RunResult {
        RunResult {
            ending,
            exit_code: None,
            message: message.into(),
        }
    }
}

/// `result.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunResult {
    /// How it ended.
    pub ending: Ending,
    /// Exit code, if the command exited.
    pub exit_code: Option<i32>,
    /// What happened, for a person.
    pub message: String,
}

const TICK: Duration = Duration::from_millis(100);
const GRACE: Duration = Duration::from_secs(5);

/// A job handed to a spare supervisor (`berth job-supervise --next`): one JSON line on its
/// standard input.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Handover {
    /// The job's folder.
    pub dir: PathBuf,
    /// Set when the spare sits in a cgroup of its own, which becomes the job's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placed: Option<Placed>,
}

/// A spare's own cgroup, which the job it takes runs in.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Placed {
    /// The cgroup (instead of the plan's).
    pub cgroup: crate::cgroup::JobCgroup,
    /// The `cgroup.procs` files the spare goes back to once the command started.
    pub leave_to: Vec<PathBuf>,
}

/// A spare supervisor, started ahead of any job: waits for one [`Handover`] on its standard
/// input, then supervises that job as [`supervise`] does. Exits 0 when its input closes first
/// (the server went away).
pub async fn supervise_next() -> i32 {
    let mut line = String::new();
    match std::io::stdin().read_line(&mut line) {
        Ok(0) | Err(_) => return 0,
        Ok(_) => {}
    }
    let handover = match serde_json::from_str::<Handover>(&line) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("berth job-supervise --next: not a handover ({e})");
            return 2;
        }
    };
    // As a supervisor started for this job: its output in the job's supervisor.log, and the job's
    // folder its working folder (how a restarted server recognises it).
    if let Ok(log) = std::fs::File::create(handover.dir.join("supervisor.log")) {
        let _ = rustix::stdio::dup2_stdout(&log);
        let _ = rustix::stdio::dup2_stderr(&log);
    }
    let _ = std::env::set_current_dir(&handover.dir);
    supervise_placed(&handover.dir, handover.placed).await
}

/// Runs the job in `dir` to the end; returns the process exit code for the supervisor itself.
pub async fn supervise(dir: &Path) -> i32 {
    supervise_placed(dir, None).await
}

/// [`supervise`], for a supervisor that already sits in the job's cgroup when `placed` is set.
async fn supervise_placed(dir: &Path, placed: Option<Placed>) -> i32 {
    let dir = JobDir::new(dir);
    let result = match std::fs::read(dir.plan())
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice::<RunPlan>(&b).map_err(|e| e.to_string()))
    {
        Ok(plan) => run(&dir, &plan, placed).await,
        Err(e) => RunResult {
            ending: Ending::StartFailed,
            exit_code: None,
            message: format!("cannot read the run plan: {e}"),
        },
    };
    let code = i32::from(result.ending != Ending::Succeeded);
    if let Ok(mut log) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.log())
    {
        let _ = writeln!(log, "[berth] {}", result.message);
    }
    match serde_json::to_vec(&result) {
        Ok(bytes) if write_atomic(&dir.result(), &bytes).is_ok() => code,
        _ => 2,
    }
}

async fn run(dir: &JobDir, plan: &RunPlan, placed: Option<Placed>) -> RunResult {
    let (plan, placed) = match placed {
        Some(p) => (
            &RunPlan {
                cgroup: Some(p.cgroup),
                ..plan.clone()
            },
            Some(crate::cgroup::Joined::back_to(p.leave_to)),
        ),
        None => (plan, None),
    };
    let cgroup = contain(dir, plan);
    let (mut child, pgid) = match spawn(dir, plan, cgroup.as_ref(), placed) {
        Ok(c) => c,
        Err(e) => {
            if let Some(c) = &cgroup {
                c.empty_and_remove(GRACE).await;
            }
            return RunResult {
                ending: Ending::StartFailed,
                exit_code: None,
                message: e.to_string(),
            };
        }
    };
    let _ = std::fs::write(dir.process_group(), pgid.as_raw_nonzero().to_string());
    let deadline = plan
        .timeout_seconds
        .map(|s| Instant::now() + Duration::from_secs(s));
    let watch = Watch {
        dir,
        plan,
        pgid,
        cgroup: cgroup.as_ref(),
        deadline,
    };
    let mut killed: Option<(Ending, String, Instant)> = None;
    let mut tick = tokio::time::interval(TICK);
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = tick.tick() => {}
        }
        match &killed {
            Some((_, _, at)) if at.elapsed() > GRACE => watch.kill_all(),
            Some(_) => {}
            None => {
                killed = watch
                    .stop_reason()
                    .map(|(ending, message)| (ending, message, Instant::now()));
            }
        }
    };
    // Whatever the command left behind, in its group or its cgroup, goes with it; the job's
    // capacity is free only once nothing of it is left.
    let oom = watch.oom_message();
    watch.kill_all();
    if let Some(c) = &cgroup
        && !c.empty_and_remove(Duration::from_secs(10)).await
    {
        tracing::warn!("processes of the job are still in its cgroup after SIGKILL");
    }
    match (killed, oom) {
        (Some((ending, message, _)), _) => RunResult {
            ending,
            exit_code: status.as_ref().ok().and_then(|s| s.code()),
            message,
        },
        (None, Some(message)) => RunResult {
            ending: Ending::OOMKilled,
            exit_code: status.as_ref().ok().and_then(|s| s.code()),
            message,
        },
        (None, None) => outcome(status),
    }
}

/// Makes the job's cgroup with its limits; `None` (and a line in the log) when it cannot.
fn contain(dir: &JobDir, plan: &RunPlan) -> Option<crate::cgroup::JobCgroup> {
    let c = plan.cgroup.as_ref()?;
    match c.create(plan.memory_limit_bytes, crate::cgroup::DEFAULT_PIDS_MAX) {
        Ok(()) => Some(c.clone()),
        Err(e) => {
            if let Ok(mut log) = std::fs::OpenOptions::new().append(true).open(dir.log()) {
                let _ = writeln!(
                    log,
                    "[berth] cannot make the job's cgroup ({e}); its limits hold for its process group only"
                );
            }
            None
        }
    }
}

/// What the supervisor watches while the command runs.
struct Watch<'a> {
    dir: &'a JobDir,
    plan: &'a RunPlan,
    pgid: Pid,
    cgroup: Option<&'a crate::cgroup::JobCgroup>,
    deadline: Option<Instant>,
}

impl Watch<'_> {
    /// SIGKILL to the process group and everything in the cgroup.
    fn kill_all(&self) {
        let _ = kill_process_group(self.pgid, Signal::KILL);
        if let Some(c) = self.cgroup {
            c.kill();
        }
    }

    /// The OOMKilled message when the kernel killed a process of the job for memory.
    fn oom_message(&self) -> Option<String> {
        let c = self.cgroup?;
        (c.oom_kills() > 0).then(|| {
            format!(
                "OOMKilled: the kernel killed a process of the job for going over the {} limit of instance type `{}`; use an instance type with a larger memory limit",
                human_bytes(self.plan.memory_limit_bytes.unwrap_or(0)),
                self.plan.instance_type
            )
        })
    }

    /// Why the command must stop now, if it must: a cancel, its deadline, or memory over its
    /// limit. The group is signalled here (TERM, or KILL for memory).
    fn stop_reason(&self) -> Option<(Ending, String)> {
        if self.dir.cancel_flag().exists() {
            let _ = kill_process_group(self.pgid, Signal::TERM);
            return Some((Ending::Canceled, "canceled on request".into()));
        }
        if self.deadline.is_some_and(|d| Instant::now() >= d) {
            let _ = kill_process_group(self.pgid, Signal::TERM);
            let msg = format!(
                "DeadlineExceeded: the job ran longer than limits.timeout ({}s) and was stopped",
                self.plan.timeout_seconds.unwrap_or(0)
            );
            return Some((Ending::DeadlineExceeded, msg));
        }
        if self.cgroup.is_some() {
            // The kernel enforces the limit; an OOM kill ends the whole job.
            let msg = self.oom_message()?;
            self.kill_all();
            return Some((Ending::OOMKilled, msg));
        }
        let limit = self.plan.memory_limit_bytes?;
        let used = group_rss(self.pgid.as_raw_nonzero().get());
        if used <= limit {
            return None;
        }
        let _ = kill_process_group(self.pgid, Signal::KILL);
        let msg = format!(
            "OOMKilled: the job's processes used {} of memory, over the {} limit of instance type `{}`; use an instance type with a larger memory limit",
            human_bytes(used),
            human_bytes(limit),
            self.plan.instance_type
        );
        Some((Ending::OOMKilled, msg))
    }
}

/// Why the command could not be started.
#[derive(Debug, thiserror::Error)]
enum StartFailure {
    /// The job's log could not be opened or shared.
    #[error("cannot open the job log: {0}")]
    Log(#[source] std::io::Error),
    /// `/bin/sh` could not be started.
    #[error("cannot start `/bin/sh -c {command}`: {source}")]
    Spawn {
        /// The command.
        command: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The command ended before its process group could be recorded.
    #[error("the command exited before it could be watched")]
    Gone,
    /// The job's sandbox could not be entered.
    #[error("cannot enter the job's sandbox: {0}")]
    Sandbox(#[source] landlock::RulesetError),
}

/// Starts the command in its own process group (and cgroup), its output going to the job's
/// log. It is started from a thread of its own that first enters the job's sandbox: Landlock
/// binds that thread and what it starts, not this supervisor, which keeps managing the
/// job's cgroup. A supervisor `placed` in the cgroup already leaves it once the command started.
fn spawn(
    dir: &JobDir,
    plan: &RunPlan,
    cgroup: Option<&crate::cgroup::JobCgroup>,
    placed: Option<crate::cgroup::Joined>,
) -> Result<(tokio::process::Child, Pid), StartFailure> {
    let log = open_log(dir, plan).map_err(StartFailure::Log)?;
    let out = log.try_clone().map_err(StartFailure::Log)?;
    let err = log.try_clone().map_err(StartFailure::Log)?;
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(&plan.command)
        .current_dir(&plan.cwd)
        .env_clear()
        .envs(crate::sandbox::clean_environment(std::env::vars()))
        .envs(&plan.env)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(false);
    if let Some(who) = &plan.run_as {
        // The job's folder and outputs are the job user's; the supervisor's own files (its
        // log, result) it keeps writing as root.
        crate::users::give(dir.root(), who).map_err(StartFailure::Log)?;
        for out in plan.output_paths.iter().map(std::path::Path::new) {
            let _ = crate::users::give(out, who);
        }
        command
            .uid(who.uid)
            .gid(who.gid)
            .env("HOME", &who.home)
            .env("USER", &who.name)
            .env("LOGNAME", &who.name);
    }
    // The command starts inside the cgroup: the supervisor joins it for the spawn only.
    let joined = placed.or_else(|| cgroup.and_then(|c| c.join().ok()));
    let runtime = tokio::runtime::Handle::current();
    let spawned = std::thread::scope(|s| {
        s.spawn(|| {
            let _entered = runtime.enter();
            if let Some(sandbox) = &plan.sandbox {
                let enforced = crate::sandbox::enter(sandbox).map_err(StartFailure::Sandbox)?;
                let _ = writeln!(&log, "{}", enforced.describe());
            }
            command.spawn().map_err(|source| StartFailure::Spawn {
                command: plan.command.clone(),
                source,
            })
        })
        .join()
        .unwrap_or(Err(StartFailure::Gone))
    });
    if let Some(j) = joined {
        j.go_back();
    }
    let child = spawned?;
    let pgid = child
        .id()
        .and_then(|p| Pid::from_raw(p as i32))
        .ok_or(StartFailure::Gone)?;
    Ok((child, pgid))
}

/// How a command that ended by itself ended.
fn outcome(status: std::io::Result<std::process::ExitStatus>) -> RunResult {
    match status {
        Ok(s) if s.success() => RunResult {
            ending: Ending::Succeeded,
            exit_code: Some(0),
            message: "the command exited with code 0".into(),
        },
        Ok(s) => match s.code() {
            Some(c) => RunResult {
                ending: Ending::Failed,
                exit_code: Some(c),
                message: format!("the command exited with code {c}"),
            },
            None => {
                use std::os::unix::process::ExitStatusExt;
                let sig = s.signal().unwrap_or(0);
                RunResult {
                    ending: Ending::Failed,
                    exit_code: Some(128 + sig),
                    message: format!("the command was killed by signal {sig}"),
                }
            }
        },
        Err(e) => RunResult {
            ending: Ending::Failed,
            exit_code: None,
            message: format!("lost track of the command: {e}"),
        },
    }
}

fn open_log(dir: &JobDir, plan: &RunPlan) -> std::io::Result<std::fs::File> {
    let path = dir.log();
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    for line in &plan.preamble {
        writeln!(f, "{line}")?;
    }
    Ok(f)
}

/// Resident memory of every process in process group `pgid`, in bytes.
pub fn group_rss(pgid: i32) -> u64 {
    let page = rustix::param::page_size() as u64;
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0;
    };
    let mut total = 0;
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // Fields after the command name, which is in parentheses and may hold spaces.
        let Some(rest) = stat.rfind(')').map(|i| &stat[i + 2..]) else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        // rest[0] is field 3 (state): pgrp is field 5, rss field 24.
        if f.get(2).and_then(|g| g.parse::<i32>().ok()) == Some(pgid) {
            total += f.get(21).and_then(|r| r.parse::<u64>().ok()).unwrap_or(0) * page;
        }
    }
    total
}

/// `2.1Gi`, `512Mi`, `10Ki`.
pub fn human_bytes(b: u64) -> String {
    berth_core::Quantity::from_units(b as i64).display_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failed_ending_has_one_failure_kind() {
        assert_eq!(Ending::Succeeded.failure_kind(), None);
        assert_eq!(Ending::Canceled.failure_kind(), None);
        assert_eq!(
            Ending::Failed.failure_kind(),
            Some(FailureKind::NonZeroExit)
        );
        assert_eq!(
            Ending::StartFailed.failure_kind(),
            Some(FailureKind::StartFailed)
        );
        assert_eq!(
            Ending::PreparationFailed.failure_kind(),
            Some(FailureKind::PreparationFailed)
        );
    }
}
