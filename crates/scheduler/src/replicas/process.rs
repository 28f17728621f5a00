//! One replica's process: a child this server started, or one a previous server started and
//! this one adopted at start-up (replicas outlive their server, as job supervisors do).

use std::os::fd::OwnedFd;
use std::path::Path;

use rustix::event::{PollFd, PollFlags, poll};
use rustix::process::{Pid, PidfdFlags, Signal, pidfd_open, pidfd_send_signal};
use tokio::process::Child;

/// A running replica.
pub enum ReplicaProcess {
    /// Started by this server.
    Child(Child),
    /// Started by an earlier server; watched through a pidfd (which names that process and
    /// no other, whatever happens to its pid).
    Adopted(OwnedFd),
}

impl ReplicaProcess {
    /// Waits until it exits.
    pub async fn wait(&mut self) {
        match self {
            ReplicaProcess::Child(c) => {
                let _ = c.wait().await;
            }
            ReplicaProcess::Adopted(fd) => {
                // Not our child: no SIGCHLD. A pidfd polls readable once the process exits.
                while !has_exited(fd) {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    /// Kills it and waits until it is gone.
    pub async fn kill(&mut self) {
        match self {
            ReplicaProcess::Child(c) => {
                let _ = c.kill().await;
            }
            ReplicaProcess::Adopted(fd) => {
                let _ = pidfd_send_signal(&*fd, Signal::KILL);
                self.wait().await;
            }
        }
    }
}

/// The replica that `pid_file` names, if it is alive and is the `berth runtime` that writes
/// `ready_file` (a pid reused by another process is not adopted).
pub fn adopt(pid_file: &Path, ready_file: &Path) -> Option<ReplicaProcess> {
    let pid: i32 = std::fs::read_to_string(pid_file)
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let pid = Pid::from_raw(pid)?;
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", pid.as_raw_nonzero())).ok()?;
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let ready = ready_file.as_os_str().as_encoded_bytes();
    let ours = args.contains(&b"runtime".as_slice()) && args.contains(&ready);
    if !ours {
        return None;
    }
    let fd = pidfd_open(pid, PidfdFlags::empty()).ok()?;
    Some(ReplicaProcess::Adopted(fd))
}

fn has_exited(fd: &OwnedFd) -> bool {
    let mut fds = [PollFd::new(fd, PollFlags::IN)];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    poll(&mut fds, Some(&zero)).map_or(true, |n| n > 0)
}
