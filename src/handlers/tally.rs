//! The tally handler: the counts the summary prints (replies, error
//! replies, errors inside `EXEC` replies, refused lines).
//!
//! Place in the data flow: a reply handler; `acknowledged` is added by the
//! matcher, which alone knows what is settled.

use super::{Flow, Reply, ReplyHandler};
use crate::batch::{Batch, Expect, Rejection};
use crate::summary::Tally;

pub struct TallyHandler {
    pub tally: Tally,
    /// Cluster mode: a copy of `FLUSHALL`, `AUTH`… that another primary
    /// refused is an error, though its reply is not counted.
    cluster: bool,
}

impl TallyHandler {
    pub fn new(cluster: bool) -> Self {
        TallyHandler {
            tally: Tally::default(),
            cluster,
        }
    }
}

impl ReplyHandler for TallyHandler {
    #[inline]
    fn reply(&mut self, reply: &Reply) -> Flow {
        let tally = &mut self.tally;
        if reply.command.expect == Expect::Marker {
            if !reply.succeeded() && self.cluster {
                tally.error_replies += 1;
            }
            return Flow::Continue;
        }
        tally.replies += 1;
        match reply.succeeded() {
            true => tally.nested_errors += reply.errors.len() as u64,
            false => tally.error_replies += 1,
        }
        Flow::Continue
    }

    fn rejected(&mut self, _batch: &Batch, _index: usize, _why: Rejection) {
        self.tally.rejected += 1;
    }
}
