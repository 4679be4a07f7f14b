//! The route step: which connection each command of the input takes. One
//! server: the one connection takes the input's batches as they are, and the
//! route never blocks. A cluster: the router (`cluster::router`) splits each
//! batch by the slot owner of its commands' keys, holding a slot back while
//! its earlier commands are still being resent elsewhere, so the writes to
//! each key keep their input order.
//!
//! Place in the data flow: between the input's batch channel and the
//! connections (`engine::run_lanes`). A cluster's route may add lanes
//! mid-load (`NewLane`): a node that a redirect or a new layout names.

use crossbeam_channel::Receiver;

use crate::batch::Batch;

/// How the input's batches reach the lanes.
pub enum Route<'r> {
    /// One lane takes the input's batches as they are.
    PassThrough,
    /// A router (on its own thread) splits them between the lanes; it
    /// returns how far it got.
    Router(Box<dyn FnOnce() -> Routed + Send + 'r>),
}

/// How far the router got.
#[derive(Debug, Clone, Copy, Default)]
pub struct Routed {
    /// The highest command number (`Batch::seq`) up to which every command
    /// was handed to a node.
    pub delivered_up_to: u64,
    /// Every batch of the input was routed.
    pub input_ended: bool,
}

/// A lane to start: a node the route sends to (a cluster's primary, found
/// at the start or mid-load), with the channels it takes commands from.
pub struct NewLane {
    /// The route's index for the node; lanes are numbered the same way.
    pub node: usize,
    pub host: String,
    pub port: u16,
    /// Batches the router hands it.
    pub batches: Receiver<Batch>,
    /// Commands other lanes' readers send it (`MOVED`, `ASK`, a lost
    /// node's unacknowledged commands).
    pub redirects: Receiver<Batch>,
}
