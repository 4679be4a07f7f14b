//! pipeload's integration tests: one test binary, a module per topic, and
//! the shared harness in [`common`] compiled once (as ripgrep's
//! `tests/tests.rs`). Each topic runs the built binary against throwaway
//! servers; one topic alone: `cargo test --test tests stops::`.

mod common;

mod bad_input;
mod cli;
mod cluster;
mod cluster_failover;
mod connection;
mod connections;
mod errors;
mod fault_injection;
mod faults;
mod formats;
mod newcomer;
mod no_panic;
mod output;
mod pace;
mod quoting;
mod replies_out;
mod reply_modes;
mod resume;
mod stops;
mod templates;
mod tls;
mod valkey;
mod volume;
