//! The reply-reader thread: reads the socket, cuts the bytes into replies,
//! and matches them one for one with the commands of the oldest in-flight
//! batch. It counts replies and errors, reports each error with the input
//! position of its command, and frees window room as batches complete.
//!
//! Place in the data flow: after the server. Commands marked
//! `Expect::NoReply` or `Expect::Rejected` are settled without a reply, in
//! input order, so a rejected line is reported where it stood. RESP3 push
//! frames are not replies and are skipped. The socket is read only while a
//! command is waiting for its reply, so `--pipe-timeout` measures exactly
//! "no reply for N seconds".

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::batch::{Batch, Expect};
use crate::conn::{Stream, describe_io_error};
use crate::readbuf::ReadBuffer;
use crate::resp::{ErrorSpan, ReplyKind, ReplyScan, scan_reply};
use crate::summary::{Tally, report};
use crate::window::Window;

const READ_CHUNK: usize = 256 * 1024;

/// Why replies stopped coming before every command was answered.
#[derive(Debug)]
pub enum ReplyFailure {
    /// Nothing arrived for `--pipe-timeout`.
    NoReplies(Duration),
    /// The connection closed or failed.
    ConnectionLost(String),
    /// The server sent bytes that are not RESP.
    Garbled(String),
    /// The writer stopped (it reports why); nothing more will be answered.
    Stopped,
}

impl fmt::Display for ReplyFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReplyFailure::NoReplies(timeout) => {
                write!(f, "No replies for {} seconds: exiting.", timeout.as_secs())
            }
            ReplyFailure::ConnectionLost(reason) => write!(f, "connection lost: {reason}"),
            ReplyFailure::Garbled(reason) => {
                write!(
                    f,
                    "connection lost: the server's reply is not RESP ({reason})"
                )
            }
            ReplyFailure::Stopped => write!(f, "stopped"),
        }
    }
}

/// What the reader hands back when it ends.
#[derive(Debug)]
pub struct ReplyOutcome {
    pub tally: Tally,
    pub failure: Option<ReplyFailure>,
}

/// The in-flight batches, oldest first, and the next command to settle.
struct InFlight {
    batches: VecDeque<Arc<Batch>>,
    /// Index in the oldest batch of the first unsettled command.
    next_command: usize,
}

pub struct ReplyReader<'a> {
    stream: Stream,
    incoming: Receiver<Arc<Batch>>,
    window: &'a Window,
    source_names: &'a [Option<String>],
    in_flight: InFlight,
    buffer: ReadBuffer,
    errors: Vec<ErrorSpan>,
    tally: Tally,
}

impl<'a> ReplyReader<'a> {
    pub fn new(
        stream: Stream,
        incoming: Receiver<Arc<Batch>>,
        window: &'a Window,
        source_names: &'a [Option<String>],
    ) -> Self {
        ReplyReader {
            stream,
            incoming,
            window,
            source_names,
            in_flight: InFlight {
                batches: VecDeque::new(),
                next_command: 0,
            },
            buffer: ReadBuffer::new(READ_CHUNK),
            errors: Vec::new(),
            tally: Tally::default(),
        }
    }

    /// Reads replies until every command of every batch is settled or the
    /// connection fails; `pipe_timeout` of `None` waits forever.
    pub fn run(mut self, pipe_timeout: Option<Duration>) -> ReplyOutcome {
        let failure = match self.stream.set_read_timeout(pipe_timeout) {
            Ok(()) => self.read_all(pipe_timeout).err(),
            Err(error) => Some(ReplyFailure::ConnectionLost(describe_io_error(&error))),
        };
        if failure.is_some() {
            // Order matters: the writer checks the window after a failed
            // write to tell a root cause from a consequence.
            self.window.close();
            self.stream.shutdown();
        }
        ReplyOutcome {
            tally: self.tally,
            failure,
        }
    }

    fn read_all(&mut self, pipe_timeout: Option<Duration>) -> Result<(), ReplyFailure> {
        loop {
            self.settle_unanswered();
            if self.in_flight.batches.is_empty() {
                match self.incoming.recv() {
                    Ok(batch) => {
                        self.in_flight.batches.push_back(batch);
                        continue;
                    }
                    Err(_) => return Ok(()),
                }
            }
            match scan_reply(self.buffer.unread(), &mut self.errors) {
                ReplyScan::Complete(reply) => {
                    if reply.kind != ReplyKind::Push {
                        self.answer_next(reply.kind);
                    }
                    self.errors.clear();
                    self.buffer.consume(reply.len);
                }
                ReplyScan::Incomplete => self.receive(pipe_timeout)?,
                ReplyScan::Invalid(error) => return Err(ReplyFailure::Garbled(error.to_string())),
            }
        }
    }

    /// Settles, in order, the commands at the head that get no reply.
    fn settle_unanswered(&mut self) {
        while let Some(batch) = self.in_flight.batches.front() {
            while let Some(command) = batch.commands.get(self.in_flight.next_command) {
                match &command.expect {
                    Expect::Reply | Expect::Marker => return,
                    Expect::NoReply => {}
                    Expect::Rejected(why) => {
                        self.tally.rejected += 1;
                        report(&format!(
                            "{}: not sent: {why}",
                            batch.position(self.in_flight.next_command, self.source_names, None)
                        ));
                    }
                }
                self.tally.acknowledged += 1;
                self.in_flight.next_command += 1;
            }
            self.window.release(batch.commands.len(), batch.bytes.len());
            self.in_flight.batches.pop_front();
            self.in_flight.next_command = 0;
        }
    }

    /// Counts a reply for the command at the head (which expects one: the
    /// head was settled first) and reports the errors it holds.
    fn answer_next(&mut self, kind: ReplyKind) {
        let Some(batch) = self.in_flight.batches.front() else {
            return;
        };
        let index = self.in_flight.next_command;
        let Some(command) = batch.commands.get(index) else {
            return;
        };
        self.in_flight.next_command += 1;
        if command.expect == Expect::Marker {
            return;
        }
        self.tally.replies += 1;
        self.tally.acknowledged += 1;
        if kind == ReplyKind::Error {
            self.tally.error_replies += 1;
        } else {
            self.tally.nested_errors += self.errors.len() as u64;
        }
        for span in &self.errors {
            let message = String::from_utf8_lossy(&self.buffer.unread()[span.message.clone()]);
            report(&format!(
                "{}: {message}",
                batch.position(index, self.source_names, span.element)
            ));
        }
    }

    /// Reads more reply bytes, keeping the unscanned tail.
    fn receive(&mut self, pipe_timeout: Option<Duration>) -> Result<(), ReplyFailure> {
        match self.buffer.read_from(&mut self.stream) {
            Ok(0) if self.window.is_closed() => Err(ReplyFailure::Stopped),
            Ok(0) => Err(ReplyFailure::ConnectionLost(
                "server closed the connection".into(),
            )),
            Ok(_) => Ok(()),
            Err(error) => Err(match error.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    ReplyFailure::NoReplies(pipe_timeout.unwrap_or_default())
                }
                _ if self.window.is_closed() => ReplyFailure::Stopped,
                _ => ReplyFailure::ConnectionLost(describe_io_error(&error)),
            }),
        }
    }
}
