//! `berth router`: the inference router as its own process. It long-polls the server's
//! `/api/routes` and serves what it learns; this is how it runs inside a cluster.

use std::sync::Arc;
use std::time::Duration;

use berth_core::serving::RoutesDoc;
use berth_router::InferenceRouter;
use tokio::net::TcpListener;

use crate::cli::RouterArgs;
use crate::client::Client;
use crate::failure::Failure;

/// Follows the server's routes forever, retrying with a pause when it cannot reach it.
async fn follow(
    client: Client,
    router: Arc<InferenceRouter>,
    first: tokio::sync::oneshot::Sender<()>,
) {
    let mut first = Some(first);
    let (mut epoch, mut since) = (0, 0);
    loop {
        match client
            .get::<RoutesDoc>(&format!("/api/routes?since={since}&epoch={epoch}&wait=30"))
            .await
        {
            Ok(doc) => {
                // A restarted server (another epoch) replaces the table whatever its version.
                if doc.epoch != epoch || doc.version != since || first.is_some() {
                    router.update(berth_router::table_from_doc(&doc));
                    tracing::info!(
                        version = doc.version,
                        endpoints = doc.endpoints.len(),
                        "routes updated"
                    );
                }
                (epoch, since) = (doc.epoch, doc.version);
                if let Some(tx) = first.take() {
                    let _ = tx.send(());
                }
            }
            Err(e) => {
                tracing::warn!(error = %e.message, "cannot read routes from the server; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// Runs the standalone router.
pub async fn run(client: Client, args: RouterArgs) -> Result<i32, Failure> {
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => {
            Some(berth_router::tls::server_config(c, k).map_err(|e| Failure::new(e.to_string()))?)
        }
        _ if berth_router::tls::plaintext_allowed(
            &args.listen,
            args.allow_insecure_connections,
        ) =>
        {
            None
        }
        _ => {
            return Err(Failure::new(format!("{} is not on loopback and has no TLS", args.listen))
                .hint("give --tls-cert and --tls-key (PEM), or --allow-insecure-connections for plain HTTP"));
        }
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| Failure::new(format!("cannot listen on {}: {e}", args.listen)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::new(e.to_string()))?;
    let router = InferenceRouter::new();
    let (tx, rx) = tokio::sync::oneshot::channel();
    tokio::spawn(follow(client, Arc::clone(&router), tx));
    let _ = rx.await;
    let scheme = if tls.is_some() { "https" } else { "http" };
    eprintln!("berth router ready on {scheme}://{addr}");
    let app = Arc::clone(&router).app();
    let open_files = berth_router::listen::raise_open_files_limit();
    let limits = berth_router::listen::Limits {
        idle_timeout: std::time::Duration::from_secs(
            args.idle_timeout_seconds.unwrap_or(60).max(1),
        ),
        ..berth_router::listen::Limits::with_max_connections(
            args.max_connections
                .unwrap_or(open_files.saturating_sub(256).clamp(16, 1 << 20) as usize),
        )
    };
    berth_router::listen::serve_scoring(listener, router, app, tls, limits, std::future::pending())
        .await;
    Ok(0)
}
