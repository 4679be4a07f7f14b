//! Shared harness for pipeload's integration tests.
//!
//! - [`RedisServer`]: a throwaway `redis-server` per test (free loopback
//!   port, optional unix socket, no persistence, its own directory), killed
//!   on drop.
//! - [`Client`]: a tiny RESP client to set servers up and read back what
//!   pipeload loaded; [`send_inline`] asks the server's own inline parser.
//! - [`Pipeload`]: runs the built binary with stdin fed from a thread and a
//!   hang guard; its [`Outcome`] prints the whole invocation, stdout and
//!   stderr whenever an assertion on it fails. [`Pipeload::spawn`] gives a
//!   [`run::Running`] child: stdin left open, stderr watched while it runs,
//!   signals by name; stdout and stderr can be closed under it
//!   ([`run::Sink`]).
//! - [`RedisServer::start_on_port`]: a server on a port picked earlier, for
//!   a client already waiting on it.
//! - [`RedisServer::start_persistent`]: a server that fsyncs every write, to
//!   [`kill`](RedisServer::kill) mid-load and
//!   [`restart`](RedisServer::restart) on the same port with its data.
//! - [`FakeServer`]: a scripted TCP server for what a real one cannot do on
//!   cue (never answer, hang up mid-stream, answer garbage);
//!   [`FakeServer::serve`] scripts every connection of a reconnecting client.
//! - [`sets`]: the `SET key:i value:i` lines many topics load;
//!   [`wait_until`]: polls a condition under a time limit.

pub mod client;
pub mod fake;
pub mod run;
pub mod server;
pub mod temp;
pub mod tls;

pub use client::{Client, Value, resp_command, send_inline};
pub use fake::FakeServer;
pub use run::{Outcome, Pipeload, Summary};
pub use server::RedisServer;
pub use temp::TempDir;

pub mod cluster;
pub use cluster::{TestCluster, slot_of};

use std::thread;
use std::time::{Duration, Instant};

/// `SET key:i value:i` text lines for i in 0..count: the load many topics
/// feed, easy to check key by key afterwards.
pub fn sets(count: usize) -> String {
    (0..count)
        .map(|i| format!("SET key:{i} value:{i}\n"))
        .collect()
}

/// Waits until `condition` holds, polling; fails after `limit`, naming
/// `what` it waited for.
pub fn wait_until(limit: Duration, what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        thread::sleep(Duration::from_millis(10));
    }
}
