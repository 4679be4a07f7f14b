//! The replay handler: keeps the input's last `AUTH`, `HELLO` and `SELECT`
//! that succeeded, so that a reconnect sets the new connection up the same
//! way (same user, same protocol, same database) before resending.
//!
//! Place in the data flow: a reply handler; `connection` hands what it kept
//! to `conn::connect` when it reconnects. In a cluster load it also hands
//! it to the links, for the nodes that join mid-load.

use super::{Flow, Reply, ReplyHandler};
use crate::batch::CommandKind;
use crate::cluster::ClusterLinks;
use crate::conn::SessionReplay;

#[derive(Default)]
pub struct Replay<'a> {
    pub kept: SessionReplay,
    /// Cluster mode: where every node's session commands meet.
    pub links: Option<&'a ClusterLinks<'a>>,
}

impl ReplyHandler for Replay<'_> {
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
            let encoded = &batch.bytes[batch.command_range(reply.index)];
            self.kept.record(kind, encoded);
            if let Some(links) = self.links {
                links.record_session(kind, encoded);
            }
        }
        Flow::Continue
    }
}
