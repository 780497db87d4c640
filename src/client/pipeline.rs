//! Pipelined checks: every lineage's `POST /api/check` sent on one connection before the
//! responses are read, so a run with many lineages waits for a few round trips, not one per
//! lineage.
//!
//! HTTP/1.1 lets a client send requests without waiting (RFC 9112, section 9.3.2), and
//! both hyper's server and Go's net/http respond to them in order. hyper's client sends one
//! request at a time, so the checks are written and their responses parsed here, on the
//! TLS stream that hyper then takes over for the downloads. Anything unexpected ends the
//! pipeline early, and the checks left without a response are then sent one by one.

use std::collections::HashMap;

use bytes::Bytes;
use hyper::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::connection::Reply;

/// Requests written before their responses are read; bounds what both sides buffer.
const WINDOW: usize = 32;

/// Largest response head read, in bytes.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// Reason the pipeline stopped before every check had its response.
#[derive(Debug)]
pub enum Stop {
    /// The connection can take no more requests (closed, or `Connection: close`).
    Closed,
    /// A read or write failed, or a response was malformed.
    Failed(String),
}

/// Writes the checks in windows and returns the responses by request body. The stream is
/// at a message boundary when this returns `Ok`, ready for more requests.
pub async fn send_checks<S>(
    stream: &mut S,
    request_head: &str,
    bodies: &[&[u8]],
    max_body: usize,
) -> (HashMap<Vec<u8>, Reply>, Option<Stop>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut answers = HashMap::with_capacity(bodies.len());
    let mut reader = ResponseReader::default();
    for window in bodies.chunks(WINDOW) {
        let mut requests = Vec::with_capacity(window.len() * (request_head.len() + 300));
        for body in window {
            requests.extend_from_slice(request_head.as_bytes());
            requests
                .extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
            requests.extend_from_slice(body);
        }
        if let Err(error) = stream.write_all(&requests).await {
            return (
                answers,
                Some(Stop::Failed(format!("writing checks failed: {error}"))),
            );
        }
        if let Err(error) = stream.flush().await {
            return (
                answers,
                Some(Stop::Failed(format!("writing checks failed: {error}"))),
            );
        }
        for body in window {
            match reader.next(stream, max_body).await {
                Ok(Some((reply, keep_alive))) => {
                    answers.insert(body.to_vec(), reply);
                    if !keep_alive {
                        return (answers, Some(Stop::Closed));
                    }
                }
                Ok(None) => return (answers, Some(Stop::Closed)),
                Err(reason) => return (answers, Some(Stop::Failed(reason))),
            }
        }
    }
    if !reader.buffer.is_empty() {
        // Bytes beyond the last response: the stream cannot be handed on safely.
        return (
            answers,
            Some(Stop::Failed(
                "unexpected bytes after the last response".to_owned(),
            )),
        );
    }
    (answers, None)
}

/// Reads HTTP/1.1 responses one after another from a stream.
#[derive(Debug, Default)]
struct ResponseReader {
    buffer: Vec<u8>,
}

impl ResponseReader {
    /// Reads more bytes; false at end of stream.
    async fn fill<S: tokio::io::AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
    ) -> Result<bool, String> {
        let mut chunk = [0u8; 8192];
        let count = stream
            .read(&mut chunk)
            .await
            .map_err(|error| format!("reading responses failed: {error}"))?;
        self.buffer.extend_from_slice(&chunk[..count]);
        Ok(count > 0)
    }

    /// Reads one response: the reply and whether the connection stays open after it.
    /// `None` when the stream ended cleanly before a new response began.
    async fn next<S: tokio::io::AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        max_body: usize,
    ) -> Result<Option<(Reply, bool)>, String> {
        let head_end = loop {
            if let Some(end) = find(&self.buffer, b"\r\n\r\n") {
                break end;
            }
            if self.buffer.len() > MAX_HEAD_BYTES {
                return Err(format!("a response head exceeds {MAX_HEAD_BYTES} bytes"));
            }
            if !self.fill(stream).await? {
                return if self.buffer.is_empty() {
                    Ok(None)
                } else {
                    Err("the connection closed inside a response head".to_owned())
                };
            }
        };
        let head = String::from_utf8_lossy(&self.buffer[..head_end]).into_owned();
        self.buffer.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or_default();
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or_default();
        let status = parts
            .next()
            .and_then(|code| code.parse::<u16>().ok())
            .and_then(|code| StatusCode::from_u16(code).ok())
            .filter(|_| version.starts_with("HTTP/1."))
            .ok_or_else(|| format!("invalid status line {status_line:?}"))?;

        let mut length = None;
        let mut chunked = false;
        let mut keep_alive = version == "HTTP/1.1";
        let mut headers = hyper::HeaderMap::new();
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                return Err(format!("invalid header line {line:?}"));
            };
            let (name, value) = (name.trim().to_ascii_lowercase(), value.trim());
            match name.as_str() {
                "content-length" => {
                    let parsed: usize = value
                        .parse()
                        .map_err(|_| format!("invalid Content-Length {value:?}"))?;
                    if length.is_some_and(|known| known != parsed) {
                        return Err("conflicting Content-Length headers".to_owned());
                    }
                    length = Some(parsed);
                }
                "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
                "connection" => {
                    let value = value.to_ascii_lowercase();
                    if value.contains("close") {
                        keep_alive = false;
                    } else if value.contains("keep-alive") {
                        keep_alive = true;
                    }
                }
                _ => {}
            }
            if let (Ok(name), Ok(value)) = (
                hyper::header::HeaderName::from_bytes(name.as_bytes()),
                hyper::header::HeaderValue::from_str(value),
            ) {
                headers.append(name, value);
            }
        }
        let body = if chunked {
            self.chunked_body(stream, max_body).await?
        } else if let Some(length) = length {
            if length > max_body {
                return Err(format!("an answer of {length} bytes exceeds {max_body}"));
            }
            self.exact(stream, length).await?
        } else if status.is_informational() || status == StatusCode::NO_CONTENT {
            Vec::new()
        } else {
            // The body runs to the end of the connection, which then cannot be reused.
            keep_alive = false;
            while self.fill(stream).await? {
                if self.buffer.len() > max_body {
                    return Err(format!("an answer exceeds {max_body} bytes"));
                }
            }
            std::mem::take(&mut self.buffer)
        };
        let reply = Reply {
            status,
            body: Bytes::from(body),
            retry_after: super::connection::retry_after(&headers),
        };
        Ok(Some((reply, keep_alive)))
    }

    /// Takes exactly `length` bytes.
    async fn exact<S: tokio::io::AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        length: usize,
    ) -> Result<Vec<u8>, String> {
        while self.buffer.len() < length {
            if !self.fill(stream).await? {
                return Err("the connection closed inside a response body".to_owned());
            }
        }
        Ok(self.buffer.drain(..length).collect())
    }

    /// Takes a chunked body (RFC 9112, section 7.1), ignoring extensions and trailers.
    async fn chunked_body<S: tokio::io::AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
        max_body: usize,
    ) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let line = self.line(stream).await?;
            let size_text = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| format!("invalid chunk size {size_text:?}"))?;
            if size == 0 {
                // Trailer lines, then the empty line that ends the message.
                while !self.line(stream).await?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > max_body {
                return Err(format!("an answer exceeds {max_body} bytes"));
            }
            body.extend(self.exact(stream, size).await?);
            if !self.line(stream).await?.is_empty() {
                return Err("a chunk is not followed by CRLF".to_owned());
            }
        }
    }

    /// Takes one line without its CRLF.
    async fn line<S: tokio::io::AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
    ) -> Result<String, String> {
        loop {
            if let Some(end) = find(&self.buffer, b"\r\n") {
                let line = String::from_utf8_lossy(&self.buffer[..end]).into_owned();
                self.buffer.drain(..end + 2);
                return Ok(line);
            }
            if self.buffer.len() > MAX_HEAD_BYTES {
                return Err("a chunk line is too long".to_owned());
            }
            if !self.fill(stream).await? {
                return Err("the connection closed inside a chunked body".to_owned());
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEAD: &str = "POST /api/check HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n";

    async fn answer(
        server_output: &[u8],
        bodies: &[&[u8]],
    ) -> (HashMap<Vec<u8>, Reply>, Option<Stop>) {
        let (mut client, mut server) = tokio::io::duplex(1 << 20);
        server.write_all(server_output).await.unwrap();
        let result = send_checks(&mut client, HEAD, bodies, 1024).await;
        let mut sent = vec![0u8; 4096];
        let count = server.read(&mut sent).await.unwrap();
        assert!(
            String::from_utf8_lossy(&sent[..count]).starts_with("POST /api/check HTTP/1.1\r\n")
        );
        result
    }

    #[tokio::test]
    async fn pipeline_reads_length_and_chunked_bodies() {
        let output = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}\
HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n0\r\n\r\n";
        let bodies: [&[u8]; 2] = [b"one", b"two"];
        let (answers, stop) = answer(output, &bodies).await;
        assert!(stop.is_none(), "{stop:?}");
        assert_eq!(&answers[&b"one".to_vec()].body[..], b"{}");
        assert_eq!(&answers[&b"two".to_vec()].body[..], b"abc");
    }

    #[tokio::test]
    async fn pipeline_stops_at_connection_close() {
        let output = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
        let bodies: [&[u8]; 2] = [b"one", b"two"];
        let (answers, stop) = answer(output, &bodies).await;
        assert!(matches!(stop, Some(Stop::Closed)), "{stop:?}");
        let reply = &answers[&b"one".to_vec()];
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(reply.retry_after, Some(std::time::Duration::from_secs(7)));
        assert!(!answers.contains_key(b"two".as_slice()));
    }

    #[tokio::test]
    async fn pipeline_rejects_malformed_responses() {
        for output in [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}"[..],
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n",
        ] {
            let (_, stop) = answer(output, &[b"one"]).await;
            assert!(matches!(stop, Some(Stop::Failed(_))), "{stop:?}");
        }
    }
}
