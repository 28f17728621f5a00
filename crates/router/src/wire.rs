//! HTTP/1.1 framing for the router's own paths (the scoring fast path and the replica hop):
//! a connection with its read buffer, heads parsed by `httparse`, bodies by length or chunks.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use axum::body::Bytes;

/// The largest head read; a longer one is not for the fast path.
pub const MAX_HEAD: usize = 64 << 10;
/// Headers parsed at most; a request with more is not for the fast path.
pub const MAX_HEADERS: usize = 64;
/// The largest answer a replica may give (read whole, as the router always has).
pub const MAX_REPLY: usize = 1 << 30;

/// How a message's body is delimited.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Length(usize),
    Chunked,
    /// Until the connection closes (an answer with neither a length nor chunks).
    UntilClose,
}

/// Why a message could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The connection ended before any byte of the message.
    #[error("the connection closed")]
    Closed,
    #[error("the connection closed in the middle of a message")]
    Truncated,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("malformed HTTP: {0}")]
    Malformed(String),
    #[error("the message is over {0} bytes")]
    TooLarge(usize),
}

/// A connection and what has been read from it but not yet used. Reading it as a stream
/// yields the buffered bytes first, so it can be handed to another HTTP implementation.
pub struct Buffered<I> {
    pub io: I,
    pub buf: BytesMut,
}

impl<I: AsyncRead + Unpin> Buffered<I> {
    pub fn new(io: I) -> Self {
        Buffered {
            io,
            buf: BytesMut::with_capacity(8 << 10),
        }
    }

    /// Reads more into the buffer; `Ok(0)` at the end of the stream.
    pub async fn fill(&mut self) -> std::io::Result<usize> {
        if self.buf.capacity() - self.buf.len() < 4 << 10 {
            self.buf.reserve(8 << 10);
        }
        self.io.read_buf(&mut self.buf).await
    }

    /// Reads until `parse` finds a whole head at the start of the buffer, then drops the bytes
    /// it says it used.
    pub async fn read_head<T>(
        &mut self,
        parse: impl Fn(&[u8]) -> Result<Option<(T, usize)>, String>,
    ) -> Result<T, ReadError> {
        loop {
            if !self.buf.is_empty() {
                match parse(&self.buf).map_err(ReadError::Malformed)? {
                    Some((head, used)) => {
                        self.buf.advance(used);
                        return Ok(head);
                    }
                    None if self.buf.len() >= MAX_HEAD => {
                        return Err(ReadError::TooLarge(MAX_HEAD));
                    }
                    None => {}
                }
            }
            let was_empty = self.buf.is_empty();
            if self.fill().await? == 0 {
                return Err(if was_empty {
                    ReadError::Closed
                } else {
                    ReadError::Truncated
                });
            }
        }
    }

    /// Reads until at least `n` bytes are buffered.
    pub async fn fill_to(&mut self, n: usize) -> Result<(), ReadError> {
        while self.buf.len() < n {
            if self.buf.capacity() < n {
                self.buf.reserve(n - self.buf.len());
            }
            if self.fill().await? == 0 {
                return Err(ReadError::Truncated);
            }
        }
        Ok(())
    }

    /// Reads a body framed as `framing`, at most `MAX_REPLY` bytes.
    pub async fn read_body(&mut self, framing: Framing) -> Result<Bytes, ReadError> {
        match framing {
            Framing::Length(n) if n > MAX_REPLY => Err(ReadError::TooLarge(MAX_REPLY)),
            Framing::Length(n) => {
                self.fill_to(n).await?;
                Ok(self.buf.split_to(n).freeze())
            }
            Framing::Chunked => self.read_chunks().await,
            Framing::UntilClose => {
                while self.fill().await? > 0 {
                    if self.buf.len() > MAX_REPLY {
                        return Err(ReadError::TooLarge(MAX_REPLY));
                    }
                }
                Ok(self.buf.split().freeze())
            }
        }
    }

    /// The length of the line at the start of the buffer (without its CRLF), reading on until
    /// the line is whole.
    async fn line(&mut self) -> Result<usize, ReadError> {
        loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                return Ok(i);
            }
            if self.buf.len() > 4096 {
                return Err(ReadError::Malformed("a chunk line is too long".into()));
            }
            if self.fill().await? == 0 {
                return Err(ReadError::Truncated);
            }
        }
    }

    async fn read_chunks(&mut self) -> Result<Bytes, ReadError> {
        let mut body = BytesMut::new();
        loop {
            let len = self.line().await?;
            let size = chunk_size(&self.buf[..len])?;
            self.buf.advance(len + 2);
            if size == 0 {
                // Trailers, then the empty line.
                loop {
                    let len = self.line().await?;
                    self.buf.advance(len + 2);
                    if len == 0 {
                        return Ok(body.freeze());
                    }
                }
            }
            if body.len() + size > MAX_REPLY {
                return Err(ReadError::TooLarge(MAX_REPLY));
            }
            self.fill_to(size + 2).await?;
            body.extend_from_slice(&self.buf[..size]);
            if &self.buf[size..size + 2] != b"\r\n" {
                return Err(ReadError::Malformed("a chunk does not end in CRLF".into()));
            }
            self.buf.advance(size + 2);
        }
    }
}

fn chunk_size(line: &[u8]) -> Result<usize, ReadError> {
    let hex = line.split(|&b| b == b';').next().unwrap_or_default();
    let hex = std::str::from_utf8(hex)
        .ok()
        .map(str::trim)
        .filter(|h| !h.is_empty() && h.len() <= 15)
        .ok_or_else(|| ReadError::Malformed("a chunk size is not hexadecimal".into()))?;
    usize::from_str_radix(hex, 16)
        .map_err(|_| ReadError::Malformed("a chunk size is not hexadecimal".into()))
}

impl<I: AsyncRead + Unpin> AsyncRead for Buffered<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let me = self.get_mut();
        if !me.buf.is_empty() {
            let n = me.buf.len().min(out.remaining());
            out.put_slice(&me.buf[..n]);
            me.buf.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut me.io).poll_read(cx, out)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Buffered<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Appends `name: value\r\n`.
pub fn put_header(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Whether a `Connection` header's value lists `token`.
pub fn lists_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

/// A response head.
#[derive(Debug)]
pub struct Head {
    pub status: u16,
    /// Less the framing headers.
    pub headers: Vec<(String, Bytes)>,
    pub framing: Framing,
    /// The sender will close the connection after this message.
    pub close: bool,
}

/// Parses a response head at the start of `buf`: `None` until it is whole.
pub fn parse_response(buf: &[u8]) -> Result<Option<(Head, usize)>, String> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut raw);
    let used = match resp.parse(buf).map_err(|e| e.to_string())? {
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(n) => n,
    };
    let status = resp.code.ok_or("no status code")?;
    let mut close = resp.version == Some(0);
    let mut length: Option<usize> = None;
    let mut chunked = false;
    let mut headers = Vec::with_capacity(resp.headers.len());
    for h in resp.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok())
                .ok_or("an invalid content-length")?;
            if length.is_some_and(|l| l != n) {
                return Err("two different content-lengths".into());
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = lists_token(h.value, "chunked");
        } else if name.eq_ignore_ascii_case("connection") {
            if lists_token(h.value, "close") {
                close = true;
            } else if lists_token(h.value, "keep-alive") {
                close = false;
            }
        } else if !name.eq_ignore_ascii_case("keep-alive") {
            headers.push((name.to_ascii_lowercase(), Bytes::copy_from_slice(h.value)));
        }
    }
    let framing = if (100..200).contains(&status) || status == 204 || status == 304 {
        Framing::Length(0)
    } else if chunked {
        Framing::Chunked
    } else if let Some(n) = length {
        Framing::Length(n)
    } else {
        Framing::UntilClose
    };
    Ok(Some((
        Head {
            status,
            headers,
            framing,
            close,
        },
        used,
    )))
}

/// The `Date` header's value now, formatted once a second.
pub fn date_now() -> Bytes {
    use std::cell::RefCell;
    use std::time::{SystemTime, UNIX_EPOCH};
    thread_local! {
        static CACHED: RefCell<(u64, Bytes)> = const { RefCell::new((0, Bytes::new())) };
    }
    let now = SystemTime::now();
    let secs = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    CACHED.with(|c| {
        let mut c = c.borrow_mut();
        if c.0 != secs || c.1.is_empty() {
            *c = (secs, Bytes::from(httpdate::fmt_http_date(now)));
        }
        c.1.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffered(bytes: &'static [u8]) -> Buffered<&'static [u8]> {
        Buffered::new(bytes)
    }

    #[tokio::test]
    async fn a_head_split_across_reads_is_read_whole() {
        let mut c = buffered(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nx-a: b\r\n\r\n{}rest");
        let head = c.read_head(parse_response).await.unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.framing, Framing::Length(2));
        assert_eq!(head.headers, vec![("x-a".to_string(), Bytes::from("b"))]);
        assert_eq!(&c.read_body(head.framing).await.unwrap()[..], b"{}");
        assert_eq!(&c.buf[..], b"rest");
    }

    #[tokio::test]
    async fn chunks_and_trailers_are_decoded() {
        let mut c = buffered(
            b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\nt: 1\r\n\r\nnext",
        );
        let head = c.read_head(parse_response).await.unwrap();
        assert_eq!(head.framing, Framing::Chunked);
        assert_eq!(&c.read_body(head.framing).await.unwrap()[..], b"abcde");
        assert_eq!(&c.buf[..], b"next");
    }

    #[tokio::test]
    async fn an_answer_without_length_ends_with_the_connection() {
        let mut c = buffered(b"HTTP/1.0 200 OK\r\n\r\nall of it");
        let head = c.read_head(parse_response).await.unwrap();
        assert!(head.close);
        assert_eq!(head.framing, Framing::UntilClose);
        assert_eq!(&c.read_body(head.framing).await.unwrap()[..], b"all of it");
    }

    #[tokio::test]
    async fn a_cut_or_bad_message_says_which() {
        let mut c = buffered(b"");
        assert!(matches!(
            c.read_head(parse_response).await,
            Err(ReadError::Closed)
        ));
        let mut c = buffered(b"HTTP/1.1 200 OK\r\ncontent-le");
        assert!(matches!(
            c.read_head(parse_response).await,
            Err(ReadError::Truncated)
        ));
        let mut c = buffered(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\nabc");
        let head = c.read_head(parse_response).await.unwrap();
        assert!(matches!(
            c.read_body(head.framing).await,
            Err(ReadError::Truncated)
        ));
        let mut c = buffered(b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n");
        assert!(matches!(
            c.read_head(parse_response).await,
            Err(ReadError::Malformed(_))
        ));
    }

    #[tokio::test]
    async fn buffered_bytes_are_read_first_when_handed_on() {
        let mut c = buffered(b"world");
        c.buf.extend_from_slice(b"hello ");
        let mut all = String::new();
        c.read_to_string(&mut all).await.unwrap();
        assert_eq!(all, "hello world");
    }
}
