//! Bridges between rcross's blocking readers and writers and the engine client's async byte
//! streams: a file or a tar being written becomes a request body, a response body becomes a
//! `Read`.

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use std::io::{self, Read, Write};
use std::pin::Pin;
use tokio::sync::mpsc;

/// Chunks in flight between a producer thread and the request body.
const CHANNEL_DEPTH: usize = 4;
/// Bytes per chunk read from a file or buffered from a writer.
pub const CHUNK: usize = 1 << 20;

pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, io::Error>> + Send>>;

fn receiver_stream(rx: mpsc::Receiver<Result<Bytes, io::Error>>) -> ByteStream {
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

/// A request body fed by `reader` on its own thread, a chunk at a time: a large file is never
/// held in memory.
pub fn read_stream<R: Read + Send + 'static>(mut reader: R) -> ByteStream {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    std::thread::spawn(move || loop {
        let mut buf = vec![0u8; CHUNK];
        let item = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                buf.truncate(n);
                Ok(Bytes::from(buf))
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
        let failed = item.is_err();
        if tx.blocking_send(item).is_err() || failed {
            break;
        }
    });
    receiver_stream(rx)
}

/// The error a [`ChannelWriter`] returns once the request is gone (the engine answered or the
/// connection broke): the request's own error says why.
pub const ENGINE_STOPPED_READING: &str = "the engine stopped reading";

/// A writer whose bytes become a request body; use it from a thread outside the runtime.
pub struct ChannelWriter {
    tx: mpsc::Sender<Result<Bytes, io::Error>>,
}

impl ChannelWriter {
    /// Ends the body with an error, so the request fails instead of sending a truncated body.
    pub fn fail(&self, message: String) {
        let _ = self.tx.blocking_send(Err(io::Error::other(message)));
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        self.tx
            .blocking_send(Ok(Bytes::copy_from_slice(buf)))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, ENGINE_STOPPED_READING))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A writer (for a producer thread) and the request body it feeds.
pub fn pipe() -> (ChannelWriter, ByteStream) {
    let (tx, rx) = mpsc::channel(CHANNEL_DEPTH);
    (ChannelWriter { tx }, receiver_stream(rx))
}

/// A response body read synchronously, one chunk at a time, on the calling thread (which must
/// not be a runtime thread).
pub struct StreamReader<'a, S> {
    pub runtime: &'a tokio::runtime::Runtime,
    pub stream: Pin<Box<S>>,
    pub chunk: Bytes,
}

impl<S, E> Read for StreamReader<'_, S>
where
    S: Stream<Item = Result<Bytes, E>>,
    E: std::fmt::Display,
{
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            match self.runtime.block_on(self.stream.next()) {
                None => return Ok(0),
                Some(Ok(b)) => self.chunk = b,
                Some(Err(e)) => return Err(io::Error::other(e.to_string())),
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk.split_to(n));
        Ok(n)
    }
}
