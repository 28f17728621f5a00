//! Containing a job in cgroups, so that its limits hold for every process it starts (a
//! `setsid` child included): the kernel enforces its memory limit and reports an OOM kill,
//! cancel and timeout kill the whole group, and its capacity is freed only when the group is
//! empty. cgroup v2 with the `memory` and `pids` controllers where the machine delegates
//! them; otherwise the v1 `memory` and `pids` controllers, with the v2 hierarchy (mounted
//! without controllers) used for `cgroup.kill`. Where Berth may not create cgroups, jobs keep
//! the process-group behaviour, and [`Hierarchies::describe`] says so.

use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The folder under each hierarchy that holds one cgroup per job.
const JOBS: &str = "berth.jobs";

/// Tasks (processes and threads) a job may have at once: stops a fork bomb, leaves room for
/// data loaders' threads.
pub const DEFAULT_PIDS_MAX: u64 = 8192;

/// Where Berth makes job cgroups on this machine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Hierarchies {
    /// cgroup v2 with `memory` and `pids`: `base` holds one folder per job.
    Unified {
        /// `<our cgroup>/berth.jobs`.
        base: PathBuf,
    },
    /// cgroup v1 controllers, and the v2 hierarchy for `cgroup.kill` when mounted.
    Legacy {
        /// `<memory mount><our memory cgroup>/berth.jobs`.
        memory: PathBuf,
        /// The same under the `pids` controller, when mounted.
        pids: Option<PathBuf>,
        /// The same under the v2 hierarchy, when mounted.
        unified: Option<PathBuf>,
    },
    /// No cgroups Berth may use, and why.
    Unavailable(String),
}

/// What `/proc/self/mounts` and `/proc/self/cgroup` say about cgroups.
#[derive(Debug, Default, PartialEq, Eq)]
struct Mounts {
    v2: Option<PathBuf>,
    memory: Option<PathBuf>,
    pids: Option<PathBuf>,
}

fn parse_mounts(mounts: &str) -> Mounts {
    let mut m = Mounts::default();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (Some(dir), Some(fs), Some(opts)) = (f.get(1), f.get(2), f.get(3)) else {
            continue;
        };
        let dir = PathBuf::from(dir);
        match *fs {
            "cgroup2" => m.v2 = m.v2.or(Some(dir)),
            "cgroup" => {
                let has = |c: &str| opts.split(',').any(|o| o == c);
                if has("memory") {
                    m.memory = Some(dir.clone());
                }
                if has("pids") {
                    m.pids = Some(dir);
                }
            }
            _ => {}
        }
    }
    m
}

/// This process's cgroup in the v2 hierarchy and under the `memory` and `pids` controllers.
#[derive(Debug, Default, PartialEq, Eq)]
struct Membership {
    v2: Option<String>,
    memory: Option<String>,
    pids: Option<String>,
}

fn parse_membership(cgroup: &str) -> Membership {
    let mut m = Membership::default();
    for line in cgroup.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let path = Some(path.to_string());
        if ctls.is_empty() {
            m.v2 = path;
        } else {
            let has = |c: &str| ctls.split(',').any(|x| x == c);
            if has("memory") {
                m.memory = path.clone();
            }
            if has("pids") {
                m.pids = path;
            }
        }
    }
    m
}

fn under(mount: &Path, cgroup: &str) -> PathBuf {
    mount.join(cgroup.trim_start_matches('/'))
}

/// The plan for this machine, from its mount table and this process's memberships, with
/// `controllers(dir)` reading a v2 cgroup's `cgroup.controllers`.
fn plan(
    mounts: &Mounts,
    member: &Membership,
    controllers: impl Fn(&Path) -> String,
) -> Hierarchies {
    if let (Some(mount), Some(path)) = (&mounts.v2, &member.v2) {
        let ours = under(mount, path);
        let available = controllers(&ours);
        let has = |c: &str| available.split_whitespace().any(|x| x == c);
        if has("memory") && has("pids") {
            return Hierarchies::Unified {
                base: ours.join(JOBS),
            };
        }
    }
    let v2 = match (&mounts.v2, &member.v2) {
        (Some(mount), Some(path)) => Some(under(mount, path).join(JOBS)),
        _ => None,
    };
    match (&mounts.memory, &member.memory) {
        (Some(mount), Some(path)) => Hierarchies::Legacy {
            memory: under(mount, path).join(JOBS),
            pids: mounts
                .pids
                .as_ref()
                .zip(member.pids.as_ref())
                .map(|(m, p)| under(m, p).join(JOBS)),
            unified: v2,
        },
        _ => Hierarchies::Unavailable(
            "neither cgroup v2 with the memory and pids controllers nor the v1 memory controller is available".into(),
        ),
    }
}

impl Hierarchies {
    /// Finds where this process may make job cgroups for the server whose home is `home`
    /// (each home gets a folder of its own, so two servers never share a job's cgroup), and
    /// makes the jobs' folder (for cgroup v2, enabling `memory` and `pids` for it). Anything
    /// that fails makes it [`Hierarchies::Unavailable`] with the reason.
    pub fn detect(home: &Path) -> Hierarchies {
        Self::detect_scoped(&format!("home-{}", home_tag(home)))
    }

    fn detect_scoped(scope: &str) -> Hierarchies {
        let (Ok(mounts), Ok(cgroup)) = (
            std::fs::read_to_string("/proc/self/mounts"),
            std::fs::read_to_string("/proc/self/cgroup"),
        ) else {
            return Hierarchies::Unavailable(
                "cannot read /proc/self/mounts or /proc/self/cgroup".into(),
            );
        };
        let found = plan(&parse_mounts(&mounts), &parse_membership(&cgroup), |d| {
            std::fs::read_to_string(d.join("cgroup.controllers")).unwrap_or_default()
        })
        .scoped(scope);
        match found.make_base() {
            Ok(()) => found,
            Err(e) => Hierarchies::Unavailable(format!("cannot make job cgroups: {e}")),
        }
    }

    /// The same, with each jobs' folder one level deeper, in `scope`.
    fn scoped(self, scope: &str) -> Hierarchies {
        match self {
            Hierarchies::Unified { base } => Hierarchies::Unified {
                base: base.join(scope),
            },
            Hierarchies::Legacy {
                memory,
                pids,
                unified,
            } => Hierarchies::Legacy {
                memory: memory.join(scope),
                pids: pids.map(|p| p.join(scope)),
                unified: unified.map(|u| u.join(scope)),
            },
            other => other,
        }
    }

    fn make_base(&self) -> io::Result<()> {
        match self {
            Hierarchies::Unified { base } => {
                // `<ours>/berth.jobs/<scope>`
                let jobs = base.parent().unwrap_or(base);
                let ours = jobs.parent().unwrap_or(jobs);
                let enable = |dir: &Path| {
                    std::fs::write(dir.join("cgroup.subtree_control"), "+memory +pids")
                };
                if let Err(e) = enable(ours) {
                    // A cgroup with processes cannot hand controllers to children: move this
                    // server into a leaf of its own first (what systemd's Delegate= expects).
                    if e.raw_os_error() != Some(rustix::io::Errno::BUSY.raw_os_error()) {
                        return Err(e);
                    }
                    let leaf = ours.join("berth.server");
                    std::fs::create_dir_all(&leaf)?;
                    std::fs::write(leaf.join("cgroup.procs"), std::process::id().to_string())?;
                    enable(ours)?;
                }
                std::fs::create_dir_all(base)?;
                enable(jobs)?;
                enable(base)
            }
            Hierarchies::Legacy {
                memory,
                pids,
                unified,
            } => {
                std::fs::create_dir_all(memory)?;
                if let Some(p) = pids {
                    std::fs::create_dir_all(p)?;
                }
                if let Some(u) = unified {
                    std::fs::create_dir_all(u)?;
                }
                Ok(())
            }
            Hierarchies::Unavailable(_) => Ok(()),
        }
    }

    /// One line for the server's log and `compute show`.
    pub fn describe(&self) -> String {
        match self {
            Hierarchies::Unified { .. } => {
                "each job in its own cgroup (v2: memory.max, pids.max, cgroup.kill)".into()
            }
            Hierarchies::Legacy { unified, .. } => format!(
                "each job in its own cgroup (v1 memory and pids{})",
                if unified.is_some() {
                    ", v2 cgroup.kill"
                } else {
                    ""
                }
            ),
            Hierarchies::Unavailable(why) => format!(
                "process groups only ({why}): a job's `setsid` children escape cancel, timeout and the memory limit"
            ),
        }
    }

    /// The folders job cgroups are made in, one per hierarchy.
    pub fn bases(&self) -> Vec<PathBuf> {
        match self {
            Hierarchies::Unified { base } => vec![base.clone()],
            Hierarchies::Legacy {
                memory,
                pids,
                unified,
            } => std::iter::once(memory.clone())
                .chain(pids.clone())
                .chain(unified.clone())
                .collect(),
            Hierarchies::Unavailable(_) => Vec::new(),
        }
    }

    /// Job `name`'s cgroup, whether or not it exists yet.
    pub fn job(&self, name: &str) -> Option<JobCgroup> {
        match self {
            Hierarchies::Unified { base } => Some(JobCgroup {
                memory: Some((base.join(name), Version::V2)),
                pids: Some((base.join(name), Version::V2)),
                tracker: Some(base.join(name)),
                all: vec![base.join(name)],
            }),
            Hierarchies::Legacy {
                memory,
                pids,
                unified,
            } => {
                let mut all = vec![memory.join(name)];
                all.extend(pids.iter().map(|p| p.join(name)));
                all.extend(unified.iter().map(|u| u.join(name)));
                Some(JobCgroup {
                    memory: Some((memory.join(name), Version::V1)),
                    pids: pids.as_ref().map(|p| (p.join(name), Version::V1)),
                    tracker: unified.as_ref().map(|u| u.join(name)),
                    all,
                })
            }
            Hierarchies::Unavailable(_) => None,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum Version {
    V1,
    V2,
}

/// One job's cgroup, in each hierarchy Berth uses.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobCgroup {
    memory: Option<(PathBuf, Version)>,
    pids: Option<(PathBuf, Version)>,
    /// A v2 cgroup: `cgroup.kill` and `cgroup.events`.
    tracker: Option<PathBuf>,
    all: Vec<PathBuf>,
}

/// What a cgroup's processes use, where the kernel says.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    /// CPU time used so far, in microseconds.
    pub cpu_usec: Option<u64>,
    /// Memory in use, in bytes.
    pub memory_bytes: Option<u64>,
}

/// Where a process was before it joined a job's cgroup.
#[derive(Debug)]
pub struct Joined(Vec<PathBuf>);

impl Joined {
    /// Back to these `cgroup.procs` files (see [`own_procs_files`]).
    pub fn back_to(procs: Vec<PathBuf>) -> Joined {
        Joined(procs)
    }

    /// Moves the calling process back where it was; its children stay.
    pub fn go_back(self) {
        let pid = std::process::id().to_string();
        for procs in self.0 {
            let _ = std::fs::write(procs, &pid);
        }
    }
}

impl JobCgroup {
    /// Makes the cgroup with its limits.
    pub fn create(&self, memory_limit: Option<u64>, pids_max: u64) -> io::Result<()> {
        for dir in &self.all {
            std::fs::create_dir_all(dir)?;
        }
        if let (Some((dir, version)), Some(limit)) = (&self.memory, memory_limit) {
            let file = match version {
                Version::V1 => "memory.limit_in_bytes",
                Version::V2 => "memory.max",
            };
            std::fs::write(dir.join(file), limit.to_string())?;
            if *version == Version::V2 {
                // No swap: over the limit is an OOM kill, as on Kubernetes.
                let _ = std::fs::write(dir.join("memory.swap.max"), "0");
            }
        }
        if let Some((dir, _)) = &self.pids {
            std::fs::write(dir.join("pids.max"), pids_max.to_string())?;
        }
        Ok(())
    }

    /// Moves the calling process into the cgroup (what it starts from now on is in it);
    /// returns where it was, for [`JobCgroup::leave`].
    pub fn join(&self) -> io::Result<Joined> {
        let pid = std::process::id().to_string();
        let before = own_procs_files()?;
        for dir in &self.all {
            std::fs::write(dir.join("cgroup.procs"), &pid)?;
        }
        Ok(Joined(before))
    }

    /// Its `cgroup.procs` files: a process that writes its pid to each is in the cgroup.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.all.iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Moves the process `pid` into the cgroup (a spare supervisor, by the server).
    pub fn take_in(&self, pid: u32) -> io::Result<()> {
        for dir in &self.all {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string())?;
        }
        Ok(())
    }

    /// How many processes the kernel killed for memory.
    pub fn oom_kills(&self) -> u64 {
        let Some((dir, version)) = &self.memory else {
            return 0;
        };
        let (file, key) = match version {
            Version::V1 => ("memory.oom_control", "oom_kill"),
            Version::V2 => ("memory.events", "oom_kill"),
        };
        std::fs::read_to_string(dir.join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
            .unwrap_or(0)
    }

    /// What its processes use now: CPU time so far (from the v2 `cpu.stat`, which every v2
    /// cgroup has) and memory (`memory.current`, or v1's `memory.usage_in_bytes`).
    pub fn usage(&self) -> Usage {
        let v2 = self
            .tracker
            .iter()
            .chain(
                self.memory
                    .iter()
                    .filter(|(_, v)| *v == Version::V2)
                    .map(|(d, _)| d),
            )
            .next();
        let cpu_usec = v2.and_then(|d| {
            std::fs::read_to_string(d.join("cpu.stat"))
                .ok()?
                .lines()
                .find_map(|l| l.strip_prefix("usage_usec")?.trim().parse().ok())
        });
        let memory_bytes = self.memory.as_ref().and_then(|(dir, version)| {
            let file = match version {
                Version::V1 => "memory.usage_in_bytes",
                Version::V2 => "memory.current",
            };
            std::fs::read_to_string(dir.join(file))
                .ok()?
                .trim()
                .parse()
                .ok()
        });
        Usage {
            cpu_usec,
            memory_bytes,
        }
    }

    /// Kills every process in the cgroup.
    pub fn kill(&self) {
        if let Some(t) = &self.tracker
            && std::fs::write(t.join("cgroup.kill"), "1").is_ok()
        {
            return;
        }
        for pid in self.pids() {
            if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }

    fn pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for dir in &self.all {
            let procs = std::fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
            out.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// True when no process is left in it (or it does not exist).
    pub fn is_empty(&self) -> bool {
        self.pids().is_empty()
    }

    /// Kills what is left and waits (up to `within`) until the cgroup is empty; then removes
    /// it. False when processes are still there.
    pub async fn empty_and_remove(&self, within: std::time::Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            self.kill();
            if self.is_empty() {
                break;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        for dir in &self.all {
            let _ = std::fs::remove_dir(dir);
        }
        true
    }
}

/// A short name for the server whose home is `home` (12 hex digits of its canonical path's
/// SHA-256), for what it keeps outside the home: its cgroups, its sockets' fallback folder.
pub fn home_tag(home: &Path) -> String {
    let home = home.canonicalize().unwrap_or_else(|_| home.to_path_buf());
    let digest = ring::digest::digest(&ring::digest::SHA256, home.as_os_str().as_encoded_bytes());
    digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `cgroup.procs` files of the calling process's cgroups (where a process that leaves a
/// job's cgroup goes back to).
pub fn own_procs_files() -> io::Result<Vec<PathBuf>> {
    let mounts = parse_mounts(&std::fs::read_to_string("/proc/self/mounts")?);
    let member = parse_membership(&std::fs::read_to_string("/proc/self/cgroup")?);
    let mut out = Vec::new();
    if let (Some(m), Some(p)) = (&mounts.v2, &member.v2) {
        out.push(under(m, p).join("cgroup.procs"));
    }
    if let (Some(m), Some(p)) = (&mounts.memory, &member.memory) {
        out.push(under(m, p).join("cgroup.procs"));
    }
    if let (Some(m), Some(p)) = (&mounts.pids, &member.pids) {
        out.push(under(m, p).join("cgroup.procs"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID_MOUNTS: &str = "tmpfs /sys/fs/cgroup tmpfs rw 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
";
    const HYBRID_CGROUP: &str = "8:pids:/
4:memory:/process_api/abc
0::/
";

    #[test]
    fn a_hybrid_machine_uses_v1_memory_and_pids_and_v2_for_kill() {
        let h = plan(
            &parse_mounts(HYBRID_MOUNTS),
            &parse_membership(HYBRID_CGROUP),
            |_| String::new(),
        );
        assert_eq!(
            h,
            Hierarchies::Legacy {
                memory: PathBuf::from("/sys/fs/cgroup/memory/process_api/abc/berth.jobs"),
                pids: Some(PathBuf::from("/sys/fs/cgroup/pids/berth.jobs")),
                unified: Some(PathBuf::from("/sys/fs/cgroup/unified/berth.jobs")),
            }
        );
    }

    #[test]
    fn a_v2_machine_with_delegated_controllers_uses_v2_alone() {
        let mounts = parse_mounts("cgroup2 /sys/fs/cgroup cgroup2 rw,nsdelegate 0 0\n");
        let member = parse_membership("0::/system.slice/berth.service\n");
        let h = plan(&mounts, &member, |d| {
            assert_eq!(d, Path::new("/sys/fs/cgroup/system.slice/berth.service"));
            "cpu io memory pids".into()
        });
        assert_eq!(
            h,
            Hierarchies::Unified {
                base: PathBuf::from("/sys/fs/cgroup/system.slice/berth.service/berth.jobs")
            }
        );
    }

    #[test]
    fn a_v2_machine_without_memory_is_unavailable_with_the_reason() {
        let mounts = parse_mounts("cgroup2 /sys/fs/cgroup cgroup2 rw 0 0\n");
        let member = parse_membership("0::/user.slice\n");
        let h = plan(&mounts, &member, |_| "cpu io".into());
        assert!(matches!(h, Hierarchies::Unavailable(_)), "{h:?}");
        assert!(
            h.describe().contains("process groups only"),
            "{}",
            h.describe()
        );
    }
}
