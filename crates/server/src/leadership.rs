//! Several servers on one PostgreSQL database: the one holding the leader lease runs; the
//! others wait as standbys, saying who leads, and the first to find the lease lapsed takes
//! over (its start then re-attaches running jobs and replicas as any restart does). A leader
//! renews its lease every second; one that finds it lost (it was paused past the lease, and
//! another took over) or cannot renew it for as long as the lease lasts stops at once, so
//! that two servers never act on the same state. Until then, the database itself refuses its
//! writes: the server's store carries the lease's epoch, and a write under an old epoch fails
//! (migration 0005's fence).

use std::net::SocketAddr;
use std::time::Duration;

use berth_store::Store;
use berth_store::lease::{Claim, Lease};
use tracing::{error, info};

use crate::StartError;

/// How long a lease lasts without renewal: about how long a standby waits after its leader
/// died.
pub const LEASE_MS: i64 = 5_000;

/// How often a leader renews, and a standby looks.
const EVERY: Duration = Duration::from_millis(1_000);

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// This process, as a lease holder: host, process id and a random part.
fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

/// The API URL a standby forwards to while this server leads: `advertise_url`, else the
/// listener's address (this machine's host name for a listener on every interface).
pub fn advertised(advertise_url: Option<&str>, scheme: &str, api_addr: SocketAddr) -> String {
    if let Some(url) = advertise_url {
        return url.trim_end_matches('/').to_string();
    }
    if api_addr.ip().is_unspecified()
        && let Ok(host) = std::fs::read_to_string("/proc/sys/kernel/hostname")
        && !host.trim().is_empty()
    {
        return format!("{scheme}://{}:{}", host.trim(), api_addr.port());
    }
    format!("{scheme}://{api_addr}")
}

/// The lease this server holds, the store it is kept in, and the server's own store, fenced
/// by the lease's epoch.
pub struct Leadership {
    lease_store: Store,
    fenced: Store,
    lease: Lease,
}

/// Waits until this server leads on the database at `url`: at once when nobody else does;
/// otherwise as a standby at `me`, saying who leads (again when that changes) and keeping the
/// leader's API URL in `leader_url` for the standby's forwarding.
pub async fn lead(
    url: &str,
    me: &str,
    leader_url: &tokio::sync::watch::Sender<String>,
) -> Result<Leadership, StartError> {
    let store = Store::connect(url).await?;
    let holder = holder_id();
    let mut said: Option<String> = None;
    loop {
        match store.claim_lead(&holder, now_ms(), LEASE_MS).await? {
            Claim::Leader(lease) => {
                if said.is_some() {
                    eprintln!("berth server: the leader's lease lapsed; this server takes over");
                }
                let fenced = Store::connect_fenced(url, lease.epoch).await?;
                return Ok(Leadership {
                    lease_store: store,
                    fenced,
                    lease,
                });
            }
            Claim::Held {
                holder: holder_now,
                api_url,
                expires_ms,
            } => {
                leader_url.send_if_modified(|seen| {
                    let changed = *seen != api_url;
                    seen.clone_from(&api_url);
                    changed
                });
                if said.as_deref() != Some(holder_now.as_str()) {
                    let at = if api_url.is_empty() {
                        String::new()
                    } else {
                        format!(" (API {api_url})")
                    };
                    eprintln!(
                        "berth server standby at {me}: {holder_now}{at} leads on this database; this server forwards API requests to it, and takes over if its lease lapses ({} s without renewal)",
                        LEASE_MS / 1000
                    );
                    said = Some(holder_now);
                }
                // Look again in a second, or just after the lease lapses if that is sooner.
                let lapses_in = (expires_ms - now_ms() + 20).clamp(20, EVERY.as_millis() as i64);
                tokio::time::sleep(Duration::from_millis(lapses_in as u64)).await;
            }
        }
    }
}

impl Leadership {
    /// The server's store from then on: its writes are refused once another server holds the
    /// lease.
    pub fn store(&self) -> &Store {
        &self.fenced
    }

    /// Renews the lease every second from now on, recording `api_url` as the leader's. A lost
    /// lease, or none renewed for as long as a lease lasts, ends the process.
    pub fn keep(&self, api_url: String) {
        let (store, lease) = (self.lease_store.clone(), self.lease.clone());
        tokio::spawn(async move {
            let mut last_ok = now_ms();
            let mut url = Some(api_url);
            loop {
                match store
                    .renew_lead(&lease, url.as_deref(), now_ms(), LEASE_MS)
                    .await
                {
                    Ok(true) => {
                        last_ok = now_ms();
                        url = None;
                    }
                    Ok(false) => {
                        error!(
                            "this server lost the leader lease (another server took over after it could not renew it); stopping so that only one server acts"
                        );
                        std::process::exit(75);
                    }
                    Err(e) if now_ms() - last_ok >= LEASE_MS => {
                        error!(error = %e, "the leader lease could not be renewed for as long as it lasts; stopping so that a standby can take over");
                        std::process::exit(75);
                    }
                    Err(e) => info!(error = %e, "renewing the leader lease failed; trying again"),
                }
                tokio::time::sleep(EVERY).await;
            }
        });
    }

    /// Gives the lease up (a clean shutdown), so that a standby takes over at once.
    pub async fn release(&self) {
        let _ = self.lease_store.release_lead(&self.lease).await;
    }
}
