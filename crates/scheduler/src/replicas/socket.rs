//! Replicas' Unix sockets. A replica listens on a socket file (0600) in a folder only the
//! server's user can enter, so only that user's processes (the server, its routers) reach
//! `/score` around the endpoint's keys. A socket address holds at most 107 bytes of path: when
//! `<home>/sockets` would be too long for one, a private folder under the temporary folder,
//! named by the home, is used instead.

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The longest socket path the kernel takes (`sun_path` less its NUL).
const MAX_SOCKET_PATH: usize = 107;
/// `/<16 hex>.sock`, or `/<16 hex>/r.sock` for a replica run as another user.
const NAME_LEN: usize = 24;
/// The socket's name in a folder of its own.
const IN_FOLDER: &str = "r.sock";

/// Why the sockets' folder could not be made.
#[derive(Debug, thiserror::Error)]
pub enum SocketDirError {
    /// It could not be made or read.
    #[error("cannot make the replicas' socket folder {path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// It exists but another user could reach it.
    #[error(
        "{0} is not a private folder of this user (another owner, a link, or open to others): remove it and start again"
    )]
    NotPrivate(PathBuf),
}

/// The folder for the sockets of the replicas of the server whose home is `home`, made 0700.
pub fn socket_dir(home: &Path) -> Result<PathBuf, SocketDirError> {
    let inside = home.join("sockets");
    let dir = if inside.as_os_str().len() + NAME_LEN <= MAX_SOCKET_PATH {
        inside
    } else {
        let uid = rustix::process::geteuid().as_raw();
        let tag = crate::cgroup::home_tag(home);
        std::env::temp_dir().join(format!("berth-{uid}-{tag}"))
    };
    make_private(&dir)?;
    Ok(dir)
}

/// Makes `dir` 0700, or checks that an existing one is this user's own and private.
fn make_private(dir: &Path) -> Result<(), SocketDirError> {
    let io = |source| SocketDirError::Io {
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io(e)),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(io)?;
    let mine = meta.uid() == rustix::process::geteuid().as_raw();
    if !meta.is_dir() || !mine {
        return Err(SocketDirError::NotPrivate(dir.to_path_buf()));
    }
    if meta.mode() & 0o066 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
    }
    Ok(())
}

/// A fresh socket path in `dir`.
pub fn fresh(dir: &Path) -> PathBuf {
    dir.join(format!("{:016x}.sock", rand::random::<u64>()))
}

/// A fresh socket path for a replica that runs as `owner`: in a folder of its own in `dir`,
/// given to that user (it must create the socket there; the server, root, still opens it).
pub fn fresh_for(dir: &Path, owner: &crate::users::RunAs) -> std::io::Result<PathBuf> {
    // The user passes through the sockets' folder to its own (it lists nothing there; the
    // server's own sockets are 0600).
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
    let folder = dir.join(format!("{:016x}", rand::random::<u64>()));
    std::fs::DirBuilder::new().mode(0o700).create(&folder)?;
    crate::users::give(&folder, owner)?;
    Ok(folder.join(IN_FOLDER))
}

/// The random part of a replica's socket address: the socket's name less `.sock`, or the name
/// of its own folder.
pub fn random_part(addr: &str) -> Option<String> {
    let socket = berth_core::address::ListenAddr::unix_path(addr)?;
    let named = if socket.file_name().is_some_and(|n| n == IN_FOLDER) {
        socket.parent()?.file_name()?
    } else {
        socket.file_stem()?
    };
    Some(named.to_string_lossy().into_owned())
}

/// Removes the socket at a replica's address, if it is a `unix:` one (and its folder, when it
/// has one of its own).
pub fn remove(addr: &str) {
    if let Some(p) = berth_core::address::ListenAddr::unix_path(addr) {
        let _ = std::fs::remove_file(p);
        if p.file_name().is_some_and(|n| n == IN_FOLDER)
            && let Some(folder) = p.parent()
        {
            let _ = std::fs::remove_dir(folder);
        }
    }
}

/// Removes the sockets in `dir` that nothing listens on any more (replicas that were killed);
/// returns them.
pub fn remove_stale(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let refused = |p: &Path| {
        matches!(std::os::unix::net::UnixStream::connect(p),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused || e.kind() == std::io::ErrorKind::NotFound)
    };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            if p.extension().is_some_and(|x| x == "sock") {
                refused(p) && std::fs::remove_file(p).is_ok()
            } else {
                p.is_dir() && refused(&p.join(IN_FOLDER)) && std::fs::remove_dir_all(p).is_ok()
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_home_keeps_its_sockets_inside_it_private() {
        let home = tempfile::tempdir().unwrap();
        let dir = socket_dir(home.path()).unwrap();
        assert_eq!(dir, home.path().join("sockets"));
        let mode = std::fs::metadata(&dir).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }

    #[test]
    fn a_home_too_long_for_a_socket_address_gets_a_private_folder_elsewhere() {
        let base = tempfile::tempdir().unwrap();
        let home = base.path().join("h".repeat(100));
        std::fs::create_dir(&home).unwrap();
        let dir = socket_dir(&home).unwrap();
        assert!(!dir.starts_with(&home));
        assert!(fresh(&dir).as_os_str().len() <= MAX_SOCKET_PATH);
        assert_eq!(
            socket_dir(&home).unwrap(),
            dir,
            "the same home, the same folder"
        );
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn a_folder_open_to_others_is_closed_again() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("sockets");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        socket_dir(home.path()).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o777, 0o700);
    }

    #[test]
    fn each_socket_layout_names_its_replica() {
        assert_eq!(
            random_part("unix:/h/sockets/0123456789abcdef.sock").as_deref(),
            Some("0123456789abcdef")
        );
        assert_eq!(
            random_part("unix:/h/sockets/fedcba9876543210/r.sock").as_deref(),
            Some("fedcba9876543210")
        );
        assert_eq!(random_part("10.0.0.7:5001"), None);
    }

    #[test]
    fn only_sockets_nothing_listens_on_are_stale() {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("a.sock");
        let _listener = std::os::unix::net::UnixListener::bind(&live).unwrap();
        let dead = dir.path().join("b.sock");
        drop(std::os::unix::net::UnixListener::bind(&dead).unwrap());
        assert_eq!(remove_stale(dir.path()), vec![dead]);
        assert!(live.exists());
    }
}
