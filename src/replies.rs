//! The reply reader, as a matcher: reads the socket, cuts the bytes into
//! replies, and pairs each one with its command, in order, across the
//! parts of batches the writer sent. What a reply means (counts, error
//! lines, the errors file, `--max-errors`, a cluster redirect, a resend
//! under `--retry`, the handshake replay) is the `handlers`' business; the
//! matcher settles commands, keeps the acknowledged prefix, and frees
//! window room as parts complete, telling the window how big their replies
//! were.
//!
//! Place in the data flow: after the server, one session per connection;
//! `Replies` keeps the handlers' state across reconnects. Invariants:
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
use std::io;
use std::time::Duration;

use crossbeam_channel::Receiver;

use crate::batch::{Batch, CommandKind, Expect, InFlight};
use crate::cluster::ClusterLinks;
use crate::cluster::outstanding::Outstanding;
use crate::conn::SessionReplay;
use crate::handlers::errors::{ErrorReport, ErrorsFile};
use crate::handlers::redirect::Redirects;
use crate::handlers::replay::Replay;
use crate::handlers::replies_out::RepliesWriter;
use crate::handlers::tally::TallyHandler;
use crate::handlers::{Flow, Handlers, Reply};
use crate::io_error::describe_io_error;
use crate::progress::Counters;
use crate::readbuf::ReadBuffer;
use crate::reply_failure::ReplyFailure;
use crate::reply_order::RepliesOut;
use crate::resp::{ErrorSpan, ReplyKind, ReplyScan, scan_reply};
use crate::stop::Stop;
use crate::stream::Stream;
use crate::summary::{ErrorLog, Tally};
use crate::window::{ReplySizes, Window};

const READ_CHUNK: usize = 256 * 1024;

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
    /// Cluster mode: the shared links, and which primary this reader reads.
    pub cluster: Option<(&'a ClusterLinks<'a>, usize)>,
    /// `--replies`: where every reply is written, in input order.
    pub replies_out: Option<&'a RepliesOut>,
    /// `--connections` into one server: where the commands settled on any
    /// of its connections are counted.
    pub spread: Option<&'a Outstanding>,
    /// Which of the load's lanes this reader reads (0 with one lane), for
    /// `--replies`' input order.
    pub lane: usize,
}

/// Where the commands a reader settles are counted over every lane.
#[derive(Clone, Copy)]
enum SettledCount<'a> {
    /// A cluster: over all nodes, and per slot.
    Cluster(&'a ClusterLinks<'a>),
    /// `--connections`: over the server's connections.
    Spread(&'a Outstanding),
}

impl SettledCount<'_> {
    // Out of line: a load into one server over one connection has none,
    // and its path of a plain `+OK` stays as short as it was.
    #[inline(never)]
    fn settled(self, batch: &Batch, index: usize) {
        match self {
            SettledCount::Cluster(links) => links.command_settled(batch, index),
            SettledCount::Spread(outstanding) => outstanding.settle(1),
        }
    }
}

/// What the reply side keeps across sessions: the handlers' state.
pub struct Replies<'a> {
    progress: Option<&'a Counters>,
    source_names: &'a [Option<String>],
    /// Cluster mode: where commands settled are counted over all nodes.
    links: Option<&'a ClusterLinks<'a>>,
    /// Where each command settled is counted beyond this connection, if
    /// anywhere.
    settled_count: Option<SettledCount<'a>>,
    handlers: Handlers<'a>,
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
        let in_cluster = context.cluster.is_some();
        let mut redirect = Redirects::new(context.resend_transient, context.source_names);
        redirect.cluster = context.cluster;
        Replies {
            progress: context.progress,
            source_names: context.source_names,
            links: context.cluster.map(|(links, _)| links),
            settled_count: match (context.cluster, context.spread) {
                (Some((links, _)), _) => Some(SettledCount::Cluster(links)),
                (None, Some(outstanding)) => Some(SettledCount::Spread(outstanding)),
                (None, None) => None,
            },
            handlers: Handlers {
                redirect,
                tally: TallyHandler::new(in_cluster),
                errors: ErrorReport::new(
                    context.source_names,
                    context.error_log,
                    context.stop,
                    context.max_errors,
                    context.errors_file,
                    in_cluster,
                ),
                replay: Replay {
                    kept: context
                        .cluster
                        .map(|(links, _)| links.session())
                        .unwrap_or_default(),
                    links: context.cluster.map(|(links, _)| links),
                },
                replies_out: context
                    .replies_out
                    .map(|out| RepliesWriter::new(out, context.source_names, context.lane)),
            },
            buffer: ReadBuffer::new(READ_CHUNK),
            errors: Vec::new(),
        }
    }

    /// The counts of this connection so far.
    pub fn tally(&self) -> Tally {
        self.handlers.tally.tally
    }

    /// What the input set up on the connection, to set up a new one alike.
    pub fn replay(&self) -> &SessionReplay {
        &self.handlers.replay.kept
    }

    /// Counts a command of this connection as settled (cluster mode keeps a
    /// total over all nodes).
    fn settled(&self, batch: &Batch, index: usize) {
        if let Some(count) = self.settled_count {
            count.settled(batch, index);
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
        self.handlers.session_ended();
        self.handlers.tally.tally.acknowledged += session.acknowledged;
        // A transaction the connection loss cut is resent from its MULTI:
        // what of it was counted settled here will be settled again.
        if let (Some(links), Some(multi)) = (self.links, session.open_transaction)
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
                self.handlers.before_wait();
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
                ReplyScan::Incomplete => {
                    self.handlers.before_wait();
                    self.receive(stream, window, pipe_timeout)
                        .map_err(|failure| self.name_the_waiting(failure, session))?
                }
                ReplyScan::Invalid(error) => {
                    return Err(ReplyFailure::Garbled(
                        error.describe_with(self.buffer.unread()),
                    ));
                }
            }
        }
    }

    /// Names, in a "no replies" failure, the command at the head of the
    /// queue: the one the server has not answered (often a blocking one).
    #[cold]
    fn name_the_waiting(&self, failure: ReplyFailure, session: &Session) -> ReplyFailure {
        let ReplyFailure::NoReplies { timeout, .. } = failure else {
            return failure;
        };
        let waiting = session.batches.front().and_then(|head| {
            let batch = &head.batch;
            let index = (session.next..head.end)
                .find(|&index| matches!(batch.commands[index].expect, Expect::Reply))?;
            Some(format!(
                "{} ({})",
                batch.position(index, self.source_names, None),
                String::from_utf8_lossy(batch.name_of(index))
            ))
        });
        ReplyFailure::NoReplies { timeout, waiting }
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
            self.handlers.rejected(batch, index, why);
            self.settled(batch, index);
            session.next += 1;
            session.rejected_due -= 1;
            session.acknowledge();
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
                    // pipeload's own (`Batch::confirmation`) is no part of
                    // the input: no line, not acknowledged.
                    let inserted = head.batch.commands[session.next].is_inserted();
                    if !inserted {
                        self.handlers.unanswered(&head.batch, session.next);
                    }
                    self.settled(&head.batch, session.next);
                    session.next += 1;
                    if !inserted {
                        session.acknowledge();
                    }
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
        let reply = Reply {
            batch,
            index,
            command,
            kind,
            bytes: self.buffer.unread().get(..reply_len).unwrap_or_default(),
            buffer: self.buffer.unread(),
            errors: &self.errors,
            transaction: session.open_transaction,
        };
        match self.handlers.reply(&reply) {
            Flow::Continue => {}
            // Not executed here: in flight elsewhere now, and settles there.
            Flow::Resent => {
                session.next += 1;
                session.replies_due -= 1;
                return Ok(());
            }
            Flow::Retry(failure) => return Err(failure),
        }
        session.next += 1;
        session.replies_due -= 1;
        self.settled(batch, index);
        if command.kind == CommandKind::Multi && reply.succeeded() {
            session.open_transaction = Some(index);
        }
        // pipeload's own commands, and a cluster's copies of one command,
        // are no part of the input's acknowledged prefix.
        if command.expect == Expect::Marker {
            return Ok(());
        }
        session.acknowledge();
        if command.kind == CommandKind::EndMulti {
            session.close_transaction();
        }
        Ok(())
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
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => ReplyFailure::NoReplies {
                    timeout: pipe_timeout.unwrap_or_default(),
                    waiting: None,
                },
                _ if window.is_closed() => ReplyFailure::Stopped,
                _ => ReplyFailure::ConnectionLost(describe_io_error(&error)),
            }),
        }
    }
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
