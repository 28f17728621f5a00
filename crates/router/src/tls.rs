//! TLS (rustls with ring) from PEM files, HTTP/1.1 and HTTP/2 by ALPN; `listen` serves it.

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The certificate file is unreadable or holds no certificate.
    #[error("cannot read the certificate chain from {path}: {reason}")]
    Cert {
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
    /// The key file is unreadable, encrypted or not a private key.
    #[error(
        "cannot read the private key from {path}: {reason} (PEM keys with a passphrase are not supported)"
    )]
    Key {
        /// File.
        path: String,
        /// Why.
        reason: String,
    },
    /// rustls refused the pair.
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(String),
}

/// A listener's TLS configuration.
pub type ServerTls = Arc<rustls::ServerConfig>;

/// A TLS server configuration from a PEM certificate chain (server first) and a PEM key.
pub fn server_config(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: cert.display().to_string(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: cert.display().to_string(),
            reason: "no CERTIFICATE block".into(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.display().to_string(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// True when a listener may serve plain HTTP: on a loopback address, or when insecure
/// connections were allowed on purpose.
pub fn plaintext_allowed(addr: &std::net::SocketAddr, allow_insecure: bool) -> bool {
    allow_insecure || addr.ip().is_loopback()
}
