//! The replay handler: keeps the input's last `AUTH`, `HELLO` and `SELECT`
//! that succeeded, so that a reconnect sets the new connection up the same
//! way (same user, same protocol, same database) before resending.
//!
//! Place in the data flow: a reply handler; `connection` hands what it kept
//! to `conn::connect` when it reconnects.

use super::{Flow, Reply, ReplyHandler};
use crate::batch::CommandKind;
use crate::conn::SessionReplay;

#[derive(Default)]
pub struct Replay {
    pub kept: SessionReplay,
}

impl ReplyHandler for Replay {
    #[inline]
    fn reply(&mut self, reply: &Reply) -> Flow {
        let kind = reply.command.kind;
        if reply.succeeded()
            && matches!(
                kind,
                CommandKind::Select | CommandKind::Auth | CommandKind::Hello
            )
        {
            let batch = reply.batch;
            self.kept
                .record(kind, &batch.bytes[batch.command_range(reply.index)]);
        }
        Flow::Continue
    }
}
