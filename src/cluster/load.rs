//! A cluster load: the engine with one lane per primary and the slot router
//! as its route, all primaries loading in parallel.
//!
//! Place in the data flow: `run` calls `load_cluster` instead of the
//! single-server load when `-c` finds a cluster. It reads the command table
//! (where each command's keys are), connects every primary (waiting for one
//! still starting under `--retry`), sets up what the lanes share (redirect
//! channels, the count of commands not yet settled, per-slot order) and
//! hands them to `engine::run_lanes`, which runs them like the single
//! server's one lane and sums them into the one summary.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use crossbeam_channel::{bounded, unbounded};

use super::ClusterLinks;
use super::keys::KeyPositions;
use super::outstanding::Outstanding;
use super::router::Router;
use super::slot::SlotOrder;
use super::topology::Topology;
use crate::batch::Batch;
use crate::config::{Config, Endpoint};
use crate::connection::SessionShared;
use crate::engine::{BATCH_CHANNEL_CAPACITY, Lane, LoadStart, run_lanes, start_load};
use crate::handlers::errors::ErrorsFile;
use crate::input::OpenSource;
use crate::replies::{Replies, ReplyContext};
use crate::retry;
use crate::route::Route;
use crate::stop::Stop;
use crate::stream::Stream;
use crate::tls::TlsConfig;
use crate::writer::Redirects;

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
    let mut load = start_load(sources, errors_file.is_some(), stop, tls, config)?;
    let LoadStart {
        stop,
        source_names: names,
        error_log,
        counters,
        batches: input_receiver,
        input,
        pace,
        ..
    } = &mut load;
    let (stop, names, error_log, counters) = (&*stop, &*names, &*error_log, &*counters);

    let (node_senders, node_receivers): (Vec<_>, Vec<_>) = (0..node_count)
        .map(|_| bounded::<Batch>(BATCH_CHANNEL_CAPACITY))
        .unzip();
    let (redirect_senders, redirect_receivers): (Vec<_>, Vec<_>) =
        (0..node_count).map(|_| unbounded::<Batch>()).unzip();
    let outstanding = Outstanding::default();

    let order = SlotOrder::default();
    let links = ClusterLinks::new(&topology, &redirect_senders, &outstanding, &order);
    let router = Router::new(keys, &topology, seed, node_senders, &outstanding, &order);
    let lanes = connections
        .into_iter()
        .enumerate()
        .map(|(node, connection)| Lane {
            connection,
            shared: SessionShared {
                batches: &node_receivers[node],
                redirects: Some(Redirects {
                    batches: &redirect_receivers[node],
                    all_settled: outstanding.all_settled(),
                }),
                stop,
                config: &node_configs[node],
                tls,
                progress: counters.as_deref(),
                pace: pace.as_deref(),
                node: Some(&addresses[node]),
            },
            replies: Replies::new(ReplyContext {
                source_names: names,
                stop,
                error_log,
                progress: counters.as_deref(),
                max_errors: config.max_errors,
                resend_transient: config.retry > 0,
                errors_file: errors_file.clone(),
                cluster: Some((&links, node)),
            }),
        })
        .collect();
    let route = Route::Router(Box::new(|| router.run(input_receiver, stop)));
    let end = run_lanes(lanes, route, input, config)?;
    Ok(load.finish(end, config))
}
