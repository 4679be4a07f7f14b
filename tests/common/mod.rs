//! Shared harness for pipeload's integration tests: the servers, clusters
//! and RESP client of the `pipeload-harness` crate (shared with the bench),
//! and what only the tests need:
//!
//! - [`Pipeload`]: runs the built binary with stdin fed from a thread and a
//!   hang guard; its [`Outcome`] prints the whole invocation, stdout and
//!   stderr whenever an assertion on it fails. [`Pipeload::spawn`] gives a
//!   [`run::Running`] child: stdin left open, stderr watched while it runs,
//!   signals by name; stdout and stderr can be closed under it
//!   ([`run::Sink`]).
//! - [`FakeServer`]: a scripted TCP server for what a real one cannot do on
//!   cue (never answer, hang up mid-stream, answer garbage);
//!   [`FakeServer::serve`] scripts every connection of a reconnecting client.
//! - [`sets`]: the `SET key:i value:i` lines many topics load;
//!   [`wait_until`]: polls a condition under a time limit;
//!   [`load_first_lines`]: a load stalled after part of its input, and
//!   [`finish_after_one_reconnect`] to end it;
//!   [`writes_only_as_loader`]: a server whose writes need the input's
//!   own `AUTH`.

pub mod fake;
pub mod run;

pub use fake::FakeServer;
pub use pipeload_harness::{
    Client, RedisServer, TempDir, TestCluster, Value, resp_command, send_inline, slot_of,
};
pub use pipeload_harness::{client, cluster, tls};
pub use run::{Outcome, Pipeload, Summary};

use std::thread;
use std::time::{Duration, Instant};

/// `SET key:i value:i` text lines for i in 0..count: the load many topics
/// feed, easy to check key by key afterwards.
pub fn sets(count: usize) -> String {
    (0..count)
        .map(|i| format!("SET key:{i} value:{i}\n"))
        .collect()
}

/// Where the line that holds the middle of `input` ends (just past its
/// `\n`): a first half that ends with a whole line.
pub fn middle_line_end(input: &[u8]) -> usize {
    let middle = input.len() / 2;
    middle
        + input[middle..]
            .iter()
            .position(|&byte| byte == b'\n')
            .unwrap_or(0)
        + 1
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

/// Spawns `pipeload`, feeds it the first `commands` lines of `input` (one
/// new key each) and waits until the server holds that many keys; stdin
/// stays open. Returns the running load and the rest of the input.
pub fn load_first_lines<'i>(
    pipeload: Pipeload,
    server: &RedisServer,
    input: &'i str,
    commands: usize,
) -> (run::Running, &'i str) {
    let cut = input
        .match_indices('\n')
        .nth(commands - 1)
        .map_or(input.len(), |(at, _)| at + 1);
    let (first, rest) = input.split_at(cut);
    let mut running = pipeload.guard(Duration::from_secs(120)).spawn();
    running
        .write_stdin(first.as_bytes())
        .expect("write the first lines");
    let mut client = server.client();
    wait_until(Duration::from_secs(60), "the first lines applied", || {
        client.dbsize() == commands as i64
    });
    (running, rest)
}

/// Feeds a load started by [`load_first_lines`] the `rest` of its input and
/// waits for its end: it must have reconnected once and loaded everything,
/// `replies` replies and no error.
#[track_caller]
pub fn finish_after_one_reconnect(mut running: run::Running, rest: &str, replies: u64) -> Outcome {
    running
        .write_stdin(rest.as_bytes())
        .expect("write the rest of the input");
    running.close_stdin();
    let outcome = running.finish();
    let (summary, reconnects) = outcome.assert_retried_without_errors();
    outcome.check(reconnects == 1, "one reconnect after the kill");
    outcome.check(summary.replies == replies, "every command acknowledged");
    outcome
}

/// The `AUTH` line a load needs on a server set up by
/// [`writes_only_as_loader`].
pub const LOADER_AUTH: &str = "AUTH loader loader-pw\n";

/// Sets the server `client` talks to so that the default user may read
/// every key (checks can) but write none, and user `loader` may do
/// anything: every write must run after the input's [`LOADER_AUTH`].
pub fn writes_only_as_loader(client: &mut Client) {
    client.ok(&[
        "ACL",
        "SETUSER",
        "loader",
        "on",
        ">loader-pw",
        "~*",
        "&*",
        "+@all",
    ]);
    client.ok(&["ACL", "SETUSER", "default", "resetkeys", "%R~*"]);
}
