//! Liveness probes of local replicas: `GET /` on the replica's address (TCP or Unix socket),
//! and when enough fail in a row, the replica is restarted.

use std::time::Duration;

/// `liveness_probe`: `GET /` every `period`, each within `timeout`; `failure_threshold`
/// failures in a row restart the replica. Probing starts `initial_delay` after it is ready.
#[derive(Clone, Copy, Debug)]
pub struct Liveness {
    /// Before the first probe.
    pub initial_delay: Duration,
    /// Between probes.
    pub period: Duration,
    /// For one probe.
    pub timeout: Duration,
    /// Failures in a row that restart the replica.
    pub failure_threshold: u32,
}

/// Resolves when the replica at `addr` has failed its liveness probe `failure_threshold` times
/// in a row; never resolves for a replica with no address yet.
pub(super) async fn unhealthy(addr: Option<String>, probe: Liveness) -> String {
    let Some(addr) = addr else {
        return std::future::pending().await;
    };
    tokio::time::sleep(probe.initial_delay).await;
    let mut failures = 0;
    let mut last = String::new();
    loop {
        let ok = match tokio::time::timeout(probe.timeout, probe_once(&addr)).await {
            Ok(Ok(())) => true,
            Ok(Err(e)) => {
                last = e.to_string();
                false
            }
            Err(_) => {
                last = format!("no answer within {:?}", probe.timeout);
                false
            }
        };
        failures = if ok { 0 } else { failures + 1 };
        if failures >= probe.failure_threshold.max(1) {
            return format!("{failures} failed probes of GET / on {addr}; last: {last}");
        }
        tokio::time::sleep(probe.period).await;
    }
}

/// Why one liveness probe failed.
#[derive(Debug, thiserror::Error)]
enum ProbeFailure {
    /// No connection, or it broke.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// It answered, but not 200.
    #[error("{0}")]
    Status(String),
}

/// One `GET /` that must answer 200.
async fn probe_once(addr: &str) -> Result<(), ProbeFailure> {
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    async fn ask(mut s: impl AsyncRead + AsyncWrite + Unpin) -> std::io::Result<[u8; 12]> {
        s.write_all(b"GET / HTTP/1.1\r\nHost: replica\r\nConnection: close\r\n\r\n")
            .await?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head).await?;
        Ok(head)
    }
    let head = match berth_core::address::ListenAddr::unix_path(addr) {
        Some(p) => ask(tokio::net::UnixStream::connect(p).await?).await?,
        None => ask(tokio::net::TcpStream::connect(addr).await?).await?,
    };
    if head.starts_with(b"HTTP/1.1 200") {
        Ok(())
    } else {
        Err(ProbeFailure::Status(
            String::from_utf8_lossy(&head).into_owned(),
        ))
    }
}
