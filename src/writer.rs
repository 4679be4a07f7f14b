//! The writer thread: first resends what a lost connection left
//! unacknowledged, then takes batches off the bounded batch channel. It
//! sends each in parts that fit the window (the whole batch in one part
//! unless its replies are big, see `window`): for each part it makes room in
//! the window, hands the part to the reply reader, and writes its bytes with
//! one `write_all` on the blocking socket. Under `--rate` or
//! `--max-latency` the parts are a few milliseconds' worth of commands, and
//! each waits its turn on the shared `pace`.
//!
//! Place in the data flow: between input and the socket, one per
//! connection. A part is handed to the reply reader before its bytes are
//! written, so the reader always knows the command a reply answers. When the
//! batch channel closes (the input ended; in cluster mode, once no redirect
//! can come any more either), a stop is requested or the reader returns
//! (its session failed), the writer drops its side of the in-flight channel, which tells the reader no more batches
//! are coming. Whatever it took but did not hand over goes back to
//! the caller, so a reconnect loses nothing.

use std::convert::Infallible;
use std::io::{self, Write};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender, select};

use crate::batch::{Batch, CommandKind, Expect, InFlight};
use crate::pace::Pace;
use crate::progress::Counters;
use crate::stop::Stop;
use crate::stream::Stream;
use crate::window::Window;

/// Why the writer ended.
#[derive(Debug)]
pub enum WriterEnd {
    /// The batch channel closed: the input has ended and all of it was
    /// written (in cluster mode, and every redirect to this node).
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

/// Cluster mode: what a writer takes besides its input.
#[derive(Clone, Copy)]
pub struct Redirects<'a> {
    /// Commands other nodes' readers send here (`MOVED`, `ASK`).
    pub batches: &'a Receiver<Batch>,
    /// Disconnects once every command routed anywhere is settled and the
    /// router has finished: then no redirect can come any more, and a
    /// writer whose input has ended may stop.
    pub all_settled: &'a Receiver<Infallible>,
}

/// Everything the writer of one connection works with.
pub struct Writer<'a> {
    pub stream: Stream,
    pub batches: &'a Receiver<Batch>,
    /// Cluster mode: redirected commands, and when none can come any more.
    pub redirects: Option<Redirects<'a>>,
    /// A routed lane (one of several): disconnects once the router has
    /// finished. A load that stops sends what the router handed this lane
    /// until then, so that every lane stops at the router's last batch
    /// and none runs ahead of the resume point (which is the first command
    /// not settled on any lane).
    pub router_done: Option<&'a Receiver<Infallible>>,
    pub in_flight: Sender<InFlight>,
    pub window: &'a Window,
    pub stop: &'a Stop,
    pub progress: Option<&'a Counters>,
    /// Disconnects when the reply reader returns: a reader that failed
    /// ends the session, even while this writer waits for batches.
    pub reader_gone: &'a Receiver<Infallible>,
    /// `--rate`, `--max-latency`: parts wait their turn on it.
    pub pace: Option<&'a Pace>,
}

impl Writer<'_> {
    /// Writes `resend` first, then every batch of the channel.
    pub fn run(mut self, resend: Vec<InFlight>) -> WriterOutcome {
        let mut sent = Sent::default();
        let mut pending = resend.into_iter();
        let never = crossbeam_channel::never();
        let redirected = self.redirects.map_or(&never, |redirects| redirects.batches);
        let mut input_ended = false;
        let end = loop {
            let next = match pending.next() {
                Some(resent) => resent,
                None => {
                    let batch = if self.stop.is_requested() {
                        match self.handed_before_the_stop() {
                            Some(batch) => Some(batch),
                            None => match self.confirmation_at_the_stop(&mut sent) {
                                Some(marker) => Some(marker),
                                None => break WriterEnd::Stopped,
                            },
                        }
                    } else if input_ended {
                        let Some(redirects) = self.redirects else {
                            break WriterEnd::InputEnded;
                        };
                        select! {
                            recv(redirects.batches) -> batch => batch.ok(),
                            recv(redirects.all_settled) -> _ => break WriterEnd::InputEnded,
                            recv(self.stop.woken()) -> _ => continue,
                            recv(self.reader_gone) -> _ => break WriterEnd::ReaderStopped,
                        }
                    } else {
                        select! {
                            recv(self.batches) -> batch => {
                                input_ended = batch.is_err();
                                batch.ok()
                            }
                            recv(redirected) -> batch => batch.ok(),
                            recv(self.stop.woken()) -> _ => continue,
                            recv(self.reader_gone) -> _ => break WriterEnd::ReaderStopped,
                        }
                    };
                    match batch {
                        Some(batch) => InFlight::whole(Arc::new(batch)),
                        None => continue,
                    }
                }
            };
            if let Err(failure) = self.send(next, &mut sent) {
                let mut unsent: Vec<InFlight> = failure.unsent.into_iter().collect();
                unsent.extend(pending);
                return WriterOutcome {
                    end: failure.end,
                    unsent,
                    bytes_sent: sent.bytes,
                    commands_sent: sent.commands,
                };
            }
        };
        WriterOutcome {
            end,
            unsent: pending.collect(),
            bytes_sent: sent.bytes,
            commands_sent: sent.commands,
        }
    }

    /// The load is stopping: a routed lane takes what the router handed it
    /// before it finished (`router_done`); any other lane, or a quit, or a
    /// session whose reader is gone, takes nothing more.
    fn handed_before_the_stop(&self) -> Option<Batch> {
        let router_done = self.router_done?;
        if self.stop.is_quit() {
            return None;
        }
        select! {
            recv(self.batches) -> batch => batch.ok(),
            recv(router_done) -> _ => self.batches.try_recv().ok(),
            recv(self.reader_gone) -> _ => None,
        }
    }

    /// A load that stops finishes the commands in flight: when the last
    /// one written owes no reply (`CLIENT REPLY OFF`), a marker whose
    /// reply proves they ran, so that the resume point passes them and a
    /// resume does not run them again. Not on a quit, nor inside a
    /// transaction left open (an input cut inside `MULTI`), where the
    /// server would queue it.
    fn confirmation_at_the_stop(&self, sent: &mut Sent) -> Option<Batch> {
        if self.stop.is_quit() {
            return None;
        }
        let (batch, index) = sent.unconfirmed_tail.take()?;
        // The input keeps a transaction whole in one batch.
        let open_transaction = batch.commands[..=index]
            .iter()
            .rev()
            .find(|command| matches!(command.kind, CommandKind::Multi | CommandKind::EndMulti))
            .is_some_and(|command| command.kind == CommandKind::Multi);
        (!open_transaction).then(|| Batch::replies_on_marker(&batch, index))
    }

    /// Sends `rest` part by part, each handed to the reader before its
    /// bytes are written.
    fn send(&mut self, mut rest: InFlight, sent: &mut Sent) -> Result<(), SendFailure> {
        while rest.first < rest.end {
            let end = match self.pace {
                Some(pace) => pace.slice_end(&rest.batch, rest.first, rest.end),
                None => rest.end,
            };
            let Ok(part) = self.window.acquire(&rest.batch, rest.first, end) else {
                return Err(SendFailure::reader_stopped(Some(rest)));
            };
            if let Some(pace) = self.pace {
                pace.wait_turn(part.end - rest.first, self.stop);
            }
            let part = InFlight {
                end: part.end,
                reply_estimate: part.reply_estimate,
                ..rest.clone()
            };
            let range = rest.batch.byte_range(part.first..part.end);
            let commands = part.command_count() as u64;
            rest.first = part.end;
            sent.note_written(&part);
            if let Err(returned) = self.in_flight.send(part) {
                let unsent = InFlight {
                    end: rest.end,
                    ..returned.into_inner()
                };
                return Err(SendFailure::reader_stopped(Some(unsent)));
            }
            let bytes = rest.batch.bytes.get(range).unwrap_or_default();
            if let Err(error) = self.stream.write_all(bytes) {
                let unsent = (rest.first < rest.end).then_some(rest);
                if self.window.is_closed() {
                    return Err(SendFailure::reader_stopped(unsent));
                }
                // Wake the reader, which may be waiting for replies that will
                // never come.
                self.window.close();
                self.stream.shutdown();
                return Err(SendFailure {
                    end: WriterEnd::Failed(error),
                    unsent,
                });
            }
            sent.bytes += bytes.len() as u64;
            sent.commands += commands;
            if let Some(progress) = self.progress {
                Counters::add(&progress.sent, commands);
            }
        }
        Ok(())
    }
}

/// What the writer has written so far.
#[derive(Debug, Default)]
struct Sent {
    bytes: u64,
    commands: u64,
    /// The last command written, when it owes no reply (`CLIENT REPLY
    /// OFF`): nothing proves yet that it and those before it ran.
    unconfirmed_tail: Option<(Arc<Batch>, usize)>,
}

impl Sent {
    fn note_written(&mut self, part: &InFlight) {
        let written = (part.first..part.end)
            .rev()
            .find(|&index| !matches!(part.batch.commands[index].expect, Expect::Rejected(_)));
        if let Some(last) = written {
            self.unconfirmed_tail = (part.batch.commands[last].expect == Expect::NoReply)
                .then(|| (Arc::clone(&part.batch), last));
        }
    }
}

/// A send that failed: why, and what of the batch the reader does not have
/// (it gives back what it has as unacknowledged).
struct SendFailure {
    end: WriterEnd,
    unsent: Option<InFlight>,
}

impl SendFailure {
    fn reader_stopped(unsent: Option<InFlight>) -> Self {
        SendFailure {
            end: WriterEnd::ReaderStopped,
            unsent,
        }
    }
}
