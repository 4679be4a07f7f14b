//! Which server the bench loads into: `redis-server` (the default) or,
//! with `--valkey`, `valkey-server` with two I/O threads, as a user tuning
//! Valkey for throughput runs it. Every server and cluster the bench starts
//! comes from here, so one flag switches them all.

use pipeload_harness::{RedisServer, ServerKind, TestCluster, info_field};

/// Valkey's I/O threads under `--valkey`: one per core of the 2-core
/// machine the README's figures come from.
const VALKEY_IO_THREADS: &str = "2";

#[derive(Clone, Copy)]
pub struct ServerChoice {
    kind: ServerKind,
}

impl ServerChoice {
    pub fn new(valkey: bool) -> ServerChoice {
        let kind = match valkey {
            true => ServerKind::Valkey,
            false => ServerKind::Redis,
        };
        ServerChoice { kind }
    }

    /// A server of this kind with the bench's settings.
    pub fn start(self) -> RedisServer {
        self.start_with_config(&[])
    }

    /// A server of this kind with the bench's settings and `config`.
    pub fn start_with_config(self, config: &[(&str, &str)]) -> RedisServer {
        let mut settings = config.to_vec();
        if self.kind == ServerKind::Valkey {
            settings.push(("io-threads", VALKEY_IO_THREADS));
        }
        RedisServer::start_kind_with_config(self.kind, &settings)
    }

    /// A 3-primary cluster of this kind (its nodes without extra settings).
    pub fn start_cluster(self) -> TestCluster {
        match self.kind {
            ServerKind::Redis => TestCluster::start(),
            ServerKind::Valkey => TestCluster::start_valkey(),
        }
    }

    /// "redis-server 7.0.15" or "valkey-server 9.1.2 (io-threads 2)", from
    /// the server's own `INFO server`.
    pub fn describe(self, server: &RedisServer) -> String {
        let info = server.client().info("server");
        let (field, settings) = match self.kind {
            ServerKind::Redis => ("redis_version", String::new()),
            ServerKind::Valkey => (
                "valkey_version",
                format!(" (io-threads {VALKEY_IO_THREADS})"),
            ),
        };
        let version = info_field(&info, field).unwrap_or("of unknown version");
        format!("{} {version}{settings}", self.kind.program())
    }
}
