//! The bench's own Redis Cluster for `set-1m.resp@cluster3`: three primaries,
//! no replicas, each a `RedisServer` cluster node with its own directory,
//! holding slots 0–5460, 5461–10922 and 10923–16383, joined with CLUSTER
//! MEET. `start` returns only once every node reports `cluster_state:ok`,
//! knows the three nodes and sees all 16384 slots, or fails within
//! `FORMATION_TIMEOUT`. The nodes are `RedisServer` guards, so dropping the
//! cluster (or failing half-way through starting it) stops each by pid.

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::server::{RedisServer, info_field};

/// The slot ranges of the three primaries, in node order.
const SLOT_RANGES: [(u16, u16); 3] = [(0, 5460), (5461, 10922), (10923, 16383)];
const SLOTS: u16 = 16384;
/// Forming takes about a second on loopback (gossip runs every 100 ms).
const FORMATION_TIMEOUT: Duration = Duration::from_secs(30);

pub struct RedisCluster {
    nodes: Vec<RedisServer>,
}

impl RedisCluster {
    /// Starts the three nodes, each in a directory of its own under `dir`,
    /// and forms the cluster.
    pub fn start(dir: &Path) -> Result<Self> {
        let mut nodes = Vec::with_capacity(SLOT_RANGES.len());
        for index in 0..SLOT_RANGES.len() {
            let node_dir = dir.join(format!("node{index}"));
            std::fs::create_dir_all(&node_dir)
                .with_context(|| format!("cannot create {}", node_dir.display()))?;
            nodes.push(RedisServer::start_cluster_node(&node_dir)?);
        }
        let cluster = RedisCluster { nodes };
        for (index, (node, (first, last))) in cluster.nodes.iter().zip(SLOT_RANGES).enumerate() {
            // Distinct epochs up front, as `redis-cli --cluster create` does,
            // so that forming has no epoch collision to resolve.
            node.request_ok(&["CLUSTER", "SET-CONFIG-EPOCH", &(index + 1).to_string()])?;
            node.request_ok(&[
                "CLUSTER",
                "ADDSLOTSRANGE",
                &first.to_string(),
                &last.to_string(),
            ])?;
        }
        let (first, others) = cluster.nodes.split_first().expect("three nodes");
        for node in others {
            first.request_ok(&["CLUSTER", "MEET", "127.0.0.1", &node.port().to_string()])?;
        }
        cluster.wait_until_formed()?;
        Ok(cluster)
    }

    pub fn nodes(&self) -> &[RedisServer] {
        &self.nodes
    }

    /// The node the tool is pointed at; it learns the others from it.
    pub fn entry_port(&self) -> u16 {
        self.nodes[0].port()
    }

    fn wait_until_formed(&self) -> Result<()> {
        let started = Instant::now();
        loop {
            let unready = self
                .nodes
                .iter()
                .map(not_formed_on)
                .collect::<Result<Vec<_>>>()?;
            let unready: Vec<String> = unready.into_iter().flatten().collect();
            if unready.is_empty() {
                return Ok(());
            }
            if started.elapsed() > FORMATION_TIMEOUT {
                let logs: Vec<String> = self
                    .nodes
                    .iter()
                    .map(|node| {
                        format!("log of node on port {}:\n{}", node.port(), node.log_tail())
                    })
                    .collect();
                bail!(
                    "the cluster did not form within {FORMATION_TIMEOUT:?}:\n{}\n{}",
                    unready.join("\n"),
                    logs.join("\n")
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Why `node` does not see the cluster formed yet, if it does not.
fn not_formed_on(node: &RedisServer) -> Result<Option<String>> {
    let info = node.request_text(&["CLUSTER", "INFO"])?;
    let field = |name| info_field(&info, name).unwrap_or("");
    let formed = field("cluster_state") == "ok"
        && field("cluster_known_nodes") == SLOT_RANGES.len().to_string()
        && field("cluster_slots_ok") == SLOTS.to_string();
    Ok((!formed).then(|| {
        format!(
            "node on port {}: state {}, known nodes {}, slots ok {}",
            node.port(),
            field("cluster_state"),
            field("cluster_known_nodes"),
            field("cluster_slots_ok"),
        )
    }))
}
