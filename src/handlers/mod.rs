//! What happens to a reply once the matcher (`replies`) has paired it with
//! its command: each handler is one concern, a type of its own.
//!
//! - `redirect`: a cluster's `MOVED`/`ASK`/`TRYAGAIN` (the command goes
//!   elsewhere), and with `--retry` a server's "not now" (`LOADING`, `BUSY`…:
//!   the session ends and the command is sent again);
//! - `tally`: the counts of the summary;
//! - `errors`: each error's line on stderr with its input position, the
//!   failed command to `--errors-file`, `--max-errors`;
//! - `replies_out`: each reply written out in input order (`--replies`);
//! - `replay`: the input's `AUTH`, `HELLO` and `SELECT` that succeeded, to
//!   set a new connection up the same way after a reconnect.
//!
//! Place in the data flow: called by the reply reader, in this order, for
//! every reply and every refused line in input order. A handler that takes a
//! reply over (`Flow::Resent`, `Flow::Retry`) ends its journey: the handlers
//! after it do not see it, and the matcher does not settle its command. A
//! new handler is a new type here and one line in `Handlers`; the calls are
//! static, so the path of a plain `+OK` stays a few branches long.

pub mod errors;
pub mod redirect;
pub mod replay;
pub mod replies_out;
pub mod tally;

use std::sync::Arc;

use crate::batch::{Batch, Command, Rejection};
use crate::reply_failure::ReplyFailure;
use crate::resp::{ErrorSpan, ReplyKind};

/// One reply, paired with the command it answers.
pub struct Reply<'r> {
    pub batch: &'r Arc<Batch>,
    pub index: usize,
    pub command: Command,
    pub kind: ReplyKind,
    /// The reply's bytes, exactly as received (at the start of `buffer`).
    pub bytes: &'r [u8],
    /// The buffer the reply's error spans point into.
    pub buffer: &'r [u8],
    /// Every error the reply holds: the reply itself, or `EXEC` elements.
    pub errors: &'r [ErrorSpan],
    /// Index in `batch` of the `MULTI` of the transaction the command is in
    /// (its `EXEC` included).
    pub transaction: Option<usize>,
}

impl<'r> Reply<'r> {
    pub fn succeeded(&self) -> bool {
        self.kind != ReplyKind::Error
    }

    /// The text of an error reply.
    pub fn error_message(&self) -> Option<&'r [u8]> {
        match self.kind {
            ReplyKind::Error => self
                .errors
                .first()
                .map(|span| &self.buffer[span.message.clone()]),
            _ => None,
        }
    }

    /// The text of error span `span`.
    pub fn message(&self, span: &ErrorSpan) -> &'r [u8] {
        &self.buffer[span.message.clone()]
    }
}

/// What becomes of a reply after a handler saw it.
#[derive(Debug)]
pub enum Flow {
    /// The next handlers see it too; its command is settled.
    Continue,
    /// Not executed here: the command is in flight elsewhere now (a
    /// redirect) and settles there.
    Resent,
    /// The session must end so that the command is sent again: the failure
    /// that says why.
    Retry(ReplyFailure),
}

/// One concern of reply handling.
pub trait ReplyHandler {
    /// A reply to a command of the input (or to pipeload's own marker).
    fn reply(&mut self, reply: &Reply) -> Flow;

    /// A line refused before sending, reached in input order.
    fn rejected(&mut self, _batch: &Batch, _index: usize, _why: Rejection) {}

    /// A command sent with no reply due (`CLIENT REPLY OFF|SKIP`), proven
    /// run by a later reply.
    fn unanswered(&mut self, _batch: &Batch, _index: usize) {}

    /// The reader is about to wait (for reply bytes or for batches): what a
    /// handler gathers must not wait with it.
    fn before_wait(&mut self) {}

    /// A session ended, however.
    fn session_ended(&mut self) {}
}

/// The handlers of one connection, called in a fixed order.
pub struct Handlers<'a> {
    pub redirect: redirect::Redirects<'a>,
    pub tally: tally::TallyHandler,
    pub errors: errors::ErrorReport<'a>,
    pub replay: replay::Replay<'a>,
    pub replies_out: Option<replies_out::RepliesWriter<'a>>,
}

impl Handlers<'_> {
    #[inline]
    pub fn reply(&mut self, reply: &Reply) -> Flow {
        match self.redirect.reply(reply) {
            Flow::Continue => {}
            taken => return taken,
        }
        self.tally.reply(reply);
        self.errors.reply(reply);
        self.replay.reply(reply);
        if let Some(replies_out) = self.replies_out.as_mut() {
            replies_out.reply(reply);
        }
        Flow::Continue
    }

    pub fn rejected(&mut self, batch: &Batch, index: usize, why: Rejection) {
        self.tally.rejected(batch, index, why);
        self.errors.rejected(batch, index, why);
        if let Some(replies_out) = self.replies_out.as_mut() {
            replies_out.rejected(batch, index, why);
        }
    }

    pub fn unanswered(&mut self, batch: &Batch, index: usize) {
        if let Some(replies_out) = self.replies_out.as_mut() {
            replies_out.unanswered(batch, index);
        }
    }

    #[inline]
    pub fn before_wait(&mut self) {
        if let Some(replies_out) = self.replies_out.as_mut() {
            replies_out.before_wait();
        }
    }

    pub fn session_ended(&mut self) {
        self.errors.session_ended();
        if let Some(replies_out) = self.replies_out.as_mut() {
            replies_out.session_ended();
        }
    }
}
