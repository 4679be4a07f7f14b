//! `--connections N`: one server over N connections, each command on the
//! connection of its keys' hash slot, commands that span connections or
//! change shared state behind a barrier. The data set must equal what one
//! connection gives, for any input: each ordering case is loaded both ways
//! into two fresh servers and the databases compared (`DEBUG DIGEST` and the
//! keys the case is about); a differential test does the same for random
//! mixed inputs over many seeds, on Redis and on Valkey. Then a connection
//! killed under `--retry`, `--replies` in input order, a resume after
//! SIGTERM, and the flag's usage errors.

use std::time::Duration;

use crate::common::{
    Client, Pipeload, RedisServer, TempDir, TestCluster, Value, finish_after_one_reconnect,
    load_first_lines, wait_until,
};
use pipeload::cluster::keys::KeyPositions;
use pipeload::stream::Stream;
use pipeload_harness::ServerKind;

/// Loads `input` with `--connections connections` into `server` (flushed
/// first) and returns the run's summary line.
fn load(server: &RedisServer, connections: usize, input: &str) -> String {
    server.client().ok(&["FLUSHALL"]);
    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--connections", &connections.to_string()])
        .guard(Duration::from_secs(60))
        .stdin(input)
        .run();
    outcome.assert_no_panic();
    outcome.check(
        outcome
            .stdout_text()
            .contains("Last reply received from server."),
        "the load ran to its end",
    );
    let summary = outcome.summary();
    format!("errors: {}, replies: {}", summary.errors, summary.replies)
}

fn digest(server: &RedisServer) -> String {
    match server.client().cmd(&["DEBUG", "DIGEST"]) {
        Value::Simple(digest) => digest,
        other => panic!("DEBUG DIGEST answered {other:?}"),
    }
}

/// Two servers of one kind: one loaded over one connection, one over many.
struct Pair {
    one: RedisServer,
    many: RedisServer,
}

impl Pair {
    fn start(kind: ServerKind) -> Pair {
        Pair {
            one: RedisServer::start_kind_with_config(kind, &[]),
            many: RedisServer::start_kind_with_config(kind, &[]),
        }
    }

    /// Loads `input` over 1 and over `connections` connections; the two
    /// summaries and data sets must be equal. Returns a client of the
    /// server loaded over many, for the case's own checks.
    #[track_caller]
    fn assert_same(&self, connections: usize, input: &str, what: &str) -> Client {
        let one = load(&self.one, 1, input);
        let many = load(&self.many, connections, input);
        assert_eq!(
            one, many,
            "{what}: the summaries differ\n--- input:\n{input}"
        );
        assert_eq!(
            digest(&self.one),
            digest(&self.many),
            "{what}: the data sets differ (DEBUG DIGEST)\n--- input:\n{input}"
        );
        self.many.client()
    }
}

/// Keys on different connections of 4 (`slot mod 4` differs): found, not
/// hard-coded, so the cases really cross connections.
fn keys_on_distinct_lanes(prefix: &str, count: usize) -> Vec<String> {
    let mut taken = Vec::new();
    let mut keys = Vec::new();
    for i in 0.. {
        let key = format!("{prefix}{i}");
        let lane = usize::from(crate::common::slot_of(key.as_bytes())) % 4;
        if !taken.contains(&lane) {
            taken.push(lane);
            keys.push(key);
            if keys.len() == count {
                break;
            }
        }
    }
    keys
}

#[test]
fn each_ordering_case_gives_the_data_set_of_one_connection() {
    let pair = Pair::start(ServerKind::Redis);
    let [a, b, c, d] = <[String; 4]>::try_from(keys_on_distinct_lanes("k", 4)).unwrap();

    let mut client = pair.assert_same(
        4,
        &format!("SET {a} 1\nSET {b} 2\nRENAME {a} {b}\nINCR {b}\nSET {a} again\n"),
        "RENAME across connections",
    );
    assert_eq!(client.get(&b), Some(b"2".to_vec()));
    assert_eq!(client.get(&a), Some(b"again".to_vec()));

    let mut client = pair.assert_same(
        4,
        &format!(
            "SADD {a} m n\nSMOVE {a} {b} m\nSADD {b} o\nSUNIONSTORE {c} {a} {b}\nSREM {c} n\n"
        ),
        "SMOVE and SUNIONSTORE across connections",
    );
    assert_eq!(
        client.cmd(&["SCARD", &c]),
        Value::Int(2),
        "{c} holds m and o"
    );

    let mut client = pair.assert_same(
        4,
        &format!(
            "RPUSH {a} 1 2 3\nLMOVE {a} {b} LEFT RIGHT\nRPUSH {b} 4\nLMOVE {b} {a} LEFT LEFT\nMSET {c} x {d} y\nAPPEND {c} z\n"
        ),
        "LMOVE and MSET across connections",
    );
    assert_eq!(
        client.lrange(&a),
        [b"1".to_vec(), b"2".to_vec(), b"3".to_vec()]
    );
    assert_eq!(client.get(&c), Some(b"xz".to_vec()));

    let mut client = pair.assert_same(
        4,
        &format!("SET {a} 1\nSET {b} 2\nFLUSHDB\nSET {c} 3\nSET {a} 4\n"),
        "FLUSHDB between writes",
    );
    assert_eq!(client.dbsize(), 2);
    assert_eq!(client.get(&a), Some(b"4".to_vec()));

    let mut client = pair.assert_same(
        4,
        &format!(
            "SET {a} db0\nSELECT 1\nSET {a} db1\nSET {b} db1\nSWAPDB 0 1\nSET {c} db1-after-swap\nSELECT 0\nSET {d} db0\n"
        ),
        "SELECT on every connection, SWAPDB as a barrier",
    );
    assert_eq!(client.get(&a), Some(b"db1".to_vec()));
    assert_eq!(client.get(&d), Some(b"db0".to_vec()));
    client.select(1);
    assert_eq!(client.get(&a), Some(b"db0".to_vec()));
    assert_eq!(client.get(&c), Some(b"db1-after-swap".to_vec()));

    let mut client = pair.assert_same(
        4,
        &format!(
            "MULTI\nINCR {a}\nINCR {a}\nEXEC\nMULTI\nSET {b} 1\nSET {c} 2\nEXEC\nINCR {b}\nMULTI\nSELECT 1\nSET {d} in-db1\nEXEC\nSET {a} db1-too\n"
        ),
        "MULTI…EXEC on one connection, across connections, and with SELECT",
    );
    assert_eq!(client.get(&b), Some(b"2".to_vec()));
    client.select(1);
    assert_eq!(client.get(&d), Some(b"in-db1".to_vec()));
    assert_eq!(client.get(&a), Some(b"db1-too".to_vec()));

    let script = "\"redis.call('incr', KEYS[1]); return redis.call('rpush', KEYS[2], ARGV[1])\"";
    let mut client = pair.assert_same(
        4,
        &format!(
            "SET {a} 5\nEVAL {script} 2 {a} {b} x\nINCR {a}\nEVAL \"return redis.call('set', 'keyless-script', 1)\" 0\nSCRIPT FLUSH\nRPUSH {b} y\nFUNCTION FLUSH\n"
        ),
        "EVAL with keys on several connections and with none, SCRIPT and FUNCTION",
    );
    assert_eq!(client.get(&a), Some(b"7".to_vec()));
    assert_eq!(client.lrange(&b), [b"x".to_vec(), b"y".to_vec()]);

    let mut client = pair.assert_same(
        4,
        &format!(
            "SET {a} 1\nCLIENT REPLY SKIP\nSET {b} skipped\nINCR {a}\nCLIENT REPLY SKIP\nFLUSHDB\nSET {c} 3\nCLIENT REPLY OFF\nSET {a} off\nSELECT 1\nSET {b} off-db1\nRENAME {b} {c}\nCLIENT REPLY ON\nSET {d} on-db1\nCLIENT REPLY SKIP\n"
        ),
        "CLIENT REPLY SKIP, OFF and ON",
    );
    assert_eq!(client.get(&a), Some(b"off".to_vec()));
    client.select(1);
    assert_eq!(client.get(&c), Some(b"off-db1".to_vec()));
    assert_eq!(client.get(&d), Some(b"on-db1".to_vec()));

    pair.assert_same(
        4,
        &format!(
            "PING\nSET {a} 1\nECHO hi\nNOSUCHCOMMAND {a}\n\"unbalanced\nSET {b} 2\nTIME\nGET {a}\nCLIENT SETNAME loader\nCLIENT GETNAME\n"
        ),
        "read-only keyless commands, unknown commands, refused lines",
    );

    let after = format!("SET {a} 1\nSET {b} 1\nSET {c} 1\nSET {d} 1\n");
    for (transaction, what) in [
        (
            "MULTI\nSELECT 1\nDISCARD\n",
            "a SELECT in a discarded transaction",
        ),
        (
            "MULTI\nSELECT 1\nNOSUCHCOMMAND\nEXEC\n",
            "a SELECT in an aborted transaction",
        ),
        (
            "MULTI\nSELECT 1\nPING\nEXEC\n",
            "a SELECT in a transaction that ran",
        ),
        ("SELECT 1\nRESET\n", "RESET back to database 0"),
    ] {
        pair.assert_same(
            4,
            &format!("{transaction}{after}SELECT 0\nSET {a} 2\n"),
            what,
        );
    }
    let mut client = pair.assert_same(
        4,
        &format!(
            "WATCH {a}\nSET {a} 2\nMULTI\nSET {b} 3\nEXEC\nSET {c} 1\nWATCH {c}\nMULTI\nSET {d} 5\nEXEC\nWATCH {d}\nUNWATCH\nMULTI\nSET {a} 7\nEXEC\n"
        ),
        "WATCH and the transaction after it on one connection",
    );
    client.select(0);
    assert_eq!(
        client.get(&b),
        None,
        "the watched key changed: EXEC aborted"
    );
    assert_eq!(client.get(&d), Some(b"5".to_vec()));
    assert_eq!(client.get(&a), Some(b"7".to_vec()));
}

#[test]
fn per_connection_state_from_the_input_reaches_every_connection() {
    let server = RedisServer::start();
    let mut admin = server.client();
    crate::common::writes_only_as_loader(&mut admin);
    let keys = keys_on_distinct_lanes("auth", 4);
    let mut input = String::from(crate::common::LOADER_AUTH);
    input.push_str("HELLO 3\nSELECT 2\n");
    for key in &keys {
        input.push_str(&format!("SET {key} v\nHGETALL {key}-missing\n"));
    }

    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--connections", "4"])
        .stdin(input)
        .run();

    outcome.assert_summary(0, 3 + 2 * keys.len() as u64);
    admin.select(2);
    for key in &keys {
        assert_eq!(admin.get(key), Some(b"v".to_vec()), "{key} in db 2");
    }
}

#[test]
fn a_client_reply_skip_at_the_end_of_an_input_batch_goes_with_the_next_command() {
    // The input packs at most 2048 commands in a batch: the SKIP is the
    // last of the first, the command it skips the first of the next.
    let pair = Pair::start(ServerKind::Redis);
    let filler: String = (0..2047).map(|i| format!("INCR n{}\n", i % 8)).collect();
    for (next, what) in [
        ("SET skipped 1\nINCR n3\n", "a keyed command"),
        ("FLUSHDB\nSET after 1\n", "a barrier"),
        ("SELECT 1\nSET in-db1 1\n", "a command for every connection"),
        ("MULTI\nSET t 1\nEXEC\nINCR n2\n", "a transaction"),
        ("", "the end of the input"),
    ] {
        let input = format!("{filler}CLIENT REPLY SKIP\n{next}");
        pair.assert_same(4, &input, &format!("SKIP before {what}"));
    }
}

/// A seeded generator of small mixed inputs: writes of every type on a
/// small key space, commands across keys, FLUSHDB, SELECT, transactions,
/// scripts and CLIENT REPLY.
struct Mix {
    state: u64,
    replies_off: bool,
}

impl Mix {
    fn new(seed: u64) -> Mix {
        Mix {
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            replies_off: false,
        }
    }

    fn below(&mut self, bound: u64) -> u64 {
        // xorshift64*
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        (self.state.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 33) % bound
    }

    fn key(&mut self, kind: &str) -> String {
        format!("{kind}{}", self.below(6))
    }

    /// One command that may go in a transaction.
    fn write(&mut self) -> String {
        let value = self.below(1000);
        match self.below(12) {
            0 => format!("SET {} v{value}", self.key("s")),
            1 => format!("INCR {}", self.key("n")),
            2 => format!("RPUSH {} {value}", self.key("l")),
            3 => format!(
                "HSET {} f{} {value} g {value}",
                self.key("h"),
                self.below(3)
            ),
            4 => format!("SADD {} m{}", self.key("t"), self.below(5)),
            5 => format!("ZADD {} {value} m{}", self.key("z"), self.below(5)),
            6 => format!("RENAME {} {}", self.key("s"), self.key("s")),
            7 => format!(
                "SMOVE {} {} m{}",
                self.key("t"),
                self.key("t"),
                self.below(5)
            ),
            8 => format!("LMOVE {} {} LEFT RIGHT", self.key("l"), self.key("l")),
            9 => format!("MSET {} a{value} {} b{value}", self.key("s"), self.key("s")),
            10 => format!(
                "SUNIONSTORE {} {} {}",
                self.key("t"),
                self.key("t"),
                self.key("t")
            ),
            _ => format!(
                "EVAL \"redis.call('incr', KEYS[1]); return redis.call('rpush', KEYS[2], ARGV[1])\" 2 {} {} {value}",
                self.key("n"),
                self.key("l")
            ),
        }
    }

    fn command(&mut self) -> String {
        match self.below(40) {
            0 => "FLUSHDB".into(),
            1..=2 => format!("SELECT {}", self.below(2)),
            3..=4 => {
                let writes: Vec<String> = (0..1 + self.below(3)).map(|_| self.write()).collect();
                format!("MULTI\n{}\nEXEC", writes.join("\n"))
            }
            5..=6 if !self.replies_off => format!("CLIENT REPLY SKIP\n{}", self.write()),
            7 if !self.replies_off => {
                self.replies_off = true;
                "CLIENT REPLY OFF".into()
            }
            8..=9 if self.replies_off => {
                self.replies_off = false;
                "CLIENT REPLY ON".into()
            }
            10 => format!("GET {}", self.key("s")),
            _ => self.write(),
        }
    }

    fn input(&mut self, commands: usize) -> String {
        let mut input: String = (0..commands).map(|_| self.command() + "\n").collect();
        if self.replies_off {
            input.push_str("CLIENT REPLY ON\n");
        }
        input
    }
}

fn random_inputs_load_as_over_one_connection(kind: ServerKind) {
    let pair = Pair::start(kind);
    for seed in 1..=30 {
        let input = Mix::new(seed).input(40 + (seed as usize % 5) * 20);
        let one = load(&pair.one, 1, &input);
        let many = load(&pair.many, 4, &input);
        assert_eq!(
            (one, digest(&pair.one)),
            (many, digest(&pair.many)),
            "seed {seed}: --connections 4 and 1 give different summaries or data sets (DEBUG DIGEST)\n--- input:\n{input}"
        );
    }
}

#[test]
fn random_mixed_inputs_give_the_data_set_of_one_connection_on_redis() {
    random_inputs_load_as_over_one_connection(ServerKind::Redis);
}

#[test]
fn random_mixed_inputs_give_the_data_set_of_one_connection_on_valkey() {
    random_inputs_load_as_over_one_connection(ServerKind::Valkey);
}

/// The route reads no further than the first argument of a command whose
/// metadata says its one key is that argument (`SET`, `HSET`…). For every
/// command the server knows, with as many arguments as its arity asks (and
/// two more where it takes more): where the route takes that shortcut, the
/// whole metadata and the server's own `COMMAND GETKEYS` name that one
/// argument.
fn commands_routed_by_their_first_argument_have_that_one_key(kind: ServerKind) {
    let server = RedisServer::start_kind_with_config(kind, &[]);
    let stream = std::net::TcpStream::connect(("127.0.0.1", server.port())).unwrap();
    let keys = KeyPositions::fetch(&mut Stream::Tcp(stream)).unwrap();
    let mut client = server.client();
    let mut shortcuts = Vec::new();
    for entry in client.cmd(&["COMMAND"]).into_array() {
        let entry = entry.into_array();
        let name = entry[0].clone().into_bulk().unwrap();
        if !keys.key_is_first_argument_only(&name) {
            continue;
        }
        // Negative: at least that many; positive: exactly.
        let arity = entry[1].as_int();
        let extras: &[usize] = if arity < 0 { &[0, 2] } else { &[0] };
        let arity = arity.unsigned_abs() as usize;
        for &extra in extras {
            let mut command: Vec<Vec<u8>> = vec![b"COMMAND".to_vec(), b"GETKEYS".to_vec()];
            command.push(name.clone());
            command.push(b"the-key".to_vec());
            while command.len() < 2 + arity.max(2) + extra {
                command.push(format!("argument{}", command.len()).into_bytes());
            }
            let shown = String::from_utf8_lossy(&command.join(&b' ')).into_owned();
            let args: Vec<&[u8]> = command[2..].iter().map(Vec::as_slice).collect();
            let mut found = Vec::new();
            assert!(keys.all_keys(&args, &mut found), "{kind:?}: {shown}");
            assert_eq!(found, [b"the-key"], "{kind:?}: {shown}");
            // A shard channel (`SPUBLISH`) routes like a key, which the
            // server does not call it.
            match client.cmd(&command) {
                Value::Error(message) if message.contains("has no key arguments") => {}
                found => assert_eq!(
                    found,
                    Value::Array(Some(vec![Value::Bulk(Some(b"the-key".to_vec()))])),
                    "{kind:?}: {shown}"
                ),
            }
        }
        shortcuts.push(String::from_utf8_lossy(&name).into_owned());
    }
    for common in [
        "set", "get", "hset", "incr", "rpush", "sadd", "zadd", "expire",
    ] {
        assert!(
            shortcuts.iter().any(|name| name == common),
            "{kind:?}: {common} takes the shortcut; those that do: {shortcuts:?}"
        );
    }
}

#[test]
fn commands_routed_by_their_first_argument_have_that_one_key_on_redis() {
    commands_routed_by_their_first_argument_have_that_one_key(ServerKind::Redis);
}

#[test]
fn commands_routed_by_their_first_argument_have_that_one_key_on_valkey() {
    commands_routed_by_their_first_argument_have_that_one_key(ServerKind::Valkey);
}

/// `INCR counter:i` for i in 0..count: each counter must end at exactly 1.
fn increments(count: usize) -> String {
    (0..count).map(|i| format!("INCR counter:{i}\n")).collect()
}

fn assert_each_counter_once(client: &mut Client, count: usize) {
    let keys: Vec<String> = (0..count).map(|i| format!("counter:{i}")).collect();
    let mut command = vec!["MGET".to_owned()];
    command.extend(keys.iter().cloned());
    let values = client.cmd(&command).into_array();
    let wrong: Vec<(String, Option<Vec<u8>>)> = keys
        .into_iter()
        .zip(values.into_iter().map(Value::into_bulk))
        .filter(|(_, value)| value.as_deref() != Some(b"1"))
        .take(5)
        .collect();
    assert!(
        wrong.is_empty(),
        "every counter exactly 1; wrong: {wrong:?}"
    );
}

#[test]
fn a_killed_connection_under_retry_resends_its_own_commands() {
    let server = RedisServer::start();
    let count = 20_000;
    let input = increments(count);
    let (running, second_half) = load_first_lines(
        Pipeload::new()
            .port(server.port())
            .args(["--connections", "4", "--retry", "5"]),
        &server,
        &input,
        count / 2,
    );
    let mut client = server.client();
    // One of pipeload's loading connections (the last command it ran was
    // an INCR) dies between the halves.
    let own_id = client.cmd(&["CLIENT", "ID"]).as_int();
    let list = client.cmd(&["CLIENT", "LIST"]).into_text();
    let victim = list
        .lines()
        .filter(|line| line.contains(" cmd=incr "))
        .filter_map(|line| {
            line.split(' ')
                .find_map(|field| field.strip_prefix("id="))
                .and_then(|id| id.parse::<i64>().ok())
        })
        .find(|id| *id != own_id)
        .expect("a loading connection in CLIENT LIST");
    client.ok(&["CLIENT", "KILL", "ID", &victim.to_string()]);
    finish_after_one_reconnect(running, second_half, count as u64);

    assert_eq!(client.dbsize(), count as i64);
    assert_each_counter_once(&mut client, count);
}

#[test]
fn replies_come_out_in_input_order_over_four_connections() {
    let server = RedisServer::start();
    let mut input = String::new();
    for i in 0..3_000 {
        input.push_str(&format!(
            "SET key:{i} value:{i}\nGET key:{}\nINCR n:{}\n",
            i / 2,
            i % 7
        ));
        if i % 500 == 0 {
            input.push_str(&format!("MSET key:{i} a key:{} b\nDBSIZE\n", i + 1));
        }
    }
    let dir = TempDir::new("connections-replies");
    let replies = |connections: usize| {
        server.client().ok(&["FLUSHALL"]);
        let out = dir.path().join(format!("replies-{connections}"));
        Pipeload::new()
            .port(server.port())
            .args(["--connections", &connections.to_string(), "--replies"])
            .arg(&out)
            .stdin(input.as_str())
            .run()
            .assert_code(0);
        std::fs::read(&out).expect("read the replies")
    };

    let one = replies(1);
    let many = replies(4);

    assert!(!one.is_empty());
    assert!(
        one == many,
        "--replies over 4 connections must equal one connection's, line for line"
    );
}

#[test]
fn a_load_stopped_by_sigterm_resumes_with_its_skip_exactly_once() {
    let server = RedisServer::start();
    let count = 20_000;
    let input = increments(count);
    let (mut running, _) = load_first_lines(
        Pipeload::new()
            .port(server.port())
            .args(["--connections", "4"]),
        &server,
        &input,
        count / 2,
    );
    let mut client = server.client();
    running.signal("TERM");
    running.close_stdin();
    let stopped = running.finish();

    let acknowledged = stopped.assert_stopped(143);
    stopped.check(
        acknowledged == (count / 2) as u64,
        "the first half was answered on every connection before the signal",
    );
    let resumed = Pipeload::new()
        .port(server.port())
        .args(["--connections", "4", "--skip", &acknowledged.to_string()])
        .guard(Duration::from_secs(120))
        .stdin(input)
        .run();

    resumed.assert_summary(0, count as u64 - acknowledged);
    assert_each_counter_once(&mut client, count);
}

#[test]
fn connections_out_of_range_or_with_emit_resp_are_usage_errors() {
    for bad in ["0", "65", "many"] {
        let outcome = Pipeload::new()
            .args(["--connections", bad])
            .stdin("PING\n")
            .run();
        outcome.assert_code(2);
        outcome.check(
            outcome.stderr_text().contains("--connections"),
            format!("--connections {bad}: the message names the flag"),
        );
    }
    Pipeload::new()
        .args(["--connections", "4", "--emit-resp"])
        .stdin("PING\n")
        .run()
        .assert_code(2);
}

#[test]
fn the_summary_counts_each_connection() {
    let server = RedisServer::start();
    let input = crate::common::sets(3_000);

    let text = Pipeload::new()
        .port(server.port())
        .args(["--connections", "3"])
        .stdin(input.as_str())
        .run();
    text.assert_summary(0, 3_000);
    let line = text
        .connections_line()
        .unwrap_or_else(|| text.fail("no `connections: …` line"));
    let each: Vec<u64> = line
        .strip_prefix("connections: 3, replies each: ")
        .unwrap_or_else(|| text.fail("the line starts `connections: 3, replies each: `"))
        .split(' ')
        .map(|count| count.parse().expect("a count"))
        .collect();
    text.check(
        each.len() == 3 && each.iter().sum::<u64>() == 3_000 && each.iter().all(|&n| n > 0),
        "three connections, each with some of the 3000 replies",
    );

    server.client().ok(&["FLUSHALL"]);
    let json = Pipeload::new()
        .port(server.port())
        .args(["--connections", "3", "--json"])
        .stdin(input.as_str())
        .run();
    json.assert_code(0);
    let summary: serde_json::Value =
        serde_json::from_str(json.stdout_text().trim()).expect("one JSON object");
    assert_eq!(summary["completed"], true);
    assert_eq!(summary["replies"], 3_000);
    assert_eq!(summary["nodes"], serde_json::json!([]));
    let connections = summary["connections"]
        .as_array()
        .expect("a connections array");
    assert_eq!(connections.len(), 3);
    let replies: u64 = connections
        .iter()
        .map(|connection| connection["replies"].as_u64().expect("replies"))
        .sum();
    assert_eq!(replies, 3_000);
    assert!(
        connections
            .iter()
            .all(|connection| connection["errors"] == 0)
    );
}

#[test]
fn a_cluster_is_loaded_over_several_connections_per_primary() {
    load_a_cluster_over_two_connections_per_primary(&TestCluster::start());
}

#[test]
fn a_valkey_cluster_is_loaded_over_several_connections_per_primary() {
    load_a_cluster_over_two_connections_per_primary(&TestCluster::start_valkey());
}

/// Writes, a FLUSHALL, more writes and transactions on hashtagged keys,
/// with `-c --connections 2`: every key on its owner as one connection per
/// primary leaves it, the FLUSHALL after every write before it.
fn load_a_cluster_over_two_connections_per_primary(cluster: &TestCluster) {
    let mut input = crate::common::sets(2_000);
    input.push_str("FLUSHALL\n");
    input.push_str(&crate::common::sets(3_000));
    for i in 0..500 {
        input.push_str(&format!(
            "INCR n:{i}\nMULTI\nINCR {{t{i}}}a\nRPUSH {{t{i}}}b x\nEXEC\nINCR n:{i}\n"
        ));
    }

    let outcome = Pipeload::new()
        .args(["-c", "--connections", "2", "--json"])
        .port(cluster.port(0))
        .guard(Duration::from_secs(120))
        .stdin(input)
        .run();

    outcome.assert_code(0);
    let summary: serde_json::Value =
        serde_json::from_str(outcome.stdout_text().trim()).expect("one JSON object");
    assert_eq!(summary["completed"], true, "{outcome}");
    let nodes = summary["nodes"].as_array().expect("a nodes array");
    assert_eq!(
        nodes.len(),
        cluster.len(),
        "one entry per primary: {nodes:?}"
    );
    // The FLUSHALL ran after every SET before it, on every primary.
    assert_eq!(cluster.total_keys(), 3_000 + 500 * 3);
    for i in (0..3_000).step_by(7) {
        let key = format!("key:{i}");
        assert_eq!(
            cluster.get(&key),
            Some(format!("value:{i}").into_bytes()),
            "{key}"
        );
    }
    for i in (0..500).step_by(11) {
        assert_eq!(cluster.get(format!("n:{i}")), Some(b"2".to_vec()), "n:{i}");
        assert_eq!(
            cluster.get(format!("{{t{i}}}a")),
            Some(b"1".to_vec()),
            "{{t{i}}}a"
        );
    }
}

/// A stop while one connection is held up by a blocked command: the other
/// connections may have run commands past the resume point, and the
/// summary says how many; a resume then runs exactly those twice.
#[test]
fn a_stop_with_one_connection_behind_counts_what_ran_after_the_resume_point() {
    let server = RedisServer::start();
    let count = 100_000;
    let dir = TempDir::new("connections-behind");
    let input = dir.write(
        "input.txt",
        format!("BLPOP never:pushed 5\n{}", increments(count)),
    );
    let mut client = server.client();
    let running = Pipeload::new()
        .port(server.port())
        .args(["--connections", "4"])
        .arg(&input)
        .spawn();
    // The blocked connection's commands wait behind BLPOP; the others run.
    wait_until(
        Duration::from_secs(30),
        "the other connections ran ahead",
        || client.cmd(&["DBSIZE"]).as_int() >= 1_000,
    );
    running.signal("TERM");
    let stopped = running.finish();
    let acknowledged = stopped.assert_stopped(143);
    // Most often the blocked connection still holds batches it never
    // sent, so the others ran past the resume point; when it had sent all
    // it was given, nothing ran past it and the line is left out.
    let answered_after = stopped
        .stdout_lines()
        .iter()
        .find_map(|line| {
            let rest = line.strip_prefix("answered after it: ")?;
            rest.split(' ').next()?.parse::<usize>().ok()
        })
        .unwrap_or(0);

    let resumed = Pipeload::new()
        .port(server.port())
        .args(["--connections", "4", "--skip", &acknowledged.to_string()])
        .arg(&input)
        .guard(Duration::from_secs(120))
        .run();
    resumed.assert_code(0);
    let keys: Vec<String> = (0..count).map(|i| format!("counter:{i}")).collect();
    let mut command = vec!["MGET".to_owned()];
    command.extend(keys);
    let values = client.cmd(&command).into_array();
    let ran: Vec<Option<Vec<u8>>> = values.into_iter().map(Value::into_bulk).collect();
    let twice = ran
        .iter()
        .filter(|value| value.as_deref() == Some(b"2"))
        .count();
    let once = ran
        .iter()
        .filter(|value| value.as_deref() == Some(b"1"))
        .count();
    assert_eq!(
        once + twice,
        count,
        "every counter ran once or twice\n{stopped}"
    );
    assert_eq!(
        twice, answered_after,
        "the summary named what ran twice\n{stopped}"
    );
}
