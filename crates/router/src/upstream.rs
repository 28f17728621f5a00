//! The replica hop: HTTP/1.1 over kept-alive connections of the router's own, TCP to pods and
//! Unix sockets to local replicas, with one idle pool per replica address. A request is
//! written once, head and body together; the answer is read whole. A pooled connection the
//! replica closed while it was idle is noticed before anything was answered, and the request
//! goes again on a new connection.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::{Context, Poll};

use axum::body::Bytes;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use crate::wire::{self, Buffered, Head, ReadError};

/// Idle connections kept per replica; more are closed when their request is done.
const IDLE_PER_REPLICA: usize = 256;

/// Where a replica listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// `host:port`.
    Tcp(String),
    /// `unix:/path`.
    Unix(PathBuf),
}

impl Target {
    /// The target of a replica address (`host:port` or `unix:/path`); `None` if it is neither.
    pub fn parse(addr: &str) -> Option<Target> {
        if let Some(path) = berth_core::address::ListenAddr::unix_path(addr) {
            return Some(Target::Unix(path.to_path_buf()));
        }
        let (host, port) = addr.rsplit_once(':')?;
        (!host.is_empty() && port.parse::<u16>().is_ok()).then(|| Target::Tcp(addr.to_string()))
    }

    /// The `Host` header a request to it carries.
    fn host(&self) -> &str {
        match self {
            Target::Tcp(a) => a,
            Target::Unix(_) => "localhost",
        }
    }
}

/// A replica's answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// Its headers as sent, less the framing ones (`content-length`, `transfer-encoding`,
    /// `connection`, `keep-alive`).
    pub headers: Vec<(String, Bytes)>,
    pub body: Bytes,
}

impl Reply {
    /// The first value of header `name` (lower case).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_ref())
    }
}

/// Why a request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection could be made: nothing reached the replica.
    #[error("{0}")]
    Connect(String),
    /// The request went, and no whole answer came back.
    #[error("{0}")]
    Failed(String),
}

/// A connection to a replica.
enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

async fn connect(target: &Target) -> Result<Buffered<Stream>, SendError> {
    let stream = match target {
        Target::Tcp(addr) => {
            let s = TcpStream::connect(addr.as_str())
                .await
                .map_err(|e| SendError::Connect(format!("cannot connect to {addr}: {e}")))?;
            let _ = s.set_nodelay(true);
            Stream::Tcp(s)
        }
        Target::Unix(path) => UnixStream::connect(path)
            .await
            .map(Stream::Unix)
            .map_err(|e| {
                SendError::Connect(format!("cannot connect to unix:{}: {e}", path.display()))
            })?,
    };
    Ok(Buffered::new(stream))
}

/// The request a replica gets: `POST /score` with the given headers and the body.
pub fn request(target: &Target, headers: &[(&str, &[u8])], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(160 + body.len());
    out.extend_from_slice(b"POST /score HTTP/1.1\r\nhost: ");
    out.extend_from_slice(target.host().as_bytes());
    out.extend_from_slice(b"\r\n");
    for (k, v) in headers {
        wire::put_header(&mut out, k.as_bytes(), v);
    }
    wire::put_header(
        &mut out,
        b"content-length",
        body.len().to_string().as_bytes(),
    );
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(body);
    out
}

/// Kept-alive connections to replicas, idle ones pooled by address.
#[derive(Default)]
pub struct Upstream {
    idle: Mutex<HashMap<String, Vec<Buffered<Stream>>>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream").finish_non_exhaustive()
    }
}

/// How one exchange on one connection ended.
enum Exchange {
    /// Answered; whether the connection may carry another request.
    Answered(Reply, bool),
    /// Nothing came back and the connection is gone: it was closed while idle.
    Stale(String),
    Failed(String),
}

impl Upstream {
    /// Sends `request` (from [`request`]) to the replica at `addr` and reads its answer.
    pub async fn send(
        &self,
        addr: &str,
        target: &Target,
        request: &[u8],
    ) -> Result<Reply, SendError> {
        let (mut conn, mut pooled) = match self.take(addr) {
            Some(conn) => (conn, true),
            None => (connect(target).await?, false),
        };
        loop {
            match exchange(&mut conn, request).await {
                Exchange::Answered(reply, keep) => {
                    if keep {
                        self.put(addr, conn);
                    }
                    return Ok(reply);
                }
                // The replica closed a pooled one while idle: go again on a new connection.
                Exchange::Stale(_) if pooled => {
                    conn = connect(target).await?;
                    pooled = false;
                }
                Exchange::Stale(e) | Exchange::Failed(e) => return Err(SendError::Failed(e)),
            }
        }
    }

    /// Closes the idle connections of replicas not in `keep`.
    pub fn retain(&self, keep: &std::collections::HashSet<&str>) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.retain(|addr, _| keep.contains(addr.as_str()));
        }
    }

    fn take(&self, addr: &str) -> Option<Buffered<Stream>> {
        self.idle.lock().ok()?.get_mut(addr)?.pop()
    }

    fn put(&self, addr: &str, conn: Buffered<Stream>) {
        if let Ok(mut idle) = self.idle.lock() {
            let list = match idle.get_mut(addr) {
                Some(list) => list,
                None => idle.entry(addr.to_string()).or_default(),
            };
            if list.len() < IDLE_PER_REPLICA {
                list.push(conn);
            }
        }
    }
}

async fn exchange(conn: &mut Buffered<Stream>, request: &[u8]) -> Exchange {
    if let Err(e) = conn.io.write_all(request).await {
        return Exchange::Stale(format!("cannot send the request: {e}"));
    }
    let head = loop {
        match conn.read_head(wire::parse_response).await {
            Ok(h) if (100..200).contains(&h.status) && h.status != 101 => continue,
            Ok(h) => break h,
            // Nothing came back: closed, or reset, before a byte of an answer.
            Err(ReadError::Closed) => {
                return Exchange::Stale(
                    "the replica closed the connection before answering".into(),
                );
            }
            Err(ReadError::Io(e)) if conn.buf.is_empty() => {
                return Exchange::Stale(format!("the connection failed before an answer: {e}"));
            }
            Err(e) => return Exchange::Failed(format!("cannot read the answer: {e}")),
        }
    };
    let Head {
        status,
        headers,
        framing,
        close,
        ..
    } = head;
    let body = match conn.read_body(framing).await {
        Ok(b) => b,
        Err(e) => return Exchange::Failed(format!("cannot read the answer's body: {e}")),
    };
    // Bytes past the answer mean the two sides disagree on framing: not reused.
    let keep = !close && framing != wire::Framing::UntilClose && conn.buf.is_empty();
    Exchange::Answered(
        Reply {
            status,
            headers,
            body,
        },
        keep,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replica_addresses_are_tcp_or_unix_sockets() {
        assert_eq!(
            Target::parse("127.0.0.1:8080"),
            Some(Target::Tcp("127.0.0.1:8080".into()))
        );
        assert_eq!(
            Target::parse("unix:/run/r.sock"),
            Some(Target::Unix("/run/r.sock".into()))
        );
        assert_eq!(Target::parse("no-port"), None);
        assert_eq!(Target::parse("host:port"), None);
    }

    #[test]
    fn the_request_carries_the_given_headers_and_its_length() {
        let t = Target::Tcp("10.0.0.1:5001".into());
        let req = request(&t, &[("content-type", b"application/json")], b"{}");
        assert_eq!(
            String::from_utf8(req).unwrap(),
            "POST /score HTTP/1.1\r\nhost: 10.0.0.1:5001\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"
        );
    }
}
