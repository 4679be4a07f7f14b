//! Counters of a load and the report `redis-cli --pipe` prints at its end.
//!
//! Place in the data flow: the reply reader fills a `Tally` as replies come
//! back; `run` adds what only it knows (a stop's cause) and prints the
//! summary on stdout, which scripts parse: `errors: N, replies: M`.

use std::io::{self, Write};

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
        self.error_replies + self.nested_errors + self.rejected + self.fatal
    }
}

pub const ALL_DATA_TRANSFERRED: &str = "All data transferred. Waiting for the last reply...";
pub const LAST_REPLY_RECEIVED: &str = "Last reply received from server.";

/// Prints one line of the summary on stdout. A closed stdout (`| head`) is
/// not worth a panic or an error of its own.
pub fn print_line(line: &str) {
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

/// After a load that stopped early: how much of the input is known to be
/// applied, and the flag that resumes after it.
pub fn print_resume_hint(acknowledged: u64) {
    print_line(&format!("acknowledged: {acknowledged}"));
    print_line(&format!("resume with: --skip {acknowledged}"));
}

/// Prints one problem on stderr, ignoring a closed stderr.
pub fn report(line: &str) {
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
}
