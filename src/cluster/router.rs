//! The router thread: takes the input's batches and splits them into one
//! batch per primary, by the hash slot of each command's first key.
//!
//! Place in the data flow: between input and the per-primary writers.
//! Commands keep their input positions (`batch::Members::Routed`), so
//! errors still name their line. A `MULTI … EXEC` block goes whole to the node of
//! its first key; `FLUSHALL`, `FLUSHDB`, `AUTH` and `HELLO` go to every
//! primary that owns slots now (their reply is counted once, a failed copy
//! as an error); other keyless commands go to the owner of slot 0; `SELECT`
//! of a database other than 0 is refused, as a cluster has only db 0. A
//! slot that changes owner keeps its commands in input order (`SlotOrder`).
//! With `--connections N` a primary has N lanes, a slot always the same
//! one (`ClusterLinks::lane`); a flush waits for every lane to drain.
//! A node found mid-load is taken on (`ClusterLinks::take_router_channels`)
//! when the slot map first names it.

use crossbeam_channel::{Receiver, Sender};

use super::ClusterLinks;
use super::keys::{KeyLookup, KeyPositions};
use super::outstanding::Outstanding;
use super::slot::{SLOT_COUNT, SlotOrder, key_slot};
use super::topology::Topology;
use crate::batch::{Batch, CommandKind, Expect, Rejection};
use crate::control::{Value, query};
use crate::reply_order::RepliesOut;
use crate::resp::{command_args, name_and_first_arg};
use crate::route::{BatchRouter, Routed, Stopped, run_router};
use crate::stop::Stop;
use crate::stream::Stream;

/// Where one command goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// To the owner of this hash slot.
    Slot(u16),
    /// A keyless command: to the owner of slot 0.
    FirstPrimary,
    EveryPrimary,
    Refused(Rejection),
}

pub struct Router<'a> {
    keys: KeyPositions,
    topology: &'a Topology,
    /// For `COMMAND GETKEYS`, when the metadata cannot find the keys.
    control: Stream,
    /// Per lane (one per node, or `--connections` per node): the channel
    /// into it.
    nodes: Vec<Sender<Batch>>,
    links: &'a ClusterLinks<'a>,
    outstanding: &'a Outstanding,
    order: &'a SlotOrder,
    /// Per slot: the lane its last command was routed to, and how many
    /// commands were routed by it.
    routed_to: Vec<Option<usize>>,
    routed: Vec<u64>,
    /// `--replies`: replies held for input order wait for room here.
    replies_out: Option<&'a RepliesOut>,
}

/// A router gone (returned, or even unwound) adds no more commands: the
/// writers may stop once the ones it added are settled.
impl Drop for Router<'_> {
    fn drop(&mut self) {
        self.links.router_finished();
        self.outstanding.router_finished();
    }
}

impl<'a> Router<'a> {
    pub fn new(
        keys: KeyPositions,
        topology: &'a Topology,
        control: Stream,
        links: &'a ClusterLinks<'a>,
        outstanding: &'a Outstanding,
        order: &'a SlotOrder,
    ) -> Self {
        Router {
            keys,
            topology,
            control,
            nodes: links.take_router_channels(),
            links,
            outstanding,
            order,
            routed_to: vec![None; SLOT_COUNT],
            routed: vec![0; SLOT_COUNT],
            replies_out: None,
        }
    }

    /// With `--replies`: before each input batch, waits while the replies
    /// held for input order (a node ahead of another) are over their limit.
    pub fn holding_for(mut self, replies_out: Option<&'a RepliesOut>) -> Self {
        self.replies_out = replies_out;
        self
    }

    /// Routes every batch until the input ends or a stop is requested.
    pub fn run(mut self, input: &Receiver<Batch>, stop: &Stop) -> Routed {
        run_router(&mut self, input, stop)
    }
}

impl BatchRouter for Router<'_> {
    fn before_batch(&mut self, stop: &Stop) {
        if let Some(replies_out) = self.replies_out {
            replies_out.wait_for_room(stop, &|| self.links.first_lost());
        }
    }

    fn route_batch(&mut self, batch: &Batch, stop: &Stop) -> Result<(), Stopped> {
        let mut split: Vec<Batch> = (0..self.nodes.len())
            .map(|_| Batch::routed_from(batch))
            .collect();
        let mut transaction: Option<Vec<usize>> = None;
        for index in 0..batch.commands.len() {
            let command = batch.commands[index];
            if let Some(block) = transaction.as_mut() {
                block.push(index);
                if command.kind == CommandKind::EndMulti {
                    let block = std::mem::take(block);
                    transaction = None;
                    self.route_transaction(batch, &block, &mut split, stop)?;
                }
                continue;
            }
            if command.kind == CommandKind::Multi {
                transaction = Some(vec![index]);
                continue;
            }
            match self.route(batch, index) {
                Route::Slot(slot) => {
                    let node = self.node_for(slot, &mut split, stop)?;
                    self.push_routed(&mut split[node], batch, index, Some(slot));
                }
                Route::FirstPrimary => {
                    let node = self.keyless_node(&mut split);
                    split[node].push_copy(batch, index, None, None)
                }
                Route::Refused(why) => {
                    let node = self.keyless_node(&mut split);
                    split[node].push_copy(batch, index, Some(Expect::Rejected(why)), None)
                }
                Route::EveryPrimary => self.route_everywhere(batch, index, &mut split, stop)?,
            }
        }
        if let Some(block) = transaction {
            self.route_transaction(batch, &block, &mut split, stop)?;
        }
        self.send_split(&mut split, stop)
    }
}

impl Router<'_> {
    /// Sends command `index` to every primary that owns slots now; its reply
    /// counts once. `AUTH`, `HELLO`, `CLIENT REPLY` go to each of a
    /// primary's lanes; with several lanes per primary `FLUSHALL` and
    /// `FLUSHDB` go to one, behind a barrier (every lane drained before,
    /// the flush settled after), as the other lanes' writes must not cross
    /// it.
    fn route_everywhere(
        &mut self,
        batch: &Batch,
        index: usize,
        split: &mut Vec<Batch>,
        stop: &Stop,
    ) -> Result<(), Stopped> {
        let command = batch.commands[index];
        let per_node = self.links.lanes_per_node();
        // Under `CLIENT REPLY OFF` nothing settles until replies are on
        // again: no barrier can be waited for then.
        let flush =
            per_node > 1 && command.expect != Expect::NoReply && !is_session_setup(batch, index);
        if flush {
            self.send_split(split, stop)?;
            self.outstanding.wait_all_settled(stop)?;
        }
        let lanes: Vec<usize> = self
            .topology
            .owning_nodes()
            .into_iter()
            .flat_map(|node| {
                let first = self.links.lane(node, None);
                first..first + if flush { 1 } else { per_node }
            })
            .collect();
        for (nth, lane) in lanes.into_iter().enumerate() {
            let lane = self.take_on(lane, split);
            // One reply counts for the input's one command; a command no
            // node answers (CLIENT REPLY OFF) is sent as it is everywhere.
            let expect = match nth {
                0 => None,
                _ if command.expect == Expect::NoReply => None,
                _ => Some(Expect::Marker),
            };
            split[lane].push_copy(batch, index, expect, None);
        }
        if flush {
            self.send_split(split, stop)?;
            self.outstanding.wait_all_settled(stop)?;
        }
        Ok(())
    }

    /// Hands every non-empty per-lane batch of `split` to its lane.
    fn send_split(&self, split: &mut [Batch], stop: &Stop) -> Result<(), Stopped> {
        self.outstanding.send_split(&self.nodes, split, stop)
    }

    /// `node` as an index into `split`: a node found mid-load is taken on
    /// first (its channel, a batch of its own in `split`). Every node the
    /// slot map names has its channel waiting (`ClusterLinks` opens it
    /// before it names the node), so the last-node fallback is never used.
    #[inline]
    fn take_on(&mut self, node: usize, split: &mut Vec<Batch>) -> usize {
        if node < split.len() {
            return node;
        }
        self.take_on_new(node, split)
    }

    #[inline(never)]
    fn take_on_new(&mut self, node: usize, split: &mut Vec<Batch>) -> usize {
        if node >= self.nodes.len() {
            self.nodes.extend(self.links.take_router_channels());
        }
        let node = node.min(self.nodes.len().saturating_sub(1));
        while split.len() <= node {
            let fresh = Batch::routed_from(&split[0]);
            split.push(fresh);
        }
        node
    }

    /// Where a keyless command goes: the owner of slot 0, a primary now.
    fn keyless_node(&mut self, split: &mut Vec<Batch>) -> usize {
        let node = self.topology.slots.owner(0);
        self.take_on(self.links.lane(node, None), split)
    }

    /// The node a command of `slot` goes to: its owner, but only once no
    /// earlier command of the slot is unsettled on the node it went to
    /// before (see `SlotOrder`). Waiting, it first sends what it has split,
    /// which may hold such commands.
    fn node_for(
        &mut self,
        slot: u16,
        split: &mut Vec<Batch>,
        stop: &Stop,
    ) -> Result<usize, Stopped> {
        let owner = self.topology.slots.owner(slot);
        let owner = self.take_on(self.links.lane(owner, Some(slot)), split);
        let at = usize::from(slot);
        let routed = self.routed[at];
        if self.routed_to[at].is_some_and(|last| last != owner)
            && self.order.settled_count(slot) < routed
        {
            self.send_split(split, stop)?;
            if !self.order.wait_settled(slot, routed, stop.woken()) {
                return Err(Stopped);
            }
        }
        self.routed_to[at] = Some(owner);
        Ok(owner)
    }

    /// Adds command `index` of `batch` to `target`, counted as unsettled in
    /// its slot.
    fn push_routed(&mut self, target: &mut Batch, batch: &Batch, index: usize, slot: Option<u16>) {
        if let Some(slot) = slot {
            self.routed[usize::from(slot)] += 1;
        }
        target.push_copy(batch, index, None, slot);
    }

    /// A transaction goes whole to the node of its first keyed command.
    fn route_transaction(
        &mut self,
        batch: &Batch,
        block: &[usize],
        split: &mut Vec<Batch>,
        stop: &Stop,
    ) -> Result<(), Stopped> {
        let slot = block
            .iter()
            .find_map(|&index| match self.route(batch, index) {
                Route::Slot(slot) if self.has_key(batch, index) => Some(slot),
                _ => None,
            });
        let node = match slot {
            Some(slot) => self.node_for(slot, split, stop)?,
            None => self.keyless_node(split),
        };
        for &index in block {
            self.push_routed(&mut split[node], batch, index, slot);
        }
        Ok(())
    }

    fn has_key(&mut self, batch: &Batch, index: usize) -> bool {
        let bytes = &batch.bytes[batch.command_range(index)];
        let args = command_args(bytes);
        !matches!(self.keys.first_key(&args), KeyLookup::Keyless)
    }

    fn route(&mut self, batch: &Batch, index: usize) -> Route {
        let command = batch.commands[index];
        if let Expect::Rejected(why) = command.expect {
            return Route::Refused(why);
        }
        let frame = &batch.bytes[batch.command_range(index)];
        // Most commands: routed by their name and first argument alone.
        if command.kind == CommandKind::Plain
            && let Some((name, Some(key))) = name_and_first_arg(frame)
            && self.keys.key_is_first_argument_only(name)
        {
            return Route::Slot(key_slot(key));
        }
        let args = command_args(frame);
        let name = args.first().copied().unwrap_or_default();
        if command.kind == CommandKind::Select {
            return match args.get(1).copied() {
                Some(b"0") => Route::FirstPrimary,
                _ => Route::Refused(Rejection::SelectInCluster),
            };
        }
        // Every primary's connection must be set up as the input sets up
        // its one connection.
        if matches!(command.kind, CommandKind::Auth | CommandKind::Hello) {
            return Route::EveryPrimary;
        }
        // CLIENT REPLY OFF and ON: every primary's connection answers as the
        // input's one connection would (the input refuses SKIP here).
        if name.eq_ignore_ascii_case(b"CLIENT")
            && args
                .get(1)
                .is_some_and(|sub| sub.eq_ignore_ascii_case(b"REPLY"))
        {
            return Route::EveryPrimary;
        }
        if name.eq_ignore_ascii_case(b"FLUSHALL") || name.eq_ignore_ascii_case(b"FLUSHDB") {
            return Route::EveryPrimary;
        }
        let key = match self.keys.first_key(&args) {
            KeyLookup::Key(key) => Some(key.to_vec()),
            KeyLookup::Keyless => None,
            KeyLookup::AskServer => self.keys_from_server(&args),
        };
        match key {
            Some(key) => Route::Slot(key_slot(&key)),
            None => Route::FirstPrimary,
        }
    }

    /// `COMMAND GETKEYS`: the server's own answer for commands whose keys
    /// the metadata cannot locate.
    fn keys_from_server(&mut self, args: &[&[u8]]) -> Option<Vec<u8>> {
        let mut request: Vec<&[u8]> = vec![b"COMMAND", b"GETKEYS"];
        request.extend_from_slice(args);
        match query(&mut self.control, &request).ok()? {
            Value::Array(keys) => keys.first().and_then(Value::as_bytes).map(<[u8]>::to_vec),
            _ => None,
        }
    }
}

/// `AUTH`, `HELLO` or `CLIENT REPLY`: a command that sets a connection up,
/// rather than one that changes data (`FLUSHALL`, `FLUSHDB`).
fn is_session_setup(batch: &Batch, index: usize) -> bool {
    let command = batch.commands[index];
    matches!(command.kind, CommandKind::Auth | CommandKind::Hello)
        || command_args(&batch.bytes[batch.command_range(index)])
            .first()
            .is_some_and(|name| name.eq_ignore_ascii_case(b"CLIENT"))
}
