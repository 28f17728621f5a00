//! What a local replica can reach and what holds it: it cannot read the server's token or
//! environment, listens only on a socket of the server's user, runs with its Python workers in a
//! cgroup of its own, and runs as the `--run-as` user when there is one.

#![allow(clippy::unwrap_used)]

mod support;

use support::serving::*;
use support::*;

#[test]
fn a_replica_cannot_read_the_servers_token_or_environment() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path().canonicalize().unwrap();
    let s = Server::start_in(home, &[], &[("SERVER_ONLY_SECRET", "hunter2")]);
    prepare(&s);
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "code/score.py",
        &format!(
            "import os\n\ndef init():\n    pass\n\ndef run(raw):\n    try:\n        open('{}/token').read()\n        token = 'read'\n    except PermissionError:\n        token = 'denied'\n    return {{'token': token, 'secret': os.environ.get('SERVER_ONLY_SECRET', 'unset')}}\n",
            h.display()
        ),
    );
    write(
        dir.path(),
        "dep.yaml",
        "name: nosy\nendpoint_name: my-model-endpoint\nmodel: azureml:my-model:1\ncode_configuration:\n  code: ./code\n  scoring_script: score.py\ninstance_count: 1\n",
    );
    s.ok_in(
        dir.path(),
        &[
            "online-deployment",
            "create",
            "-f",
            "dep.yaml",
            "--all-traffic",
        ],
    );
    write(dir.path(), "req.json", "{}");
    let out = s.ok_in(
        dir.path(),
        &[
            "online-endpoint",
            "invoke",
            "-n",
            "my-model-endpoint",
            "-r",
            "req.json",
        ],
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(answer["token"], "denied", "{answer}");
    assert_eq!(answer["secret"], "unset", "{answer}");
}

/// The inodes of the TCP sockets listening on this machine.
fn tcp_listening_inodes() -> std::collections::HashSet<String> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|t| {
            t.lines()
                .skip(1)
                .map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
                .filter(|c| c.get(3).is_some_and(|s| s == "0A"))
                .filter_map(|c| c.get(9).cloned())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn a_replica_listens_only_on_a_socket_of_the_servers_user() {
    use std::os::unix::fs::PermissionsExt;
    let s = Server::start(&[]);
    serve_blue(&s);
    assert!(invoke(&s, &[]).status.success());
    let pids = replica_pids(s.home.path());
    assert!(!pids.is_empty());
    let sockets = s.home.path().join("sockets");
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&sockets), 0o700);
    let files: Vec<_> = std::fs::read_dir(&sockets)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), pids.len(), "a socket per replica: {files:?}");
    assert!(files.iter().all(|f| mode(f) == 0o600));
    let listening = tcp_listening_inodes();
    let tcp: Vec<String> = pids
        .iter()
        .flat_map(|pid| std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap())
        .filter_map(|e| std::fs::read_link(e.unwrap().path()).ok())
        .map(|l| l.to_string_lossy().into_owned())
        .filter_map(|l| Some(l.strip_prefix("socket:[")?.strip_suffix(']')?.to_string()))
        .filter(|inode| listening.contains(inode))
        .collect();
    assert!(tcp.is_empty(), "the replica listens on TCP: {tcp:?}");
}

/// The line of `/proc/<pid>/cgroup` for the memory controller (v1), else the v2 one.
fn memory_cgroup(pid: u32) -> String {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap_or_default();
    let line = |want: &dyn Fn(&str) -> bool| text.lines().find(|l| want(l)).map(str::to_string);
    line(&|l| {
        l.split(':')
            .nth(1)
            .is_some_and(|c| c.split(',').any(|c| c == "memory"))
    })
    .or_else(|| line(&|l| l.starts_with("0::")))
    .unwrap_or_default()
}

/// The processes whose parent is `pid`.
fn children_of(pid: u32) -> Vec<u32> {
    pids()
        .filter(|p| proc_state(*p).is_some_and(|(_, parent)| parent == pid))
        .collect()
}

#[test]
fn each_replica_and_its_python_workers_run_in_a_cgroup_of_their_own() {
    let s = Server::start(&[]);
    serve_blue(&s);
    let pids = replica_pids(s.home.path());
    assert!(pids.len() >= 2, "the seed deployment has two replicas");
    let groups: Vec<String> = pids.iter().map(|p| memory_cgroup(*p)).collect();
    for (pid, group) in pids.iter().zip(&groups) {
        assert!(group.contains("/.replica-"), "replica {pid} is in {group}");
        let workers = children_of(*pid);
        assert!(!workers.is_empty(), "replica {pid} has Python workers");
        for w in workers {
            assert_eq!(&memory_cgroup(w), group, "worker {w} of replica {pid}");
        }
    }
    assert_ne!(groups[0], groups[1], "one cgroup per replica");
}

/// The real uid of a process.
fn uid_of(pid: u32) -> Option<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[test]
fn replicas_run_as_the_run_as_user_in_their_cgroup_and_still_answer() {
    let bin = tempfile::tempdir().unwrap();
    let s = Server::start_runnable_by_all(&["--run-as", "nobody"], &bin);
    serve_blue(&s);
    let out = invoke(&s, &[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("predictions"),
        "{}",
        text(&out.stdout)
    );
    let pids = replica_pids(s.home.path());
    assert!(pids.len() >= 2, "the seed deployment has two replicas");
    let groups: std::collections::BTreeSet<String> =
        pids.iter().map(|p| memory_cgroup(*p)).collect();
    assert_eq!(
        groups.len(),
        pids.len(),
        "one cgroup per replica: {groups:?}"
    );
    for pid in pids {
        assert_eq!(uid_of(pid), Some(65534), "replica {pid}");
        assert!(
            memory_cgroup(pid).contains("/.replica-"),
            "replica {pid} is in {}",
            memory_cgroup(pid)
        );
        for w in children_of(pid) {
            assert_eq!(uid_of(w), Some(65534), "worker {w}");
        }
    }
}
