//! The writer thread: takes batches off the bounded batch channel, makes room
//! for each in the window, hands it to the reply reader, and writes its bytes
//! with one `write_all` on the blocking socket.
//!
//! Place in the data flow: between input and the socket. A batch is handed to
//! the reply reader before its bytes are written, so the reader always knows
//! the command a reply answers. When the batch channel closes (the input
//! ended) the writer drops its side of the in-flight channel, which tells the
//! reader no more batches are coming.

use std::io::{self, Write};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};

use crate::batch::Batch;
use crate::conn::Stream;
use crate::window::Window;

/// Why the writer stopped before the input's end.
#[derive(Debug)]
pub enum WriteError {
    /// Writing to the socket failed: the root cause of the stop.
    Io(io::Error),
    /// The reply reader stopped first (and says why).
    Stopped,
}

/// Writes every batch; returns the number of bytes sent.
pub fn write_batches(
    batches: Receiver<Batch>,
    in_flight: Sender<Arc<Batch>>,
    window: &Window,
    mut stream: Stream,
) -> Result<u64, WriteError> {
    let mut bytes_sent = 0u64;
    for batch in batches {
        window
            .acquire(batch.commands.len(), batch.bytes.len())
            .map_err(|_| WriteError::Stopped)?;
        let batch = Arc::new(batch);
        in_flight
            .send(Arc::clone(&batch))
            .map_err(|_| WriteError::Stopped)?;
        if let Err(error) = stream.write_all(&batch.bytes) {
            if window.is_closed() {
                return Err(WriteError::Stopped);
            }
            // Wake the reader, which may be waiting for replies that will
            // never come.
            window.close();
            stream.shutdown();
            return Err(WriteError::Io(error));
        }
        bytes_sent += batch.bytes.len() as u64;
    }
    Ok(bytes_sent)
}
