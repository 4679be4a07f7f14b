//! Counters of a load and the report `redis-cli --pipe` prints at its end.
//!
//! Place in the data flow: the reply reader fills a `Tally` as replies come
//! back; `run` adds what only it knows (a stop's cause) and prints the
//! summary on stdout, which scripts parse: `errors: N, replies: M` (on
//! stderr when `--replies -` writes the replies on stdout).

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::reply_format::write_json_text;

/// Set once, before loading, when stdout carries the replies (`--replies -`).
static SUMMARY_ON_STDERR: AtomicBool = AtomicBool::new(false);

/// Sends the summary's lines to stderr: stdout carries the replies.
pub fn summary_to_stderr() {
    SUMMARY_ON_STDERR.store(true, Ordering::Relaxed);
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Every reply to a command of the input, error replies included.
    pub replies: u64,
    /// Replies that were errors.
    pub error_replies: u64,
    /// Errors nested in a reply that is not itself an error (EXEC elements).
    pub nested_errors: u64,
    /// Input lines refused before sending.
    pub rejected: u64,
    /// Commands of the input (rejected ones included) such that they and
    /// every command before them are settled: answered, sent without a
    /// reply due, or rejected.
    pub acknowledged: u64,
    /// Failures that stopped the load (lost connection, no replies, bad
    /// input framing): each counts as one error.
    pub fatal: u64,
}

impl Tally {
    /// Adds another connection's counts (cluster mode sums its nodes).
    pub fn add(&mut self, other: &Tally) {
        self.replies += other.replies;
        self.error_replies += other.error_replies;
        self.nested_errors += other.nested_errors;
        self.rejected += other.rejected;
        self.acknowledged += other.acknowledged;
        self.fatal += other.fatal;
    }

    /// The `errors` figure of the summary.
    pub fn errors(&self) -> u64 {
        self.failed_commands() + self.fatal
    }

    /// Input commands that failed: error replies, commands queued in a
    /// transaction whose `EXEC` element is an error, refused lines.
    pub fn failed_commands(&self) -> u64 {
        self.error_replies + self.nested_errors + self.rejected
    }
}

pub const ALL_DATA_TRANSFERRED: &str = "All data transferred. Waiting for the last reply...";
pub const LAST_REPLY_RECEIVED: &str = "Last reply received from server.";

/// Prints one line of the summary on stdout. A closed stdout (`| head`) is
/// not worth a panic or an error of its own.
pub fn print_line(line: &str) {
    if SUMMARY_ON_STDERR.load(Ordering::Relaxed) {
        report(line);
        return;
    }
    let mut stdout = io::stdout().lock();
    let _ = writeln!(stdout, "{line}");
    let _ = stdout.flush();
}

/// Prints `errors: N, replies: M`.
pub fn print_counts(tally: &Tally) {
    print_line(&format!(
        "errors: {}, replies: {}",
        tally.errors(),
        tally.replies
    ));
}

/// Prints one problem on stderr, ignoring a closed stderr.
pub fn report(line: &str) {
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}

/// Errors and replies of one primary of a cluster load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCounts {
    pub address: String,
    pub replies: u64,
    pub errors: u64,
}

/// The counts of one of the server's connections (`--connections N`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConnectionCounts {
    pub replies: u64,
    pub errors: u64,
    /// Commands written on it, resends included.
    pub commands_sent: u64,
    pub reconnects: u64,
}

/// The line of the text summary for `--connections N` (N > 1): what each
/// connection did, in connection order.
fn connections_line(connections: &[ConnectionCounts]) -> String {
    let each = |count: fn(&ConnectionCounts) -> u64| {
        connections
            .iter()
            .map(|connection| count(connection).to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut line = format!(
        "connections: {}, replies each: {}",
        connections.len(),
        each(|connection| connection.replies)
    );
    if connections.iter().any(|connection| connection.errors > 0) {
        line.push_str(&format!(
            ", errors each: {}",
            each(|connection| connection.errors)
        ));
    }
    line
}

/// What happened to a cluster's layout during a load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterEvents {
    /// `MOVED` and `ASK` replies whose command was sent to the node named.
    pub redirects_followed: u64,
    /// Times the whole layout was read again (a failover, a node added).
    pub layout_refreshes: u64,
    /// Primaries found mid-load, each given a connection.
    pub nodes_added: u64,
    /// Primaries whose connection was lost for good, their commands handed
    /// to the new owners of their slots.
    pub nodes_lost: u64,
}

impl ClusterEvents {
    /// The line of the text summary, when anything happened.
    fn line(&self) -> Option<String> {
        (*self != ClusterEvents::default()).then(|| {
            format!(
                "cluster: {} redirects followed, {} layout refreshes, {} nodes added, {} nodes lost",
                self.redirects_followed, self.layout_refreshes, self.nodes_added, self.nodes_lost
            )
        })
    }

    fn to_json(self) -> String {
        format!(
            "{{\"redirects_followed\":{},\"layout_refreshes\":{},\"nodes_added\":{},\"nodes_lost\":{}}}",
            self.redirects_followed, self.layout_refreshes, self.nodes_added, self.nodes_lost
        )
    }
}

/// Everything the end-of-load report says.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub tally: Tally,
    /// Every reply due was received (redis-cli's "Last reply received").
    pub last_reply_received: bool,
    /// `Some` with `--retry`.
    pub reconnects: Option<u64>,
    /// `Some(K)` when the load stopped early: `--skip K` resumes it.
    pub resume_at: Option<u64>,
    /// Commands sent and never answered (the load gave up on them or quit):
    /// they may have run, and a resume sends them again.
    pub in_flight: u64,
    /// Commands after the resume point that were answered all the same
    /// (another connection or node was ahead, or their reply was not
    /// written out): they ran, and a resume sends them again.
    pub answered_after_resume: u64,
    /// `--errors-file`, where the failed commands are to be loaded again.
    pub errors_file: Option<PathBuf>,
    /// Commands written to the server(s), resends included.
    pub commands_sent: u64,
    pub bytes_sent: u64,
    pub elapsed_seconds: f64,
    pub first_errors: Vec<ErrorRecord>,
    /// What stopped the load early (a lost connection, no replies, bad
    /// input framing), one per failure.
    pub failures: Vec<String>,
    /// Cluster mode: per primary.
    pub nodes: Vec<NodeCounts>,
    /// Cluster mode: what happened to the layout.
    pub cluster: Option<ClusterEvents>,
    /// `--connections N` with N > 1: per connection, in order.
    pub connections: Vec<ConnectionCounts>,
    /// Under `--retry`: a reconnect found a new server instance, so what
    /// the old one acknowledged may be gone.
    pub server_restarted: bool,
    /// Under `--rate` or `--max-latency`: the rate paced at (where
    /// `--max-latency` settled).
    pub paced_rate: Option<u64>,
}

impl Outcome {
    /// The outcome of a run that failed before loading or could not say
    /// where it got to: `resume_at` is `Some(skip)` when nothing was sent
    /// (every command from `--skip` on is still to be loaded).
    pub fn failed_early(resume_at: Option<u64>, failure: String) -> Self {
        Outcome {
            tally: Tally {
                fatal: 1,
                ..Tally::default()
            },
            resume_at,
            failures: vec![failure],
            ..Outcome::default()
        }
    }

    /// Prints the summary: redis-cli's lines (plus `reconnects`, and the
    /// resume hint after an early stop), or with `json` one JSON object.
    pub fn print(&self, json: bool) {
        if json {
            print_line(&self.to_json());
            return;
        }
        if self.last_reply_received {
            print_line(LAST_REPLY_RECEIVED);
        }
        print_counts(&self.tally);
        if let Some(reconnects) = self.reconnects {
            print_line(&format!("reconnects: {reconnects}"));
        }
        if let Some(line) = self.cluster.as_ref().and_then(ClusterEvents::line) {
            print_line(&line);
        }
        if !self.connections.is_empty() {
            print_line(&connections_line(&self.connections));
        }
        if let Some(acknowledged) = self.resume_at {
            self.print_resume_advice(acknowledged);
        }
    }

    /// After a load that stopped early: how much of the input is known to be
    /// applied, the flag that resumes after it, and what `--skip` leaves
    /// out: the commands in flight (sent again) and those that failed (not
    /// sent again).
    fn print_resume_advice(&self, acknowledged: u64) {
        print_line(&format!("acknowledged: {acknowledged}"));
        print_line(&format!("resume with: --skip {acknowledged}"));
        if self.in_flight > 0 {
            print_line(&format!(
                "in flight: {} (sent, never answered: they may have run, and the resume sends them again)",
                self.in_flight
            ));
        }
        if self.answered_after_resume > 0 {
            print_line(&format!(
                "answered after it: {} (they ran, and the resume sends them again)",
                self.answered_after_resume
            ));
        }
        let failed = self.tally.failed_commands();
        if failed == 0 {
            return;
        }
        match &self.errors_file {
            Some(path) => print_line(&format!(
                "failed: {failed} commands, not sent again by --skip: they are in {}, to load once the cause is fixed",
                path.display()
            )),
            None => print_line(&format!(
                "failed: {failed} commands, not sent again by --skip (the error lines say which; --errors-file FILE keeps them to load again)"
            )),
        }
    }

    /// The `--json` summary, one line.
    pub fn to_json(&self) -> String {
        let tally = &self.tally;
        let rate = match self.elapsed_seconds > 0.0 {
            true => tally.replies as f64 / self.elapsed_seconds,
            false => 0.0,
        };
        let first_errors: Vec<String> = self
            .first_errors
            .iter()
            .map(|error| {
                format!(
                    "{{\"position\":{},\"message\":{}}}",
                    json_string(&error.position),
                    json_string(&error.message)
                )
            })
            .collect();
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|node| {
                format!(
                    "{{\"address\":{},\"replies\":{},\"errors\":{}}}",
                    json_string(&node.address),
                    node.replies,
                    node.errors
                )
            })
            .collect();
        let connections: Vec<String> = self
            .connections
            .iter()
            .map(|connection| {
                format!(
                    "{{\"replies\":{},\"errors\":{},\"commands_sent\":{},\"reconnects\":{}}}",
                    connection.replies,
                    connection.errors,
                    connection.commands_sent,
                    connection.reconnects
                )
            })
            .collect();
        let failures: Vec<String> = self
            .failures
            .iter()
            .map(|failure| json_string(failure))
            .collect();
        let optional =
            |value: Option<u64>| value.map_or("null".to_owned(), |value| value.to_string());
        format!(
            "{{\"completed\":{},\"commands\":{},\"replies\":{},\"errors\":{},\"error_replies\":{},\
             \"rejected_lines\":{},\"acknowledged\":{},\"resume_skip\":{},\"in_flight\":{},\"answered_after_resume\":{},\"reconnects\":{},\
             \"server_restarted\":{},\"bytes_sent\":{},\"elapsed_seconds\":{:.3},\
             \"commands_per_second\":{:.0},\"paced_rate\":{},\"first_errors\":[{}],\"failures\":[{}],\"cluster\":{},\"nodes\":[{}],\"connections\":[{}]}}",
            self.resume_at.is_none() && self.last_reply_received,
            self.commands_sent,
            tally.replies,
            tally.errors(),
            tally.error_replies + tally.nested_errors,
            tally.rejected,
            self.resume_at.unwrap_or(tally.acknowledged),
            optional(self.resume_at),
            self.in_flight,
            self.answered_after_resume,
            self.reconnects.unwrap_or(0),
            self.server_restarted,
            self.bytes_sent,
            self.elapsed_seconds,
            rate,
            optional(self.paced_rate),
            first_errors.join(","),
            failures.join(","),
            self.cluster
                .map_or("null".to_owned(), ClusterEvents::to_json),
            nodes.join(","),
            connections.join(","),
        )
    }
}

/// `text` as a JSON string literal.
fn json_string(text: &str) -> String {
    let mut quoted = Vec::with_capacity(text.len() + 2);
    write_json_text(text, &mut quoted);
    // Escaping keeps UTF-8 as it is.
    String::from_utf8(quoted).unwrap_or_default()
}

/// How many errors `--json` lists with their positions.
pub const FIRST_ERRORS_KEPT: usize = 10;

/// One error as the JSON summary lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorRecord {
    /// `line 7`, `data.txt:7 (command 3)`…
    pub position: String,
    pub message: String,
}

/// The error lines of a load, shared by every reply reader: the first
/// `--error-lines` are printed, the rest only counted, so a million failing
/// commands do not flood the terminal.
#[derive(Debug)]
pub struct ErrorLog {
    /// `None` prints every error.
    limit: Option<u64>,
    state: Mutex<ErrorLogState>,
}

#[derive(Debug, Default)]
struct ErrorLogState {
    logged: u64,
    first: Vec<ErrorRecord>,
}

impl ErrorLog {
    pub fn new(limit: Option<u64>) -> Self {
        ErrorLog {
            limit,
            state: Mutex::new(ErrorLogState::default()),
        }
    }

    /// Records one error; prints `position: message` while under the limit.
    /// Returns how many errors were logged so far, this one included.
    pub fn error(&self, position: &str, message: &str) -> u64 {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.logged += 1;
        if state.first.len() < FIRST_ERRORS_KEPT {
            state.first.push(ErrorRecord {
                position: position.to_owned(),
                message: message.to_owned(),
            });
        }
        if self.limit.is_none_or(|limit| state.logged <= limit) {
            report(&format!("{position}: {message}"));
        }
        state.logged
    }

    /// Errors logged so far.
    pub fn count(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .logged
    }

    /// The first errors, for `--json`.
    pub fn first(&self) -> Vec<ErrorRecord> {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .first
            .clone()
    }

    /// Says how many error lines were not printed, if any.
    pub fn report_hidden(&self) {
        let logged = self
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .logged;
        if let Some(limit) = self.limit
            && logged > limit
        {
            report(&format!(
                "pipeload: {} more errors not shown (--error-lines 0 shows them all)",
                logged - limit
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_string("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
    }

    #[test]
    fn json_summary_has_every_field() {
        let outcome = Outcome {
            tally: Tally {
                replies: 3,
                error_replies: 1,
                ..Tally::default()
            },
            last_reply_received: true,
            first_errors: vec![ErrorRecord {
                position: "line 2".into(),
                message: "ERR \"x\"".into(),
            }],
            ..Outcome::default()
        };
        let json = outcome.to_json();
        assert!(json.starts_with("{\"completed\":true,\"commands\":0,\"replies\":3,\"errors\":1,"));
        assert!(json.contains(
            "\"first_errors\":[{\"position\":\"line 2\",\"message\":\"ERR \\\"x\\\"\"}]"
        ));
        assert!(json.ends_with("\"nodes\":[],\"connections\":[]}"));
    }

    #[test]
    fn connections_are_one_line_and_a_json_array() {
        let counts = |replies, errors| ConnectionCounts {
            replies,
            errors,
            commands_sent: replies,
            reconnects: 0,
        };
        let mut outcome = Outcome {
            connections: vec![counts(10, 0), counts(12, 0)],
            ..Outcome::default()
        };
        assert_eq!(
            connections_line(&outcome.connections),
            "connections: 2, replies each: 10 12"
        );
        assert!(outcome.to_json().ends_with(
            "\"connections\":[{\"replies\":10,\"errors\":0,\"commands_sent\":10,\"reconnects\":0},\
             {\"replies\":12,\"errors\":0,\"commands_sent\":12,\"reconnects\":0}]}"
        ));
        outcome.connections[1].errors = 2;
        assert_eq!(
            connections_line(&outcome.connections),
            "connections: 2, replies each: 10 12, errors each: 0 2"
        );
    }

    #[test]
    fn cluster_events_are_null_outside_a_cluster_and_a_line_when_any_happened() {
        let mut outcome = Outcome::default();
        assert!(outcome.to_json().contains("\"cluster\":null,\"nodes\":[]"));
        outcome.cluster = Some(ClusterEvents::default());
        assert!(outcome.to_json().contains(
            "\"cluster\":{\"redirects_followed\":0,\"layout_refreshes\":0,\"nodes_added\":0,\"nodes_lost\":0}"
        ));
        assert_eq!(ClusterEvents::default().line(), None);
        let events = ClusterEvents {
            redirects_followed: 12,
            layout_refreshes: 1,
            nodes_added: 1,
            nodes_lost: 1,
        };
        assert_eq!(
            events.line().as_deref(),
            Some("cluster: 12 redirects followed, 1 layout refreshes, 1 nodes added, 1 nodes lost")
        );
    }

    #[test]
    fn error_log_keeps_the_first_and_counts_the_rest() {
        let log = ErrorLog::new(Some(2));
        for index in 0..15 {
            assert_eq!(log.error(&format!("line {index}"), "ERR x"), index + 1);
        }
        let first = log.first();
        assert_eq!(first.len(), FIRST_ERRORS_KEPT);
        assert_eq!(first[3].position, "line 3");
    }
}
