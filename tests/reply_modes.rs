//! Inputs that change how many replies come back or what they look like:
//! `CLIENT REPLY OFF|SKIP|ON`, transactions' nested replies, RESP3 (`-3`,
//! `HELLO 3` mid-stream) and RESP3 push frames, which are not replies.

use std::time::Duration;

use crate::common::{Pipeload, RedisServer, TempDir, resp_command};

#[test]
fn client_reply_off_skip_on_counts_only_what_the_server_sends() {
    let server = RedisServer::start();
    let input = "SET k1 v1\n\
        CLIENT REPLY OFF\n\
        SET k2 v2\n\
        SET k3 v3\n\
        CLIENT REPLY ON\n\
        SET k4 v4\n\
        CLIENT REPLY SKIP\n\
        SET k5 v5\n\
        SET k6 v6\n\
        client reply off\n\
        SET k7 v7\n\
        Client Reply On\n\
        SET k8 v8\n";

    let outcome = Pipeload::new().port(server.port()).stdin(input).run();

    // Replies: SET k1, CLIENT REPLY ON, SET k4, SET k6, Client Reply On,
    // SET k8.
    outcome.assert_summary(0, 6);
    let mut client = server.client();
    assert_eq!(client.dbsize(), 8);
    for n in 1..=8 {
        assert_eq!(
            client.get(format!("k{n}")),
            Some(format!("v{n}").into_bytes())
        );
    }
}

#[test]
fn errors_the_server_does_not_send_are_not_counted() {
    let server = RedisServer::start();
    let input = "SET str x\n\
        CLIENT REPLY OFF\n\
        NOSUCHCMD\n\
        INCR str\n\
        CLIENT REPLY ON\n\
        CLIENT REPLY SKIP\n\
        INCR str\n\
        SET done 1\n";

    let outcome = Pipeload::new().port(server.port()).stdin(input).run();

    // Replies: SET str, CLIENT REPLY ON, SET done; both errors suppressed.
    outcome.assert_summary(0, 3);
    assert_eq!(server.client().get("done"), Some(b"1".to_vec()));
}

#[test]
fn input_ending_while_replies_are_off_still_loads_everything() {
    let server = RedisServer::start();
    let mut input = String::from("SET a 1\nCLIENT REPLY OFF\n");
    for i in 0..10_000 {
        input.push_str(&format!("SET off:{i} {i}\n"));
    }

    let outcome = Pipeload::new().port(server.port()).stdin(input).run();

    outcome.assert_summary(0, 1);
    let mut client = server.client();
    assert_eq!(client.dbsize(), 10_001);
    assert_eq!(client.get("off:9999"), Some(b"9999".to_vec()));
}

/// Commands sent with replies off stay in the window until a reply proves
/// they ran: a stretch longer than any window (150,000 SETs, 6 MB) is
/// confirmed along the way, over one connection (a window of 100,000
/// commands and 4 MiB) and over 16 (10,000 and 512 KiB each); the
/// confirmations add no reply, no line to `--replies`.
#[test]
fn a_stretch_with_replies_off_longer_than_the_window_loads_in_full() {
    let server = RedisServer::start();
    let count = 150_000;
    let mut input = String::from("SET a 1\nCLIENT REPLY OFF\n");
    for i in 0..count {
        input.push_str(&format!("SET off:{i} {i:0>30}\n"));
    }
    input.push_str("CLIENT REPLY ON\nGET a\n");
    let dir = TempDir::new("replies-off");
    for connections in ["1", "16"] {
        server.client().ok(&["FLUSHALL"]);
        let replies = dir.path().join(format!("replies-{connections}.txt"));
        let outcome = Pipeload::new()
            .port(server.port())
            .args(["--connections", connections, "--replies"])
            .arg(replies.to_str().unwrap())
            .guard(Duration::from_secs(60))
            .stdin(input.clone())
            .run();
        outcome.assert_summary(0, 3);
        let mut client = server.client();
        assert_eq!(client.dbsize(), count + 1, "--connections {connections}");
        assert_eq!(
            client.get(format!("off:{}", count - 1)),
            Some(format!("{:0>30}", count - 1).into_bytes())
        );
        assert_eq!(
            std::fs::read_to_string(&replies).unwrap(),
            "OK\nOK\n1\n",
            "--connections {connections}"
        );
    }
}

#[test]
fn input_ending_with_client_reply_skip_does_not_hang() {
    let server = RedisServer::start();
    let input = "SET a 1\nCLIENT REPLY SKIP\nSET b 2\nCLIENT REPLY SKIP\n";

    let outcome = Pipeload::new().port(server.port()).stdin(input).run();

    outcome.assert_summary(0, 1);
    let mut client = server.client();
    assert_eq!(client.get("a"), Some(b"1".to_vec()));
    assert_eq!(client.get("b"), Some(b"2".to_vec()));
}

#[test]
fn client_reply_as_resp_is_recognised() {
    let server = RedisServer::start();
    let mut input = resp_command(&["SET", "a", "1"]);
    input.extend_from_slice(&resp_command(&["client", "reply", "off"]));
    input.extend_from_slice(&resp_command(&["SET", "b", "2"]));
    input.extend_from_slice(&resp_command(&["CLIENT", "REPLY", "ON"]));
    input.extend_from_slice(&resp_command(&["CLIENT", "REPLY", "SKIP"]));
    input.extend_from_slice(&resp_command(&["SET", "c", "3"]));
    input.extend_from_slice(&resp_command(&["SET", "d", "4"]));

    let outcome = Pipeload::new().port(server.port()).stdin(input).run();

    // Replies: SET a, CLIENT REPLY ON, SET d.
    outcome.assert_summary(0, 3);
    assert_eq!(server.client().dbsize(), 4);
}

#[test]
fn resp3_session_counts_maps_sets_doubles_and_nulls_as_one_reply_each() {
    let server = RedisServer::start();
    let input = "HSET h a 1 b 2\n\
        HGETALL h\n\
        CONFIG GET maxmemory\n\
        SADD s x y\n\
        SMEMBERS s\n\
        ZADD z 1.5 m\n\
        ZSCORE z m\n\
        GET missing\n\
        HELLO 3\n\
        NOSUCHCMD\n\
        SET done 1\n";

    let outcome = Pipeload::new()
        .port(server.port())
        .arg("-3")
        .stdin(input)
        .run();

    outcome
        .assert_summary(1, 11)
        .assert_stderr_line_starts("line 10: ERR unknown command 'NOSUCHCMD'");
    let mut client = server.client();
    assert_eq!(client.get("done"), Some(b"1".to_vec()));
    assert_eq!(client.hgetall("h").len(), 2);
}

#[test]
fn hello_3_mid_stream_switches_a_resp2_session() {
    let server = RedisServer::start();
    let input = "SET a 1\n\
        HSET h f v\n\
        HELLO 3\n\
        HGETALL h\n\
        CONFIG GET maxmemory\n\
        ZADD z 2.5 m\n\
        ZSCORE z m\n\
        GET missing\n\
        INCR a\n\
        HELLO 2\n\
        HGETALL h\n\
        SET b 2\n";

    let outcome = Pipeload::new().port(server.port()).stdin(input).run();

    outcome.assert_summary(0, 12);
    let mut client = server.client();
    assert_eq!(client.get("a"), Some(b"2".to_vec()));
    assert_eq!(client.get("b"), Some(b"2".to_vec()));
}

#[test]
fn resp3_push_frames_are_not_counted_as_replies() {
    // With tracking on, changing a key this connection read makes the
    // server push an `invalidate` frame on the same connection.
    let server = RedisServer::start();
    let input = "CLIENT TRACKING on\n\
        SET t 1\n\
        GET t\n\
        SET t 2\n\
        GET t\n\
        SET t 3\n\
        SET after 1\n";

    let outcome = Pipeload::new()
        .port(server.port())
        .arg("-3")
        .stdin(input)
        .run();

    outcome.assert_summary(0, 7);
    let mut client = server.client();
    assert_eq!(client.get("t"), Some(b"3".to_vec()));
    assert_eq!(client.get("after"), Some(b"1".to_vec()));
}
