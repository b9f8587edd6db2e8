//! Response bodies written on a blocking thread from one store connection
//! (the graph export): the writer fills 64 KiB chunks and hands them over a
//! channel of [`IN_FLIGHT`], so a slow client holds the writer back instead
//! of the daemon buffering the document. The first chunk (or error) decides
//! the status: a failure before any byte is an ordinary error answer; a
//! failure after it ends the body with an error, so hyper closes the
//! connection without the last chunk and the client sees a cut-short
//! response, never a short document that looks whole. A client that goes
//! away fails the writer's next send, which stops the export and returns
//! its connection to the pool.

use std::io::{self, Write};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::StatusCode;
use futures::StreamExt;
use tokio::sync::mpsc;

use super::ApiError;
use crate::daemon::pool::StorePool;
use crate::store::{Store, StoreError};

/// Bytes gathered before a chunk is handed to the response.
pub const CHUNK: usize = 64 * 1024;
/// Chunks written but not yet taken by the response: what one download
/// holds in memory is about `(IN_FLIGHT + 2) * CHUNK`.
const IN_FLIGHT: usize = 4;

/// What the writer hands to the response.
enum Piece {
    Data(Bytes),
    /// The document is complete.
    End,
    Failed(StoreError),
}

/// An `io::Write` that cuts what it is given into chunks for the channel.
struct ChunkWriter {
    buf: Vec<u8>,
    tx: mpsc::Sender<Piece>,
    /// Bytes handed over so far.
    sent: u64,
    /// The response was dropped: the client went away.
    gone: bool,
}

impl ChunkWriter {
    fn new(tx: mpsc::Sender<Piece>) -> Self {
        ChunkWriter {
            buf: Vec::with_capacity(CHUNK),
            tx,
            sent: 0,
            gone: false,
        }
    }

    fn hand_over(&mut self, piece: Piece) -> io::Result<()> {
        if self.gone || self.tx.blocking_send(piece).is_err() {
            self.gone = true;
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the client went away",
            ));
        }
        Ok(())
    }

    fn send_buffer(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let data = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let len = data.len() as u64;
        self.hand_over(Piece::Data(Bytes::from(data)))?;
        self.sent += len;
        Ok(())
    }

    /// Sends what is buffered, then the end mark.
    fn finish(&mut self) -> io::Result<()> {
        self.send_buffer()?;
        self.hand_over(Piece::End)
    }
}

impl Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        if self.gone {
            return Err(io::Error::new(
                io::ErrorKind::BrokenPipe,
                "the client went away",
            ));
        }
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send_buffer()?;
        }
        Ok(data.len())
    }

    /// Chunks are sent when full or at the end; a flush changes nothing.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Runs `write` on a blocking thread with one pooled store connection and
/// streams what it writes. `what` names the document in logs. Errors
/// before the first byte (the store cannot be opened, the first read
/// fails) come back as the `ApiError` of the store error.
pub async fn from_store<F>(
    pool: &Arc<StorePool>,
    what: &'static str,
    write: F,
) -> Result<Body, ApiError>
where
    F: FnOnce(&Store, &mut dyn Write) -> Result<(), StoreError> + Send + 'static,
{
    let (tx, mut rx) = mpsc::channel(IN_FLIGHT);
    let pool = Arc::clone(pool);
    // Detached: it ends when the document is written, fails, or the
    // response (the receiver) is dropped.
    tokio::task::spawn_blocking(move || {
        let mut out = ChunkWriter::new(tx);
        let result = pool
            .checkout()
            .and_then(|store| write(&store, &mut out))
            .and_then(|()| out.finish().map_err(StoreError::Export));
        // The connection went back to the pool when `store` was dropped.
        match result {
            Ok(()) => tracing::debug!(what, bytes = out.sent, "Streamed the document."),
            Err(_) if out.gone => tracing::info!(
                what,
                bytes = out.sent,
                "The client went away; stopped writing the document."
            ),
            Err(error) => {
                if out.sent > 0 {
                    tracing::error!(
                        what,
                        bytes = out.sent,
                        %error,
                        "Writing the document failed mid-stream; the response is cut short."
                    );
                } else {
                    tracing::error!(what, %error, "Writing the document failed.");
                }
                // A receiver that is gone needs no word of it.
                let _ = out.tx.blocking_send(Piece::Failed(error));
            }
        }
    });
    let first = match rx.recv().await {
        Some(Piece::Data(data)) => data,
        Some(Piece::End) => return Ok(Body::empty()),
        Some(Piece::Failed(error)) => return Err(error.into()),
        None => {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                cut_short().to_string(),
            ));
        }
    };
    let rest = futures::stream::unfold(Some(rx), |rx| async move {
        let mut rx = rx?;
        match rx.recv().await {
            Some(Piece::Data(data)) => Some((Ok(data), Some(rx))),
            Some(Piece::End) => None,
            Some(Piece::Failed(error)) => Some((Err(io::Error::other(error.to_string())), None)),
            None => Some((Err(cut_short()), None)),
        }
    });
    let chunks = futures::stream::once(async move { Ok::<_, io::Error>(first) }).chain(rest);
    Ok(Body::from_stream(chunks))
}

/// The writer stopped without an end mark or an error (it panicked).
fn cut_short() -> io::Error {
    io::Error::other("the document writer stopped before the end; this is a bug, please report it")
}
