//! Cluster mode (`-c`): the router sits between input and the writers, one
//! writer and reply reader per primary, all loading in parallel.
//!
//! - `slot`: key → hash slot (CRC16/XMODEM, hashtags).
//! - `topology`: primaries and slot owners, from CLUSTER SHARDS / SLOTS.
//! - `keys`: where each command's keys are, from the server's COMMAND.
//! - `router`: splits input batches into per-primary batches.
//! - `outstanding`: commands routed and not yet settled; it tells the
//!   writers when no redirect can come any more.
//! - `spread`: `--connections N` into one server: the same slot rule
//!   spreads the commands over N connections, with barriers. With `-c`,
//!   `--connections N` gives each primary N lanes; `ClusterLinks::lane`
//!   picks one by slot, so one slot always takes one lane.
//!
//! A command answered `MOVED` or `ASK` was not executed, so it is resent
//! exactly once to the named node (after `ASKING` for `ASK`); `MOVED` also
//! updates the slot map the router reads. A node no lane serves yet (a
//! replica promoted by a failover, a node added mid-load) gets a lane of its
//! own (`route::NewLane`, started by the engine), and the whole layout is
//! read again from it, so the router sends the slots that moved straight to
//! their new owners instead of one redirect per command. A redirect that
//! cannot be followed leaves its command unsettled: the load is then not
//! complete, and the resume point is before it.

pub mod keys;
pub mod load;
pub mod outstanding;
pub mod router;
pub mod slot;
pub mod spread;
pub mod topology;

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::thread;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender, bounded, unbounded};

use crate::batch::InFlight;
use crate::batch::{Batch, CommandKind, Expect};
use crate::config::{Config, Endpoint};
use crate::conn::{self, SessionReplay};
use crate::control::{Value, query};
use crate::handover::NodeLoss;
use crate::route::NewLane;
use crate::summary::{ClusterEvents, report};
use crate::tls::TlsConfig;
use outstanding::Outstanding;
use slot::SlotOrder;
use topology::{NodeAddress, SlotRange, Topology};

/// A node asked about the layout must answer a connection within this.
const LAYOUT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// … and its question within this.
const LAYOUT_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// `cluster-node-timeout` when a node will not say (the server's default).
const DEFAULT_NODE_TIMEOUT: Duration = Duration::from_secs(15);

/// Beyond twice the node timeout, what a replica's election may take.
const PROMOTION_MARGIN: Duration = Duration::from_secs(5);

/// Resends of `TRYAGAIN`/`CLUSTERDOWN` answers allowed in one load, so a
/// cluster that stays down ends the load instead of looping.
const MAX_TRANSIENT_RESENDS: u32 = 10_000;
const TRANSIENT_PAUSE: Duration = Duration::from_millis(50);

/// What the reply readers of a cluster load share.
pub struct ClusterLinks<'a> {
    pub topology: &'a Topology,
    /// Commands routed and not yet settled, over all nodes: a writer stops
    /// only once its input is over and none is left (no redirect can come).
    pub outstanding: &'a Outstanding,
    /// The same, per slot, for the router's order keeping.
    pub order: &'a SlotOrder,
    lanes: Mutex<LaneLinks>,
    /// `--connections N`: lanes per node, node `n`'s being `n * N` to
    /// `n * N + N - 1` (see `lane`).
    lanes_per_node: usize,
    /// Nodes whose lanes were lost for good (each counted once).
    lost: Mutex<Vec<usize>>,
    /// Where the lanes of nodes found mid-load are asked for.
    new_lanes: Sender<NewLane>,
    /// To connect to a node for its view of the layout.
    config: &'a Config,
    tls: Option<&'a TlsConfig>,
    /// Held while the layout is read again: one reader at a time does it.
    refreshing: Mutex<()>,
    transient_resends: AtomicU32,
    redirects_followed: AtomicU64,
    layout_refreshes: AtomicU64,
    nodes_added: AtomicU64,
    nodes_lost: AtomicU64,
    /// How long a lost primary's promotion is waited for, once asked.
    promotion_wait: OnceLock<Duration>,
    /// The input position (`Batch::seq`) of the first command whose
    /// redirect could not be followed; `u64::MAX`: none.
    first_unfollowed: AtomicU64,
    /// Of those, the first that never reaches a reply handler either (its
    /// lane ended before it could be forwarded); `u64::MAX`: none.
    first_lost: AtomicU64,
    /// The input's last `AUTH` and `HELLO` that succeeded on any node: a
    /// node that joins mid-load is set up with them, as the others were.
    session: Mutex<SessionReplay>,
}

/// The channels into each lane, by lane index.
struct LaneLinks {
    /// Per lane: commands redirected to it by any reader.
    redirects: Vec<Sender<Batch>>,
    /// The router's channels into lanes it has not taken yet, in lane
    /// order; lanes opened once it finished get a closed one.
    for_router: Vec<Sender<Batch>>,
    router_finished: bool,
    /// Batches the router may queue for one node.
    batch_capacity: usize,
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
    /// Links for the nodes of `topology`; their lanes are asked for on the
    /// receiver returned, and so are those of nodes found later.
    /// `batch_capacity`: batches the router may queue for one node.
    pub fn new(
        topology: &'a Topology,
        outstanding: &'a Outstanding,
        order: &'a SlotOrder,
        config: &'a Config,
        tls: Option<&'a TlsConfig>,
        batch_capacity: usize,
    ) -> (Self, Receiver<NewLane>) {
        let (new_lanes, requested) = unbounded();
        let links = ClusterLinks {
            topology,
            outstanding,
            order,
            lanes: Mutex::new(LaneLinks {
                redirects: Vec::new(),
                for_router: Vec::new(),
                router_finished: false,
                batch_capacity,
            }),
            lanes_per_node: config.connections.max(1),
            lost: Mutex::new(Vec::new()),
            new_lanes,
            config,
            tls,
            refreshing: Mutex::new(()),
            transient_resends: AtomicU32::new(0),
            redirects_followed: AtomicU64::new(0),
            layout_refreshes: AtomicU64::new(0),
            nodes_added: AtomicU64::new(0),
            nodes_lost: AtomicU64::new(0),
            promotion_wait: OnceLock::new(),
            first_unfollowed: AtomicU64::new(u64::MAX),
            first_lost: AtomicU64::new(u64::MAX),
            session: Mutex::new(SessionReplay::default()),
        };
        {
            let mut lanes = links.lanes();
            let nodes: Vec<NodeAddress> = topology.nodes().clone();
            for (node, address) in nodes.into_iter().enumerate() {
                links.open_lanes(&mut lanes, node, address);
            }
        }
        (links, requested)
    }

    fn lanes(&self) -> MutexGuard<'_, LaneLinks> {
        self.lanes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Opens the channels into node `node`'s lanes and asks for them.
    fn open_lanes(&self, lanes: &mut LaneLinks, node: usize, address: NodeAddress) {
        for _ in 0..self.lanes_per_node {
            let (batch_sender, batches) = bounded(lanes.batch_capacity);
            let (redirect_sender, redirects) = unbounded();
            let lane = lanes.redirects.len();
            lanes.redirects.push(redirect_sender);
            if !lanes.router_finished {
                lanes.for_router.push(batch_sender);
            }
            // The receiver lives as long as the load: the request cannot
            // fail.
            let _ = self.new_lanes.send(NewLane {
                node,
                lane,
                host: address.host.clone(),
                port: address.port,
                batches,
                redirects,
            });
        }
    }

    /// The lane a command of `slot` (`None`: keyless) takes on `node`:
    /// with `--connections N`, one of the node's N by the slot, so one key
    /// always takes one lane.
    pub fn lane(&self, node: usize, slot: Option<u16>) -> usize {
        let nth = slot.map_or(0, |slot| usize::from(slot) % self.lanes_per_node);
        node * self.lanes_per_node + nth
    }

    /// Lanes per node (`--connections`).
    pub fn lanes_per_node(&self) -> usize {
        self.lanes_per_node
    }

    /// The index of the node at `address`; a node not known yet is added
    /// and gets a lane (`true`: it was added).
    fn node_at(&self, address: &NodeAddress) -> (usize, bool) {
        let mut lanes = self.lanes();
        if let Some(known) = self.topology.index_of(address) {
            return (known, false);
        }
        let node = self.topology.add(address.clone());
        self.open_lanes(&mut lanes, node, address.clone());
        self.nodes_added.fetch_add(1, Ordering::Relaxed);
        (node, true)
    }

    /// The router's channels into the lanes added since it last asked, in
    /// lane order.
    pub fn take_router_channels(&self) -> Vec<Sender<Batch>> {
        std::mem::take(&mut self.lanes().for_router)
    }

    /// The router adds no more commands: the channels it did not take are
    /// closed, so that those lanes' writers see their input end.
    pub fn router_finished(&self) {
        let mut lanes = self.lanes();
        lanes.router_finished = true;
        lanes.for_router.clear();
    }

    /// What happened to the layout during the load.
    pub fn events(&self) -> ClusterEvents {
        ClusterEvents {
            redirects_followed: self.redirects_followed.load(Ordering::Relaxed),
            layout_refreshes: self.layout_refreshes.load(Ordering::Relaxed),
            nodes_added: self.nodes_added.load(Ordering::Relaxed),
            nodes_lost: self.nodes_lost.load(Ordering::Relaxed),
        }
    }

    /// The input position of the first command whose redirect could not be
    /// followed, if any.
    pub fn first_unfollowed(&self) -> Option<u64> {
        match self.first_unfollowed.load(Ordering::SeqCst) {
            u64::MAX => None,
            seq => Some(seq),
        }
    }

    /// The input position of the first command that will never be
    /// settled by any lane (its redirect was for a lane that had ended),
    /// if any: `--replies` cannot write past it. A redirect refused
    /// otherwise still settles its command, as an error.
    pub fn first_lost(&self) -> Option<u64> {
        match self.first_lost.load(Ordering::SeqCst) {
            u64::MAX => None,
            seq => Some(seq),
        }
    }

    /// Keeps a session command (`AUTH`, `HELLO`) of the input that
    /// succeeded on a node, for the nodes that join later.
    pub fn record_session(&self, kind: CommandKind, encoded: &[u8]) {
        self.session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .record(kind, encoded);
    }

    /// What a node that joins now sets up before its first command.
    pub fn session(&self) -> SessionReplay {
        self.session
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn unfollowed(&self, batch: &Batch, index: usize) -> Redirect {
        self.first_unfollowed
            .fetch_min(batch.seq(index), Ordering::SeqCst);
        Redirect::NotARedirect
    }

    /// The layout as the node at `address` sees it (`Ok(None)`: it is
    /// not in cluster mode).
    fn layout_from(&self, address: &NodeAddress) -> anyhow::Result<Option<Vec<SlotRange>>> {
        let mut connection = conn::connect(&self.config_for(address), self.tls, None)?;
        // A node that takes the connection but never answers must not hold
        // up the lane that asks.
        connection
            .stream
            .set_read_timeout(Some(LAYOUT_ANSWER_TIMEOUT))?;
        topology::read_layout(&mut connection.stream, &address.host, self.tls.is_some())
    }

    /// The load's settings, to connect to the node at `address` for a
    /// question about the layout (the connection attempt bounded).
    fn config_for(&self, address: &NodeAddress) -> Config {
        Config {
            endpoint: Endpoint::Tcp {
                host: address.host.clone(),
                port: address.port,
            },
            connect_timeout: Some(
                self.config
                    .connect_timeout
                    .map_or(LAYOUT_CONNECT_TIMEOUT, |timeout| {
                        timeout.min(LAYOUT_CONNECT_TIMEOUT)
                    }),
            ),
            ..self.config.clone()
        }
    }

    /// Points every slot of `ranges` at its owner; a node not known yet
    /// gets a lane.
    fn apply_layout(&self, ranges: Vec<SlotRange>) {
        for (first, last, address) in ranges {
            let (node, _) = self.node_at(&address);
            for slot in first..=last.min(slot::SLOT_COUNT - 1) {
                self.topology.slots.set_owner(slot as u16, node);
            }
        }
        self.layout_refreshes.fetch_add(1, Ordering::Relaxed);
    }

    /// Reads the layout again from the node at `from` (one that just took
    /// over slots) and points every slot at its owner; a node not known
    /// yet gets a lane. Another reader already doing it is enough. A
    /// failure is reported: redirects are still followed one by one.
    fn refresh_layout(&self, from: &NodeAddress) {
        let Ok(_refreshing) = self.refreshing.try_lock() else {
            return;
        };
        match self.layout_from(from) {
            Ok(Some(ranges)) => self.apply_layout(ranges),
            Ok(None) => {}
            Err(error) => report(&format!(
                "pipeload: {}: cannot read the cluster layout again ({error:#}): following redirects one by one",
                from.to_text()
            )),
        }
    }

    /// Where a command that is routed by no slot goes now: the owner of
    /// slot 0.
    fn keyless_owner(&self) -> usize {
        self.topology.slots.owner(0)
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
                    .and_then(|slot| slot.parse::<u16>().ok())
                    .filter(|&slot| usize::from(slot) < slot::SLOT_COUNT);
                let answering_host = self
                    .topology
                    .address(node)
                    .map(|address| address.host)
                    .unwrap_or_default();
                let address = words
                    .next()
                    .and_then(|address| NodeAddress::parse(address, &answering_host));
                let (Some(slot), Some(address)) = (slot, address) else {
                    return self.unfollowed(batch, index);
                };
                let (target, added) = self.node_at(&address);
                if kind == b"MOVED" {
                    self.topology.slots.set_owner(slot, target);
                }
                // A node no lane served: a failover or a node added; other
                // slots have most likely moved too.
                if added {
                    self.refresh_layout(&address);
                }
                self.redirects_followed.fetch_add(1, Ordering::Relaxed);
                target
            }
            // With `--retry` a cluster that is down (a failover under way)
            // is waited for as a lost connection is: the reader ends the
            // session (handlers::redirect).
            b"CLUSTERDOWN" if self.config.retry > 0 => return Redirect::NotARedirect,
            b"TRYAGAIN" | b"CLUSTERDOWN" => {
                if self.transient_resends.fetch_add(1, Ordering::Relaxed) >= MAX_TRANSIENT_RESENDS {
                    return self.unfollowed(batch, index);
                }
                thread::sleep(TRANSIENT_PAUSE);
                node
            }
            _ => return Redirect::NotARedirect,
        };
        let mut resent = Batch::routed_from(batch);
        if kind == b"ASK" {
            resent.push_own(&[b"ASKING"], Expect::Marker, batch, index);
        }
        // Still unsettled: its slot's count goes with it.
        resent.push_copy(batch, index, None, batch.slot(index));
        let count = resent.commands.len();
        // Counted before the command it resends settles (the reader settles
        // it once this returns), so the count does not touch 0 meanwhile.
        self.outstanding.add(count);
        let lane = self.lane(target, batch.slot(index));
        let sent = match self.lanes().redirects.get(lane) {
            Some(lane) => lane.send(resent).is_ok(),
            None => false,
        };
        match sent {
            true => Redirect::Resent,
            // Its lane has ended (it gave up): the command stays unsettled.
            false => {
                self.settled(count);
                self.unfollowed(batch, index)
            }
        }
    }
}

impl NodeLoss for ClusterLinks<'_> {
    fn moved_away(&self, node: usize) -> bool {
        let Some(lost) = self.topology.address(node) else {
            return false;
        };
        let others: Vec<NodeAddress> = self
            .topology
            .nodes()
            .iter()
            .filter(|address| **address != lost)
            .cloned()
            .collect();
        // The first other node that answers says how things stand.
        let Some(ranges) = others
            .iter()
            .find_map(|address| self.layout_from(address).ok().flatten())
        else {
            return false;
        };
        let covered: usize = ranges
            .iter()
            .map(|(first, last, _)| (last + 1).saturating_sub(*first))
            .sum();
        // Still the lost node's, or not yet anyone's (a failover under way).
        if ranges.iter().any(|(_, _, owner)| *owner == lost) || covered < slot::SLOT_COUNT {
            return false;
        }
        self.apply_layout(ranges);
        true
    }

    fn promotion_wait(&self) -> Duration {
        *self.promotion_wait.get_or_init(|| {
            let asked = self.topology.nodes().clone();
            let node_timeout = asked
                .iter()
                .find_map(|address| self.node_timeout_of(address))
                .unwrap_or(DEFAULT_NODE_TIMEOUT);
            node_timeout.saturating_mul(2) + PROMOTION_MARGIN
        })
    }

    fn forward(&self, commands: Vec<InFlight>) {
        for held in commands {
            let mut by_owner: Vec<(usize, Batch)> = Vec::new();
            for index in held.first..held.end {
                let slot = held.batch.slot(index);
                let owner = slot.map_or_else(
                    || self.keyless_owner(),
                    |slot| self.topology.slots.owner(slot),
                );
                let owner = self.lane(owner, slot);
                let at = match by_owner.iter().position(|(node, _)| *node == owner) {
                    Some(at) => at,
                    None => {
                        by_owner.push((owner, Batch::routed_from(&held.batch)));
                        by_owner.len() - 1
                    }
                };
                by_owner[at].1.push_copy(&held.batch, index, None, slot);
            }
            for (owner, batch) in by_owner {
                let count = batch.commands.len();
                let first = batch.seq(0);
                let sent = match self.lanes().redirects.get(owner) {
                    Some(lane) => lane.send(batch).is_ok(),
                    None => false,
                };
                // Its lane has ended: the commands stay unsettled.
                if !sent {
                    self.settled(count);
                    self.first_unfollowed.fetch_min(first, Ordering::SeqCst);
                    self.first_lost.fetch_min(first, Ordering::SeqCst);
                }
            }
        }
    }

    fn node_lost(&self, node: usize) {
        // Each of the node's lanes finds it lost: counted once.
        let mut lost = self.lost.lock().unwrap_or_else(PoisonError::into_inner);
        if !lost.contains(&node) {
            lost.push(node);
            self.nodes_lost.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl ClusterLinks<'_> {
    /// The `cluster-node-timeout` of the node at `address`, if it says.
    fn node_timeout_of(&self, address: &NodeAddress) -> Option<Duration> {
        let mut connection = conn::connect(&self.config_for(address), self.tls, None).ok()?;
        connection
            .stream
            .set_read_timeout(Some(LAYOUT_ANSWER_TIMEOUT))
            .ok()?;
        let reply = query(
            &mut connection.stream,
            &[b"CONFIG", b"GET", b"cluster-node-timeout"],
        )
        .ok()?;
        let milliseconds = reply
            .as_array()?
            .get(1)
            .and_then(Value::as_bytes)
            .and_then(|value| std::str::from_utf8(value).ok())
            .and_then(|value| value.parse::<u64>().ok())?;
        Some(Duration::from_millis(milliseconds))
    }
}
