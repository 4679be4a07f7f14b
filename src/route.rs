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

use crossbeam_channel::{Receiver, select};

use crate::batch::Batch;
use crate::stop::Stop;

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

/// A router's send failed: the load is stopping, and a stopped lane's
/// writer takes no more batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped;

/// A router's share of the loop every router runs (`run_router`).
pub trait BatchRouter {
    /// Before each input batch: wait while `--replies` holds too many lines.
    fn before_batch(&mut self, stop: &Stop);

    /// Hands one input batch to the lanes; fails when the load is
    /// stopping (a stopped lane's writer takes no more batches, so a send
    /// to it must not wait forever).
    fn route_batch(&mut self, batch: &Batch, stop: &Stop) -> Result<(), Stopped>;

    /// The input ended: what the router held back goes out now.
    fn input_ended(&mut self, _stop: &Stop) -> Result<(), Stopped> {
        Ok(())
    }
}

/// Routes every batch of `input` until it ends or a stop is requested, and
/// says how far it got.
pub fn run_router(router: &mut impl BatchRouter, input: &Receiver<Batch>, stop: &Stop) -> Routed {
    let mut delivered = 0;
    let stopped = |delivered_up_to| Routed {
        delivered_up_to,
        input_ended: false,
    };
    loop {
        let batch = select! {
            recv(input) -> batch => match batch {
                Ok(batch) => batch,
                Err(_) => return match router.input_ended(stop) {
                    Ok(()) => Routed { delivered_up_to: delivered, input_ended: true },
                    Err(Stopped) => stopped(delivered),
                },
            },
            recv(stop.woken()) -> _ => return stopped(delivered),
        };
        // A stop ends the routing between two input batches (a select
        // takes either of two ready channels).
        if stop.is_requested() {
            return stopped(delivered);
        }
        let Some(last) = batch.commands.len().checked_sub(1) else {
            continue;
        };
        router.before_batch(stop);
        if router.route_batch(&batch, stop).is_err() {
            // Part of this batch may have gone out; none of it counts.
            return stopped(delivered.min(batch.seq(0).saturating_sub(1)));
        }
        delivered = delivered.max(batch.seq(last));
    }
}

/// A lane to start: a node the route sends to (a cluster's primary, found
/// at the start or mid-load), with the channels it takes commands from.
pub struct NewLane {
    /// The route's index for the node.
    pub node: usize,
    /// The lane's index: `node` with one lane per node, else one of the
    /// node's (`cluster::ClusterLinks::lane`).
    pub lane: usize,
    pub host: String,
    pub port: u16,
    /// Batches the router hands it.
    pub batches: Receiver<Batch>,
    /// Commands other lanes' readers send it (`MOVED`, `ASK`, a lost
    /// node's unacknowledged commands).
    pub redirects: Receiver<Batch>,
}
