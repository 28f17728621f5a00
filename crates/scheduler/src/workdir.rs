//! A job's folder (its code snapshot, inputs, outputs, logs and run files) and a deployment
//! revision's folder (its code snapshot, the model it serves, environment and replica logs).

use std::io;
use std::path::{Path, PathBuf};

pub use crate::tree::{copy_tree, list_files};

/// The layout of one job's folder under `$BERTH_HOME/jobs/<name>`.
#[derive(Clone, Debug)]
pub struct JobDir {
    root: PathBuf,
}

impl JobDir {
    /// The folder at `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        JobDir { root: root.into() }
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The code snapshot (the command's working folder).
    pub fn code(&self) -> PathBuf {
        self.root.join("code")
    }
    /// Downloaded inputs.
    pub fn inputs(&self) -> PathBuf {
        self.root.join("inputs")
    }
    /// Default output folders.
    pub fn outputs(&self) -> PathBuf {
        self.root.join("outputs")
    }
    /// The job's log: stdout and stderr together.
    pub fn log(&self) -> PathBuf {
        self.root.join("user_logs").join("std_log.txt")
    }
    /// What the supervisor runs.
    pub fn plan(&self) -> PathBuf {
        self.root.join("run.json")
    }
    /// How the run ended, written by the supervisor.
    pub fn result(&self) -> PathBuf {
        self.root.join("result.json")
    }
    /// Present when a cancel was asked for.
    pub fn cancel_flag(&self) -> PathBuf {
        self.root.join("cancel")
    }
    /// The supervisor's pid.
    pub fn supervisor_pid(&self) -> PathBuf {
        self.root.join("supervisor.pid")
    }
    /// The job's cgroup, when it is not the one named after it (a spare supervisor's).
    pub fn cgroup(&self) -> PathBuf {
        self.root.join("cgroup.json")
    }
    /// The command's process group.
    pub fn process_group(&self) -> PathBuf {
        self.root.join("pgid")
    }

    /// Removes what only a running job needs (its run plan, result, pids, cgroup note and
    /// cancel flag, an empty supervisor log) and the empty folders its command was given
    /// (`code/outputs`, `code/logs`, `outputs`, `inputs`): once the job's end is stored, a
    /// trivial job keeps its log and little else. Call it only after that.
    pub fn tidy_after_end(&self) {
        for f in [
            self.plan(),
            self.result(),
            self.supervisor_pid(),
            self.process_group(),
            self.cgroup(),
            self.cancel_flag(),
        ] {
            let _ = std::fs::remove_file(f);
        }
        let supervisor_log = self.root.join("supervisor.log");
        if std::fs::metadata(&supervisor_log).is_ok_and(|m| m.len() == 0) {
            let _ = std::fs::remove_file(supervisor_log);
        }
        // `remove_dir` removes only empty folders.
        for d in [
            self.code().join("outputs"),
            self.code().join("logs"),
            self.outputs(),
            self.inputs(),
        ] {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// The layout of one deployment revision's folder,
/// `$BERTH_HOME/deployments/<endpoint>/<deployment>/rev-<n>`.
#[derive(Clone, Debug)]
pub struct RevisionDir {
    root: PathBuf,
}

impl RevisionDir {
    /// Revision `revision` of the deployment whose folder is `deployment_dir`.
    pub fn of(deployment_dir: impl AsRef<Path>, revision: u32) -> Self {
        RevisionDir {
            root: deployment_dir.as_ref().join(format!("rev-{revision}")),
        }
    }

    /// The folder itself.
    pub fn root(&self) -> &Path {
        &self.root
    }
    /// The scoring code's snapshot.
    pub fn code(&self) -> PathBuf {
        self.root.join("code")
    }
    /// Names the model folder this revision serves, for its replicas that start after a
    /// newer revision replaced it in the record (they fetch it on a cluster).
    pub fn model_note(&self) -> PathBuf {
        self.root.join("model-dir")
    }
    /// The environment build's log.
    pub fn environment_log(&self) -> PathBuf {
        self.root.join("environment.log")
    }
    /// Replica `i`'s log.
    pub fn replica_log(&self, i: usize) -> PathBuf {
        self.root.join(format!("replica-{i}.log"))
    }
}

/// Writes a file atomically: a temporary beside it, then a rename.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn after_the_end_a_trivial_jobs_folder_keeps_its_log_and_what_the_command_wrote() {
        let t = tempfile::tempdir().unwrap();
        let dir = JobDir::new(t.path());
        for f in [
            "run.json",
            "result.json",
            "supervisor.pid",
            "pgid",
            "cgroup.json",
            "supervisor.log",
        ] {
            std::fs::write(
                t.path().join(f),
                if f == "supervisor.log" { "" } else { "x" },
            )
            .unwrap();
        }
        for d in ["code/outputs", "code/logs", "outputs", "inputs"] {
            std::fs::create_dir_all(t.path().join(d)).unwrap();
        }
        std::fs::create_dir_all(dir.log().parent().unwrap()).unwrap();
        std::fs::write(dir.log(), "hi\n").unwrap();
        std::fs::write(t.path().join("code/train.py"), "print(1)").unwrap();
        std::fs::create_dir_all(t.path().join("outputs/model")).unwrap();
        dir.tidy_after_end();
        let mut left: Vec<String> = walk(t.path(), t.path());
        left.sort();
        assert_eq!(
            left,
            [
                "code",
                "code/train.py",
                "outputs",
                "outputs/model",
                "user_logs",
                "user_logs/std_log.txt"
            ]
        );
    }

    fn walk(root: &Path, at: &Path) -> Vec<String> {
        std::fs::read_dir(at)
            .unwrap()
            .flatten()
            .flat_map(|e| {
                let p = e.path();
                let mut v = vec![p.strip_prefix(root).unwrap().to_string_lossy().into_owned()];
                if p.is_dir() {
                    v.extend(walk(root, &p));
                }
                v
            })
            .collect()
    }
}
