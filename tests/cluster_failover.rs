//! Cluster loads through changes of the cluster's layout: a replica taking
//! over its primary (`CLUSTER FAILOVER`), a node added mid-load and slots
//! migrated to it, a node removed after its slots moved away, a primary
//! killed (`kill -9`) with and without `--retry` (the other primaries
//! loading on while it is waited for), and a redirect to a node that
//! cannot be reached (never a complete load). Each test starts its own
//! cluster (`TestCluster`), feeds the input in two halves and changes the
//! layout between them (so the second half always meets a stale slot map),
//! then checks every key on its owner and an `RPUSH` sequence in order.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ChildStdin;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::common::client::info_field;
use crate::common::cluster::{initial_owner, tag_on_node};
use crate::common::{
    LOADER_AUTH, Outcome, Pipeload, TestCluster, Value, slot_of, wait_until, writes_only_as_loader,
};

/// Debug builds, six servers on two cores: a wide hang guard.
const GUARD: Duration = Duration::from_secs(120);

/// The input: `SET key:i value:i`, and every fifth command an `RPUSH` of
/// the next number on one list whose slot `list_tag` picks.
struct Input {
    lines: Vec<u8>,
    /// Where the second half begins (a line start).
    half: usize,
    list: String,
    pushed: usize,
    /// `RPUSH`es in the first half.
    pushed_in_first_half: usize,
    sets: usize,
}

impl Input {
    fn new(commands: usize, list_tag: &str) -> Input {
        let list = format!("{{{list_tag}}}:sequence");
        let mut lines = Vec::new();
        let (mut pushed, mut sets) = (0, 0);
        let (mut half, mut pushed_in_first_half) = (0, 0);
        for index in 0..commands {
            if index == commands / 2 {
                half = lines.len();
                pushed_in_first_half = pushed;
            }
            match index % 5 {
                4 => {
                    lines.extend(format!("RPUSH {list} {pushed}\n").bytes());
                    pushed += 1;
                }
                _ => {
                    lines.extend(format!("SET key:{sets} value:{sets}\n").bytes());
                    sets += 1;
                }
            }
        }
        Input {
            lines,
            half,
            list,
            pushed,
            pushed_in_first_half,
            sets,
        }
    }

    fn key(index: usize) -> String {
        format!("key:{index}")
    }
}

/// Spawns `pipeload`, writes the first half of `input`, waits until
/// `first_half_landed`, runs `change`, writes the second half and returns
/// how the run ended.
fn load_with_change(
    pipeload: Pipeload,
    input: &Input,
    first_half_landed: impl Fn() -> bool,
    change: impl FnOnce(),
) -> Outcome {
    let mut running = pipeload.guard(GUARD).spawn();
    let stdin = running.take_stdin();
    let (first, second) = input.lines.split_at(input.half);
    let (go_on, may_go_on) = mpsc::channel::<()>();
    let feeder = feed_two_halves(stdin, first.to_vec(), second.to_vec(), may_go_on);
    wait_until(
        Duration::from_secs(60),
        "the first half is loading",
        first_half_landed,
    );
    change();
    let _ = go_on.send(());
    let outcome = running.finish();
    let _ = feeder.join();
    outcome
}

/// Writes `first`, then `second` once told to, then closes stdin.
fn feed_two_halves(
    mut stdin: ChildStdin,
    first: Vec<u8>,
    second: Vec<u8>,
    may_go_on: mpsc::Receiver<()>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        if stdin.write_all(&first).is_err() {
            return;
        }
        if may_go_on.recv().is_err() {
            return;
        }
        let _ = stdin.write_all(&second);
    })
}

/// The length of `list` on the node that owns it now.
fn list_length(cluster: &TestCluster, list: &str) -> i64 {
    let owner = cluster.owner_of_key(list);
    cluster.node_client(owner).ok(&["LLEN", list]).as_int()
}

/// Every `key:i` holds `value:i` on the node that owns it now, and the
/// list holds 0, 1, 2… in order, each once.
#[track_caller]
fn assert_everything_loaded(cluster: &TestCluster, input: &Input, outcome: &Outcome) {
    let mut by_owner: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for index in 0..input.sets {
        by_owner
            .entry(cluster.owner_of_key(Input::key(index)))
            .or_default()
            .push(index);
    }
    let mut wrong = Vec::new();
    for (owner, indices) in &by_owner {
        let mut client = cluster.client(*owner);
        for chunk in indices.chunks(5_000) {
            let gets: Vec<Vec<Vec<u8>>> = chunk
                .iter()
                .map(|&index| vec![b"GET".to_vec(), Input::key(index).into_bytes()])
                .collect();
            for (&index, reply) in chunk.iter().zip(client.pipeline(&gets)) {
                let expected = Value::Bulk(Some(format!("value:{index}").into_bytes()));
                if reply != expected && wrong.len() < 10 {
                    wrong.push(format!("key:{index} on node {owner}: {reply:?}"));
                }
            }
        }
    }
    outcome.check(
        wrong.is_empty(),
        format!("keys missing or wrong (first 10):\n{}", wrong.join("\n")),
    );
    let owner = cluster.owner_of_key(&input.list);
    let list = cluster.client(owner).lrange(&input.list);
    let expected: Vec<Vec<u8>> = (0..input.pushed)
        .map(|number| number.to_string().into_bytes())
        .collect();
    let first_out_of_order = list
        .iter()
        .zip(&expected)
        .position(|(got, want)| got != want);
    outcome.check(
        list.len() == expected.len() && first_out_of_order.is_none(),
        format!(
            "the list on node {owner} has {} of {} elements, first out of order at {:?}",
            list.len(),
            expected.len(),
            first_out_of_order
        ),
    );
}

/// The `--json` field `name` of the `cluster` object, as a number.
/// A `--json` load that ran to its end: exit 0, `completed`, no errors.
fn completed_without_errors(outcome: &Outcome) -> &Outcome {
    outcome.assert_code(0);
    let text = outcome.stdout_text();
    outcome
        .check(text.contains("\"completed\":true"), "completed")
        .check(text.contains("\"errors\":0,"), "no errors")
}

fn cluster_event(outcome: &Outcome, name: &str) -> u64 {
    let text = outcome.stdout_text();
    let pattern = format!("\"{name}\":");
    text.find("\"cluster\":{")
        .and_then(|at| text[at..].find(&pattern).map(|found| at + found))
        .and_then(|at| {
            text[at + pattern.len()..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|digits| digits.parse().ok())
        })
        .unwrap_or_else(|| outcome.fail(format!("no cluster.{name} in the JSON summary")))
}

#[test]
fn a_graceful_failover_mid_load_loses_nothing_and_keeps_order() {
    let cluster = TestCluster::start_with_replicas();
    let input = Input::new(300_000, &tag_on_node("failover", 0));
    fail_over_node_0_mid_load_and_check_everything(&cluster, &input, &[]);
}

#[test]
fn the_inputs_auth_sets_up_a_replica_promoted_mid_load() {
    let cluster = TestCluster::start_with_replicas();
    // Every write must run as the input's user, on the promoted replica
    // too, which pipeload first meets mid-load.
    for node in cluster.live_nodes() {
        writes_only_as_loader(&mut cluster.client(node));
    }
    let mut input = Input::new(60_000, &tag_on_node("auth", 0));
    input.lines.splice(0..0, LOADER_AUTH.bytes());
    input.half += LOADER_AUTH.len();
    fail_over_node_0_mid_load_and_check_everything(&cluster, &input, &[]);
}

#[test]
fn a_graceful_failover_over_two_connections_per_primary_loses_nothing() {
    let cluster = TestCluster::start_with_replicas();
    let input = Input::new(100_000, &tag_on_node("failover-lanes", 0));
    fail_over_node_0_mid_load_and_check_everything(&cluster, &input, &["--connections", "2"]);
}

/// Loads `input` (with `args` too) with `CLUSTER FAILOVER` on node 0's
/// replica between its halves: complete, no error, every key on its
/// owner, the list in order.
fn fail_over_node_0_mid_load_and_check_everything(
    cluster: &TestCluster,
    input: &Input,
    args: &[&str],
) {
    let replica = cluster.replica_for(0).expect("node 0 has a replica");
    let outcome = load_with_change(
        Pipeload::new()
            .args(["-c", "--json"])
            .args(args)
            .port(cluster.port(1)),
        input,
        || list_length(cluster, &input.list) > 0,
        || {
            cluster.failover(replica);
        },
    );
    completed_without_errors(&outcome)
        .check(
            cluster_event(&outcome, "nodes_added") == 1,
            "the promoted replica was added",
        )
        .check(
            cluster_event(&outcome, "layout_refreshes") >= 1,
            "the layout was read again",
        );
    assert_eq!(cluster.owner_of_key(&input.list), replica);
    assert_everything_loaded(cluster, input, &outcome);
}

#[test]
fn slots_migrated_to_a_node_added_mid_load_are_followed() {
    let mut cluster = TestCluster::start();
    let input = Input::new(300_000, &tag_on_node("scaleout", 2));
    let list_slot = slot_of(input.list.as_bytes());
    let mut running = Pipeload::new()
        .arg("-c")
        .port(cluster.port(0))
        .guard(GUARD)
        .spawn();
    let (first, second) = input.lines.split_at(input.half);
    let (go_on, may_go_on) = mpsc::channel::<()>();
    let feeder = feed_two_halves(
        running.take_stdin(),
        first.to_vec(),
        second.to_vec(),
        may_go_on,
    );
    wait_until(Duration::from_secs(60), "the first half is loading", || {
        list_length(&cluster, &input.list) > 0
    });
    let added = cluster.add_node();
    // The list's slot and its neighbours move while the second half loads:
    // some commands meet `ASK`, later ones `MOVED`, both naming a node
    // pipeload did not know at the start.
    let slots: Vec<u16> = (list_slot.saturating_sub(20)..=list_slot.saturating_add(20))
        .filter(|&slot| initial_owner(slot) == 2)
        .collect();
    let _ = go_on.send(());
    for &slot in &slots {
        cluster.migrate_slot(slot, 2, added);
    }
    let outcome = running.finish();
    let _ = feeder.join();
    // The text summary: redis-cli's lines, then what the layout did.
    outcome.assert_summary(0, 300_000);
    let cluster_line = outcome.cluster_line().unwrap_or_default();
    outcome.check(
        cluster_line.contains(" 1 nodes added, 0 nodes lost"),
        "the summary says the new node was added",
    );
    assert_eq!(cluster.owner_of_key(&input.list), added);
    assert_everything_loaded(&cluster, &input, &outcome);
}

#[test]
fn a_node_removed_after_its_slots_moved_away_ends_quietly() {
    let mut cluster = TestCluster::start();
    let added = cluster.add_node();
    // The new node takes a range of node 2's slots before the load.
    let moved: Vec<u16> = (15_000..15_100).collect();
    for &slot in &moved {
        cluster.migrate_slot(slot, 2, added);
    }
    let input = Input::new(200_000, &tag_on_node("scalein", 0));
    // `--retry`: commands written to the node as it went (the slot map
    // still named it) are handed to the new owners of their slots.
    let outcome = load_with_change(
        Pipeload::new()
            .args(["-c", "--json", "--retry", "3"])
            .port(cluster.port(0)),
        &input,
        || list_length(&cluster, &input.list) == input.pushed_in_first_half as i64,
        || {
            for &slot in &moved {
                cluster.migrate_slot(slot, added, 2);
            }
            cluster.remove_node(added);
        },
    );
    completed_without_errors(&outcome).check(
        cluster_event(&outcome, "nodes_lost") == 1,
        "the removed node was lost",
    );
    assert_everything_loaded(&cluster, &input, &outcome);
}

/// `master_repl_offset` of a primary, or the offset a replica has
/// processed (`slave_repl_offset`).
fn replication_offset(cluster: &TestCluster, node: usize, field: &str) -> Option<i64> {
    let info = cluster.client(node).info("replication");
    info_field(&info, field).and_then(|offset| offset.parse().ok())
}

#[test]
fn a_primary_killed_mid_load_is_replaced_by_its_replica_under_retry() {
    let cluster = TestCluster::start_with_replicas();
    let killed = 1;
    let input = Input::new(300_000, &tag_on_node("killed", killed));
    let replica = cluster.replica_for(killed).expect("node 1 has a replica");
    let outcome = load_with_change(
        Pipeload::new()
            .args(["-c", "--json", "--retry", "3"])
            .port(cluster.port(0)),
        &input,
        // Replication is asynchronous: what the primary acknowledged and
        // its replica had not received yet dies with it, whatever the
        // client. The kill waits until the replica has it all.
        || {
            list_length(&cluster, &input.list) == input.pushed_in_first_half as i64
                && replication_offset(&cluster, killed, "master_repl_offset")
                    == replication_offset(&cluster, replica, "slave_repl_offset")
        },
        // The second half goes out at once: it meets the dead node, then
        // the other primaries' `CLUSTERDOWN` until the replica takes over.
        || cluster.kill_node(killed),
    );
    cluster.wait_for_promotion(killed);
    completed_without_errors(&outcome)
        .check(
            cluster_event(&outcome, "nodes_lost") == 1,
            "the killed primary was lost",
        )
        .check(
            cluster_event(&outcome, "nodes_added") == 1,
            "its replica was added",
        );
    assert_eq!(cluster.owner_of_key(&input.list), replica);
    assert_everything_loaded(&cluster, &input, &outcome);
}

#[test]
fn without_retry_a_killed_primary_stops_the_load_with_an_exact_resume_point() {
    let cluster = TestCluster::start_with_replicas();
    let killed = 2;
    let input = Input::new(60_000, &tag_on_node("stopped", killed));
    let replica = cluster.replica_for(killed).expect("node 2 has a replica");
    let outcome = load_with_change(
        Pipeload::new().arg("-c").port(cluster.port(0)),
        &input,
        || {
            list_length(&cluster, &input.list) == input.pushed_in_first_half as i64
                && replication_offset(&cluster, killed, "master_repl_offset")
                    == replication_offset(&cluster, replica, "slave_repl_offset")
        },
        || {
            cluster.kill_primary(killed);
        },
    );
    // Behaviour kept from before failover support: without `--retry` the
    // load stops, and every command before the resume point is applied
    // (on the survivors, or on the replica that took the killed node's
    // slots).
    let acknowledged = outcome.assert_stopped(1) as usize;
    let commands: Vec<&[u8]> = input.lines.split(|&byte| byte == b'\n').collect();
    outcome.check(
        acknowledged >= commands.len() / 2 && acknowledged < commands.len(),
        format!("acknowledged {acknowledged}: the first half, not all"),
    );
    let mut missing = Vec::new();
    for line in &commands[..acknowledged] {
        let words: Vec<&[u8]> = line.split(|&byte| byte == b' ').collect();
        if words[0] == b"SET" && cluster.get(words[1]).as_deref() != Some(words[2]) {
            missing.push(String::from_utf8_lossy(words[1]).into_owned());
        }
    }
    outcome.check(
        missing.is_empty(),
        format!(
            "acknowledged but missing: {:?}",
            &missing[..missing.len().min(10)]
        ),
    );
}

#[test]
fn a_redirect_to_a_node_that_cannot_be_reached_never_reads_complete() {
    let mut cluster = TestCluster::start();
    // Only the slot that moves goes unserved: the rest of the cluster
    // keeps answering (no CLUSTERDOWN for the whole load).
    for node in cluster.live_nodes() {
        cluster
            .client(node)
            .ok(&["CONFIG", "SET", "cluster-require-full-coverage", "no"]);
    }
    let input = Input::new(60_000, &tag_on_node("unreachable", 2));
    let list_slot = slot_of(input.list.as_bytes());
    // Without slots, so not in the layout pipeload reads at the start.
    let added = cluster.add_node();
    let cluster = cluster;
    let outcome = load_with_change(
        Pipeload::new().args(["-c", "--json"]).port(cluster.port(0)),
        &input,
        || list_length(&cluster, &input.list) == input.pushed_in_first_half as i64,
        || {
            // The list's slot moves to the new node, which then dies before
            // pipeload ever reaches it: its `MOVED` cannot be followed.
            cluster.migrate_slot(list_slot, 2, added);
            cluster.kill_node(added);
        },
    );
    let text = outcome.stdout_text();
    outcome
        .assert_code(1)
        .check(text.contains("\"completed\":false"), "not complete");
    // The first command of the second half is an RPUSH… or a SET: the
    // resume point is before the first command sent to the moved slot.
    let resume: usize = text
        .split("\"resume_skip\":")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|skip| skip.parse().ok())
        .unwrap_or_else(|| outcome.fail("no resume_skip"));
    let commands: Vec<&[u8]> = input.lines.split(|&byte| byte == b'\n').collect();
    let first_moved = commands
        .iter()
        .enumerate()
        .skip(commands.len() / 2)
        .find(|(_, line)| line.starts_with(b"RPUSH"))
        .map(|(index, _)| index)
        .unwrap_or(commands.len());
    outcome.check(
        resume <= first_moved,
        format!("resume point {resume} must be at or before command {first_moved}, the first to the moved slot"),
    );
}

#[test]
fn while_a_lost_primary_is_waited_for_the_others_go_on_loading() {
    let cluster = TestCluster::start_with_replicas();
    // Only the lost node's slots go unserved.
    for node in cluster.live_nodes() {
        cluster
            .client(node)
            .ok(&["CONFIG", "SET", "cluster-require-full-coverage", "no"]);
    }
    let lost = 1;
    let replica = cluster.replica_for(lost).expect("node 1 has a replica");
    let input = Input::new(60_000, &tag_on_node("waiting", 0));
    let outcome = load_with_change(
        Pipeload::new()
            .args(["-c", "--retry", "2"])
            .port(cluster.port(0)),
        &input,
        || list_length(&cluster, &input.list) == input.pushed_in_first_half as i64,
        // Primary and replica both: no promotion can come, and pipeload
        // waits as long as one may take, then gives up.
        || {
            cluster.kill_node(lost);
            cluster.kill_node(replica);
        },
    );
    let acknowledged = outcome.assert_stopped(1) as usize;
    // Meanwhile the second half went on to the other primaries: all of
    // their keys are there, those after the resume point too.
    let mut missing = Vec::new();
    for index in 0..input.sets {
        let key = Input::key(index);
        let owner = cluster.owner_of_key(&key);
        if owner != lost && cluster.get(&key) != Some(format!("value:{index}").into_bytes()) {
            missing.push(key);
        }
    }
    outcome.check(
        missing.is_empty(),
        format!(
            "{} keys of the surviving primaries missing, first {:?} (resume point {acknowledged})",
            missing.len(),
            missing.first()
        ),
    );
    let list = cluster.client(0).lrange(&input.list);
    outcome.check(
        list.len() == input.pushed,
        format!("the list on node 0 has {} of {}", list.len(), input.pushed),
    );
}
