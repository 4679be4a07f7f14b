//! The replies-out handler (`--replies`): formats each reply of an input
//! command (`reply_format`) and hands it, with the command's number in the
//! input, to `reply_order`, which writes the lines out in input order.
//! Commands that settle without a reply (a refused line, a command sent
//! while `CLIENT REPLY OFF|SKIP` was in effect) are handed over as no line,
//! so that the commands after them are not held back.
//!
//! Place in the data flow: a reply handler, after `redirect`: a reply that
//! handler takes over (`MOVED`, `ASK`, a "not now" resent under `--retry`)
//! never reaches here, so only the reply of the node where the command
//! finally ran is written. pipeload's own commands (`ASKING`, the `CLIENT
//! REPLY ON` that confirms an unanswered tail) and a cluster's extra copies
//! of `FLUSHALL`… are no input commands and get no line.

use super::{Flow, Reply, ReplyHandler};
use crate::batch::{Batch, Expect, Rejection};
use crate::config::RepliesFormat;
use crate::reply_format::{InputPosition, format_reply};
use crate::reply_order::RepliesOut;

pub struct RepliesWriter<'a> {
    out: &'a RepliesOut,
    format: RepliesFormat,
    source_names: &'a [Option<String>],
    /// The line being formatted, kept to reuse its allocation.
    line: Vec<u8>,
}

impl<'a> RepliesWriter<'a> {
    pub fn new(out: &'a RepliesOut, source_names: &'a [Option<String>]) -> Self {
        RepliesWriter {
            out,
            format: out.format,
            source_names,
            line: Vec::new(),
        }
    }

    fn position<'n>(&'n self, batch: &Batch, index: usize) -> InputPosition<'n> {
        let command = &batch.commands[index];
        InputPosition {
            file: (self.source_names.len() > 1).then(|| {
                self.source_names
                    .get(batch.source)
                    .and_then(Option::as_deref)
            }),
            line_no: command.line_no,
            command_no: command.is_resp.then(|| batch.command_no(index)),
        }
    }

    /// A command settled with no reply of its own to write.
    fn no_line(&mut self, batch: &Batch, index: usize) {
        self.out.settled(batch.seq(index), None);
    }
}

impl ReplyHandler for RepliesWriter<'_> {
    #[inline]
    fn reply(&mut self, reply: &Reply) -> Flow {
        if reply.command.expect == Expect::Marker {
            return Flow::Continue;
        }
        let mut line = std::mem::take(&mut self.line);
        line.clear();
        let position = self.position(reply.batch, reply.index);
        format_reply(self.format, reply.bytes, &position, &mut line);
        self.out.settled(reply.batch.seq(reply.index), Some(&line));
        self.line = line;
        Flow::Continue
    }

    fn rejected(&mut self, batch: &Batch, index: usize, _why: Rejection) {
        self.no_line(batch, index);
    }

    fn unanswered(&mut self, batch: &Batch, index: usize) {
        self.no_line(batch, index);
    }
}
