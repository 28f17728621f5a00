//! The scoring fast path: a plain HTTP/1.1 connection whose requests are
//! `POST /api/v1/endpoint/{name}/score` with a `Content-Length` is served here, head parsed
//! once and the answer written in one go; the first request that is anything else (another
//! route, chunks, `Expect`, an upgrade, HTTP/1.0, a head too large or malformed) hands the
//! connection, with what was read of it, to the general server for the rest of its life.
//! Same checks and answers as the general path: the route and the key from the headers first
//! (401/404 without reading the body), the body limit, keep-alive and idle timeouts.

use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::InferenceRouter;
use crate::answer::{Answer, error_body};
use crate::listen::Limits;
use crate::wire::{self, Buffered, MAX_HEADERS, ReadError};

/// A scoring request's head, as the fast path needs it.
#[derive(Debug)]
pub(crate) struct ScoreHead {
    endpoint: String,
    /// The headers routing and forwarding read (the key, the pin, the content type, the ids).
    headers: HeaderMap,
    length: usize,
    close: bool,
}

/// What a request head is for.
#[derive(Debug)]
pub(crate) enum Parsed {
    Score(ScoreHead),
    /// Anything else: the general server answers it.
    Other,
}

/// The headers kept from a scoring request.
const KEPT: [&str; 5] = [
    "authorization",
    "content-type",
    "x-request-id",
    "x-ms-client-request-id",
    "azureml-model-deployment",
];

/// Parses a request head at the start of `buf`. A scoring request's head is used up; anything
/// else uses nothing, so the general server reads it again.
pub(crate) fn parse_request(buf: &[u8]) -> Result<Option<(Parsed, usize)>, String> {
    let mut raw = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut raw);
    let used = match req.parse(buf) {
        Ok(httparse::Status::Partial) => return Ok(None),
        Ok(httparse::Status::Complete(n)) => n,
        Err(_) => return Ok(Some((Parsed::Other, 0))),
    };
    let other = Ok(Some((Parsed::Other, 0)));
    if req.method != Some("POST") || req.version != Some(1) {
        return other;
    }
    let path = req.path.unwrap_or_default();
    let path = path.split_once('?').map_or(path, |(p, _)| p);
    let Some(endpoint) = path
        .strip_prefix("/api/v1/endpoint/")
        .and_then(|p| p.strip_suffix("/score"))
        .filter(|e| !e.is_empty() && !e.contains(['/', '%']))
    else {
        return other;
    };
    let mut headers = HeaderMap::with_capacity(8);
    let (mut length, mut close) = (None, false);
    for h in req.headers.iter() {
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse::<usize>().ok());
            match (n, length) {
                (Some(n), None) => length = Some(n),
                _ => return other,
            }
        } else if name.eq_ignore_ascii_case("transfer-encoding")
            || name.eq_ignore_ascii_case("expect")
            || name.eq_ignore_ascii_case("upgrade")
        {
            return other;
        } else if name.eq_ignore_ascii_case("connection") {
            close = wire::lists_token(h.value, "close");
        } else if let Some(kept) = KEPT.iter().find(|k| name.eq_ignore_ascii_case(k)) {
            let Ok(value) = HeaderValue::from_bytes(h.value) else {
                return other;
            };
            headers.append(HeaderName::from_static(kept), value);
        }
    }
    Ok(Some((
        Parsed::Score(ScoreHead {
            endpoint: endpoint.to_string(),
            headers,
            length: length.unwrap_or(0),
            close,
        }),
        used,
    )))
}

/// Serves one plain connection of the scoring listener.
pub(crate) async fn connection(
    tcp: TcpStream,
    router: Arc<InferenceRouter>,
    app: Router,
    limits: Limits,
) {
    let mut conn = Buffered::new(tcp);
    // One idle timer and one request timer for the connection's life, moved on at each
    // request (moving a timer later is cheap; a new one per request is not).
    let idle = tokio::time::sleep(limits.idle_timeout);
    tokio::pin!(idle);
    let request = crate::request_timer();
    tokio::pin!(request);
    loop {
        // The next request: its first byte within the idle timeout, its head within the
        // header timeout.
        if conn.buf.is_empty() {
            idle.as_mut()
                .reset(tokio::time::Instant::now() + limits.idle_timeout);
            tokio::select! {
                biased;
                read = conn.fill() => match read {
                    Ok(n) if n > 0 => {}
                    _ => return,
                },
                _ = &mut idle => return,
            }
        }
        let head = match tokio::time::timeout(limits.header_timeout, conn.read_head(parse_request))
            .await
        {
            Err(_) | Ok(Err(ReadError::Closed | ReadError::Truncated | ReadError::Io(_))) => {
                return;
            }
            Ok(Ok(Parsed::Score(head))) => head,
            // Not ours, or too large or malformed for us: the general server answers.
            Ok(Ok(Parsed::Other) | Err(_)) => {
                return crate::listen::connection(conn, app, limits).await;
            }
        };
        let close = head.close;
        let Some(keep) = serve(&mut conn, &router, head, limits, request.as_mut()).await else {
            return;
        };
        if close || !keep {
            let _ = conn.io.shutdown().await;
            return;
        }
    }
}

/// Serves one scoring request whose head was read. Returns whether the connection may carry
/// another request, or `None` when it is gone.
async fn serve(
    conn: &mut Buffered<TcpStream>,
    router: &InferenceRouter,
    head: ScoreHead,
    limits: Limits,
    timer: std::pin::Pin<&mut tokio::time::Sleep>,
) -> Option<bool> {
    let ScoreHead {
        endpoint,
        headers,
        length,
        ..
    } = head;
    let (label, result, keep) = match router.admit(&endpoint, &headers) {
        Err(e) => {
            // Refused on the headers alone: a body not yet here is never read, and the
            // connection closes after the answer instead.
            let keep = conn.buf.len() >= length;
            if keep {
                bytes::Buf::advance(&mut conn.buf, length);
            }
            (e.label(&endpoint), Err(e), keep)
        }
        Ok(_) if length > router.max_body_bytes => {
            let message = format!(
                "the request body could not be read: it is over the {} byte limit",
                router.max_body_bytes
            );
            let body = error_body("BadRequestBody", &message);
            router
                .metrics
                .request(&endpoint, "", StatusCode::PAYLOAD_TOO_LARGE.as_u16());
            write(conn, StatusCode::PAYLOAD_TOO_LARGE, &[], &body, false).await?;
            return Some(false);
        }
        Ok(table) => {
            read_body(conn, length, limits).await?;
            let body = conn.buf.split_to(length).freeze();
            let result = router.route(&table, &endpoint, &headers, body, timer).await;
            (endpoint.as_str(), result, true)
        }
    };
    let (status, deployment, ok) = match result {
        Ok((answer, name)) => {
            let (status, ok) = (answer.status(), answer.ok.clone());
            write_answer(conn, answer, &name, keep).await?;
            (status, name, ok)
        }
        Err(e) => {
            let (status, code) = e.status();
            let body = error_body(code, &e.to_string());
            write(conn, status, &[], &body, keep).await?;
            (status, String::new(), None)
        }
    };
    router.count(label, &deployment, status, ok);
    Some(keep)
}

/// Reads until the whole body is buffered, each read within the idle timeout.
async fn read_body(conn: &mut Buffered<TcpStream>, length: usize, limits: Limits) -> Option<()> {
    if conn.buf.capacity() < length {
        conn.buf.reserve(length - conn.buf.len());
    }
    while conn.buf.len() < length {
        match tokio::time::timeout(limits.idle_timeout, conn.fill()).await {
            Ok(Ok(n)) if n > 0 => {}
            _ => return None,
        }
    }
    Some(())
}

/// Writes a replica's answer: its status and headers, which deployment answered and how long
/// it waited.
async fn write_answer(
    conn: &mut Buffered<TcpStream>,
    answer: Answer,
    name: &str,
    keep: bool,
) -> Option<()> {
    let ours = answer.router_headers(name);
    let headers: Vec<(&[u8], &[u8])> = answer
        .replica_headers()
        .map(|(k, v)| (k.as_bytes(), v.as_ref()))
        .chain(ours.iter().map(|(k, v)| (k.as_bytes(), v.as_bytes())))
        .collect();
    write(conn, answer.status(), &headers, &answer.reply.body, keep).await
}

/// Writes a response: status, headers, length, date and body, in one write when small.
async fn write(
    conn: &mut Buffered<TcpStream>,
    status: StatusCode,
    headers: &[(&[u8], &[u8])],
    body: &[u8],
    keep: bool,
) -> Option<()> {
    let mut out = Vec::with_capacity(256 + body.len().min(64 << 10));
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    if !headers.iter().any(|(k, _)| k == b"content-type") && !body.is_empty() {
        wire::put_header(&mut out, b"content-type", b"application/json");
    }
    for (k, v) in headers {
        wire::put_header(&mut out, k, v);
    }
    wire::put_header(
        &mut out,
        header::CONTENT_LENGTH.as_str().as_bytes(),
        body.len().to_string().as_bytes(),
    );
    wire::put_header(&mut out, b"date", &wire::date_now());
    if !keep {
        wire::put_header(&mut out, b"connection", b"close");
    }
    out.extend_from_slice(b"\r\n");
    let written = if body.len() <= 64 << 10 {
        out.extend_from_slice(body);
        conn.io.write_all(&out).await
    } else {
        match conn.io.write_all(&out).await {
            Ok(()) => conn.io.write_all(body).await,
            Err(e) => Err(e),
        }
    };
    written.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> (Parsed, usize) {
        parse_request(s.as_bytes()).unwrap().unwrap()
    }

    #[test]
    fn a_scoring_request_is_parsed_with_what_routing_reads() {
        let (p, used) = parse(
            "POST /api/v1/endpoint/my-ep/score?x=1 HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer k\r\nContent-Length: 2\r\nX-Other: y\r\n\r\n{}",
        );
        let Parsed::Score(h) = p else {
            panic!("not a scoring request")
        };
        assert_eq!(h.endpoint, "my-ep");
        assert_eq!(h.length, 2);
        assert!(!h.close);
        assert_eq!(h.headers.len(), 1);
        assert_eq!(h.headers["authorization"], "Bearer k");
        assert_eq!(used, 115);
    }

    #[test]
    fn everything_else_goes_to_the_general_server_with_nothing_used() {
        for head in [
            "GET /metrics HTTP/1.1\r\n\r\n",
            "POST /api/v1/endpoint/e/score HTTP/1.0\r\nContent-Length: 0\r\n\r\n",
            "POST /api/v1/endpoint/e/score HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            "POST /api/v1/endpoint/e/score HTTP/1.1\r\nExpect: 100-continue\r\n\r\n",
            "POST /api/v1/endpoint/e/score HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
            "POST /api/v1/endpoint/e%2Fx/score HTTP/1.1\r\n\r\n",
            "POST /api/v1/endpoint/e/other HTTP/1.1\r\n\r\n",
            "NOT HTTP AT ALL\r\n\r\n",
        ] {
            let (p, used) = parse(head);
            assert!(matches!(p, Parsed::Other), "{head}");
            assert_eq!(used, 0, "{head}");
        }
    }

    #[test]
    fn a_partial_head_asks_for_more_and_close_is_noticed() {
        assert!(
            parse_request(b"POST /api/v1/endpoint/e/score HTTP/1.1\r\nHost")
                .unwrap()
                .is_none()
        );
        let (p, _) = parse(
            "POST /api/v1/endpoint/e/score HTTP/1.1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
        );
        assert!(matches!(p, Parsed::Score(h) if h.close));
    }
}
