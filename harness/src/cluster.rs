//! A throwaway Redis Cluster for one test: three primaries, no replicas,
//! each a `redis-server --cluster-enabled yes` on loopback with its own
//! directory, slots 0–5460, 5461–10922 and 10923–16383. Every node is
//! killed and its directory removed on drop.
//!
//! [`TestCluster::start_with_replicas`] adds a replica to each primary
//! (nodes 3, 4, 5 replicate 0, 1, 2) with a short `cluster-node-timeout`,
//! for failover tests: [`TestCluster::failover`] (`CLUSTER FAILOVER` on a
//! replica), [`TestCluster::kill_primary`] (SIGKILL, then the wait for its
//! replica's promotion); [`TestCluster::add_node`] and
//! [`TestCluster::remove_node`] grow and shrink any cluster. Each waits on
//! what the nodes report, never on time.
//!
//! The harness computes hash slots itself ([`slot_of`], written from the
//! cluster specification, independently of pipeload) and keeps its own map
//! of which node owns which slot, updated by [`TestCluster::migrate_slot`],
//! so a test checks every key on the node that must hold it.
//!
//! [`TestCluster::start_valkey`] starts the same three primaries with
//! `valkey-server` ([`ServerKind::Valkey`]).
//!
//! [`TestCluster::start_tls`] starts the same cluster with TLS only: each
//! node listens on a TLS client port (no plaintext port) and speaks TLS on
//! the cluster bus, with the test certificates of [`crate::tls`]; the
//! harness itself talks to it through [`NodeClient`].

use std::fs;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::client::{Client, Value, info_field};
use crate::server::{ServerKind, spawn_server_binary, start_with_retries, wait_until_answering};
use crate::temp::TempDir;
use crate::tls::{TlsClient, TlsFiles};

pub const SLOTS: u16 = 16384;

/// The slot ranges of the three primaries, in node order.
pub const SLOT_RANGES: [(u16, u16); 3] = [(0, 5460), (5461, 10922), (10923, 16383)];

/// The cluster bus listens on the client port plus this.
const BUS_OFFSET: u16 = 10000;

/// Client ports are drawn from here: below the kernel's ephemeral range
/// (32768 and up on Linux), bus port included, so neither clashes with
/// the ephemeral ports of client sockets or of other tests' servers.
const PORT_RANGE: (u16, u16) = (12000, 22000);

/// How long the cluster may take to form, or to settle after a change.
const FORMATION_GUARD: Duration = Duration::from_secs(20);

/// `cluster-node-timeout` of the three-primary cluster.
const NODE_TIMEOUT_MS: u32 = 5000;

/// `cluster-node-timeout` of a cluster with replicas: a killed primary is
/// failed over within a few seconds.
pub const FAILOVER_NODE_TIMEOUT_MS: u32 = 1000;

/// The hash slot of `key`, as the cluster specification defines it:
/// CRC16/XMODEM of the key, or of the part between the first `{` and the
/// first `}` after it when that part is not empty, modulo 16384.
pub fn slot_of(key: &[u8]) -> u16 {
    let hashed = match key.iter().position(|&byte| byte == b'{') {
        Some(open) => match key[open + 1..].iter().position(|&byte| byte == b'}') {
            Some(len) if len > 0 => &key[open + 1..open + 1 + len],
            _ => key,
        },
        None => key,
    };
    crc16_xmodem(hashed) % SLOTS
}

/// CRC16/XMODEM: polynomial 0x1021, initial value 0, no reflection.
pub fn crc16_xmodem(bytes: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in bytes {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

/// A hash tag (without braces) whose slot the node `node` owns in a fresh
/// cluster, drawn from `{prefix}0`, `{prefix}1`, …
pub fn tag_on_node(prefix: &str, node: usize) -> String {
    (0..)
        .map(|n| format!("{prefix}{n}"))
        .find(|tag| initial_owner(slot_of(tag.as_bytes())) == node)
        .expect("some tag lands on every node")
}

/// The node that owns `slot` before any migration.
pub fn initial_owner(slot: u16) -> usize {
    SLOT_RANGES
        .iter()
        .position(|&(first, last)| (first..=last).contains(&slot))
        .expect("every slot is in a range")
}

struct Node {
    child: Mutex<Child>,
    port: u16,
    id: String,
    dir: TempDir,
}

pub struct TestCluster {
    /// Only ever grows: a removed node keeps its index (and is stopped).
    nodes: Vec<Node>,
    /// The certificates of a TLS-only cluster; `None`: plaintext.
    tls: Option<TlsFiles>,
    /// The node owning each slot (`None`: unassigned), as the harness set
    /// it up, migrated and failed it over.
    owners: Mutex<Vec<Option<usize>>>,
    /// Per node: the primary it replicates (`None`: a primary).
    replica_of: Mutex<Vec<Option<usize>>>,
    /// Per node: killed or removed.
    gone: Mutex<Vec<bool>>,
    node_timeout_ms: u32,
    /// The server program every node runs.
    kind: ServerKind,
}

impl TestCluster {
    /// Three primaries holding every slot; returns once every node reports
    /// `cluster_state:ok` and knows all three primaries and their slots.
    pub fn start() -> TestCluster {
        TestCluster::start_assigning(&[true, true, true], None, false, ServerKind::Redis)
    }

    /// Three primaries (nodes 0, 1, 2, slots as [`start`](TestCluster::start))
    /// and a replica of each (nodes 3, 4, 5), with a `cluster-node-timeout`
    /// of [`FAILOVER_NODE_TIMEOUT_MS`]. Returns once every node sees the
    /// cluster ok and every replica's link to its primary is up.
    pub fn start_with_replicas() -> TestCluster {
        TestCluster::start_assigning(&[true, true, true], None, true, ServerKind::Redis)
    }

    /// As [`start`](TestCluster::start), but every node listens on a TLS
    /// port only (`--port 0 --tls-port P`) and the cluster bus and
    /// replication run over TLS too (`--tls-cluster yes --tls-replication
    /// yes`), with the test CA and server certificate; nodes present the
    /// test client certificate to each other on the bus. Clients need no
    /// certificate of their own. [`port`](TestCluster::port) is a node's TLS
    /// port; [`tls_files`](TestCluster::tls_files) has the CA to trust.
    pub fn start_tls() -> TestCluster {
        TestCluster::start_assigning(
            &[true, true, true],
            Some(TlsFiles::new()),
            false,
            ServerKind::Redis,
        )
    }

    /// Three primaries joined into one cluster, but `unassigned` holds no
    /// slots: its range is not covered. Returns once every node knows the
    /// three nodes and the slots of the other two (the state stays `fail`).
    pub fn start_with_uncovered_range(unassigned: usize) -> TestCluster {
        let mut assign = [true; 3];
        assign[unassigned] = false;
        TestCluster::start_assigning(&assign, None, false, ServerKind::Redis)
    }

    /// As [`start`](TestCluster::start), with `valkey-server` nodes; panics
    /// with what to install when Valkey cannot be found.
    pub fn start_valkey() -> TestCluster {
        TestCluster::start_assigning(&[true, true, true], None, false, ServerKind::Valkey)
    }

    fn start_assigning(
        assign: &[bool; 3],
        tls: Option<TlsFiles>,
        replicas: bool,
        kind: ServerKind,
    ) -> TestCluster {
        let node_timeout_ms = match replicas {
            true => FAILOVER_NODE_TIMEOUT_MS,
            false => NODE_TIMEOUT_MS,
        };
        let node_count = if replicas { 6 } else { 3 };
        let nodes: Vec<Node> = (0..node_count)
            .map(|_| start_node(tls.as_ref(), node_timeout_ms, kind))
            .collect();
        let mut owners = vec![None; usize::from(SLOTS)];
        for (index, node) in nodes.iter().enumerate() {
            let mut client = NodeClient::connect(node.port, tls.is_some());
            // Distinct epochs up front, as `redis-cli --cluster create`
            // does, so no collision needs resolving while forming.
            client.ok(&["CLUSTER", "SET-CONFIG-EPOCH", &(index + 1).to_string()]);
            if assign.get(index) == Some(&true) {
                let (first, last) = SLOT_RANGES[index];
                client.ok(&[
                    "CLUSTER",
                    "ADDSLOTSRANGE",
                    &first.to_string(),
                    &last.to_string(),
                ]);
                for slot in first..=last {
                    owners[usize::from(slot)] = Some(index);
                }
            }
        }
        let mut first = NodeClient::connect(nodes[0].port, tls.is_some());
        for node in &nodes[1..] {
            first.ok(&["CLUSTER", "MEET", "127.0.0.1", &node.port.to_string()]);
        }
        let replica_of = (0..node_count)
            .map(|index| (index >= 3).then(|| index - 3))
            .collect();
        let cluster = TestCluster {
            gone: Mutex::new(vec![false; nodes.len()]),
            nodes,
            tls,
            owners: Mutex::new(owners),
            replica_of: Mutex::new(replica_of),
            node_timeout_ms,
            kind,
        };
        if replicas {
            cluster.wait_until_known_everywhere();
            for replica in 3..node_count {
                let primary = cluster.node_id(replica - 3).to_string();
                cluster
                    .node_client(replica)
                    .ok(&["CLUSTER", "REPLICATE", &primary]);
            }
        }
        let assigned: usize = SLOT_RANGES
            .iter()
            .zip(assign)
            .filter(|(_, assigned)| **assigned)
            .map(|(&(first, last), _)| usize::from(last - first) + 1)
            .sum();
        cluster.wait_until_formed(assigned);
        cluster
    }

    /// Waits until every node knows the three nodes as connected primaries
    /// and sees `assigned` slots; with all slots assigned, also until every
    /// node's state is ok.
    fn wait_until_formed(&self, assigned: usize) {
        let deadline = Instant::now() + FORMATION_GUARD;
        loop {
            let unready: Vec<String> = (0..self.nodes.len())
                .filter_map(|index| self.not_formed_on(index, assigned))
                .collect();
            if unready.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "the cluster did not form within {FORMATION_GUARD:?}:\n{}\n{}",
                    unready.join("\n"),
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Why node `index` does not see the cluster formed yet, if it does not.
    fn not_formed_on(&self, index: usize, assigned: usize) -> Option<String> {
        let mut client = self.node_client(index);
        let info = client.ok(&["CLUSTER", "INFO"]).into_text();
        let field = |name: &str| info_field(&info, name).unwrap_or("").to_string();
        let nodes = client.ok(&["CLUSTER", "NODES"]).into_text();
        let connected_primaries = nodes
            .lines()
            .filter(|line| {
                let fields: Vec<&str> = line.split(' ').collect();
                fields.len() >= 8
                    && fields[2].split(',').any(|flag| flag == "master")
                    && !fields[2]
                        .split(',')
                        .any(|flag| matches!(flag, "fail" | "fail?" | "handshake" | "noaddr"))
                    && fields[7] == "connected"
            })
            .count();
        let all_assigned = assigned == usize::from(SLOTS);
        let replicas_up = match self.replica_of(index) {
            None => true,
            Some(_) => {
                info_field(
                    &client.ok(&["INFO", "replication"]).into_text(),
                    "master_link_status",
                ) == Some("up")
            }
        };
        let formed = connected_primaries == 3
            && field("cluster_known_nodes") == self.nodes.len().to_string()
            && field("cluster_slots_assigned") == assigned.to_string()
            && (!all_assigned || field("cluster_state") == "ok")
            && replicas_up;
        (!formed).then(|| {
            format!(
                "node {index} (port {}): state {}, known nodes {}, slots assigned {}, \
                 connected primaries {connected_primaries}:\n{nodes}",
                self.nodes[index].port,
                field("cluster_state"),
                field("cluster_known_nodes"),
                field("cluster_slots_assigned"),
            )
        })
    }

    /// Waits until every node knows every other (after `CLUSTER MEET`).
    fn wait_until_known_everywhere(&self) {
        let count = self.live_nodes().len().to_string();
        self.wait_for("every node knows every other", |cluster, index| {
            let info = cluster
                .node_client(index)
                .ok(&["CLUSTER", "INFO"])
                .into_text();
            info_field(&info, "cluster_known_nodes") == Some(count.as_str())
        });
    }

    /// Waits until `holds` is true of every live node, polling; panics with
    /// the nodes' logs after [`FORMATION_GUARD`].
    fn wait_for(&self, what: &str, holds: impl Fn(&TestCluster, usize) -> bool) {
        let deadline = Instant::now() + FORMATION_GUARD;
        loop {
            let unready: Vec<usize> = self
                .live_nodes()
                .into_iter()
                .filter(|&index| !holds(self, index))
                .collect();
            if unready.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "not true within {FORMATION_GUARD:?} on nodes {unready:?}: {what}\n{}",
                    self.logs()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The nodes not killed or removed.
    pub fn live_nodes(&self) -> Vec<usize> {
        let gone = self.gone.lock().expect("gone lock");
        (0..self.nodes.len())
            .filter(|&index| !gone[index])
            .collect()
    }

    /// The primary node `index` replicates, or `None` for a primary.
    pub fn replica_of(&self, index: usize) -> Option<usize> {
        self.replica_of.lock().expect("replica_of lock")[index]
    }

    /// The replica of primary `primary`, if it has one.
    pub fn replica_for(&self, primary: usize) -> Option<usize> {
        let replica_of = self.replica_of.lock().expect("replica_of lock");
        let gone = self.gone.lock().expect("gone lock");
        (0..self.nodes.len()).find(|&index| replica_of[index] == Some(primary) && !gone[index])
    }

    /// `cluster-node-timeout` of the nodes, in milliseconds.
    pub fn node_timeout_ms(&self) -> u32 {
        self.node_timeout_ms
    }

    /// Whether live node `index` sees node `id` as a healthy primary that
    /// serves `slot`, and the cluster ok.
    fn sees_serving(&self, index: usize, id: &str, slot: u16) -> bool {
        let mut client = self.node_client(index);
        let info = client.ok(&["CLUSTER", "INFO"]).into_text();
        if info_field(&info, "cluster_state") != Some("ok") {
            return false;
        }
        let nodes = client.ok(&["CLUSTER", "NODES"]).into_text();
        nodes.lines().any(|line| {
            let fields: Vec<&str> = line.split(' ').collect();
            fields.len() >= 8
                && fields[0] == id
                && fields[2].split(',').any(|flag| flag == "master")
                && !fields[2]
                    .split(',')
                    .any(|flag| matches!(flag, "fail" | "fail?"))
                && fields[8..].iter().any(|range| {
                    let (first, last) = range.split_once('-').unwrap_or((range, range));
                    match (first.parse::<u16>(), last.parse::<u16>()) {
                        (Ok(first), Ok(last)) => (first..=last).contains(&slot),
                        _ => false,
                    }
                })
        })
    }

    /// Hands the slots of `old` to `new` in the harness's map, and their
    /// roles over, then waits until every live node sees `new` serving them
    /// and its own role as primary.
    fn promoted(&self, new: usize, old: usize) {
        let slots: Vec<u16> = {
            let mut owners = self.owners.lock().expect("owners lock");
            let slots = (0..SLOTS)
                .filter(|&slot| owners[usize::from(slot)] == Some(old))
                .collect();
            for owner in owners.iter_mut().filter(|owner| **owner == Some(old)) {
                *owner = Some(new);
            }
            slots
        };
        {
            let mut replica_of = self.replica_of.lock().expect("replica_of lock");
            replica_of[new] = None;
            replica_of[old] = Some(new);
        }
        let id = self.node_id(new).to_string();
        let probe = slots.first().copied().unwrap_or(0);
        self.wait_for(
            "the promoted replica serves its slots everywhere",
            |cluster, index| cluster.sees_serving(index, &id, probe),
        );
        self.wait_for(
            "the promoted replica says it is a primary",
            |cluster, index| {
                index != new
                    || cluster
                        .node_client(index)
                        .ok(&["ROLE"])
                        .into_array()
                        .first()
                        == Some(&Value::Bulk(Some(b"master".to_vec())))
            },
        );
    }

    /// `CLUSTER FAILOVER` on `replica`: it takes over its primary's slots
    /// and the primary becomes its replica. Returns once every node sees
    /// the replica serving those slots; returns the former primary.
    pub fn failover(&self, replica: usize) -> usize {
        let old = self
            .replica_of(replica)
            .unwrap_or_else(|| panic!("node {replica} is not a replica"));
        self.node_client(replica).ok(&["CLUSTER", "FAILOVER"]);
        self.promoted(replica, old);
        old
    }

    /// SIGKILL to primary `primary`, then the wait until its replica has
    /// been promoted and every live node sees it serving the slots (about
    /// `cluster-node-timeout` plus the election). Returns the replica.
    pub fn kill_primary(&self, primary: usize) -> usize {
        self.kill_node(primary);
        self.wait_for_promotion(primary)
    }

    /// After [`kill_node`](TestCluster::kill_node) of primary `primary`:
    /// waits until its replica has been promoted and every live node sees
    /// it serving the slots. Returns the replica.
    pub fn wait_for_promotion(&self, primary: usize) -> usize {
        let replica = self
            .replica_for(primary)
            .unwrap_or_else(|| panic!("primary {primary} has no replica"));
        self.promoted(replica, primary);
        replica
    }

    /// Starts a new node, empty and without slots, and joins it to the
    /// cluster; returns its index once every live node knows it.
    pub fn add_node(&mut self) -> usize {
        let node = start_node(self.tls.as_ref(), self.node_timeout_ms, self.kind);
        let port = node.port.to_string();
        self.nodes.push(node);
        self.replica_of.lock().expect("replica_of lock").push(None);
        self.gone.lock().expect("gone lock").push(false);
        let seed = self.live_nodes()[0];
        self.node_client(seed)
            .ok(&["CLUSTER", "MEET", "127.0.0.1", &port]);
        self.wait_until_known_everywhere();
        // The new node serves nothing until it has learnt every slot.
        self.wait_for("every node sees the cluster ok", |cluster, index| {
            let info = cluster
                .node_client(index)
                .ok(&["CLUSTER", "INFO"])
                .into_text();
            info_field(&info, "cluster_state") == Some("ok")
        });
        self.nodes.len() - 1
    }

    /// Removes node `index`, which must own no slot any more: every other
    /// node forgets it, then it is stopped. Returns once no live node
    /// knows it.
    pub fn remove_node(&self, index: usize) {
        let owns = self
            .owners
            .lock()
            .expect("owners lock")
            .contains(&Some(index));
        assert!(!owns, "node {index} still owns slots");
        let id = self.node_id(index).to_string();
        self.gone.lock().expect("gone lock")[index] = true;
        for other in self.live_nodes() {
            self.node_client(other).ok(&["CLUSTER", "FORGET", &id]);
        }
        self.kill_process(index);
        self.wait_until_known_everywhere();
    }

    /// How many nodes were ever started (removed ones included).
    #[expect(clippy::len_without_is_empty, reason = "a cluster always has nodes")]
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// The client port of node `index`.
    pub fn port(&self, index: usize) -> u16 {
        self.nodes[index].port
    }

    /// The process id of node `index` (for its CPU time in `/proc`).
    pub fn pid(&self, index: usize) -> u32 {
        // A poisoned lock still holds the child.
        let child = self.nodes[index]
            .child
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        child.id()
    }

    /// The node id (`CLUSTER MYID`) of node `index`.
    pub fn node_id(&self, index: usize) -> &str {
        &self.nodes[index].id
    }

    /// `127.0.0.1:PORT` of node `index`, as pipeload names a node.
    pub fn address(&self, index: usize) -> String {
        format!("127.0.0.1:{}", self.nodes[index].port)
    }

    /// A new connection to node `index` (it answers `MOVED` for keys it does
    /// not own). Plaintext: a TLS cluster has no plaintext port, see
    /// [`node_client`](TestCluster::node_client).
    pub fn client(&self, index: usize) -> Client {
        assert!(
            self.tls.is_none(),
            "a TLS cluster has no plaintext port: use node_client"
        );
        Client::connect(self.nodes[index].port)
    }

    /// A new connection to node `index`, over TLS for a TLS cluster.
    pub fn node_client(&self, index: usize) -> NodeClient {
        NodeClient::connect(self.nodes[index].port, self.tls.is_some())
    }

    /// The certificates of a cluster from [`start_tls`](TestCluster::start_tls).
    pub fn tls_files(&self) -> Option<&TlsFiles> {
        self.tls.as_ref()
    }

    /// The node owning `slot` now (after the harness's migrations).
    pub fn owner_of(&self, slot: u16) -> usize {
        self.owners.lock().expect("owners lock")[usize::from(slot)]
            .unwrap_or_else(|| panic!("slot {slot} is not assigned"))
    }

    /// The node owning the slot of `key`.
    pub fn owner_of_key(&self, key: impl AsRef<[u8]>) -> usize {
        self.owner_of(slot_of(key.as_ref()))
    }

    /// `GET key`, asked of the node that owns it.
    pub fn get(&self, key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        let key = key.as_ref();
        self.node_client(self.owner_of_key(key)).get(key)
    }

    /// `DBSIZE` of every node.
    pub fn dbsizes(&self) -> Vec<i64> {
        (0..self.nodes.len())
            .map(|index| self.node_client(index).dbsize())
            .collect()
    }

    /// The keys of the whole cluster.
    pub fn total_keys(&self) -> i64 {
        self.dbsizes().iter().sum()
    }

    /// Moves `slot` and its keys from node `from` to node `to` with the
    /// documented resharding steps: the destination imports, the source
    /// migrates, keys move with `MIGRATE … KEYS` in batches of 100 until the
    /// source has none left in the slot, then the destination, the source
    /// and the remaining node are told the slot's new owner. Safe to call
    /// while clients write to the slot: they get `ASK`, `TRYAGAIN` or
    /// `MOVED` meanwhile. Returns how many keys moved.
    pub fn migrate_slot(&self, slot: u16, from: usize, to: usize) -> usize {
        assert_eq!(
            self.owner_of(slot),
            from,
            "slot {slot} is not on node {from}"
        );
        let slot_arg = slot.to_string();
        let mut source = self.client(from);
        let mut destination = self.client(to);
        destination.ok(&[
            "CLUSTER",
            "SETSLOT",
            &slot_arg,
            "IMPORTING",
            self.node_id(from),
        ]);
        source.ok(&[
            "CLUSTER",
            "SETSLOT",
            &slot_arg,
            "MIGRATING",
            self.node_id(to),
        ]);
        let to_port = self.port(to).to_string();
        let mut moved = 0;
        loop {
            let keys: Vec<Vec<u8>> = source
                .ok(&["CLUSTER", "GETKEYSINSLOT", &slot_arg, "100"])
                .into_array()
                .into_iter()
                .map(|key| key.into_bulk().unwrap_or_default())
                .collect();
            if keys.is_empty() {
                break;
            }
            let mut migrate: Vec<&[u8]> = vec![
                b"MIGRATE",
                b"127.0.0.1",
                to_port.as_bytes(),
                b"",
                b"0",
                b"5000",
                b"KEYS",
            ];
            migrate.extend(keys.iter().map(Vec::as_slice));
            source.ok(&migrate);
            moved += keys.len();
        }
        let to_id = self.node_id(to).to_string();
        let announce = |index: usize| {
            self.client(index)
                .ok(&["CLUSTER", "SETSLOT", &slot_arg, "NODE", &to_id]);
        };
        announce(to);
        announce(from);
        // Replicas refuse SETSLOT: they learn from their primaries.
        for other in self
            .live_nodes()
            .into_iter()
            .filter(|&index| index != from && index != to && self.replica_of(index).is_none())
        {
            announce(other);
        }
        self.owners.lock().expect("owners lock")[usize::from(slot)] = Some(to);
        moved
    }

    /// SIGKILL to node `index`: its clients see their connections reset.
    pub fn kill_node(&self, index: usize) {
        self.gone.lock().expect("gone lock")[index] = true;
        self.kill_process(index);
    }

    fn kill_process(&self, index: usize) {
        let mut child = self.nodes[index].child.lock().expect("child lock");
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Every node's log, for failure messages.
    pub fn logs(&self) -> String {
        self.nodes
            .iter()
            .enumerate()
            .map(|(index, node)| {
                format!(
                    "--- node {index} (port {}) log:\n{}",
                    node.port,
                    fs::read_to_string(node.dir.path().join("redis.log")).unwrap_or_default()
                )
            })
            .collect()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for node in &self.nodes {
            // A poisoned lock still holds the child: kill it all the same.
            let mut child = node
                .child
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let _ = child.kill();
            let _ = child.wait();
        }
        // The directories go with the nodes' `TempDir`s.
    }
}

/// Starts one cluster-enabled node on a port whose bus port is free too,
/// trying other ports when another process takes one first; with `tls`, a
/// TLS-only node using those certificates.
fn start_node(tls: Option<&TlsFiles>, node_timeout_ms: u32, kind: ServerKind) -> Node {
    start_with_retries("a cluster node", || {
        try_start_node(free_port_pair(), tls, node_timeout_ms, kind)
    })
}

fn try_start_node(
    port: u16,
    tls: Option<&TlsFiles>,
    node_timeout_ms: u32,
    kind: ServerKind,
) -> Result<Node, String> {
    let dir = TempDir::new("cluster");
    let mut child = spawn_node(port, dir.path(), tls, node_timeout_ms, kind)?;
    match wait_until_ready(&mut child, port, dir.path(), tls.is_some()) {
        Ok(id) => Ok(Node {
            child: Mutex::new(child),
            port,
            id,
            dir,
        }),
        Err(failure) => {
            let _ = child.kill();
            let _ = child.wait();
            Err(failure)
        }
    }
}

fn spawn_node(
    port: u16,
    dir: &Path,
    tls: Option<&TlsFiles>,
    node_timeout_ms: u32,
    kind: ServerKind,
) -> Result<Child, String> {
    let mut command = kind.command();
    match tls {
        None => command.args(["--port", &port.to_string()]),
        // The bus port is the TLS port + 10000, as it is the plaintext
        // port's without TLS. The bus always checks the certificate its
        // peer presents as a client, so nodes present the client one (the
        // server certificate is for server authentication only).
        Some(files) => command
            .args(["--port", "0", "--tls-port", &port.to_string()])
            .args(["--tls-cluster", "yes", "--tls-replication", "yes"])
            .args(files.server_args())
            .arg("--tls-client-cert-file")
            .arg(&files.client_cert)
            .arg("--tls-client-key-file")
            .arg(&files.client_key)
            .args(["--tls-auth-clients", "no"]),
    };
    command
        .args(["--bind", "127.0.0.1"])
        .args(["--cluster-enabled", "yes"])
        .args(["--cluster-config-file", "nodes.conf"])
        .args(["--cluster-node-timeout", &node_timeout_ms.to_string()])
        // A replica whose primary was killed under load may still be
        // catching up: it takes over all the same.
        .args(["--cluster-replica-validity-factor", "0"])
        // A primary whose last slot migrates away stays a primary (to be
        // removed), rather than turning into a replica of the new owner.
        .args(["--cluster-allow-replica-migration", "no"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--loglevel", "notice"])
        .arg("--dir")
        .arg(dir)
        .arg("--logfile")
        .arg(dir.join("redis.log"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    spawn_server_binary(&mut command)
}

/// Waits until this process (not another on its port) answers; returns its
/// node id.
fn wait_until_ready(child: &mut Child, port: u16, dir: &Path, tls: bool) -> Result<String, String> {
    wait_until_answering(
        child,
        &format!("port {port}"),
        &dir.join("redis.log"),
        || {
            NodeClient::try_connect(port, tls)
                .ok()
                .map(|mut client| client.server_pid())
        },
    )?;
    match NodeClient::try_connect(port, tls)
        .map_err(|err| format!("node on port {port}: {err}"))?
        .cmd(&["CLUSTER", "MYID"])
    {
        Value::Bulk(Some(id)) => Ok(String::from_utf8_lossy(&id).into_owned()),
        other => Err(format!("CLUSTER MYID on port {port} replied {other:?}")),
    }
}

/// A loopback port P, with P + 10000 (its cluster bus port), both free a
/// moment ago (each bound and released to check).
fn free_port_pair() -> u16 {
    static DRAWS: AtomicU32 = AtomicU32::new(0);
    let span = u32::from(PORT_RANGE.1 - PORT_RANGE.0);
    let seed = std::process::id()
        ^ SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.subsec_nanos());
    for _ in 0..1000 {
        let draw = DRAWS.fetch_add(1, Ordering::Relaxed);
        // A multiplicative hash spreads draws of parallel tests apart.
        let offset = seed.wrapping_add(draw.wrapping_mul(2_654_435_761)) % span;
        let port = PORT_RANGE.0 + u16::try_from(offset).expect("offset below the span");
        let client = TcpListener::bind(("127.0.0.1", port));
        let bus = TcpListener::bind(("127.0.0.1", port + BUS_OFFSET));
        if client.is_ok() && bus.is_ok() {
            return port;
        }
    }
    panic!("no free port pair P, P+{BUS_OFFSET} in {PORT_RANGE:?}");
}

/// A connection to one node, plaintext or TLS, with what the harness asks
/// of nodes.
pub enum NodeClient {
    Plain(Client),
    /// Boxed: a TLS session is a kilobyte, a plain connection a few words.
    Tls(Box<TlsClient>),
}

impl NodeClient {
    /// Connects to the node on `port`; over TLS (trusting the test CA,
    /// without a client certificate) when `tls`.
    pub fn connect(port: u16, tls: bool) -> NodeClient {
        NodeClient::try_connect(port, tls)
            .unwrap_or_else(|err| panic!("connect to cluster node on port {port}: {err}"))
    }

    pub fn try_connect(port: u16, tls: bool) -> std::io::Result<NodeClient> {
        Ok(match tls {
            true => NodeClient::Tls(Box::new(TlsClient::try_connect(port, false)?)),
            false => NodeClient::Plain(Client::try_connect(port)?),
        })
    }

    /// Sends one command and returns its reply (which may be an error).
    pub fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Value {
        match self {
            NodeClient::Plain(client) => client.cmd(args),
            NodeClient::Tls(client) => client.cmd(args),
        }
    }

    /// Sends one command that must not fail.
    pub fn ok<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Value {
        let reply = self.cmd(args);
        if let Value::Error(message) = &reply {
            let name = String::from_utf8_lossy(args[0].as_ref()).into_owned();
            panic!("{name} failed: {message}");
        }
        reply
    }

    pub fn get(&mut self, key: impl AsRef<[u8]>) -> Option<Vec<u8>> {
        self.ok(&[b"GET".as_slice(), key.as_ref()]).into_bulk()
    }

    pub fn dbsize(&mut self) -> i64 {
        self.ok(&["DBSIZE"]).as_int()
    }

    /// The pid of the server process (`INFO server`).
    fn server_pid(&mut self) -> std::io::Result<u32> {
        match self {
            NodeClient::Plain(client) => client.server_pid(),
            NodeClient::Tls(client) => client.server_pid(),
        }
    }
}
