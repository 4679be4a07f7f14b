//! Cluster mode (`-c`): the router sits between input and the writers, one
//! writer and reply reader per primary, all loading in parallel.
//!
//! - `slot`: key → hash slot (CRC16/XMODEM, hashtags).
//! - `topology`: primaries and slot owners, from CLUSTER SHARDS / SLOTS.
//! - `keys`: where each command's keys are, from the server's COMMAND.
//! - `router`: splits input batches into per-primary batches.
//! - `outstanding`: commands routed and not yet settled; it tells the
//!   writers when no redirect can come any more.
//!
//! A command answered `MOVED` or `ASK` was not executed, so it is resent
//! exactly once to the named node (after `ASKING` for `ASK`); `MOVED` also
//! updates the slot map the router reads.

pub mod keys;
pub mod load;
pub mod outstanding;
pub mod router;
pub mod slot;
pub mod topology;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::batch::{Batch, CommandKind, Expect};
use crate::encode::command_bytes;
use outstanding::Outstanding;
use slot::SlotOrder;
use topology::Topology;

/// Resends of `TRYAGAIN`/`CLUSTERDOWN` answers allowed in one load, so a
/// cluster that stays down ends the load instead of looping.
const MAX_TRANSIENT_RESENDS: u32 = 10_000;
const TRANSIENT_PAUSE: Duration = Duration::from_millis(50);

/// What the reply readers of a cluster load share.
pub struct ClusterLinks<'a> {
    pub topology: &'a Topology,
    /// Per primary: batches redirected to it by any reader.
    pub redirects: &'a [Sender<Batch>],
    /// Commands routed and not yet settled, over all nodes: a writer stops
    /// only once its input is over and none is left (no redirect can come).
    pub outstanding: &'a Outstanding,
    /// The same, per slot, for the router's order keeping.
    pub order: &'a SlotOrder,
    transient_resends: AtomicU32,
}

/// What a reader is to do with an error reply in cluster mode.
#[derive(Debug, PartialEq, Eq)]
pub enum Redirect {
    /// Sent again elsewhere (or again later): not counted.
    Resent,
    /// An ordinary error: count and report it.
    NotARedirect,
}

impl<'a> ClusterLinks<'a> {
    pub fn new(
        topology: &'a Topology,
        redirects: &'a [Sender<Batch>],
        outstanding: &'a Outstanding,
        order: &'a SlotOrder,
    ) -> Self {
        ClusterLinks {
            topology,
            redirects,
            outstanding,
            order,
            transient_resends: AtomicU32::new(0),
        }
    }

    pub fn settled(&self, commands: usize) {
        self.outstanding.settle(commands);
    }

    /// Command `index` of `batch` was answered where it finally ran.
    pub fn command_settled(&self, batch: &Batch, index: usize) {
        self.settled(1);
        if let Some(slot) = batch.slot(index) {
            self.order.settled(slot);
        }
    }

    /// Undoes `command_settled` for a command that is to be sent again.
    pub fn command_unsettled(&self, batch: &Batch, index: usize) {
        self.outstanding.add(1);
        if let Some(slot) = batch.slot(index) {
            self.order.unsettled(slot);
        }
    }

    /// Handles `MOVED`, `ASK`, `TRYAGAIN` and `CLUSTERDOWN` for command
    /// `index` of `batch`, answered by node `node`.
    pub fn redirect(
        &self,
        message: &[u8],
        batch: &Arc<Batch>,
        index: usize,
        node: usize,
    ) -> Redirect {
        let mut words = message.split(|&byte| byte == b' ');
        let kind = words.next().unwrap_or_default();
        let target = match kind {
            b"MOVED" | b"ASK" => {
                let slot = words
                    .next()
                    .and_then(|slot| std::str::from_utf8(slot).ok())
                    .and_then(|slot| slot.parse::<u16>().ok());
                let address = words.next().map(String::from_utf8_lossy);
                let target = address.and_then(|address| self.topology.node_index(&address));
                match (slot, target) {
                    (Some(slot), Some(target)) => {
                        if kind == b"MOVED" {
                            self.topology.slots.set_owner(slot, target);
                        }
                        target
                    }
                    _ => return Redirect::NotARedirect,
                }
            }
            b"TRYAGAIN" | b"CLUSTERDOWN" => {
                if self.transient_resends.fetch_add(1, Ordering::Relaxed) >= MAX_TRANSIENT_RESENDS {
                    return Redirect::NotARedirect;
                }
                thread::sleep(TRANSIENT_PAUSE);
                node
            }
            _ => return Redirect::NotARedirect,
        };
        let mut resent = Batch::routed_from(batch);
        if kind == b"ASK" {
            resent.bytes = command_bytes(&[b"ASKING"]);
            resent.push_command(0, true, Expect::Marker, CommandKind::Plain);
            resent.routed_as(batch, index, None);
            if batch.original(index).is_some() {
                resent.push_original(b"");
            }
        }
        // Still unsettled: its slot's count goes with it.
        resent.push_copy(batch, index, None, batch.slot(index));
        let count = resent.commands.len();
        // Counted before the command it resends settles (the reader settles
        // it once this returns), so the count does not touch 0 meanwhile.
        self.outstanding.add(count);
        match self.redirects[target].send(resent) {
            Ok(()) => Redirect::Resent,
            Err(_) => {
                self.settled(count);
                Redirect::NotARedirect
            }
        }
    }
}
