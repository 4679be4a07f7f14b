//! The writer thread: first resends what a lost connection left
//! unacknowledged, then takes batches off the bounded batch channel. For
//! each it makes room in the window, hands it to the reply reader, and
//! writes its bytes with one `write_all` on the blocking socket.
//!
//! Place in the data flow: between input and the socket, one per
//! connection. A batch is handed to the reply reader before its bytes are
//! written, so the reader always knows the command a reply answers. When the
//! batch channel closes (the input ended) or a stop is requested, the writer
//! drops its side of the in-flight channel, which tells the reader no more
//! batches are coming. Whatever it took but did not hand over goes back to
//! the caller, so a reconnect loses nothing.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, select};

use crate::batch::{Batch, InFlight};
use crate::progress::Counters;
use crate::stop::Stop;
use crate::stream::Stream;
use crate::window::Window;

/// How often a cluster writer whose input has ended looks whether every
/// command is settled (only then can no redirect come any more).
const REDIRECT_POLL: Duration = Duration::from_millis(10);

/// Why the writer ended.
#[derive(Debug)]
pub enum WriterEnd {
    /// The batch channel closed: the input has ended and all of it was
    /// written.
    InputEnded,
    /// A stop was requested; nothing more is taken from the channel.
    Stopped,
    /// Writing to the socket failed: the root cause of this session's end.
    Failed(io::Error),
    /// The reply reader closed the window (it reports why).
    ReaderStopped,
}

#[derive(Debug)]
pub struct WriterOutcome {
    pub end: WriterEnd,
    /// Batches taken but never handed to the reader, in input order.
    pub unsent: Vec<InFlight>,
    pub bytes_sent: u64,
    pub commands_sent: u64,
}

/// Everything the writer of one connection works with.
pub struct Writer<'a> {
    pub stream: Stream,
    pub batches: &'a Receiver<Batch>,
    /// Cluster mode: commands other nodes' readers send here (`MOVED`,
    /// `ASK`), and the count of commands not yet settled anywhere, without
    /// which a writer cannot know that no more redirects will come.
    pub redirects: Option<(&'a Receiver<Batch>, &'a AtomicUsize)>,
    pub in_flight: Sender<InFlight>,
    pub window: &'a Window,
    pub stop: &'a Stop,
    pub progress: Option<&'a Counters>,
}

impl Writer<'_> {
    /// Writes `resend` first, then every batch of the channel.
    pub fn run(mut self, resend: Vec<InFlight>) -> WriterOutcome {
        let mut bytes_sent = 0u64;
        let mut commands_sent = 0u64;
        let mut pending = resend.into_iter();
        let never = crossbeam_channel::never();
        let redirects = self.redirects.map_or(&never, |(redirects, _)| redirects);
        let mut input_ended = false;
        let end = loop {
            let next = match pending.next() {
                Some(resent) => resent,
                None => {
                    if self.stop.is_requested() {
                        break WriterEnd::Stopped;
                    }
                    let batch = if input_ended {
                        let settled = self
                            .redirects
                            .is_none_or(|(_, outstanding)| outstanding.load(Ordering::SeqCst) == 0);
                        if settled {
                            break WriterEnd::InputEnded;
                        }
                        select! {
                            recv(redirects) -> batch => batch.ok(),
                            recv(self.stop.woken()) -> _ => break WriterEnd::Stopped,
                            default(REDIRECT_POLL) => None,
                        }
                    } else {
                        select! {
                            recv(self.batches) -> batch => {
                                input_ended = batch.is_err();
                                batch.ok()
                            }
                            recv(redirects) -> batch => batch.ok(),
                            recv(self.stop.woken()) -> _ => break WriterEnd::Stopped,
                        }
                    };
                    match batch {
                        Some(batch) => InFlight::whole(Arc::new(batch)),
                        None => continue,
                    }
                }
            };
            match self.send(&next) {
                Ok(written) => {
                    bytes_sent += written;
                    commands_sent += next.command_count() as u64;
                    if let Some(progress) = self.progress {
                        Counters::add(&progress.sent, next.command_count() as u64);
                    }
                }
                Err(end) => {
                    let mut unsent = Vec::new();
                    if matches!(end, SendError::NotHandedOver(_)) {
                        unsent.push(next);
                    }
                    unsent.extend(pending);
                    return WriterOutcome {
                        end: end.into_writer_end(),
                        unsent,
                        bytes_sent,
                        commands_sent,
                    };
                }
            }
        };
        WriterOutcome {
            end,
            unsent: pending.collect(),
            bytes_sent,
            commands_sent,
        }
    }

    fn send(&mut self, batch: &InFlight) -> Result<u64, SendError> {
        let bytes = batch.bytes();
        self.window
            .acquire(batch.command_count(), bytes.len())
            .map_err(|_| SendError::NotHandedOver(WriterEnd::ReaderStopped))?;
        if self.in_flight.send(batch.clone()).is_err() {
            return Err(SendError::NotHandedOver(WriterEnd::ReaderStopped));
        }
        if let Err(error) = self.stream.write_all(bytes) {
            if self.window.is_closed() {
                return Err(SendError::HandedOver(WriterEnd::ReaderStopped));
            }
            // Wake the reader, which may be waiting for replies that will
            // never come.
            self.window.close();
            self.stream.shutdown();
            return Err(SendError::HandedOver(WriterEnd::Failed(error)));
        }
        Ok(bytes.len() as u64)
    }
}

/// A send that failed, and whether the reader already has the batch (and so
/// will give it back as unacknowledged).
enum SendError {
    NotHandedOver(WriterEnd),
    HandedOver(WriterEnd),
}

impl SendError {
    fn into_writer_end(self) -> WriterEnd {
        match self {
            SendError::NotHandedOver(end) | SendError::HandedOver(end) => end,
        }
    }
}
