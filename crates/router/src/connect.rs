//! How the router reaches replicas: TCP (`host:port`, pods on a cluster) or a Unix socket
//! (`unix:/path`, local replicas). A socket's path rides in the URI's host, hex-encoded under
//! the reserved `.invalid` name, so the client's pool keeps one set of connections per replica.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::TokioIo;

use berth_core::address::ListenAddr;

const UNIX_HOST_SUFFIX: &str = ".unix.invalid";

/// The scoring URI of a replica address (`host:port` or `unix:/path`).
pub fn score_uri(addr: &str) -> Option<Uri> {
    match ListenAddr::unix_path(addr) {
        Some(path) => {
            let hex: String = path
                .as_os_str()
                .as_encoded_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("http://{hex}{UNIX_HOST_SUFFIX}/score").parse().ok()
        }
        None => format!("http://{addr}/score").parse().ok(),
    }
}

/// The socket path a URI made by [`score_uri`] names, if it names one.
fn socket_path(uri: &Uri) -> Option<PathBuf> {
    let hex = uri.host()?.strip_suffix(UNIX_HOST_SUFFIX)?;
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    use std::os::unix::ffi::OsStringExt;
    Some(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

/// Connects to TCP and Unix-socket replicas.
#[derive(Clone)]
pub struct ReplicaConnector {
    tcp: HttpConnector,
}

impl ReplicaConnector {
    /// A connector with `TCP_NODELAY` (small request/response exchanges never wait on Nagle).
    pub fn new() -> ReplicaConnector {
        let mut tcp = HttpConnector::new();
        tcp.set_nodelay(true);
        ReplicaConnector { tcp }
    }
}

impl Default for ReplicaConnector {
    fn default() -> Self {
        Self::new()
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl tower_service::Service<Uri> for ReplicaConnector {
    type Response = ReplicaStream;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ReplicaStream, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.tcp.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        match socket_path(&uri) {
            Some(path) => Box::pin(async move {
                let s = tokio::net::UnixStream::connect(&path).await?;
                Ok(ReplicaStream::Unix(TokioIo::new(s)))
            }),
            None => {
                let connecting = self.tcp.call(uri);
                Box::pin(async move { Ok(ReplicaStream::Tcp(connecting.await?)) })
            }
        }
    }
}

/// A connection to a replica.
pub enum ReplicaStream {
    /// Over TCP.
    Tcp(TokioIo<tokio::net::TcpStream>),
    /// Over a Unix socket.
    Unix(TokioIo<tokio::net::UnixStream>),
}

impl Connection for ReplicaStream {
    fn connected(&self) -> Connected {
        match self {
            ReplicaStream::Tcp(s) => s.connected(),
            ReplicaStream::Unix(_) => Connected::new(),
        }
    }
}

impl Read for ReplicaStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ReplicaStream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            ReplicaStream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl Write for ReplicaStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            ReplicaStream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            ReplicaStream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ReplicaStream::Tcp(s) => Pin::new(s).poll_flush(cx),
            ReplicaStream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            ReplicaStream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            ReplicaStream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_path_survives_the_uri() {
        let uri = score_uri("unix:/tmp/berth home/sockets/0123456789abcdef.sock").unwrap();
        assert_eq!(uri.path(), "/score");
        assert_eq!(
            socket_path(&uri).unwrap(),
            PathBuf::from("/tmp/berth home/sockets/0123456789abcdef.sock")
        );
    }

    #[test]
    fn a_tcp_address_names_no_socket() {
        let uri = score_uri("10.0.0.7:5001").unwrap();
        assert_eq!(uri.to_string(), "http://10.0.0.7:5001/score");
        assert_eq!(socket_path(&uri), None);
    }
}
