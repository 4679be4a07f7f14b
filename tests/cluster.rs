//! Cluster mode (`-c`): each test starts its own three-primary cluster
//! (tests/common/cluster.rs) and checks that every command lands on the
//! primary owning its key's slot, with the summary of one server: bulk
//! loads, FLUSHALL on every primary, MULTI blocks, user errors with their
//! line, a slot migrated mid-load (writes to one key keeping their order
//! through it), a node killed mid-load (also while the whole load waits on
//! it), --retry reconnecting a dropped node, AUTH in the input, and the
//! failures before anything is sent.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::ChildStdin;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::cluster::{crc16_xmodem, tag_on_node};
use crate::common::{
    LOADER_AUTH, Outcome, Pipeload, RedisServer, TempDir, TestCluster, Value, slot_of,
    writes_only_as_loader,
};

/// Debug builds and three servers on two cores: a wide hang guard (a run
/// here takes seconds).
const GUARD: Duration = Duration::from_secs(60);

/// `pipeload -c -p <node 0's port>`.
fn load_into(cluster: &TestCluster) -> Pipeload {
    Pipeload::new().arg("-c").port(cluster.port(0)).guard(GUARD)
}

/// What one key must hold after a load.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expected {
    Str(Vec<u8>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
    List(Vec<Vec<u8>>),
    Set(BTreeSet<Vec<u8>>),
}

/// Text input built up with the state it must leave behind.
#[derive(Default)]
struct Workload {
    input: Vec<u8>,
    commands: u64,
    keys: BTreeMap<Vec<u8>, Expected>,
}

impl Workload {
    /// Appends one text line (bare words only) without a model update.
    fn line(&mut self, words: &[&str]) {
        self.input.extend_from_slice(words.join(" ").as_bytes());
        self.input.push(b'\n');
        self.commands += 1;
    }

    fn set(&mut self, key: &str, value: &str) {
        self.line(&["SET", key, value]);
        self.keys
            .insert(key.into(), Expected::Str(value.as_bytes().to_vec()));
    }

    fn mset(&mut self, pairs: &[(&str, &str)]) {
        let mut words = vec!["MSET"];
        for (key, value) in pairs {
            words.extend([*key, *value]);
        }
        self.line(&words);
        for (key, value) in pairs {
            self.keys.insert(
                key.as_bytes().to_vec(),
                Expected::Str(value.as_bytes().to_vec()),
            );
        }
    }

    fn incr(&mut self, key: &str) {
        self.line(&["INCR", key]);
        let count = match self.keys.get(key.as_bytes()) {
            Some(Expected::Str(count)) => {
                String::from_utf8_lossy(count)
                    .parse::<i64>()
                    .expect("a counter")
                    + 1
            }
            None => 1,
            Some(other) => panic!("INCR on {key} holding {other:?}"),
        };
        self.keys
            .insert(key.into(), Expected::Str(count.to_string().into_bytes()));
    }

    fn hset(&mut self, key: &str, field: &str, value: &str) {
        self.line(&["HSET", key, field, value]);
        match self
            .keys
            .entry(key.into())
            .or_insert_with(|| Expected::Hash(BTreeMap::new()))
        {
            Expected::Hash(map) => {
                map.insert(field.into(), value.into());
            }
            other => panic!("HSET on {key} holding {other:?}"),
        }
    }

    fn rpush(&mut self, key: &str, value: &str) {
        self.line(&["RPUSH", key, value]);
        match self
            .keys
            .entry(key.into())
            .or_insert_with(|| Expected::List(Vec::new()))
        {
            Expected::List(items) => items.push(value.into()),
            other => panic!("RPUSH on {key} holding {other:?}"),
        }
    }

    fn sadd(&mut self, key: &str, member: &str) {
        self.line(&["SADD", key, member]);
        match self
            .keys
            .entry(key.into())
            .or_insert_with(|| Expected::Set(BTreeSet::new()))
        {
            Expected::Set(members) => {
                members.insert(member.into());
            }
            other => panic!("SADD on {key} holding {other:?}"),
        }
    }
}

/// Reads every key of `expected` back from the node the harness says owns
/// it (pipelined, per node) and lists the keys that differ.
fn mismatches(cluster: &TestCluster, expected: &BTreeMap<Vec<u8>, Expected>) -> Vec<String> {
    let mut per_node: BTreeMap<usize, Vec<(&Vec<u8>, &Expected)>> = BTreeMap::new();
    for (key, want) in expected {
        per_node
            .entry(cluster.owner_of_key(key))
            .or_default()
            .push((key, want));
    }
    let mut wrong = Vec::new();
    for (node, keys) in per_node {
        let mut client = cluster.client(node);
        for chunk in keys.chunks(2000) {
            let reads: Vec<Vec<Vec<u8>>> = chunk
                .iter()
                .map(|(key, want)| {
                    let verb: &[&[u8]] = match want {
                        Expected::Str(_) => &[b"GET"],
                        Expected::Hash(_) => &[b"HGETALL"],
                        Expected::List(_) => &[b"LRANGE"],
                        Expected::Set(_) => &[b"SMEMBERS"],
                    };
                    let mut args: Vec<Vec<u8>> = vec![verb[0].to_vec(), key.to_vec()];
                    if matches!(want, Expected::List(_)) {
                        args.extend([b"0".to_vec(), b"-1".to_vec()]);
                    }
                    args
                })
                .collect();
            for ((key, want), reply) in chunk.iter().zip(client.pipeline(&reads)) {
                let have = read_back(want, reply.clone());
                if have.as_ref() != Some(*want) && wrong.len() < 10 {
                    wrong.push(format!(
                        "{} on node {node}: expected {want:?}, got {reply:?}",
                        key.escape_ascii()
                    ));
                }
            }
        }
    }
    wrong
}

/// The reply to the read command for `want`, as an [`Expected`] (`None`
/// for a missing key or an error such as `MOVED` or `WRONGTYPE`).
fn read_back(want: &Expected, reply: Value) -> Option<Expected> {
    let bulks = |reply: Value| -> Option<Vec<Vec<u8>>> {
        match reply {
            Value::Array(Some(items)) | Value::Set(items) => items
                .into_iter()
                .map(|item| match item {
                    Value::Bulk(Some(bytes)) => Some(bytes),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    };
    match want {
        Expected::Str(_) => match reply {
            Value::Bulk(Some(bytes)) => Some(Expected::Str(bytes)),
            _ => None,
        },
        Expected::Hash(_) => {
            let flat = bulks(reply).filter(|flat| !flat.is_empty())?;
            let mut map = BTreeMap::new();
            for pair in flat.chunks(2) {
                map.insert(pair[0].clone(), pair.get(1)?.clone());
            }
            Some(Expected::Hash(map))
        }
        Expected::List(_) => bulks(reply)
            .filter(|items| !items.is_empty())
            .map(Expected::List),
        Expected::Set(_) => bulks(reply)
            .filter(|members| !members.is_empty())
            .map(|members| Expected::Set(members.into_iter().collect())),
    }
}

/// Every key of `workload` is on its owner with its value, and the cluster
/// holds nothing else.
#[track_caller]
fn assert_loaded(cluster: &TestCluster, workload: &Workload, outcome: &Outcome) {
    let wrong = mismatches(cluster, &workload.keys);
    outcome.check(
        wrong.is_empty(),
        format!(
            "keys missing or wrong on their owner node (first 10):\n{}",
            wrong.join("\n")
        ),
    );
    let dbsizes = cluster.dbsizes();
    outcome.check(
        dbsizes.iter().sum::<i64>() == workload.keys.len() as i64,
        format!(
            "expected {} keys in all, the nodes hold {dbsizes:?}",
            workload.keys.len()
        ),
    );
}

/// The `calls` of `command` in node `node`'s `INFO commandstats` (0 when
/// it never ran).
fn calls(cluster: &TestCluster, node: usize, command: &str) -> u64 {
    let info = match cluster.client(node).ok(&["INFO", "commandstats"]) {
        Value::Bulk(Some(info)) | Value::Verbatim(info) => info,
        other => panic!("INFO commandstats replied {other:?}"),
    };
    String::from_utf8_lossy(&info)
        .lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{command}:calls=")))
        .and_then(|rest| rest.split(',').next()?.parse().ok())
        .unwrap_or(0)
}

/// The non-empty stderr lines.
fn stderr_lines(outcome: &Outcome) -> Vec<String> {
    outcome
        .stderr_lines()
        .into_iter()
        .filter(|line| !line.is_empty())
        .collect()
}

/// Writes `input` in `chunks` pieces `pause` apart, so the load is still
/// going when the test strikes; sends on `strike` once `strike_at` of the
/// pieces are written. Stops quietly when pipeload stops reading.
fn feed_in_chunks(
    mut stdin: ChildStdin,
    input: Vec<u8>,
    chunks: usize,
    pause: Duration,
    strike_at: usize,
    strike: mpsc::Sender<()>,
) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut strike = Some(strike);
        let size = input.len().div_ceil(chunks).max(1);
        for (index, chunk) in input.chunks(size).enumerate() {
            if index == strike_at
                && let Some(signal) = strike.take()
            {
                let _ = signal.send(());
            }
            if stdin.write_all(chunk).is_err() {
                break;
            }
            thread::sleep(pause);
        }
        if let Some(signal) = strike.take() {
            let _ = signal.send(());
        }
    })
}

#[test]
fn harness_slot_of_follows_the_cluster_specification() {
    // CRC16/XMODEM("123456789") is 0x31C3 (the specification's check value).
    assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
    assert_eq!(slot_of(b"123456789"), 0x31C3 & 16383);
    assert_eq!(slot_of(b"123456789"), 12739);
    assert_eq!(slot_of(b"foo"), 12182);
    assert_eq!(
        slot_of(b"{user1000}.following"),
        slot_of(b"{user1000}.followers")
    );
    assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
    // An empty tag: the whole key is hashed.
    assert_eq!(slot_of(b"foo{}{bar}"), crc16_xmodem(b"foo{}{bar}") % 16384);
    assert_eq!(slot_of(b"foo{}{bar}"), 8363);
    // From the first `{` to the first `}` after it: `{bar`.
    assert_eq!(slot_of(b"foo{{bar}}zap"), crc16_xmodem(b"{bar") % 16384);
    assert_eq!(slot_of(b"foo{{bar}}zap"), 4015);
    // Only the first tag counts.
    assert_eq!(slot_of(b"foo{bar}{zap}"), slot_of(b"bar"));
    assert_eq!(slot_of(b"foo{bar}{zap}"), 5061);
    // No closing brace: the whole key.
    assert_eq!(slot_of(b"foo{bar"), crc16_xmodem(b"foo{bar") % 16384);
}

#[test]
fn a_hundred_thousand_mixed_commands_land_on_their_owners() {
    const COMMANDS: usize = 100_000;
    const USERS: usize = 4000;
    let cluster = TestCluster::start();

    // The harness's slots agree with the server's.
    let mut node = cluster.client(1);
    for key in [
        "a",
        "b",
        "{user:7}:name",
        "user:7:name",
        "foo{}{bar}",
        "x{{y}}z",
    ] {
        let server_slot = node.ok(&["CLUSTER", "KEYSLOT", key]).as_int();
        assert_eq!(
            i64::from(slot_of(key.as_bytes())),
            server_slot,
            "slot of {key}"
        );
    }

    let mut workload = Workload::default();
    for i in 0..COMMANDS {
        // Five commands per user and round; half the users share one slot
        // per user through a hash tag, the others' keys spread over slots.
        let user = (i / 5) % USERS;
        let key = |what: &str| match user % 2 {
            0 => format!("{{user:{user}}}:{what}"),
            _ => format!("user:{user}:{what}"),
        };
        match i % 5 {
            0 => workload.set(&key("name"), &format!("name-{i}")),
            1 => workload.hset(&key("profile"), &format!("f{}", i % 7), &format!("v{i}")),
            2 => workload.rpush(&key("events"), &format!("e{i}")),
            3 => workload.incr(&key("visits")),
            _ => workload.sadd(&key("tags"), &format!("t{}", i % 13)),
        }
        if i % 20_000 == 0 {
            workload.line(&["PING"]);
            workload.line(&["ECHO", "keyless"]);
        }
    }

    let outcome = load_into(&cluster).stdin(workload.input.clone()).run();

    outcome.assert_summary(0, workload.commands);
    assert_loaded(&cluster, &workload, &outcome);
    let dbsizes = cluster.dbsizes();
    outcome.check(
        dbsizes.iter().all(|&keys| keys > 0),
        format!("every primary holds some keys: {dbsizes:?}"),
    );
}

#[test]
fn a_seed_file_starting_with_flushall_empties_every_primary() {
    const NEW_KEYS: usize = 3000;
    let cluster = TestCluster::start();
    // Old keys on every node, written to their owners directly.
    let mut old_keys = Vec::new();
    for node in 0..cluster.len() {
        let mut client = cluster.client(node);
        for key in (0..)
            .map(|n| format!("old:{n}"))
            .filter(|key| cluster.owner_of_key(key) == node)
            .take(20)
        {
            client.ok(&["SET", &key, "stale"]);
            old_keys.push(key);
        }
    }
    assert_eq!(cluster.total_keys(), old_keys.len() as i64);

    let mut workload = Workload::default();
    workload.line(&["FLUSHALL"]);
    for i in 0..NEW_KEYS {
        match i % 2 {
            0 => workload.set(&format!("new:{i}"), &format!("value:{i}")),
            _ => workload.hset(
                &format!("{{h{}}}:new:{i}", i % 50),
                "field",
                &format!("{i}"),
            ),
        }
    }
    let dir = TempDir::new("cluster-seed");
    dir.write("seed.txt", &workload.input);

    let outcome = load_into(&cluster)
        .current_dir(dir.path())
        .arg("seed.txt")
        .run();

    // FLUSHALL ran on every primary and counts as one reply.
    outcome.assert_summary(0, workload.commands);
    let lingering: Vec<&String> = old_keys
        .iter()
        .filter(|key| cluster.get(key.as_bytes()).is_some())
        .collect();
    outcome.check(
        lingering.is_empty(),
        format!("old keys survived FLUSHALL: {lingering:?}"),
    );
    for node in 0..cluster.len() {
        outcome.check(
            calls(&cluster, node, "flushall") == 1,
            format!("FLUSHALL must run once on node {node}"),
        );
    }
    assert_loaded(&cluster, &workload, &outcome);
}

#[test]
fn a_multi_exec_block_runs_as_one_transaction_on_the_owner_of_its_keys() {
    let cluster = TestCluster::start();
    // Both blocks belong to nodes other than the seed node 0.
    let on_1 = tag_on_node("acct:", 1);
    let on_2 = tag_on_node("team:", 2);
    let input = format!(
        "SET plain:before 1\n\
         MULTI\n\
         SET {{{on_1}}}:balance 100\n\
         INCRBY {{{on_1}}}:balance 50\n\
         RPUSH {{{on_1}}}:log opened credited\n\
         HSET {{{on_1}}}:meta owner alice\n\
         EXEC\n\
         PING\n\
         MULTI\n\
         SADD {{{on_2}}}:members x y z\n\
         INCR {{{on_2}}}:count\n\
         EXEC\n\
         SET plain:after 2\n"
    );

    let outcome = load_into(&cluster).stdin(input).run();

    outcome.assert_summary(0, 13);
    let key = |tag: &str, what: &str| format!("{{{tag}}}:{what}");
    let mut owner_1 = cluster.client(1);
    assert_eq!(
        owner_1.get(key(&on_1, "balance")),
        Some(b"150".to_vec()),
        "{outcome}"
    );
    assert_eq!(
        owner_1.lrange(key(&on_1, "log")),
        vec![b"opened".to_vec(), b"credited".to_vec()],
        "{outcome}"
    );
    assert_eq!(
        owner_1.hgetall(key(&on_1, "meta")),
        BTreeMap::from([(b"owner".to_vec(), b"alice".to_vec())]),
        "{outcome}"
    );
    let mut owner_2 = cluster.client(2);
    assert_eq!(
        owner_2.get(key(&on_2, "count")),
        Some(b"1".to_vec()),
        "{outcome}"
    );
    assert_eq!(
        owner_2.ok(&["SCARD", &key(&on_2, "members")]).as_int(),
        3,
        "{outcome}"
    );
    assert_eq!(
        cluster.get("plain:before"),
        Some(b"1".to_vec()),
        "{outcome}"
    );
    assert_eq!(cluster.get("plain:after"), Some(b"2".to_vec()), "{outcome}");
    // Each block ran as a transaction on its keys' node, and nowhere else.
    for (node, blocks) in [(0, 0), (1, 1), (2, 1)] {
        for command in ["multi", "exec"] {
            let ran = calls(&cluster, node, command);
            outcome.check(
                ran == blocks,
                format!("node {node} ran {command} {ran} times, expected {blocks}"),
            );
        }
    }
}

#[test]
fn a_flushall_that_fails_on_one_primary_is_reported() {
    // FLUSHALL goes to every primary, and its reply is counted once; a copy
    // refused by another primary must still show as an error.
    let cluster = TestCluster::start();
    let refusing = 2;
    cluster
        .client(refusing)
        .ok(&["ACL", "SETUSER", "default", "-flushall"]);

    let outcome = load_into(&cluster).stdin("FLUSHALL\nSET after 1\n").run();

    outcome
        .assert_summary(1, 2)
        .assert_stderr_line_starts("line 1: NOPERM ");
    assert_eq!(cluster.get("after"), Some(b"1".to_vec()), "{outcome}");
}

#[test]
fn crossslot_is_reported_with_its_line_and_the_rest_loads() {
    let cluster = TestCluster::start();
    assert_ne!(slot_of(b"a"), slot_of(b"b"));
    let input = "SET x1 1\nMSET a 1 b 2\nSET x2 2\nMSET {t}a 1 {t}b 2\n";

    let outcome = load_into(&cluster).stdin(input).run();

    outcome
        .assert_summary(1, 4)
        .assert_stderr_line("line 2: CROSSSLOT Keys in request don't hash to the same slot");
    outcome.check(
        stderr_lines(&outcome).len() == 1,
        "stderr must hold only the CROSSSLOT line",
    );
    for (key, value) in [("x1", "1"), ("x2", "2"), ("{t}a", "1"), ("{t}b", "2")] {
        assert_eq!(
            cluster.get(key),
            Some(value.as_bytes().to_vec()),
            "{key}\n{outcome}"
        );
    }
    assert_eq!(cluster.total_keys(), 4, "{outcome}");
}

#[test]
fn select_is_refused_in_cluster_mode() {
    let cluster = TestCluster::start();

    let outcome = load_into(&cluster)
        .stdin("SET k1 v1\nSELECT 1\nSET k2 v2\n")
        .run();

    outcome
        .assert_summary(1, 2)
        .assert_stderr_line("line 2: not sent: SELECT is not allowed in cluster mode");
    assert_eq!(cluster.get("k1"), Some(b"v1".to_vec()), "{outcome}");
    assert_eq!(cluster.get("k2"), Some(b"v2".to_vec()), "{outcome}");
    assert_eq!(cluster.total_keys(), 2, "{outcome}");

    let outcome = load_into(&cluster)
        .args(["-n", "1"])
        .stdin("SET k3 v3\n")
        .run();

    outcome.assert_code(2);
    assert_eq!(cluster.total_keys(), 2, "nothing may load\n{outcome}");
}

#[test]
fn a_slot_migrated_during_the_load_ends_with_every_key_on_its_new_owner() {
    const COMMANDS: usize = 50_000;
    let cluster = TestCluster::start();
    // A slot of node 1 (not the seed node) moves to node 2.
    let tag = tag_on_node("mig", 1);
    let slot = slot_of(tag.as_bytes());
    let (from, to) = (1, 2);

    let mut workload = Workload::default();
    for i in 0..COMMANDS {
        let in_slot = |what: &str| format!("{{{tag}}}:{what}");
        match i % 10 {
            // New keys in the slot: ASK while it migrates.
            0..=3 => workload.set(&in_slot(&format!("k:{i}")), &format!("v:{i}")),
            // Keys written all along: served by the source until moved.
            4 => workload.incr(&in_slot("counter")),
            5 => workload.rpush(&in_slot("list"), &i.to_string()),
            6 => workload.hset(&in_slot("hash"), &format!("f{}", i % 100), &i.to_string()),
            // Two keys of the slot: TRYAGAIN when only one has moved.
            7 if i % 100 == 7 => workload.mset(&[
                (in_slot(&format!("m1:{i}")).as_str(), "one"),
                (in_slot(&format!("m2:{i}")).as_str(), "two"),
            ]),
            // Elsewhere.
            _ => workload.set(&format!("elsewhere:{i}"), &format!("v:{i}")),
        }
    }
    let in_slot_keys = workload
        .keys
        .keys()
        .filter(|key| slot_of(key) == slot)
        .count();

    let mut running = load_into(&cluster).spawn();
    let (strike, struck) = mpsc::channel();
    let feeder = feed_in_chunks(
        running.take_stdin(),
        workload.input.clone(),
        100,
        Duration::from_millis(20),
        20,
        strike,
    );
    struck
        .recv_timeout(Duration::from_secs(60))
        .expect("the feeder never reached the migration point");
    let moved = cluster.migrate_slot(slot, from, to);
    let outcome = running.finish();
    let _ = feeder.join();

    outcome.assert_summary(0, workload.commands);
    outcome.check(moved > 0, "the migration moved no key: it began too late");
    // Keys created in the slot while it migrated were redirected with ASK.
    let asking = calls(&cluster, to, "asking");
    outcome.check(
        asking > 0,
        format!("no ASKING reached node {to}: the ASK path was not exercised"),
    );
    assert_loaded(&cluster, &workload, &outcome);
    let slot_arg = slot.to_string();
    for (node, keys) in [(from, 0), (to, in_slot_keys as i64)] {
        let count = cluster
            .client(node)
            .ok(&["CLUSTER", "COUNTKEYSINSLOT", &slot_arg])
            .as_int();
        outcome.check(
            count == keys,
            format!("node {node} holds {count} keys of slot {slot}, expected {keys}"),
        );
    }
}

/// A hang guard for loads that lose a node: a correct run ends within
/// seconds of the loss.
const NODE_LOSS_GUARD: Duration = Duration::from_secs(30);

#[test]
fn writes_to_one_key_keep_their_order_through_a_slot_migration() {
    // Every command goes to one list in a slot that moves mid-load. Those
    // in flight to the old owner come back MOVED and are resent; the later
    // ones must not overtake them on the new owner.
    const PUSHES: usize = 400_000;
    let cluster = TestCluster::start();
    let tag = tag_on_node("order", 1);
    let slot = slot_of(tag.as_bytes());
    let list = format!("{{{tag}}}:list");
    let input: Vec<u8> = (0..PUSHES)
        .flat_map(|i| format!("RPUSH {list} {i}\n").into_bytes())
        .collect();

    let mut running = load_into(&cluster).spawn();
    let (strike, struck) = mpsc::channel();
    let feeder = feed_in_chunks(
        running.take_stdin(),
        input,
        40,
        Duration::from_millis(5),
        8,
        strike,
    );
    struck
        .recv_timeout(Duration::from_secs(60))
        .expect("the feeder never reached the migration point");
    let moved = cluster.migrate_slot(slot, 1, 2);
    let outcome = running.finish();
    let _ = feeder.join();

    outcome.assert_summary(0, PUSHES as u64);
    outcome.check(moved == 1, "the list must have moved mid-load");
    let pushed: Vec<String> = cluster
        .client(2)
        .ok(&["LRANGE", &list, "0", "-1"])
        .into_array()
        .into_iter()
        .map(|item| String::from_utf8_lossy(&item.into_bulk().unwrap_or_default()).into_owned())
        .collect();
    let expected: Vec<String> = (0..PUSHES).map(|i| i.to_string()).collect();
    let first_difference = pushed
        .iter()
        .zip(&expected)
        .position(|(got, want)| got != want);
    outcome.check(
        pushed.len() == PUSHES && first_difference.is_none(),
        format!(
            "the list must hold 0..{PUSHES} in order: {} items, first out of place at {first_difference:?}",
            pushed.len()
        ),
    );
}

/// Lets the nodes other than `killed` answer reads once they see the
/// cluster down (a lost primary without replica fails the cluster).
fn allow_reads_when_down(cluster: &TestCluster, killed: usize) {
    for node in (0..cluster.len()).filter(|&node| node != killed) {
        cluster
            .client(node)
            .ok(&["CONFIG", "SET", "cluster-allow-reads-when-down", "yes"]);
    }
}

/// `SET key:i value` for i in 0..count, and the keys.
fn set_lines(count: usize, value: &str) -> (Vec<u8>, Vec<String>) {
    let keys: Vec<String> = (0..count).map(|i| format!("key:{i}")).collect();
    let input = keys
        .iter()
        .flat_map(|key| format!("SET {key} {value}\n").into_bytes())
        .collect();
    (input, keys)
}

/// `SET key:i value` lines for i in 0..sets, fed in `pieces` pieces
/// `pause` apart; the test strikes once `strike_at` pieces are written.
struct SetFeed<'a> {
    sets: usize,
    value: &'a str,
    pieces: usize,
    pause: Duration,
    strike_at: usize,
}

/// A load that is still going a good while after the strike.
const STEADY_FEED: SetFeed<'static> = SetFeed {
    sets: 200_000,
    value: "v",
    pieces: 60,
    pause: Duration::from_millis(15),
    strike_at: 20,
};

/// Runs `pipeload` on `feed`, calls `strike` at its strike point, and
/// returns how the run ended and the keys, in input order.
fn load_sets_and_strike(
    pipeload: Pipeload,
    feed: SetFeed,
    strike: impl FnOnce(),
) -> (Outcome, Vec<String>) {
    let (input, keys) = set_lines(feed.sets, feed.value);
    let mut running = pipeload.guard(NODE_LOSS_GUARD).spawn();
    let (strike_now, struck) = mpsc::channel();
    let feeder = feed_in_chunks(
        running.take_stdin(),
        input,
        feed.pieces,
        feed.pause,
        feed.strike_at,
        strike_now,
    );
    struck
        .recv_timeout(Duration::from_secs(60))
        .expect("the feeder never reached the strike point");
    strike();
    let outcome = running.finish();
    let _ = feeder.join();
    (outcome, keys)
}

/// Every one of `keys` holds `value` on the primary that owns it.
#[track_caller]
fn assert_every_key_holds(cluster: &TestCluster, keys: &[String], value: &str, outcome: &Outcome) {
    let expected: BTreeMap<Vec<u8>, Expected> = keys
        .iter()
        .map(|key| {
            (
                key.clone().into_bytes(),
                Expected::Str(value.as_bytes().to_vec()),
            )
        })
        .collect();
    let missing = mismatches(cluster, &expected);
    outcome.check(
        missing.is_empty(),
        format!("keys not as loaded (first 10):\n{}", missing.join("\n")),
    );
}

/// The summary of a load that lost node `killed`: stopped with exit 1, a
/// `connection lost` line naming the node, at least one error, and an
/// acknowledged count K such that the first K commands were answered:
/// each of them whose key lives on a surviving node holds `value`.
#[track_caller]
fn assert_node_loss(
    cluster: &TestCluster,
    killed: usize,
    outcome: &Outcome,
    keys: &[String],
    value: &str,
) {
    let acknowledged = outcome.assert_stopped(1);
    let summary = outcome.summary();
    let address = cluster.address(killed);
    outcome
        .check(summary.errors >= 1, "the lost connection is an error")
        .check(
            outcome
                .stderr_lines()
                .iter()
                .any(|line| line.contains("connection lost") && line.contains(&address)),
            format!("expected a stderr line with `connection lost` naming {address}"),
        )
        .check(
            (1..keys.len() as u64).contains(&acknowledged),
            format!(
                "acknowledged {acknowledged}: some but not all of {}",
                keys.len()
            ),
        )
        .check(
            summary.replies >= acknowledged,
            "every acknowledged command was answered",
        );
    let acknowledged_on_survivors: Vec<String> = keys[..acknowledged as usize]
        .iter()
        .filter(|key| cluster.owner_of_key(key) != killed)
        .cloned()
        .collect();
    assert_every_key_holds(cluster, &acknowledged_on_survivors, value, outcome);
}

#[test]
fn a_node_killed_mid_load_gives_the_true_summary() {
    let cluster = TestCluster::start();
    let killed = 1;
    allow_reads_when_down(&cluster, killed);

    let (outcome, keys) = load_sets_and_strike(load_into(&cluster), STEADY_FEED, || {
        cluster.kill_node(killed)
    });

    assert_node_loss(&cluster, killed, &outcome, &keys, "v");
}

/// `total_net_input_bytes` of node `node`.
fn bytes_received(cluster: &TestCluster, node: usize) -> u64 {
    let info = match cluster.client(node).ok(&["INFO", "stats"]) {
        Value::Bulk(Some(info)) | Value::Verbatim(info) => info,
        other => panic!("INFO stats replied {other:?}"),
    };
    String::from_utf8_lossy(&info)
        .lines()
        .find_map(|line| line.strip_prefix("total_net_input_bytes:"))
        .and_then(|bytes| bytes.trim().parse().ok())
        .expect("INFO stats has total_net_input_bytes")
}

#[test]
fn a_node_killed_while_the_load_waits_on_it_gives_the_true_summary() {
    // A node that stops executing (busy, paused) holds pipeload's window
    // for it full, so the whole load waits on that node; then it dies. The
    // input must be far bigger than one node's window (4 MiB).
    let cluster = TestCluster::start();
    let killed = 1;
    allow_reads_when_down(&cluster, killed);
    let value = "x".repeat(500);
    let feed = SetFeed {
        sets: 60_000,
        value: &value,
        pieces: 100,
        pause: Duration::from_millis(5),
        strike_at: 10,
    };

    let (outcome, keys) = load_sets_and_strike(load_into(&cluster), feed, || {
        cluster
            .client(killed)
            .ok(&["CLIENT", "PAUSE", "60000", "WRITE"]);
        // Wait until pipeload sends the paused node nothing more: its
        // window for the node is full and the load waits on it.
        let mut received = bytes_received(&cluster, killed);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            thread::sleep(Duration::from_millis(300));
            let now = bytes_received(&cluster, killed);
            // Our own INFO commands count too: a few hundred bytes.
            if now - received < 4096 {
                break;
            }
            received = now;
            assert!(
                Instant::now() < deadline,
                "pipeload kept sending to the paused node"
            );
        }
        cluster.kill_node(killed);
    });

    assert_node_loss(&cluster, killed, &outcome, &keys, &value);
}

#[test]
fn an_unreachable_seed_is_reported() {
    let port = RedisServer::start().stop();

    let outcome = Pipeload::new()
        .arg("-c")
        .port(port)
        .stdin("SET a 1\n")
        .run();

    outcome.assert_code(1).assert_fatal_line(&format!(
        "Could not connect to Redis at 127.0.0.1:{port}: Connection refused"
    ));
}

#[test]
fn cluster_mode_against_a_plain_server_loads_into_it() {
    let server = RedisServer::start();
    let mut workload = Workload::default();
    for i in 0..1000 {
        workload.set(&format!("key:{i}"), &format!("value:{i}"));
    }
    // Keys of different slots in one command are fine on one server.
    workload.mset(&[("a", "1"), ("b", "2")]);
    workload.incr("counter");

    let outcome = Pipeload::new()
        .arg("-c")
        .port(server.port())
        .stdin(workload.input.clone())
        .run();

    outcome.assert_summary(0, workload.commands);
    let mut client = server.client();
    assert_eq!(client.dbsize(), workload.keys.len() as i64, "{outcome}");
    for (key, want) in &workload.keys {
        let Expected::Str(value) = want else {
            unreachable!("only strings here")
        };
        assert_eq!(client.get(key).as_ref(), Some(value), "{outcome}");
    }
}

#[test]
fn a_cluster_with_uncovered_slots_is_refused_before_sending() {
    let cluster = TestCluster::start_with_uncovered_range(1);

    let outcome = load_into(&cluster)
        .guard(Duration::from_secs(30))
        .stdin("SET a 1\nSET b 2\nSET c 3\n")
        .run();

    outcome.assert_code(1);
    let lines = stderr_lines(&outcome);
    outcome.check(
        lines.len() == 1 && lines[0].contains("slot"),
        "expected one stderr line, mentioning `slot`",
    );
    for node in 0..cluster.len() {
        outcome.check(
            calls(&cluster, node, "set") == 0 && cluster.client(node).dbsize() == 0,
            format!("node {node} received a SET"),
        );
    }
}

/// Kills every connection of pipeload's to node `node` (the test's own
/// connection is spared), as a network drop or a proxy restart would.
fn drop_connections_to(cluster: &TestCluster, node: usize) {
    cluster
        .client(node)
        .ok(&["CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes"]);
}

#[test]
fn retry_reconnects_a_dropped_node_and_finishes_the_load() {
    let cluster = TestCluster::start();
    let dropped = 1;

    let (outcome, keys) = load_sets_and_strike(
        load_into(&cluster).args(["--retry", "5"]),
        STEADY_FEED,
        || drop_connections_to(&cluster, dropped),
    );

    // Every command answered once: what was answered before the drop is
    // not sent again, what was not is resent on the new connection.
    let (summary, reconnects) = outcome.assert_retried_without_errors();
    let address = cluster.address(dropped);
    outcome
        .check(
            summary.replies == keys.len() as u64,
            format!("expected {} replies", keys.len()),
        )
        .check(reconnects == 1, "one connection dropped: `reconnects: 1`")
        .check(
            outcome
                .stderr_lines()
                .iter()
                .any(|line| line.starts_with(&format!("pipeload: {address}: reconnecting in "))),
            format!("expected a `reconnecting` line naming {address}"),
        );
    assert_every_key_holds(&cluster, &keys, "v", &outcome);
    assert_eq!(cluster.total_keys(), keys.len() as i64, "{outcome}");
}

#[test]
fn retry_gives_up_on_a_node_that_stays_down_and_gives_the_true_summary() {
    let cluster = TestCluster::start();
    let killed = 2;
    allow_reads_when_down(&cluster, killed);

    let (outcome, keys) = load_sets_and_strike(
        load_into(&cluster).args(["--retry", "2"]),
        STEADY_FEED,
        || cluster.kill_node(killed),
    );

    assert_node_loss(&cluster, killed, &outcome, &keys, "v");
    outcome.assert_stderr_line(&format!(
        "pipeload: {}: gave up after 2 reconnect attempts (--retry 2)",
        cluster.address(killed)
    ));
}

#[test]
fn auth_in_the_input_reaches_every_primary() {
    let cluster = TestCluster::start();
    // Every SET must run as the input's user, on every primary.
    for node in 0..cluster.len() {
        writes_only_as_loader(&mut cluster.client(node));
    }
    let (lines, keys) = set_lines(3_000, "v");
    let mut input = LOADER_AUTH.as_bytes().to_vec();
    input.extend_from_slice(&lines);

    let outcome = load_into(&cluster).stdin(input).run();

    outcome.assert_summary(0, keys.len() as u64 + 1);
    assert_every_key_holds(&cluster, &keys, "v", &outcome);
    assert!(
        cluster.dbsizes().iter().all(|&size| size > 0),
        "every primary must hold some keys: {:?}",
        cluster.dbsizes()
    );
}

#[test]
fn client_reply_off_reaches_every_primary_and_the_unanswered_tail_is_confirmed() {
    let cluster = TestCluster::start();
    // Keys on every node, sent while replies are off, up to the end of the
    // input: only a marker's reply on each node can confirm them.
    let tail: String = (0..cluster.len())
        .map(|node| {
            let tag = crate::common::cluster::tag_on_node("tail", node);
            format!("SET {{{tag}}}k {node}\n")
        })
        .collect();
    let input = format!("SET first 1\nCLIENT REPLY OFF\n{tail}");

    let outcome = load_into(&cluster).stdin(input).run();

    outcome.assert_complete_summary(0, 1);
    for node in 0..cluster.len() {
        let tag = crate::common::cluster::tag_on_node("tail", node);
        assert_eq!(
            cluster.get(format!("{{{tag}}}k")),
            Some(node.to_string().into_bytes()),
            "{outcome}"
        );
    }

    let skipped = load_into(&cluster)
        .stdin("CLIENT REPLY SKIP\nSET after 1\n")
        .run();
    skipped
        .assert_code(1)
        .assert_stderr_line("line 1: not sent: CLIENT REPLY SKIP is not supported in cluster mode");
    assert_eq!(cluster.get("after"), Some(b"1".to_vec()), "{skipped}");
}
