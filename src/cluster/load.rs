//! A cluster load: the engine with one lane per primary and the slot router
//! as its route, all primaries loading in parallel.
//!
//! Place in the data flow: `run` calls `load_cluster` instead of the
//! single-server load when `-c` finds a cluster. It reads the command table
//! (where each command's keys are), connects every primary (waiting for one
//! still starting under `--retry`), sets up what the lanes share (redirect
//! channels, the count of commands not yet settled, per-slot order) and
//! hands them to `engine::run_lanes`, which runs them like the single
//! server's one lane and sums them into the one summary. A node found
//! mid-load (`ClusterLinks`) gets a lane made here too, which connects on
//! its own thread.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use crossbeam_channel::bounded;

use super::ClusterLinks;
use super::keys::KeyPositions;
use super::outstanding::Outstanding;
use super::router::Router;
use super::slot::SlotOrder;
use super::spread::SpreadRouter;
use super::topology::{NodeAddress, Topology};
use crate::config::{Config, Endpoint};
use crate::conn::Connection;
use crate::engine::{BATCH_CHANNEL_CAPACITY, JoiningLanes, Lane, run_lanes, start_load};
use crate::handlers::errors::ErrorsFile;
use crate::handover::LaneNode;
use crate::input::OpenSource;
use crate::replies::ReplyContext;
use crate::retry;
use crate::route::{NewLane, Route};
use crate::stop::Stop;
use crate::stream::Stream;
use crate::summary::report;
use crate::tls::TlsConfig;

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
    // A primary's connections share its window (`--connections`).
    let node_config = |host: &str, port: u16| Config {
        endpoint: Endpoint::Tcp {
            host: host.to_owned(),
            port,
        },
        window: config.window.shared_by(config.connections),
        ..config.clone()
    };
    // With `--retry`, a primary still starting is waited for, as the seed
    // node was.
    // `--connections N`: N per primary, in lane order.
    let mut connections = Vec::new();
    for node in topology.nodes().iter() {
        for _ in 0..config.connections.max(1) {
            connections.push(retry::connect_first(
                &node_config(&node.host, node.port),
                tls,
                &stop,
                None,
            )?);
        }
    }
    let mut load = start_load(
        sources,
        errors_file.is_some(),
        connections.len(),
        stop,
        tls,
        config,
    )?;
    let (shared, input_receiver, input) = load.parts(tls, config);
    let (stop, replies_out) = (shared.stop, shared.replies_out);

    let outstanding = Outstanding::default();
    let order = SlotOrder::default();
    let (links, lane_requests) = ClusterLinks::new(
        &topology,
        &outstanding,
        &order,
        config,
        tls,
        BATCH_CHANNEL_CAPACITY,
    );
    let router =
        Router::new(keys, &topology, seed, &links, &outstanding, &order).holding_for(replies_out);
    let make_lane = |request: NewLane, connection: Option<Connection>| {
        let address = NodeAddress {
            host: request.host,
            port: request.port,
        };
        let replies = ReplyContext {
            cluster: Some((&links, request.node)),
            ..shared.replies(request.lane, errors_file.clone())
        };
        let config = node_config(&address.host, address.port);
        Lane {
            redirects: Some(request.redirects),
            all_settled: Some(outstanding.all_settled()),
            router_done: Some(outstanding.router_done()),
            node: Some(address.to_text()),
            lane_node: Some(LaneNode {
                index: request.node,
                loss: &links,
            }),
            ..shared.lane(connection, request.batches, config, replies)
        }
    };
    // The nodes read at the start, connected above, in lane order.
    let lanes = lane_requests
        .try_iter()
        .zip(connections)
        .map(|(request, connection)| make_lane(request, Some(connection)))
        .collect();
    // Nodes found mid-load connect on their lane's own thread.
    let joining = JoiningLanes {
        requests: &lane_requests,
        make: &|request| make_lane(request, None),
    };
    let route = Route::Router(Box::new(|| router.run(input_receiver, stop)));
    let mut end = run_lanes(lanes, route, Some(joining), input, config)?;
    // A redirect not followed left its command unapplied.
    if let Some(unfollowed) = links.first_unfollowed() {
        end.acknowledged = end.acknowledged.min(unfollowed.saturating_sub(1));
        end.nothing_left = false;
    }
    end.cluster = Some(links.events());
    Ok(load.finish(end, config))
}

/// Loads the input into one server over `config.connections` connections;
/// `first` is the one `run` connected.
pub fn load_spread(
    first: Connection,
    sources: Vec<OpenSource>,
    errors_file: Option<ErrorsFile>,
    stop: Arc<Stop>,
    tls: Option<&TlsConfig>,
    config: &Config,
) -> Result<ExitCode> {
    // The router's own connection, for the command table and `COMMAND
    // GETKEYS`.
    let mut control = retry::connect_first(config, tls, &stop, None)?;
    let keys = match KeyPositions::fetch(&mut control.stream) {
        Ok(keys) => keys,
        Err(error) => {
            report(&format!(
                "pipeload: warning: cannot read the server's command table ({error:#}): every command waits for the others"
            ));
            KeyPositions::default()
        }
    };
    let mut connections = vec![first];
    while connections.len() < config.connections {
        connections.push(retry::connect_first(config, tls, &stop, None)?);
    }
    let mut load = start_load(
        sources,
        errors_file.is_some(),
        connections.len(),
        stop,
        tls,
        config,
    )?;
    let (shared, input_receiver, input) = load.parts(tls, config);
    let stop = shared.stop;
    let outstanding = Outstanding::default();
    let (senders, receivers): (Vec<_>, Vec<_>) = connections
        .iter()
        .map(|_| bounded(BATCH_CHANNEL_CAPACITY))
        .unzip();
    let router = SpreadRouter::new(
        keys,
        control.stream,
        senders,
        &outstanding,
        shared.replies_out,
    );
    let lane_config = Config {
        window: config.window.shared_by(connections.len()),
        ..config.clone()
    };
    let lanes = connections
        .into_iter()
        .zip(receivers)
        .enumerate()
        .map(|(lane, (connection, batches))| {
            let replies = ReplyContext {
                spread: Some(&outstanding),
                ..shared.replies(lane, errors_file.clone())
            };
            Lane {
                router_done: Some(outstanding.router_done()),
                ..shared.lane(Some(connection), batches, lane_config.clone(), replies)
            }
        })
        .collect();
    let route = Route::Router(Box::new(|| router.run(input_receiver, stop)));
    let end = run_lanes(lanes, route, None, input, config)?;
    Ok(load.finish(end, config))
}
