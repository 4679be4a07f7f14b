//! `--rate` and `--max-latency`: the budget holds in total, over one
//! connection and over a cluster's nodes (one budget shared by all), without
//! bursts; every command still lands; a stop cuts a paced wait short; bad
//! values are usage errors. Totals only: the latency goal itself is shown by
//! the benchmark (`pipeload-bench --pace`), not asserted here.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{Client, Pipeload, RedisServer, TestCluster, client, sets, wait_until};

/// The servers' processed-command count, read between two instants.
#[derive(Clone, Copy)]
struct Sample {
    before: Instant,
    after: Instant,
    processed: u64,
}

fn processed(clients: &mut [Client]) -> u64 {
    clients
        .iter_mut()
        .map(|client| {
            client::info_field(&client.info("stats"), "total_commands_processed")
                .and_then(|count| count.parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// Samples the servers on `ports` every 50 ms while `run` runs.
fn sampled<T>(ports: &[u16], run: impl FnOnce() -> T) -> (T, Vec<Sample>) {
    let done = Arc::new(AtomicBool::new(false));
    let mut clients: Vec<Client> = ports.iter().map(|&port| Client::connect(port)).collect();
    let sampler = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut samples = Vec::new();
            while !done.load(Ordering::Relaxed) {
                let before = Instant::now();
                let processed = processed(&mut clients);
                samples.push(Sample {
                    before,
                    after: Instant::now(),
                    processed,
                });
                thread::sleep(Duration::from_millis(50));
            }
            samples
        })
    };
    let result = run();
    done.store(true, Ordering::Relaxed);
    (result, sampler.join().expect("the sampler thread"))
}

/// The most commands processed between two samples, beyond what `rate`
/// allows in the longest time that can have passed between them (plus
/// `slack` commands): positive means a burst.
fn worst_excess(samples: &[Sample], rate: f64, slack: f64) -> f64 {
    let mut worst = f64::MIN;
    for (index, first) in samples.iter().enumerate() {
        for last in &samples[index + 1..] {
            let longest = last.after.duration_since(first.before).as_secs_f64();
            if longest < 0.3 {
                continue;
            }
            let counted = last.processed.saturating_sub(first.processed) as f64;
            worst = worst.max(counted - (rate * 1.1 * longest + slack));
        }
    }
    worst
}

#[test]
fn rate_spreads_a_load_evenly_and_loads_every_command() {
    let server = RedisServer::start();
    let started = Instant::now();
    let (outcome, samples) = sampled(&[server.port()], || {
        Pipeload::new()
            .port(server.port())
            .args(["--rate", "2000"])
            .stdin(sets(3000))
            .run()
    });
    let wall = started.elapsed();
    outcome.assert_complete_summary(0, 3000);
    assert_eq!(server.client().dbsize(), 3000);
    // 3000 commands at 2000/s cannot take less than 1.5 s, however fast
    // the machine (nor, first at once, the rest at the rate: 1 s).
    outcome.check(
        wall >= Duration::from_millis(1400),
        format!("3000 commands at --rate 2000 took only {wall:?}"),
    );
    // No window of the load saw more than 1.1 × the rate (plus a slice
    // and the sampler's own INFOs).
    let excess = worst_excess(&samples, 2000.0, 50.0);
    outcome.check(
        excess <= 0.0,
        format!("a burst: {excess:.0} commands beyond 1.1 × --rate 2000"),
    );
}

#[test]
fn rate_is_one_budget_for_every_node_of_a_cluster() {
    let cluster = TestCluster::start();
    let ports: Vec<u16> = (0..cluster.len()).map(|node| cluster.port(node)).collect();
    let started = Instant::now();
    let (outcome, samples) = sampled(&ports, || {
        Pipeload::new()
            .args(["-c", "--rate", "1500"])
            .port(ports[0])
            .stdin(sets(3000))
            .run()
    });
    let wall = started.elapsed();
    outcome.assert_complete_summary(0, 3000);
    let keys: i64 = (0..cluster.len())
        .map(|node| cluster.client(node).dbsize())
        .sum();
    assert_eq!(keys, 3000);
    // A budget per node would take a third of the time.
    outcome.check(
        wall >= Duration::from_millis(1800),
        format!("3000 commands at --rate 1500 over 3 nodes took only {wall:?}"),
    );
    let excess = worst_excess(&samples, 1500.0, 60.0);
    outcome.check(
        excess <= 0.0,
        format!("a burst: {excess:.0} commands beyond 1.1 × --rate 1500"),
    );
}

#[test]
fn max_latency_loads_everything_and_reports_the_rate_it_settled_at() {
    let server = RedisServer::start();
    let outcome = Pipeload::new()
        .port(server.port())
        .args(["--max-latency", "50", "--json"])
        .stdin(sets(5000))
        .run();
    outcome.assert_code(0);
    assert_eq!(server.client().dbsize(), 5000);
    let json = outcome.stdout_text();
    let paced_rate = json
        .split_once("\"paced_rate\":")
        .and_then(|(_, rest)| rest.split(',').next())
        .and_then(|rate| rate.parse::<u64>().ok());
    outcome.check(
        paced_rate.is_some_and(|rate| rate > 0),
        "--json reports the rate --max-latency settled at",
    );
}

#[test]
fn max_latency_probes_on_a_connection_of_its_own() {
    let server = RedisServer::start();
    let mut running = Pipeload::new()
        .port(server.port())
        .args(["--max-latency", "50", "--rate", "200"])
        .spawn();
    running
        .write_stdin(sets(20).as_bytes())
        .expect("write to pipeload's stdin");
    let mut client = server.client();
    // The probe's PINGs, on a connection that is not the load's.
    wait_until(Duration::from_secs(30), "a client has sent PINGs", || {
        let list = client.cmd(&["CLIENT", "LIST"]).into_text();
        list.lines().any(|line| line.contains("cmd=ping"))
    });
    running.close_stdin();
    let outcome = running.finish();
    outcome.assert_complete_summary(0, 20);
    assert_eq!(server.client().dbsize(), 20);
}

#[test]
fn without_rate_flags_json_reports_no_paced_rate() {
    let server = RedisServer::start();
    let outcome = Pipeload::new()
        .port(server.port())
        .arg("--json")
        .stdin(sets(10))
        .run();
    outcome.assert_code(0);
    outcome.check(
        outcome.stdout_text().contains("\"paced_rate\":null"),
        "no pace without --rate or --max-latency",
    );
}

#[test]
fn a_signal_cuts_a_paced_wait_short() {
    let server = RedisServer::start();
    // At 5 commands a second, 1000 commands would take over three minutes.
    let mut running = Pipeload::new()
        .port(server.port())
        .args(["--rate", "5"])
        .spawn();
    running
        .write_stdin(sets(1000).as_bytes())
        .expect("write to pipeload's stdin");
    let mut client = server.client();
    wait_until(Duration::from_secs(30), "the first commands landed", || {
        client.dbsize() >= 2
    });
    running.signal("INT");
    let status = running.wait_for_exit(Duration::from_secs(10));
    assert!(
        status.is_some(),
        "pipeload still waiting its turn after SIGINT"
    );
    let outcome = running.finish();
    let acknowledged = outcome.assert_stopped(130);
    let keys = server.client().dbsize() as u64;
    outcome.check(
        keys == acknowledged,
        format!("acknowledged {acknowledged}, but the server has {keys} keys"),
    );
}

#[test]
fn bad_pace_values_are_usage_errors() {
    for args in [
        ["--rate", "0"],
        ["--rate", "fast"],
        ["--max-latency", "0"],
        ["--max-latency", "-1"],
        ["--max-latency", "soon"],
    ] {
        let outcome = Pipeload::new().args(args).stdin("").run();
        outcome.assert_code(2);
    }
}
