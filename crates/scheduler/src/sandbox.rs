//! Keeping a job's or replica's processes away from the server: a clean environment (only
//! the variables Berth documents and a few the machine needs), and, where the kernel has
//! Landlock, no access to the server's home beyond the process's own folder and what it was
//! given. Outside the home, the machine reads as before; writes go only to the process's own
//! folders, its outputs and the scratch places (`/tmp`, `/var/tmp`, `/dev`, `~/.cache`).
//! A Landlock domain also keeps the process from tracing the server or reading its
//! `/proc/<pid>/environ`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use landlock::{
    ABI, Access, AccessFs, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus,
    path_beneath_rules,
};
use serde::{Deserialize, Serialize};

/// Variables of the launching process a job or replica keeps; everything else (the server's
/// own settings, tokens, `BERTH_*`) is dropped.
const KEPT_VARIABLES: [&str; 13] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "LANG",
    "TZ",
    "TMPDIR",
    "PYENV_ROOT",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "SSL_CERT_FILE",
];

/// The environment a job or replica starts from: the kept variables (and `LC_*`) of `vars`.
pub fn clean_environment(
    vars: impl IntoIterator<Item = (String, String)>,
) -> BTreeMap<String, String> {
    vars.into_iter()
        .filter(|(k, _)| {
            KEPT_VARIABLES.contains(&k.as_str())
                || k.starts_with("LC_")
                || matches!(k.as_str(), "http_proxy" | "https_proxy" | "no_proxy")
        })
        .collect()
}

/// What a sandboxed process may reach of the server's home.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sandbox {
    /// The server's home: out of reach except for the paths below.
    pub protect: PathBuf,
    /// Reached read-write (the job's folder, its outputs).
    pub read_write: Vec<PathBuf>,
    /// Reached read-only (inputs, the environment, a model).
    pub read_only: Vec<PathBuf>,
}

/// Places every process may write to, unless the home is inside them.
fn scratch_places() -> Vec<PathBuf> {
    let mut places: Vec<PathBuf> = ["/tmp", "/var/tmp", "/dev", "/dev/shm"]
        .iter()
        .map(PathBuf::from)
        .collect();
    if let Some(home) = std::env::var_os("HOME") {
        places.push(PathBuf::from(home).join(".cache"));
    }
    places
        .into_iter()
        .filter_map(|p| p.canonicalize().ok())
        .collect()
}

/// The rules of a sandbox: `(read-only, read-write)` paths. Outside the protected folder,
/// every entry of each of its ancestors is readable (writable when it is scratch), except the
/// entry that leads to it.
pub fn rules(sandbox: &Sandbox, scratch: &[PathBuf]) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let protect = sandbox
        .protect
        .canonicalize()
        .unwrap_or_else(|_| sandbox.protect.clone());
    let (mut read, mut write) = (Vec::new(), Vec::new());
    for s in scratch {
        if !protect.starts_with(s) {
            write.push(s.clone());
        }
    }
    for ancestor in protect.ancestors().skip(1) {
        let Ok(entries) = std::fs::read_dir(ancestor) else {
            continue;
        };
        for entry in entries.flatten() {
            let p = entry.path();
            if protect.starts_with(&p) {
                continue;
            }
            if scratch.iter().any(|s| p.starts_with(s)) {
                write.push(p);
            } else {
                read.push(p);
            }
        }
    }
    // A path given that holds the home (a literal `/` input, say) would open all of it.
    let apart = |p: &&PathBuf| {
        let p = p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        !protect.starts_with(p)
    };
    read.extend(sandbox.read_only.iter().filter(apart).cloned());
    write.extend(sandbox.read_write.iter().filter(apart).cloned());
    (read, write)
}

/// How far a sandbox could be enforced on this kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enforcement {
    /// Every rule holds.
    Full,
    /// Some rights are unknown to this kernel's Landlock: reading the home is still refused.
    Partial,
    /// This kernel has no Landlock (or refused it): the process keeps the server user's access.
    None,
}

impl Enforcement {
    /// A line for a job's log.
    pub fn describe(self) -> &'static str {
        match self {
            Enforcement::Full => {
                "[berth] sandbox: Landlock keeps this job out of the server's home (its own folder, inputs and environment excepted)"
            }
            Enforcement::Partial => {
                "[berth] sandbox: Landlock (partly supported by this kernel) keeps this job from reading the server's home"
            }
            Enforcement::None => {
                "[berth] sandbox: this kernel has no Landlock; the job runs with the server user's file access"
            }
        }
    }
}

/// Gives up `CAP_SYS_PTRACE` (held when the server runs as root): without it a job cannot
/// read a non-dumpable process's memory or `/proc/<pid>/environ` (the server makes itself
/// non-dumpable with [`guard_server`]).
fn drop_tracing() {
    use rustix::thread::{
        CapabilitySet, capabilities, remove_capability_from_bounding_set, set_capabilities,
    };
    let _ = remove_capability_from_bounding_set(CapabilitySet::SYS_PTRACE);
    if let Ok(mut sets) = capabilities(None) {
        for set in [
            &mut sets.effective,
            &mut sets.permitted,
            &mut sets.inheritable,
        ] {
            set.remove(CapabilitySet::SYS_PTRACE);
        }
        let _ = set_capabilities(None, sets);
    }
}

/// Makes the server non-dumpable: its memory and `/proc/<pid>/environ` are then out of reach
/// of its jobs (same user, no `CAP_SYS_PTRACE`). It also means no core dumps.
pub fn guard_server() {
    let _ = rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable);
}

/// What this kernel's Landlock can enforce: tried on a thread of its own that ends at once
/// (a Landlock domain binds only the thread that enters it).
pub fn kernel_support() -> Enforcement {
    let probe = std::thread::spawn(|| {
        Ruleset::default()
            .handle_access(AccessFs::from_all(ABI::V5))
            .and_then(|r| r.create())
            .and_then(|r| r.restrict_self())
            .map(|status| status.ruleset)
    });
    match probe.join() {
        Ok(Ok(RulesetStatus::FullyEnforced)) => Enforcement::Full,
        Ok(Ok(RulesetStatus::PartiallyEnforced)) => Enforcement::Partial,
        _ => Enforcement::None,
    }
}

/// Puts this process, and every process it starts from now on, in `sandbox`. Call it on the
/// process's only thread, before starting others (Landlock binds the calling thread and what
/// it creates afterwards).
pub fn enter(sandbox: &Sandbox) -> Result<Enforcement, landlock::RulesetError> {
    drop_tracing();
    let abi = ABI::V5;
    let (read, write) = rules(sandbox, &scratch_places());
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .create()?
        .add_rules(path_beneath_rules(&read, AccessFs::from_read(abi)))?
        .add_rules(path_beneath_rules(&write, AccessFs::from_all(abi)))?
        .restrict_self()?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => Enforcement::Full,
        RulesetStatus::PartiallyEnforced => Enforcement::Partial,
        RulesetStatus::NotEnforced => Enforcement::None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn a_clean_environment_keeps_only_what_the_machine_needs() {
        let kept = clean_environment(env(&[
            ("PATH", "/usr/bin"),
            ("HOME", "/root"),
            ("LC_ALL", "C.UTF-8"),
            ("https_proxy", "http://proxy:3128"),
            ("BERTH_TOKEN", "secret"),
            ("BERTH_HOME", "/root/.berth"),
            ("AWS_SECRET_ACCESS_KEY", "x"),
        ]));
        let names: Vec<_> = kept.keys().map(String::as_str).collect();
        assert_eq!(names, ["HOME", "LC_ALL", "PATH", "https_proxy"]);
    }

    #[test]
    fn the_home_and_only_the_home_is_left_out() -> std::io::Result<()> {
        let t = tempfile::tempdir()?;
        let root = t.path().canonicalize()?;
        for d in [
            "srv/home/jobs/j1",
            "srv/home/envs/e1",
            "srv/other",
            "scratch/x",
            "usr",
        ] {
            std::fs::create_dir_all(root.join(d))?;
        }
        let home = root.join("srv/home");
        let sandbox = Sandbox {
            protect: home.clone(),
            read_write: vec![home.join("jobs/j1")],
            read_only: vec![home.join("envs/e1")],
        };
        let (read, write) = rules(&sandbox, &[root.join("scratch")]);
        assert!(read.contains(&root.join("srv/other")));
        assert!(read.contains(&root.join("usr")));
        assert!(read.contains(&home.join("envs/e1")));
        assert!(write.contains(&root.join("scratch")));
        assert!(write.contains(&home.join("jobs/j1")));
        for p in read.iter().chain(&write) {
            assert!(
                !home.starts_with(p)
                    && (!p.starts_with(&home)
                        || p.starts_with(home.join("jobs/j1"))
                        || p.starts_with(home.join("envs/e1"))),
                "{} reaches the home",
                p.display()
            );
        }
        Ok(())
    }
}
