//! The cluster's layout: its primaries and which one owns each slot, read
//! from `CLUSTER SHARDS` (Redis 7) or `CLUSTER SLOTS` (older servers), and
//! kept current as `MOVED` redirects arrive.
//!
//! Place in the data flow: read once from the seed node before anything is
//! sent; the router reads the slot map for every keyed command and the reply
//! readers update it on `MOVED`. An incomplete map is an error up front: a
//! load into a cluster that is still forming would fail command by command.

use std::sync::atomic::{AtomicU16, Ordering};

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

#[derive(Debug)]
pub struct Topology {
    pub primaries: Vec<NodeAddress>,
    pub slots: SlotMap,
}

impl Topology {
    pub fn node_index(&self, address: &str) -> Option<usize> {
        self.primaries
            .iter()
            .position(|node| node.to_text() == address)
    }
}

/// Reads the layout through `seed`. `Ok(None)` when the server is not in
/// cluster mode (it is then loaded as a single server, as redis-cli does).
/// `tls`: connect to the nodes' TLS ports (`CLUSTER SLOTS` already answers
/// a TLS client with those).
pub fn discover(seed: &mut Stream, seed_host: &str, tls: bool) -> Result<Option<Topology>> {
    let ask = |seed: &mut Stream, what: &[u8]| {
        query(seed, &[b"CLUSTER", what])
            .map_err(|error| anyhow!("cannot read the cluster layout: {error}"))
    };
    let ranges = match ask(seed, b"SHARDS")? {
        Value::Error(message) if message.contains("cluster support disabled") => return Ok(None),
        Value::Error(_) => slots_reply_ranges(ask(seed, b"SLOTS")?, seed_host)?,
        shards => shards_reply_ranges(&shards, seed_host, tls)?,
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
        primaries,
        slots: SlotMap {
            owners: owners.into_iter().map(AtomicU16::new).collect(),
        },
    }))
}

type SlotRange = (usize, usize, NodeAddress);

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
        let primary = nodes.iter().find(|node| {
            node.field("role")
                .and_then(Value::as_bytes)
                .is_some_and(|role| role == b"master")
        });
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
