//! Who local jobs run as: `--run-as USER` when the server runs as root.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// A user jobs run as.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunAs {
    /// Its name.
    pub name: String,
    /// Its user id.
    pub uid: u32,
    /// Its primary group id.
    pub gid: u32,
    /// Its home folder.
    pub home: PathBuf,
}

/// Why `--run-as` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum RunAsError {
    /// The server is not root, so it cannot start processes as another user.
    #[error("--run-as needs the server to run as root (it runs as uid {0})")]
    NotRoot(u32),
    /// No such user.
    #[error("--run-as {0}: there is no such user in /etc/passwd")]
    Unknown(String),
    /// Running jobs as root is what happens without the flag.
    #[error("--run-as {0}: that is root; leave the flag out to run jobs as root")]
    Root(String),
}

/// The entry of `passwd` (the text of `/etc/passwd`) for `user`, a name or a numeric uid.
pub fn lookup(passwd: &str, user: &str) -> Option<RunAs> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        let (name, uid, gid, home) = (f.first()?, f.get(2)?, f.get(3)?, f.get(5)?);
        if *name != user && *uid != user {
            return None;
        }
        Some(RunAs {
            name: name.to_string(),
            uid: uid.parse().ok()?,
            gid: gid.parse().ok()?,
            home: PathBuf::from(home),
        })
    })
}

/// The user `--run-as` names, checked: the server must be root and the user must not be.
pub fn resolve(user: &str) -> Result<RunAs, RunAsError> {
    let me = rustix::process::getuid().as_raw();
    if me != 0 {
        return Err(RunAsError::NotRoot(me));
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let found = lookup(&passwd, user).ok_or_else(|| RunAsError::Unknown(user.to_string()))?;
    if found.uid == 0 {
        return Err(RunAsError::Root(user.to_string()));
    }
    Ok(found)
}

/// Gives `path` and everything under it to `who` (a job's folder, before its command starts).
pub fn give(path: &std::path::Path, who: &RunAs) -> std::io::Result<()> {
    let (uid, gid) = (
        rustix::fs::Uid::from_raw(who.uid),
        rustix::fs::Gid::from_raw(who.gid),
    );
    let meta = std::fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    rustix::fs::chown(path, Some(uid), Some(gid))?;
    if meta.is_dir() {
        for entry in std::fs::read_dir(path)? {
            give(&entry?.path(), who)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/bash\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\nml:x:1000:1000:ML:/home/ml:/bin/sh\n";

    #[test]
    fn a_user_is_found_by_name_or_uid() {
        let ml = lookup(PASSWD, "ml").unwrap();
        assert_eq!(
            (ml.uid, ml.gid, ml.home.clone()),
            (1000, 1000, PathBuf::from("/home/ml"))
        );
        assert_eq!(lookup(PASSWD, "1000"), Some(ml));
        assert_eq!(lookup(PASSWD, "ghost"), None);
    }
}
