//! The API's bearer token: made on first start into `$BERTH_HOME/token` (mode 0600) and
//! checked on every request, with a constant-time comparison.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use berth_core::secret::constant_time_eq;
use berth_core::serving::{DeploymentRecord, EndpointRecord};
use berth_router::token::TokenKey;

use crate::AppState;
use crate::error::ApiError;

/// Where the token lives under a home folder.
pub fn token_path(home: &Path) -> PathBuf {
    home.join("token")
}

/// Reads the token, creating a random one if there is none. `BERTH_API_TOKEN`, when set,
/// is the token instead (a server in a cluster takes it from a Secret) and is written to the
/// file, so a CLI on the same home finds it.
pub fn load_or_create_token(home: &Path) -> std::io::Result<String> {
    match std::env::var("BERTH_API_TOKEN") {
        Ok(t) if !t.trim().is_empty() => {
            let t = t.trim().to_string();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(token_path(home))?;
            f.write_all(t.as_bytes())?;
            Ok(t)
        }
        _ => load_or_create_secret(&token_path(home)),
    }
}

/// The credential a standalone router presents: it reads the routes (`GET /api/routes`) and
/// nothing else. Derived from the API token, so the server needs no more state and a holder
/// of the API token can make it; the reverse is not possible.
pub fn router_token(api_token: &str) -> String {
    derive(api_token, "router-token")
}

/// The in-cluster PostgreSQL's password (`serverHA`): derived from the API token, so an
/// update of the install renders the same one.
pub fn store_password(api_token: &str) -> String {
    derive(api_token, "store-password")
}

/// Reads a secret file (mode 0600), creating it with 32 random bytes (hex) if it is missing.
pub fn load_or_create_secret(path: &Path) -> std::io::Result<String> {
    let path = path.to_path_buf();
    match std::fs::read_to_string(&path) {
        Ok(t) if !t.trim().is_empty() => return Ok(t.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let bytes: [u8; 32] = rand::random();
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)?;
    f.write_all(token.as_bytes())?;
    Ok(token)
}

/// Lets through the API token or the router token (for `GET /api/routes`).
pub async fn require_router_token(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(t)
            if constant_time_eq(t.as_bytes(), state.router_token.as_bytes())
                || constant_time_eq(t.as_bytes(), state.token.as_bytes()) =>
        {
            next.run(req).await
        }
        Some(_) => ApiError::Unauthorized("the bearer token is wrong".into()).into_response(),
        None => ApiError::Unauthorized("no bearer token was sent".into()).into_response(),
    }
}

/// Rejects requests without the right `Authorization: Bearer <token>`.
pub async fn require_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let presented = req
        .headers()
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match presented {
        Some(t) if constant_time_eq(t.as_bytes(), state.token.as_bytes()) => next.run(req).await,
        Some(_) => ApiError::Unauthorized("the bearer token is wrong".into()).into_response(),
        None => ApiError::Unauthorized("no bearer token was sent".into()).into_response(),
    }
}

/// A secret for one purpose (`label`), derived from the server's signing secret: what holds
/// one cannot sign for another purpose.
pub fn derive(server_secret: &str, label: &str) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, server_secret.as_bytes());
    ring::hmac::sign(&key, label.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The secret that signs an `aml_token` endpoint's tokens, published to routers in place of
/// the server's own: it signs for this endpoint alone, and a deleted endpoint made again under
/// the same name gets another (its old tokens stop working).
pub fn endpoint_token_secret(server_secret: &str, ep: &EndpointRecord) -> String {
    derive(
        server_secret,
        &format!(
            "endpoint-tokens|{}|{}",
            ep.spec.name,
            ep.created_at.unix_timestamp_nanos()
        ),
    )
}

/// The key that signs and checks `ep`'s tokens.
pub fn endpoint_token_key(server_secret: &str, ep: &EndpointRecord) -> TokenKey {
    TokenKey::new(endpoint_token_secret(server_secret, ep).as_bytes())
}

fn files_key(server_secret: &str) -> TokenKey {
    TokenKey::new(derive(server_secret, "revision-files").as_bytes())
}

/// The token that opens revision `revision` of deployment `d`'s files to its pods. It holds
/// while the deployment exists and keeps that revision; deleting the deployment revokes it
/// (a new one of the same name has another `uid`). Routers never hold the key that signs it.
pub fn deployment_token(server_secret: &str, d: &DeploymentRecord, revision: u32) -> String {
    files_key(server_secret).sign(&revision_scope(d, revision), u64::MAX)
}

/// Checks a token made by [`deployment_token`].
pub fn verify_revision_token(
    server_secret: &str,
    d: &DeploymentRecord,
    revision: u32,
    token: &str,
) -> Result<(), berth_router::token::TokenError> {
    files_key(server_secret).verify(&revision_scope(d, revision), token, 0)
}

fn revision_scope(d: &DeploymentRecord, revision: u32) -> String {
    // `/` cannot occur in an endpoint name, so no endpoint's token scope looks like this.
    format!(
        "files/{}/{}/{revision}/{}",
        d.spec.endpoint_name, d.spec.name, d.uid
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_created_once_and_private() -> std::io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir()?;
        let a = load_or_create_token(home.path())?;
        let b = load_or_create_token(home.path())?;
        assert_eq!(a, b);
        assert_eq!(a.len(), 64);
        let mode = std::fs::metadata(token_path(home.path()))?
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        Ok(())
    }
}
