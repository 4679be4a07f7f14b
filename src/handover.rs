//! The hand-over of a lost cluster primary: what a connection asks when
//! its node is lost (has the cluster moved the node's slots elsewhere?) and
//! where the commands it held go then. `connection` calls it; `cluster`
//! answers it (`ClusterLinks`), from the layout the other nodes report.
//!
//! Place in the data flow: a leaf between the two, so that the connection
//! needs nothing of the cluster but this.

use std::time::Duration;

use crate::batch::InFlight;

/// Cluster mode: what becomes of a primary whose connection is lost.
pub trait NodeLoss: Sync {
    /// Reads the layout again from the other nodes; whether node `node`
    /// owns no slot any more (failed over, or removed after its slots
    /// moved away). Slots that moved are pointed at their new owners.
    fn moved_away(&self, node: usize) -> bool;

    /// How long to wait for the cluster to promote a replica of a lost
    /// primary: its `cluster-node-timeout`, twice, plus a margin.
    fn promotion_wait(&self) -> Duration;

    /// Sends `commands`, which a lost node held or was still given, to the
    /// owners of their slots now, in order.
    fn forward(&self, commands: Vec<InFlight>);

    /// Node `node` is lost for good: counted for the summary.
    fn node_lost(&self, node: usize);
}

/// Cluster mode: which node a lane serves, and what to do when it is lost.
#[derive(Clone, Copy)]
pub struct LaneNode<'a> {
    pub index: usize,
    pub loss: &'a dyn NodeLoss,
}
