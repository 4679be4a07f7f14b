//! The route step: which connection each command of the input takes. One
//! server: the one connection takes the input's batches as they are, and the
//! route never blocks. A cluster: the router (`cluster::router`) splits each
//! batch by the slot owner of its commands' keys, holding a slot back while
//! its earlier commands are still being resent elsewhere, so the writes to
//! each key keep their input order.
//!
//! Place in the data flow: between the input's batch channel and the
//! connections (`engine::run_lanes`).

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
