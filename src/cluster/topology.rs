//! The cluster's layout: its primaries and which one owns each slot, read
//! from `CLUSTER SHARDS` (Redis 7) or `CLUSTER SLOTS` (older servers), and
//! kept current as `MOVED` redirects arrive and the layout is read again
//! (failover, a node added).
//!
//! Place in the data flow: read once from the seed node before anything is
//! sent; the router reads the slot map for every keyed command and the reply
//! readers update it on `MOVED` and on a refresh. An incomplete map is an
//! error up front: a load into a cluster that is still forming would fail
//! command by command. Invariant: a node keeps its index for the whole
//! load; nodes are only ever added (a lane per index).

use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use anyhow::{Result, anyhow, bail};

use super::slot::SLOT_COUNT;
use crate::control::{Value, query};
use crate::stream::Stream;

/// A primary's address as the cluster announces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAddress {
    pub host: String,
    pub port: u16,
}

impl NodeAddress {
    /// `host:port`, as `MOVED` and `ASK` name nodes.
    pub fn to_text(&self) -> String {
        match self.host.contains(':') {
            true => format!("[{}]:{}", self.host, self.port),
            false => format!("{}:{}", self.host, self.port),
        }
    }

    /// The node a `MOVED` or `ASK` names (`host:port`, `[v6]:port`; an
    /// empty host is `answering_host`, the host of the node that answered).
    pub fn parse(text: &[u8], answering_host: &str) -> Option<NodeAddress> {
        let text = std::str::from_utf8(text).ok()?;
        let (host, port) = text.rsplit_once(':')?;
        let port = port.parse::<u16>().ok()?;
        let host = host
            .strip_prefix('[')
            .and_then(|host| host.strip_suffix(']'))
            .unwrap_or(host);
        Some(NodeAddress {
            host: announced_host(Some(host.as_bytes()), answering_host),
            port,
        })
    }
}

/// Slot → index of its primary, shared between the router and the reply
/// readers (which update it on `MOVED`).
#[derive(Debug)]
pub struct SlotMap {
    owners: Vec<AtomicU16>,
}

impl SlotMap {
    pub fn owner(&self, slot: u16) -> usize {
        self.owners[usize::from(slot) % SLOT_COUNT].load(Ordering::Relaxed) as usize
    }

    pub fn set_owner(&self, slot: u16, node: usize) {
        self.owners[usize::from(slot) % SLOT_COUNT].store(node as u16, Ordering::Relaxed);
    }
}

/// The primaries known so far (each keeps its index) and the slot map.
#[derive(Debug)]
pub struct Topology {
    nodes: Mutex<Vec<NodeAddress>>,
    pub slots: SlotMap,
}

impl Topology {
    /// The nodes known so far, by index.
    pub fn nodes(&self) -> MutexGuard<'_, Vec<NodeAddress>> {
        self.nodes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The address of node `index`.
    pub fn address(&self, index: usize) -> Option<NodeAddress> {
        self.nodes().get(index).cloned()
    }

    /// The index of the node at `address`, if it is known.
    pub fn index_of(&self, address: &NodeAddress) -> Option<usize> {
        self.nodes().iter().position(|known| known == address)
    }

    /// Adds a node found mid-load; returns its index.
    pub fn add(&self, address: NodeAddress) -> usize {
        let mut nodes = self.nodes();
        nodes.push(address);
        nodes.len() - 1
    }

    /// The indices of the nodes that own a slot now, in index order: where
    /// a command for every primary goes.
    pub fn owning_nodes(&self) -> Vec<usize> {
        let mut owning = vec![false; self.nodes().len()];
        for slot in 0..SLOT_COUNT as u16 {
            if let Some(owns) = owning.get_mut(self.slots.owner(slot)) {
                *owns = true;
            }
        }
        (0..owning.len()).filter(|&node| owning[node]).collect()
    }
}

/// Reads the layout through `seed`. `Ok(None)` when the server is not in
/// cluster mode (it is then loaded as a single server, as redis-cli does).
/// `tls`: connect to the nodes' TLS ports (`CLUSTER SLOTS` already answers
/// a TLS client with those).
pub fn discover(seed: &mut Stream, seed_host: &str, tls: bool) -> Result<Option<Topology>> {
    let Some(ranges) = read_layout(seed, seed_host, tls)? else {
        return Ok(None);
    };
    let mut primaries: Vec<NodeAddress> = Vec::new();
    let mut owners = vec![u16::MAX; SLOT_COUNT];
    for (first, last, node) in ranges {
        let index = match primaries.iter().position(|known| *known == node) {
            Some(index) => index,
            None => {
                primaries.push(node);
                primaries.len() - 1
            }
        };
        for owner in owners.iter_mut().take(last + 1).skip(first) {
            *owner = index as u16;
        }
    }
    if let Some(slot) = owners.iter().position(|owner| *owner == u16::MAX) {
        bail!(
            "cluster slot {slot} has no primary: the slot map is incomplete (is the cluster still forming?)"
        );
    }
    Ok(Some(Topology {
        nodes: Mutex::new(primaries),
        slots: SlotMap {
            owners: owners.into_iter().map(AtomicU16::new).collect(),
        },
    }))
}

/// The slot ranges and their primaries, as `node` sees them: `CLUSTER
/// SHARDS`, or `CLUSTER SLOTS` on a server without it. `Ok(None)` when the
/// server is not in cluster mode. `node_host`: the host `node` was reached
/// at, for nodes announced without one.
pub fn read_layout(
    node: &mut Stream,
    node_host: &str,
    tls: bool,
) -> Result<Option<Vec<SlotRange>>> {
    let ask = |node: &mut Stream, what: &[u8]| {
        query(node, &[b"CLUSTER", what])
            .map_err(|error| anyhow!("cannot read the cluster layout: {error}"))
    };
    Ok(Some(match ask(node, b"SHARDS")? {
        Value::Error(message) if message.contains("cluster support disabled") => return Ok(None),
        Value::Error(_) => slots_reply_ranges(ask(node, b"SLOTS")?, node_host)?,
        shards => shards_reply_ranges(&shards, node_host, tls)?,
    }))
}

/// First slot, last slot, and the primary that owns them.
pub type SlotRange = (usize, usize, NodeAddress);

fn slot_number(value: &Value) -> Result<usize> {
    value
        .as_int()
        .and_then(|slot| usize::try_from(slot).ok())
        .filter(|slot| *slot < SLOT_COUNT)
        .ok_or_else(|| anyhow!("invalid slot number in the cluster layout"))
}

/// An announced host: empty or `?` means "the host you asked".
fn announced_host(host: Option<&[u8]>, seed_host: &str) -> String {
    match host {
        Some(host) if !host.is_empty() && host != b"?" => {
            String::from_utf8_lossy(host).into_owned()
        }
        _ => seed_host.to_owned(),
    }
}

fn shards_reply_ranges(shards: &Value, seed_host: &str, tls: bool) -> Result<Vec<SlotRange>> {
    // A node lists `port`, `tls-port` or both, by what it listens on.
    let (wanted, other) = match tls {
        true => ("tls-port", "port"),
        false => ("port", "tls-port"),
    };
    let shards = shards
        .as_array()
        .ok_or_else(|| anyhow!("unexpected CLUSTER SHARDS reply"))?;
    let mut ranges = Vec::new();
    for shard in shards {
        let nodes = shard
            .field("nodes")
            .and_then(Value::as_array)
            .unwrap_or_default();
        let is_primary = |node: &&Value| {
            node.field("role")
                .and_then(Value::as_bytes)
                .is_some_and(|role| role == b"master")
        };
        // After a failover the failed primary may still be listed as one,
        // until it comes back as a replica: the one online owns the slots.
        let online = |node: &&Value| {
            node.field("health")
                .and_then(Value::as_bytes)
                .is_none_or(|health| health == b"online")
        };
        let primary = nodes
            .iter()
            .filter(is_primary)
            .find(online)
            .or_else(|| nodes.iter().find(is_primary));
        let Some(primary) = primary else { continue };
        let host = primary
            .field("endpoint")
            .or_else(|| primary.field("ip"))
            .and_then(Value::as_bytes);
        let port = primary
            .field(wanted)
            .or_else(|| primary.field(other))
            .and_then(Value::as_int)
            .and_then(|port| u16::try_from(port).ok())
            .ok_or_else(|| anyhow!("a primary without a port in CLUSTER SHARDS"))?;
        let node = NodeAddress {
            host: announced_host(host, seed_host),
            port,
        };
        let slots = shard
            .field("slots")
            .and_then(Value::as_array)
            .unwrap_or_default();
        for pair in slots.chunks_exact(2) {
            ranges.push((slot_number(&pair[0])?, slot_number(&pair[1])?, node.clone()));
        }
    }
    Ok(ranges)
}

fn slots_reply_ranges(slots: Value, seed_host: &str) -> Result<Vec<SlotRange>> {
    if let Value::Error(message) = &slots {
        bail!("cannot read the cluster layout: {message}");
    }
    let entries = slots
        .as_array()
        .ok_or_else(|| anyhow!("unexpected CLUSTER SLOTS reply"))?;
    let mut ranges = Vec::new();
    for entry in entries {
        let parts = entry.as_array().unwrap_or_default();
        let (Some(first), Some(last), Some(primary)) = (parts.first(), parts.get(1), parts.get(2))
        else {
            bail!("unexpected CLUSTER SLOTS entry");
        };
        let primary = primary.as_array().unwrap_or_default();
        let port = primary
            .get(1)
            .and_then(Value::as_int)
            .and_then(|port| u16::try_from(port).ok())
            .ok_or_else(|| anyhow!("a primary without a port in CLUSTER SLOTS"))?;
        let node = NodeAddress {
            host: announced_host(primary.first().and_then(Value::as_bytes), seed_host),
            port,
        };
        ranges.push((slot_number(first)?, slot_number(last)?, node));
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::parse;

    #[test]
    fn a_redirect_names_its_node_in_every_form() {
        let parse_address = |text: &[u8]| NodeAddress::parse(text, "10.0.0.5");
        let node = |host: &str, port| {
            Some(NodeAddress {
                host: host.to_owned(),
                port,
            })
        };
        assert_eq!(parse_address(b"127.0.0.1:7001"), node("127.0.0.1", 7001));
        assert_eq!(parse_address(b"[::1]:7002"), node("::1", 7002));
        assert_eq!(
            parse_address(b"redis-3.internal:6379"),
            node("redis-3.internal", 6379)
        );
        // No host: the node that answered.
        assert_eq!(parse_address(b":7003"), node("10.0.0.5", 7003));
        assert_eq!(parse_address(b"127.0.0.1"), None);
        assert_eq!(parse_address(b"127.0.0.1:port"), None);
        assert_eq!(parse_address(b"127.0.0.1:70000"), None);
        assert_eq!(parse_address(b"\xff:1"), None);
        assert_eq!(
            parse_address(b"[::1]:7002").map(|address| address.to_text()),
            Some("[::1]:7002".to_owned())
        );
    }

    /// One shard of `CLUSTER SHARDS`: slots 0–99, its nodes as (role,
    /// port, health).
    fn shard(nodes: &[(&str, u16, &str)]) -> Vec<u8> {
        let mut reply = b"*4\r\n$5\r\nslots\r\n*2\r\n:0\r\n:99\r\n$5\r\nnodes\r\n".to_vec();
        reply.extend(format!("*{}\r\n", nodes.len()).bytes());
        for (role, port, health) in nodes {
            reply.extend(
                format!(
                    "*8\r\n$2\r\nip\r\n$9\r\n127.0.0.1\r\n$4\r\nport\r\n:{port}\r\n\
                     $4\r\nrole\r\n${}\r\n{role}\r\n$6\r\nhealth\r\n${}\r\n{health}\r\n",
                    role.len(),
                    health.len()
                )
                .bytes(),
            );
        }
        reply
    }

    #[test]
    fn after_a_failover_the_online_primary_owns_the_shard() {
        // The failed primary may still be listed as one, before its
        // promoted replica.
        let mut reply = b"*1\r\n".to_vec();
        reply.extend(shard(&[
            ("master", 7000, "fail"),
            ("master", 7003, "online"),
        ]));
        let shards = parse(&reply).unwrap();
        let ranges = shards_reply_ranges(&shards, "127.0.0.1", false).unwrap();
        assert_eq!(ranges.len(), 1);
        assert_eq!((ranges[0].0, ranges[0].1, ranges[0].2.port), (0, 99, 7003));
        // A shard whose only primary is failed still names it.
        let mut reply = b"*1\r\n".to_vec();
        reply.extend(shard(&[
            ("master", 7000, "fail"),
            ("replica", 7003, "online"),
        ]));
        let shards = parse(&reply).unwrap();
        let ranges = shards_reply_ranges(&shards, "127.0.0.1", false).unwrap();
        assert_eq!(ranges[0].2.port, 7000);
    }
}
