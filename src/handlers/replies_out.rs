//! The replies-out handler (`--replies`): formats each reply of an input
//! command (`reply_format`) into the lines its reader gathers, with the
//! command's number in the input, and hands them to `reply_order`, which
//! writes the lines out in input order, together: before the reader waits
//! (`before_wait`), when they fill a chunk, and when the session ends.
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
use crate::reply_order::{LaneLines, RepliesOut};

pub struct RepliesWriter<'a> {
    out: &'a RepliesOut,
    format: RepliesFormat,
    source_names: &'a [Option<String>],
    /// Which connection of the load this reader reads.
    lane: usize,
    /// Settled since they were last handed over.
    gathered: LaneLines,
}

impl<'a> RepliesWriter<'a> {
    pub fn new(out: &'a RepliesOut, source_names: &'a [Option<String>], lane: usize) -> Self {
        RepliesWriter {
            out,
            format: out.format,
            source_names,
            lane,
            gathered: LaneLines::with_room(),
        }
    }

    /// Hands the lines gathered to `reply_order`.
    pub fn hand_over(&mut self) {
        self.out.hand_over(self.lane, &mut self.gathered);
    }

    fn position(&self, batch: &Batch, index: usize) -> InputPosition<'a> {
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
        self.gathered.push_no_line(batch.seq(index));
    }
}

impl ReplyHandler for RepliesWriter<'_> {
    #[inline]
    fn reply(&mut self, reply: &Reply) -> Flow {
        if reply.command.expect == Expect::Marker {
            return Flow::Continue;
        }
        let position = self.position(reply.batch, reply.index);
        let format = self.format;
        self.gathered
            .push_line(reply.batch.seq(reply.index), |out: &mut Vec<u8>| {
                format_reply(format, reply.bytes, &position, out)
            });
        if self.gathered.is_full() {
            self.hand_over();
        }
        Flow::Continue
    }

    fn rejected(&mut self, batch: &Batch, index: usize, _why: Rejection) {
        self.no_line(batch, index);
    }

    fn unanswered(&mut self, batch: &Batch, index: usize) {
        self.no_line(batch, index);
    }

    fn before_wait(&mut self) {
        self.hand_over();
    }

    fn session_ended(&mut self) {
        self.hand_over();
    }
}
