//! Releasing hyper's buffers while a kept-alive connection waits for its next request.
//!
//! hyper keeps an 8 KiB read buffer and an 8 KiB write buffer for as long as a connection
//! lives, so every idle kept-alive connection costs the server 16 KiB for nothing.
//! `Parking` ends hyper's side of the connection, not the TLS connection, once a response
//! has been flushed and the client has stayed silent for a short grace period. The server
//! then waits for the next byte on the bare TLS stream and builds a new hyper connection,
//! which reads that byte first.
//!
//! NOTE: a client that sends part of its next request before a response is flushed and
//! then stalls for the grace period gets its connection closed, because hyper reads the end
//! of stream in the middle of a request. Pipelining clients send whole requests.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Sleep;

/// An I/O stream that reports end of stream to hyper once it is idle between requests.
#[derive(Debug)]
pub struct Parking<S> {
    inner: S,
    /// Bytes read while parked, returned before anything else is read.
    replay: Bytes,
    /// Bytes were written since the last flush.
    wrote: bool,
    /// This wrapper, not the client, ended hyper's connection.
    parked: bool,
    grace: Duration,
    /// Deadline of the grace period, one allocation reused throughout.
    timer: Pin<Box<Sleep>>,
    /// A response was flushed and no request byte has been read since, so the grace
    /// period runs.
    timer_armed: bool,
}

impl<S> Parking<S> {
    pub fn new(inner: S, grace: Duration) -> Parking<S> {
        Parking {
            inner,
            replay: Bytes::new(),
            wrote: false,
            parked: false,
            grace,
            timer: Box::pin(tokio::time::sleep(grace)),
            timer_armed: false,
        }
    }

    /// Returns true when hyper's connection ended because this wrapper parked it.
    pub fn is_parked(&self) -> bool {
        self.parked
    }

    /// Returns the stream itself, to wait on it while no hyper connection exists.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Prepares the wrapper for a new hyper connection that starts with `replay`.
    pub fn resume(&mut self, replay: Bytes) {
        self.replay = replay;
        self.parked = false;
        self.wrote = false;
        self.timer_armed = false;
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Parking<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.replay.is_empty() {
            let count = self.replay.len().min(buf.remaining());
            buf.put_slice(&self.replay[..count]);
            self.replay.advance(count);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        match Pin::new(&mut self.inner).poll_read(context, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    self.timer_armed = false;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending if self.timer_armed => {
                match self.timer.as_mut().poll(context) {
                    Poll::Ready(()) => {
                        // End of stream to hyper, which then ends its connection cleanly.
                        self.parked = true;
                        self.timer_armed = false;
                        Poll::Ready(Ok(()))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Parking<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(context, data);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            self.wrote = true;
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        context: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(context, data);
        if matches!(result, Poll::Ready(Ok(written)) if written > 0) {
            self.wrote = true;
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(context);
        if matches!(result, Poll::Ready(Ok(()))) && self.wrote {
            self.wrote = false;
            // hyper may have polled its read before this flush and will not read again
            // until woken, so the grace timer must wake the task itself.
            let deadline = tokio::time::Instant::now() + self.grace;
            self.timer.as_mut().reset(deadline);
            let _ = self.timer.as_mut().poll(context);
            self.timer_armed = true;
        }
        result
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn parking_ends_stream_after_response_and_grace() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut stream = Parking::new(server, Duration::from_millis(250));
        client.write_all(b"request").await.unwrap();
        let mut buf = [0u8; 7];
        stream.read_exact(&mut buf).await.unwrap();
        stream.write_all(b"response").await.unwrap();
        stream.flush().await.unwrap();

        let count = stream.read(&mut buf).await.unwrap();
        assert_eq!(
            count, 0,
            "an idle stream after a response must read as ended"
        );
        assert!(stream.is_parked());
    }

    #[tokio::test(start_paused = true)]
    async fn parking_waits_while_request_incomplete() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut stream = Parking::new(server, Duration::from_millis(250));
        client.write_all(b"GET").await.unwrap();
        let mut buf = [0u8; 3];
        stream.read_exact(&mut buf).await.unwrap();
        let waited = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
        assert!(waited.is_err(), "a request in progress must not be parked");
        assert!(!stream.is_parked());
    }

    #[tokio::test(start_paused = true)]
    async fn parking_replays_bytes_after_resume() {
        let (_client, server) = tokio::io::duplex(64);
        let mut stream = Parking::new(server, Duration::from_millis(250));
        stream.resume(Bytes::from_static(b"GET /"));
        let mut buf = [0u8; 5];
        stream.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"GET /");
    }
}
