//! A cluster load: input → router → one writer and one reply reader per
//! primary, each with its own window, all loading in parallel.
//!
//! Place in the data flow: `run` calls `load_cluster` instead of the
//! single-server load when `-c` finds a cluster. A node lost mid-load stops
//! the whole load (the other nodes finish what is in flight); the summary
//! adds up every node and, when the load stopped early, names the first
//! input command not known to be applied, over all nodes: every command
//! before it was answered.

use std::process::ExitCode;
use std::sync::atomic::AtomicUsize;
use std::thread;

use anyhow::{Context, Result};
use crossbeam_channel::{bounded, unbounded};

use super::ClusterLinks;
use super::keys::KeyPositions;
use super::router::Router;
use super::topology::Topology;
use crate::batch::{Batch, InFlight};
use crate::cli::{Config, Endpoint};
use crate::conn::{self, Stream, describe_io_error};
use crate::input::OpenSource;
use crate::replies::{ErrorsFile, Replies, ReplyContext, ReplyFailure};
use crate::stop::StopReason;
use crate::summary::{NodeCounts, Outcome, Tally, report};
use crate::window::Window;
use crate::writer::{Writer, WriterEnd};
use crate::{BATCH_CHANNEL_CAPACITY, LoadStart, exit_status, start_load};

/// Loads the input into every primary of `topology`; `seed` is the
/// connection the topology was read through.
pub fn load_cluster(
    mut seed: Stream,
    topology: Topology,
    sources: Vec<OpenSource>,
    errors_file: Option<ErrorsFile>,
    config: &Config,
) -> Result<ExitCode> {
    let keys = KeyPositions::fetch(&mut seed).context("cannot read the server's command table")?;
    let node_count = topology.primaries.len();
    let mut streams = Vec::with_capacity(node_count);
    for node in &topology.primaries {
        let mut node_config = config.clone();
        node_config.endpoint = Endpoint::Tcp {
            host: node.host.clone(),
            port: node.port,
        };
        streams.push(conn::connect(&node_config, None)?);
    }
    let LoadStart {
        started,
        stop,
        source_names: names,
        error_log,
        counters,
        batches: input_receiver,
        mut input,
    } = start_load(sources, errors_file.is_some(), false, config)?;

    let (node_senders, node_receivers): (Vec<_>, Vec<_>) = (0..node_count)
        .map(|_| bounded::<Batch>(BATCH_CHANNEL_CAPACITY))
        .unzip();
    let (redirect_senders, redirect_receivers): (Vec<_>, Vec<_>) =
        (0..node_count).map(|_| unbounded::<Batch>()).unzip();
    let outstanding = AtomicUsize::new(0);

    let links = ClusterLinks::new(&topology, &redirect_senders, &outstanding);
    let windows: Vec<Window> = (0..node_count)
        .map(|_| Window::new(config.window))
        .collect();
    let (in_flight_senders, in_flight_receivers): (Vec<_>, Vec<_>) =
        (0..node_count).map(|_| unbounded::<InFlight>()).unzip();

    let router = Router {
        keys,
        topology: &topology,
        control: seed,
        nodes: node_senders,
        outstanding: &outstanding,
    };
    let mut node_ends = Vec::with_capacity(node_count);
    let last_routed = thread::scope(|scope| -> Result<u64> {
        let router = scope.spawn(|| router.run(&input_receiver, &stop));
        let mut nodes = Vec::with_capacity(node_count);
        for (node, (stream, in_flight)) in streams.into_iter().zip(in_flight_senders).enumerate() {
            let writer_stream = stream.try_clone().context("cannot set up the connection")?;
            let writer = Writer {
                stream: writer_stream,
                batches: &node_receivers[node],
                redirects: Some((&redirect_receivers[node], &outstanding)),
                in_flight,
                window: &windows[node],
                stop: &stop,
                progress: counters.as_deref(),
            };
            let replies = Replies::new(ReplyContext {
                source_names: &names,
                stop: &stop,
                error_log: &error_log,
                progress: counters.as_deref(),
                max_errors: config.max_errors,
                resend_transient: false,
                errors_file: errors_file.clone(),
            })
            .in_cluster(&links, node);
            let (stop, window, incoming) = (&stop, &windows[node], &in_flight_receivers[node]);
            let writer = scope.spawn(move || writer.run(Vec::new()));
            let reader = scope.spawn(move || {
                let mut replies = replies;
                let end = replies.run_session(stream, incoming, window, config.pipe_timeout);
                if end.failure.is_some() {
                    // One node down: the others finish what is in flight.
                    stop.request(StopReason::NodeLost);
                }
                (replies.tally, end)
            });
            nodes.push((writer, reader));
        }
        let last_routed = router.join().unwrap_or(0);
        for (writer, reader) in nodes {
            let written = writer.join();
            let read = reader.join();
            let (Ok(written), Ok(read)) = (written, read) else {
                anyhow::bail!("internal error: a connection thread panicked");
            };
            node_ends.push((written, read));
        }
        Ok(last_routed)
    })?;

    let mut tally = Tally::default();
    let mut nodes = Vec::with_capacity(node_count);
    let (mut bytes_sent, mut commands_sent) = (0, 0);
    let mut all_written = true;
    input.finish_display();
    let mut failed = false;
    let mut failures = Vec::new();
    // The first input command not known to be applied, over every node.
    let mut first_unsettled = u64::MAX;
    let mut note_unsettled = |batch: &Batch, first: usize| {
        for index in first..batch.commands.len() {
            first_unsettled = first_unsettled.min(batch.seq(index));
        }
    };
    for (node, (written, (node_tally, end))) in node_ends.into_iter().enumerate() {
        tally.add(&node_tally);
        bytes_sent += written.bytes_sent;
        commands_sent += written.commands_sent;
        let address = topology.primaries[node].to_text();
        nodes.push(NodeCounts {
            address: address.clone(),
            replies: node_tally.replies,
            errors: node_tally.errors(),
        });
        let failure = match &written.end {
            WriterEnd::Failed(error) => {
                Some(format!("connection lost: {}", describe_io_error(error)))
            }
            _ => end
                .failure
                .as_ref()
                .filter(|failure| !matches!(failure, ReplyFailure::Stopped))
                .map(ToString::to_string),
        };
        if let Some(failure) = failure {
            failed = true;
            tally.fatal += 1;
            let failure = format!("{address}: {failure}");
            report(&format!("pipeload: {failure}"));
            failures.push(failure);
        }
        all_written &= matches!(written.end, WriterEnd::InputEnded);
        for unsettled in end.unacknowledged.iter().chain(&written.unsent) {
            note_unsettled(&unsettled.batch, unsettled.first);
        }
        for unsettled in in_flight_receivers[node].try_iter() {
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
        input.writer_finished(&WriterEnd::InputEnded);
    }
    input.collect_if_finished();
    if let Some(message) = input.report_failure() {
        tally.fatal += 1;
        failures.push(message);
    }
    error_log.report_hidden();
    let stopped = stop.reason();
    let stopped_early = failed || stopped.is_some() || !input.is_complete();
    let acknowledged = first_unsettled
        .saturating_sub(1)
        .min(last_routed)
        .max(config.skip);
    let outcome = Outcome {
        tally,
        last_reply_received: !failed,
        reconnects: None,
        resume_at: stopped_early.then_some(acknowledged),
        commands_sent,
        bytes_sent,
        elapsed_seconds: started.elapsed().as_secs_f64(),
        first_errors: error_log.first(),
        failures,
        nodes,
    };
    outcome.print(config.json);
    Ok(exit_status(stopped, &tally, stopped_early))
}
