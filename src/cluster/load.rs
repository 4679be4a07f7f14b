//! A cluster load: input → router → one writer and one reply reader per
//! primary, each with its own window, all loading in parallel.
//!
//! Place in the data flow: `run` calls `load_cluster` instead of the
//! single-server load when `-c` finds a cluster. Each primary's connection
//! runs like the single server's (`run_connection`: with `--retry` it is
//! reconnected and resends what it had not acknowledged). A node given up
//! on stops the whole load (the other nodes finish what is in flight); the
//! summary adds up every node and, when the load stopped early, names the
//! first input command not known to be applied, over all nodes: every
//! command before it was answered.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::thread;

use anyhow::{Context, Result};
use crossbeam_channel::{bounded, unbounded};

use super::ClusterLinks;
use super::keys::KeyPositions;
use super::router::{Routed, Router};
use super::slot::SlotOrder;
use super::topology::Topology;
use crate::batch::Batch;
use crate::config::{Config, Endpoint};
use crate::connection::{ConnectionRun, SessionShared, run_connection};
use crate::engine::{BATCH_CHANNEL_CAPACITY, ConnectionsEnd, LoadStart, start_load};
use crate::input::OpenSource;
use crate::replies::{ErrorsFile, Replies, ReplyContext};
use crate::retry;
use crate::stop::{Stop, StopReason};
use crate::stream::Stream;
use crate::summary::{NodeCounts, Tally, report};
use crate::tls::TlsConfig;
use crate::writer::WriterEnd;

/// Loads the input into every primary of `topology`; `seed` is the
/// connection the topology was read through.
pub fn load_cluster(
    mut seed: Stream,
    topology: Topology,
    sources: Vec<OpenSource>,
    errors_file: Option<ErrorsFile>,
    stop: Arc<Stop>,
    tls: Option<&TlsConfig>,
    config: &Config,
) -> Result<ExitCode> {
    let keys = KeyPositions::fetch(&mut seed).context("cannot read the server's command table")?;
    let node_count = topology.primaries.len();
    let node_configs: Vec<Config> = topology
        .primaries
        .iter()
        .map(|node| Config {
            endpoint: Endpoint::Tcp {
                host: node.host.clone(),
                port: node.port,
            },
            ..config.clone()
        })
        .collect();
    let addresses: Vec<String> = topology
        .primaries
        .iter()
        .map(|node| node.to_text())
        .collect();
    // With `--retry`, a primary still starting is waited for, as the seed
    // node was.
    let mut connections = Vec::with_capacity(node_count);
    for node_config in &node_configs {
        connections.push(retry::connect_first(node_config, tls, &stop)?);
    }
    let mut load = start_load(sources, errors_file.is_some(), false, stop, config)?;
    let LoadStart {
        stop,
        source_names: names,
        error_log,
        counters,
        batches: input_receiver,
        ..
    } = &load;

    let (node_senders, node_receivers): (Vec<_>, Vec<_>) = (0..node_count)
        .map(|_| bounded::<Batch>(BATCH_CHANNEL_CAPACITY))
        .unzip();
    let (redirect_senders, redirect_receivers): (Vec<_>, Vec<_>) =
        (0..node_count).map(|_| unbounded::<Batch>()).unzip();
    let outstanding = AtomicUsize::new(0);

    let order = SlotOrder::default();
    let links = ClusterLinks::new(&topology, &redirect_senders, &outstanding, &order);
    let router = Router::new(keys, &topology, seed, node_senders, &outstanding, &order);
    let (routed, runs) = thread::scope(|scope| -> Result<(Routed, Vec<(Tally, ConnectionRun)>)> {
        let router = scope.spawn(|| router.run(input_receiver, stop));
        let mut nodes = Vec::with_capacity(node_count);
        for (node, connection) in connections.into_iter().enumerate() {
            let shared = SessionShared {
                batches: &node_receivers[node],
                redirects: Some((&redirect_receivers[node], &outstanding)),
                stop,
                config: &node_configs[node],
                tls,
                progress: counters.as_deref(),
                node: Some(&addresses[node]),
            };
            let mut replies = Replies::new(ReplyContext {
                source_names: names,
                stop,
                error_log,
                progress: counters.as_deref(),
                max_errors: config.max_errors,
                resend_transient: config.retry > 0,
                errors_file: errors_file.clone(),
            })
            .in_cluster(&links, node);
            let stop = &stop;
            nodes.push(scope.spawn(move || {
                let run = run_connection(connection, &shared, &mut replies, None);
                if run.as_ref().map_or(true, |run| run.failure.is_some()) {
                    // One node given up: the others finish what is in flight.
                    stop.request(StopReason::NodeLost);
                }
                run.map(|run| (replies.tally, run))
            }));
        }
        let routed = router.join().unwrap_or_default();
        let mut runs = Vec::with_capacity(node_count);
        for node in nodes {
            let Ok(run) = node.join() else {
                anyhow::bail!("internal error: a connection thread panicked");
            };
            runs.push(run?);
        }
        Ok((routed, runs))
    })?;

    let mut tally = Tally::default();
    let mut nodes = Vec::with_capacity(node_count);
    let (mut bytes_sent, mut commands_sent, mut reconnects, mut in_flight) = (0, 0, 0, 0);
    let mut all_written = true;
    let mut server_restarted = false;
    let mut failures = Vec::new();
    // The first input command not known to be applied, over every node.
    let mut first_unsettled = u64::MAX;
    let mut note_unsettled = |batch: &Batch, first: usize| {
        for index in first..batch.commands.len() {
            first_unsettled = first_unsettled.min(batch.seq(index));
        }
    };
    for (node, (node_tally, run)) in runs.into_iter().enumerate() {
        tally.add(&node_tally);
        bytes_sent += run.bytes_sent;
        commands_sent += run.commands_sent;
        reconnects += run.reconnects;
        in_flight += run.in_flight;
        server_restarted |= run.server_restarted;
        let address = &addresses[node];
        nodes.push(NodeCounts {
            address: address.clone(),
            replies: node_tally.replies,
            errors: node_tally.errors(),
        });
        if let Some(failure) = run.failure {
            let failure = format!("{address}: {failure}");
            report(&format!("pipeload: {failure}"));
            failures.push(failure);
        }
        all_written &= run.all_written;
        for unsettled in &run.unsettled {
            note_unsettled(&unsettled.batch, unsettled.first);
        }
        for batch in node_receivers[node]
            .try_iter()
            .chain(redirect_receivers[node].try_iter())
        {
            note_unsettled(&batch, 0);
        }
    }
    if all_written {
        load.input.writer_finished(&WriterEnd::InputEnded);
    }
    let end = ConnectionsEnd {
        tally,
        failures,
        reconnects,
        commands_sent,
        bytes_sent,
        in_flight,
        acknowledged: first_unsettled
            .saturating_sub(1)
            .min(routed.delivered_up_to)
            .max(config.skip),
        nothing_left: routed.input_ended && first_unsettled == u64::MAX,
        nodes,
        server_restarted,
    };
    Ok(load.finish(end, config))
}
