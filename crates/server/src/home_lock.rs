//! The lock a server holds on its `$BERTH_HOME`: one server a home. A leader on a shared
//! database waits for it instead, as the server that led before may hold it a moment longer.

use crate::{StartError, home_error};

/// The home's lock file.
fn lock_file(home: &std::path::Path) -> Result<std::fs::File, StartError> {
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(home.join("server.lock"))
        .map_err(home_error(home))
}

/// Holds `$BERTH_HOME` for this server: a second one on the same home is refused.
pub(crate) fn lock_home(home: &std::path::Path) -> Result<std::fs::File, StartError> {
    let lock = lock_file(home)?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
        .map_err(|_| StartError::Busy(home.to_path_buf()))?;
    Ok(lock)
}

/// Holds the home for a leader on a shared database: a leader that lost its lease may hold it
/// a moment longer (it stops at its next renewal), so wait for it instead of failing.
pub(crate) async fn lock_home_waiting(home: &std::path::Path) -> Result<std::fs::File, StartError> {
    match lock_home(home) {
        Err(StartError::Busy(_)) => {}
        r => return r,
    }
    eprintln!(
        "berth server: waiting for {} (the server that led before still holds it; it stops when it finds its lease lost)",
        home.display()
    );
    let lock = lock_file(home)?;
    tokio::task::spawn_blocking(move || {
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map(|()| lock)
    })
    .await
    .map_err(|e| home_error(home)(std::io::Error::other(e)))?
    .map_err(|e| home_error(home)(e.into()))
}
