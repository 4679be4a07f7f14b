//! The reply reader: reads the socket, cuts the bytes into replies, and
//! matches them one for one with the commands of the oldest in-flight batch.
//! It counts replies and errors, reports each error with the input position
//! of its command, writes failed commands to `--errors-file`, and frees
//! window room as the parts of batches the writer sent complete, telling the
//! window how big their replies were.
//!
//! Place in the data flow: after the server, one session per connection;
//! `Replies` keeps the counts across reconnects. Invariants:
//! - `acknowledged` only grows over a prefix of the input: a rejected line
//!   is settled when it reaches the head, a command sent without a reply due
//!   (`CLIENT REPLY OFF|SKIP`) only when a later reply proves it ran, and a
//!   transaction only when its `EXEC` is answered (a lost connection
//!   discards it, so a reconnect resends it from its `MULTI`).
//! - The socket is read only while a command waits for its reply, so
//!   `--pipe-timeout` measures exactly "no reply for N seconds".
//! - When a session fails, every command not acknowledged is handed back, in
//!   order, for the next connection to resend.

use std::collections::VecDeque;
use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::batch::{Batch, CommandKind, Expect, InFlight};
use crate::cluster::{ClusterLinks, Redirect};
use crate::conn::SessionReplay;
use crate::io_error::describe_io_error;
use crate::progress::Counters;
use crate::readbuf::ReadBuffer;
use crate::resp::{ErrorSpan, ReplyKind, ReplyScan, scan_reply};
use crate::stop::{Stop, StopReason};
use crate::stream::Stream;
use crate::summary::{ErrorLog, Tally, report};
use crate::window::{ReplySizes, Window};

const READ_CHUNK: usize = 256 * 1024;

/// Error replies that mean "not now" rather than "never": with `--retry`
/// the command is sent again after a pause instead of being counted.
const TRANSIENT_ERRORS: [&[u8]; 4] = [b"LOADING", b"BUSY", b"TRYAGAIN", b"MASTERDOWN"];

/// `--errors-file`, shared by the reply readers of a cluster load (one lock
/// per failed command: failures are rare next to replies).
pub type ErrorsFile = Arc<Mutex<BufWriter<File>>>;

/// Why a session ended before every command was answered.
#[derive(Debug)]
pub enum ReplyFailure {
    /// Nothing arrived for `--pipe-timeout`.
    NoReplies(Duration),
    /// The connection closed or failed.
    ConnectionLost(String),
    /// The server sent bytes that are not RESP.
    Garbled(String),
    /// With `--retry`: the server answered "not now" (`LOADING`…).
    Transient(String),
    /// The writer stopped (it reports why); nothing more will be answered.
    Stopped,
}

impl ReplyFailure {
    /// Whether a new connection may cure it.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ReplyFailure::ConnectionLost(_) | ReplyFailure::Garbled(_) | ReplyFailure::Transient(_)
        )
    }
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
            ReplyFailure::Transient(message) => write!(f, "server busy: {message}"),
            ReplyFailure::Stopped => write!(f, "stopped"),
        }
    }
}

/// How one session ended.
#[derive(Debug)]
pub struct SessionEnd {
    pub failure: Option<ReplyFailure>,
    /// Commands not acknowledged, in input order, from the resend point on.
    pub unacknowledged: Vec<InFlight>,
}

/// What every reply reader of a load shares.
pub struct ReplyContext<'a> {
    pub source_names: &'a [Option<String>],
    pub stop: &'a Stop,
    pub error_log: &'a ErrorLog,
    pub max_errors: Option<u64>,
    /// Treat `LOADING`, `BUSY`… as "resend later" (`--retry`).
    pub resend_transient: bool,
    pub errors_file: Option<ErrorsFile>,
    pub progress: Option<&'a Counters>,
}

/// What the reply side keeps across sessions.
pub struct Replies<'a> {
    source_names: &'a [Option<String>],
    stop: &'a Stop,
    error_log: &'a ErrorLog,
    progress: Option<&'a Counters>,
    /// Errors logged by every reader of the load, as of this reader's last.
    logged_errors: u64,
    max_errors: Option<u64>,
    /// Treat `LOADING`, `BUSY`… as "resend later" (`--retry`).
    resend_transient: bool,
    errors_file: Option<ErrorsFile>,
    /// Cluster mode: the shared links, and which primary this reader reads.
    cluster: Option<(&'a ClusterLinks<'a>, usize)>,
    pub tally: Tally,
    /// What the input set up on the connection, replayed after a reconnect
    /// so that what follows runs as the same user, in the same database.
    pub replay: SessionReplay,
    buffer: ReadBuffer,
    errors: Vec<ErrorSpan>,
}

/// The batches (or parts of batches) of one connection, oldest first.
struct Session {
    batches: VecDeque<InFlight>,
    /// Index in the oldest batch of the first unsettled command.
    next: usize,
    /// Index in the oldest batch of the `MULTI` of an open transaction.
    open_transaction: Option<usize>,
    /// Commands settled in this session, outside an open transaction.
    acknowledged: u64,
    /// Commands settled inside the open transaction: acknowledged when its
    /// `EXEC` is answered, resent if the connection is lost first.
    acknowledged_in_transaction: u64,
    /// Commands in `batches`, from the head on, that wait for a reply.
    replies_due: usize,
    /// Lines in `batches`, from the head on, refused by the input: most
    /// loads have none, and then no reply looks for them.
    rejected_due: usize,
    /// End of the head batch's commands (0 with no batch), so that a reply
    /// checks whether the head is finished without touching the queue.
    head_len: usize,
    /// Reply sizes measured since the window was last told.
    reply_sizes: ReplySizes,
}

impl<'a> Replies<'a> {
    pub fn new(context: ReplyContext<'a>) -> Self {
        Replies {
            source_names: context.source_names,
            stop: context.stop,
            error_log: context.error_log,
            progress: context.progress,
            logged_errors: 0,
            max_errors: context.max_errors,
            resend_transient: context.resend_transient,
            errors_file: context.errors_file,
            cluster: None,
            tally: Tally::default(),
            replay: SessionReplay::default(),
            buffer: ReadBuffer::new(READ_CHUNK),
            errors: Vec::new(),
        }
    }

    /// Makes this the reader of primary `node` of a cluster load.
    pub fn in_cluster(mut self, links: &'a ClusterLinks<'a>, node: usize) -> Self {
        self.cluster = Some((links, node));
        self
    }

    /// Counts a command of this connection as settled (cluster mode keeps a
    /// total over all nodes).
    fn settled(&self, batch: &Batch, index: usize) {
        if let Some((links, _)) = self.cluster {
            links.command_settled(batch, index);
        }
        if let Some(progress) = self.progress {
            Counters::add(&progress.answered, 1);
        }
    }

    /// Reads the replies of one connection until the writer has handed over
    /// its last batch and every reply due has come, or the connection fails.
    /// `pipe_timeout` of `None` waits forever.
    pub fn run_session(
        &mut self,
        mut stream: Stream,
        incoming: &Receiver<InFlight>,
        window: &Window,
        pipe_timeout: Option<Duration>,
    ) -> SessionEnd {
        // A failed session may leave a reply half handled: start clean.
        self.buffer = ReadBuffer::new(READ_CHUNK);
        self.errors.clear();
        let mut session = Session {
            batches: VecDeque::new(),
            next: 0,
            open_transaction: None,
            acknowledged: 0,
            acknowledged_in_transaction: 0,
            replies_due: 0,
            rejected_due: 0,
            head_len: 0,
            reply_sizes: ReplySizes::default(),
        };
        let failure = match stream.set_read_timeout(pipe_timeout) {
            Ok(()) => self
                .read_session(&mut session, &mut stream, incoming, window, pipe_timeout)
                .err(),
            Err(error) => Some(ReplyFailure::ConnectionLost(describe_io_error(&error))),
        };
        if failure.is_some() {
            // Order matters: the writer checks the window after a failed
            // write to tell a root cause from a consequence.
            window.close();
            stream.shutdown();
        }
        self.flush_errors_file();
        self.tally.acknowledged += session.acknowledged;
        // A transaction the connection loss cut is resent from its MULTI:
        // what of it was counted settled here will be settled again.
        if let (Some((links, _)), Some(multi)) = (self.cluster, session.open_transaction)
            && let Some(head) = session.batches.front()
        {
            for index in multi..session.next {
                links.command_unsettled(&head.batch, index);
            }
        }
        SessionEnd {
            failure,
            unacknowledged: session.into_unacknowledged(),
        }
    }

    fn read_session(
        &mut self,
        session: &mut Session,
        stream: &mut Stream,
        incoming: &Receiver<InFlight>,
        window: &Window,
        pipe_timeout: Option<Duration>,
    ) -> Result<(), ReplyFailure> {
        loop {
            self.settle_rejected(session, window);
            if session.replies_due == 0 {
                session.owe_nothing(window);
                match incoming.recv() {
                    Ok(batch) => {
                        session.push(batch);
                        continue;
                    }
                    // Anything left gets no reply: commands sent while
                    // replies were off stay unacknowledged.
                    Err(_) => return Ok(()),
                }
            }
            match scan_reply(self.buffer.unread(), &mut self.errors) {
                ReplyScan::Complete(reply) => {
                    if reply.kind != ReplyKind::Push {
                        self.answer(session, window, reply.kind, reply.len)?;
                    }
                    self.errors.clear();
                    self.buffer.consume(reply.len);
                }
                ReplyScan::Incomplete => self.receive(stream, window, pipe_timeout)?,
                ReplyScan::Invalid(error) => return Err(ReplyFailure::Garbled(error.to_string())),
            }
        }
    }

    /// Settles, in order, the rejected lines at the head: reported where they
    /// stood in the input, never sent.
    #[inline]
    fn settle_rejected(&mut self, session: &mut Session, window: &Window) {
        session.pop_finished(window);
        if session.rejected_due > 0 {
            self.settle_rejected_at_head(session, window);
        }
    }

    /// The slow path of `settle_rejected`, kept out of every reply's way.
    #[inline(never)]
    fn settle_rejected_at_head(&mut self, session: &mut Session, window: &Window) {
        loop {
            session.pop_finished(window);
            let Some(head) = session.batches.front() else {
                return;
            };
            let batch = &head.batch;
            let index = session.next;
            let Expect::Rejected(why) = batch.commands[index].expect else {
                return;
            };
            self.tally.rejected += 1;
            let position = batch.position(index, self.source_names, None);
            self.logged_errors = self.error_log.error(&position, &format!("not sent: {why}"));
            self.write_failed(batch.original(index));
            self.settled(batch, index);
            session.next += 1;
            session.rejected_due -= 1;
            session.acknowledge();
            self.check_max_errors();
        }
    }

    /// Matches one reply with the first command at the head that waits for
    /// one; the commands before it that wait for none are proven run by it.
    fn answer(
        &mut self,
        session: &mut Session,
        window: &Window,
        kind: ReplyKind,
        reply_len: usize,
    ) -> Result<(), ReplyFailure> {
        loop {
            session.pop_finished(window);
            let Some(head) = session.batches.front() else {
                return Err(ReplyFailure::Garbled(
                    "a reply that answers no command".into(),
                ));
            };
            match head.batch.commands[session.next].expect {
                Expect::Reply | Expect::Marker => break,
                Expect::NoReply => {
                    self.settled(&head.batch, session.next);
                    session.next += 1;
                    session.acknowledge();
                }
                Expect::Rejected(_) => self.settle_rejected(session, window),
            }
        }
        let Some(head) = session.batches.front() else {
            return Ok(());
        };
        // Borrowed from the queue, not cloned: the session's counters are
        // other fields, and its methods wait until the batch is done with.
        let batch = &head.batch;
        let index = session.next;
        let command = batch.commands[index];
        // What this connection was owed for it, even a redirect; but not a
        // queued command's `+QUEUED`: its reply comes in `EXEC`'s.
        if session.open_transaction.is_none() || command.kind == CommandKind::EndMulti {
            session.reply_sizes.observe(command.reply_class, reply_len);
        }
        let top_level_error = (kind == ReplyKind::Error)
            .then(|| self.errors.first())
            .flatten()
            .map(|span| &self.buffer.unread()[span.message.clone()]);
        if let (Some(message), Some((links, node))) = (top_level_error, self.cluster)
            && links.redirect(message, batch, index, node) == Redirect::Resent
        {
            // Not executed here: it is now in flight on the node that owns
            // its slot (or on this one again, after a pause), and settles
            // there.
            session.next += 1;
            session.replies_due -= 1;
            links.settled(1);
            return Ok(());
        }
        if let Some(message) = top_level_error
            && self.resend_transient
            && is_transient(message)
        {
            return Err(ReplyFailure::Transient(format!(
                "{}: {}",
                batch.position(index, self.source_names, None),
                String::from_utf8_lossy(message)
            )));
        }
        session.next += 1;
        session.replies_due -= 1;
        self.settled(batch, index);
        let succeeded = kind != ReplyKind::Error;
        match command.kind {
            CommandKind::Multi if succeeded => session.open_transaction = Some(index),
            CommandKind::Select | CommandKind::Auth | CommandKind::Hello if succeeded => {
                let encoded = &batch.bytes[batch.command_range(index)];
                self.replay.record(command.kind, encoded);
            }
            _ => {}
        }
        if command.expect == Expect::Marker {
            // Its reply counts for nothing: pipeload's own `ASKING` or
            // `CLIENT REPLY ON`, or a copy of `FLUSHALL`, `AUTH`… whose
            // reply the first primary counts. A copy that failed left its
            // primary unflushed or not set up, though: an error.
            if !succeeded && self.cluster.is_some() {
                self.tally.error_replies += 1;
                self.write_failed(batch.original(index));
                self.log_errors(batch, index);
                self.check_max_errors();
            }
            return Ok(());
        }
        self.tally.replies += 1;
        if succeeded {
            self.tally.nested_errors += self.errors.len() as u64;
        } else {
            self.tally.error_replies += 1;
            self.write_failed(batch.original(index));
        }
        self.log_errors(batch, index);
        if !self.errors.is_empty() {
            if succeeded {
                self.write_nested_failures(batch, index, command.kind, session.open_transaction);
            }
            self.check_max_errors();
        }
        session.acknowledge();
        if command.kind == CommandKind::EndMulti {
            session.close_transaction();
        }
        Ok(())
    }

    /// Reports every error of the reply to command `index` of `batch` with
    /// its input position.
    fn log_errors(&mut self, batch: &Batch, index: usize) {
        for span in &self.errors {
            let message = String::from_utf8_lossy(&self.buffer.unread()[span.message.clone()]);
            let position = batch.position(index, self.source_names, span.element);
            self.logged_errors = self.error_log.error(&position, &message);
        }
    }

    /// Writes to `--errors-file` what a reply that holds errors failed: for
    /// an `EXEC` whose `MULTI` is in `batch`, each queued command whose
    /// element is an error; for any other reply, its own command, once.
    fn write_nested_failures(
        &mut self,
        batch: &Batch,
        index: usize,
        kind: CommandKind,
        open_transaction: Option<usize>,
    ) {
        if self.errors_file.is_none() {
            return;
        }
        let queued: Vec<usize> = match open_transaction {
            Some(multi) if kind == CommandKind::EndMulti => (multi + 1..index)
                .filter(|&queued| !matches!(batch.commands[queued].expect, Expect::Rejected(_)))
                .collect(),
            _ => Vec::new(),
        };
        let mut own_written = false;
        for span in 0..self.errors.len() {
            let failed = match self.errors[span]
                .element
                .and_then(|element| queued.get(element))
            {
                Some(&queued) => queued,
                None if own_written => continue,
                None => {
                    own_written = true;
                    index
                }
            };
            self.write_failed(batch.original(failed));
        }
    }

    /// `--max-errors` counts the errors of every node of a cluster load.
    fn check_max_errors(&self) {
        if let Some(limit) = self.max_errors
            && self.logged_errors >= limit
            && self.stop.request(StopReason::MaxErrors(limit))
        {
            report(&format!(
                "pipeload: stopping after {limit} errors (--max-errors): finishing the commands in flight"
            ));
        }
    }

    /// Appends a failed command's input bytes to `--errors-file`: a text
    /// line gets its line end back, a RESP frame is complete as it is.
    fn write_failed(&mut self, original: Option<&[u8]>) {
        let (Some(file), Some(original)) = (self.errors_file.as_ref(), original) else {
            return;
        };
        let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
        let written = file
            .write_all(original)
            .and_then(|()| match original.first() {
                Some(b'*') if original.ends_with(b"\r\n") => Ok(()),
                _ => file.write_all(b"\n"),
            });
        if let Err(error) = written {
            report(&format!(
                "pipeload: cannot write the errors file: {}",
                describe_io_error(&error)
            ));
            drop(file);
            self.errors_file = None;
        }
    }

    fn flush_errors_file(&mut self) {
        if let Some(file) = self.errors_file.as_ref()
            && let Err(error) = file.lock().unwrap_or_else(PoisonError::into_inner).flush()
        {
            report(&format!(
                "pipeload: cannot write the errors file: {}",
                describe_io_error(&error)
            ));
        }
    }

    /// Reads more reply bytes, keeping the unscanned tail.
    fn receive(
        &mut self,
        stream: &mut Stream,
        window: &Window,
        pipe_timeout: Option<Duration>,
    ) -> Result<(), ReplyFailure> {
        match self.buffer.read_from(stream) {
            Ok(0) if window.is_closed() => Err(ReplyFailure::Stopped),
            Ok(0) => Err(ReplyFailure::ConnectionLost(
                "server closed the connection".into(),
            )),
            Ok(_) => Ok(()),
            Err(error) => Err(match error.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    ReplyFailure::NoReplies(pipe_timeout.unwrap_or_default())
                }
                _ if window.is_closed() => ReplyFailure::Stopped,
                _ => ReplyFailure::ConnectionLost(describe_io_error(&error)),
            }),
        }
    }
}

fn is_transient(message: &[u8]) -> bool {
    TRANSIENT_ERRORS.iter().any(|prefix| {
        message.starts_with(prefix) && matches!(message.get(prefix.len()), None | Some(b' '))
    })
}

impl Session {
    fn push(&mut self, batch: InFlight) {
        let commands = batch.batch.commands.get(batch.first..batch.end);
        for command in commands.unwrap_or_default() {
            match command.expect {
                Expect::Reply | Expect::Marker => self.replies_due += 1,
                Expect::Rejected(_) => self.rejected_due += 1,
                Expect::NoReply => {}
            }
        }
        if self.batches.is_empty() {
            self.next = batch.first;
            self.head_len = batch.end;
        }
        self.batches.push_back(batch);
    }

    fn acknowledge(&mut self) {
        match self.open_transaction {
            Some(_) => self.acknowledged_in_transaction += 1,
            None => self.acknowledged += 1,
        }
    }

    fn close_transaction(&mut self) {
        self.open_transaction = None;
        self.acknowledged += std::mem::take(&mut self.acknowledged_in_transaction);
    }

    /// Drops the head batch while all its commands are settled, freeing its
    /// room in the window and telling it the reply sizes measured.
    #[inline]
    fn pop_finished(&mut self, window: &Window) {
        if self.next >= self.head_len {
            self.pop_finished_batches(window);
        }
    }

    /// The slow path of `pop_finished`, kept out of every reply's way.
    #[inline(never)]
    fn pop_finished_batches(&mut self, window: &Window) {
        while self.next >= self.head_len {
            let Some(head) = self.batches.pop_front() else {
                return;
            };
            window.release(&head, &mut self.reply_sizes);
            // A transaction is kept in one batch by the input; one that was
            // cut at the end of a source can only be resent from here on.
            self.close_transaction();
            let next = self.batches.front();
            self.next = next.map_or(0, |next| next.first);
            self.head_len = next.map_or(0, |next| next.end);
        }
    }

    /// Every reply due has come: the parts still queued wait only for a
    /// later reply to prove that commands sent without one ran, and the
    /// reply bytes the window counts for them are owed no more.
    fn owe_nothing(&mut self, window: &Window) {
        let owed = self.batches.iter_mut().fold(0usize, |owed, part| {
            owed.saturating_add(std::mem::take(&mut part.reply_estimate))
        });
        if owed > 0 {
            window.release_reply_bytes(owed);
        }
    }

    fn into_unacknowledged(mut self) -> Vec<InFlight> {
        if let Some(head) = self.batches.front_mut() {
            head.first = self.open_transaction.unwrap_or(self.next);
        }
        self.batches.into_iter().collect()
    }
}
