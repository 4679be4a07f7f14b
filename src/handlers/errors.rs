//! The error report handler: every error on stderr with the input position
//! of its command (`line 7`, `data.resp:40 (command 12)`, `line 9 (EXEC
//! element 2)`), the failed command's input bytes to `--errors-file`, and
//! the stop `--max-errors` asks for.
//!
//! Place in the data flow: a reply handler. The error log and the errors
//! file are shared by the reply readers of a cluster load, so the lines and
//! the `--max-errors` count cover every node.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::sync::{Arc, Mutex, PoisonError};

use super::{Flow, Reply, ReplyHandler};
use crate::batch::{Batch, CommandKind, Expect, Rejection};
use crate::io_error::describe_io_error;
use crate::stop::{Stop, StopReason};
use crate::summary::{ErrorLog, report};

/// `--errors-file`, shared by the reply readers of a cluster load (one lock
/// per failed command: failures are rare next to replies).
pub type ErrorsFile = Arc<Mutex<ErrorsFileWriter>>;

/// The errors file: the input bytes of each failed command, once per input
/// record (the commands a CSV or JSON Lines record gives share its bytes),
/// after the CSV header when the input has one, so that the file loads
/// again with the same command line.
pub struct ErrorsFileWriter {
    file: BufWriter<File>,
    /// Written before the first failed command, if any fails.
    header: Option<Vec<u8>>,
    /// The source and line of the last failed commands written, most
    /// recent last: a record's commands fail one after the other (with
    /// `-c`, on several nodes at about the same time).
    recently_written: VecDeque<(usize, u64)>,
}

/// How many failed commands' positions the errors file remembers.
const RECENTLY_WRITTEN: usize = 256;

impl ErrorsFileWriter {
    /// The errors file over `file` (see `output_file`: it is readable by
    /// its owner only); `header` (a CSV's) goes before the first failed
    /// record.
    pub fn new(file: File, header: Option<Vec<u8>>) -> ErrorsFile {
        Arc::new(Mutex::new(ErrorsFileWriter {
            file: BufWriter::new(file),
            header,
            recently_written: VecDeque::with_capacity(RECENTLY_WRITTEN),
        }))
    }

    /// Writes command `index`'s input bytes, unless they were written
    /// lately (another command of the same record): a text line gets its
    /// line end back, a RESP frame is complete as it is.
    pub fn write(&mut self, batch: &Batch, index: usize) -> io::Result<()> {
        let (Some(original), Some(command)) = (batch.original(index), batch.commands.get(index))
        else {
            return Ok(());
        };
        let position = (batch.source, command.line_no);
        if self.recently_written.contains(&position) {
            return Ok(());
        }
        if self.recently_written.len() == RECENTLY_WRITTEN {
            self.recently_written.pop_front();
        }
        self.recently_written.push_back(position);
        if let Some(header) = self.header.take() {
            self.file.write_all(&header)?;
            self.file.write_all(b"\n")?;
        }
        self.file.write_all(original)?;
        match original.first() {
            Some(b'*') if original.ends_with(b"\r\n") => Ok(()),
            _ => self.file.write_all(b"\n"),
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Writes command `index` of `batch` to the errors file; a failure is
/// reported on stderr, and false tells the caller to stop writing there.
pub fn write_or_report(file: &ErrorsFile, batch: &Batch, index: usize) -> bool {
    let mut file = file.lock().unwrap_or_else(PoisonError::into_inner);
    let written = file.write(batch, index);
    if let Err(error) = &written {
        report(&format!(
            "pipeload: cannot write the errors file: {}",
            describe_io_error(error)
        ));
    }
    written.is_ok()
}

pub struct ErrorReport<'a> {
    source_names: &'a [Option<String>],
    error_log: &'a ErrorLog,
    stop: &'a Stop,
    max_errors: Option<u64>,
    errors_file: Option<ErrorsFile>,
    /// Errors logged by every reader of the load, as of this reader's last.
    logged_errors: u64,
    /// Cluster mode: a copy of `FLUSHALL`, `AUTH`… that another primary
    /// refused is reported, though its reply is not counted.
    cluster: bool,
}

impl<'a> ErrorReport<'a> {
    pub fn new(
        source_names: &'a [Option<String>],
        error_log: &'a ErrorLog,
        stop: &'a Stop,
        max_errors: Option<u64>,
        errors_file: Option<ErrorsFile>,
        cluster: bool,
    ) -> Self {
        ErrorReport {
            source_names,
            error_log,
            stop,
            max_errors,
            errors_file,
            logged_errors: 0,
            cluster,
        }
    }

    /// Reports every error of the reply with its input position.
    fn log_errors(&mut self, reply: &Reply) {
        for span in reply.errors {
            let message = String::from_utf8_lossy(reply.message(span));
            let position = reply
                .batch
                .position(reply.index, self.source_names, span.element);
            self.logged_errors = self.error_log.error(&position, &message);
        }
    }

    /// Writes to `--errors-file` what a reply that is no error but holds
    /// some failed: for an `EXEC`, each queued command whose element is an
    /// error; for any other reply, its own command, once.
    fn write_nested_failures(&mut self, reply: &Reply) {
        if self.errors_file.is_none() {
            return;
        }
        let batch = reply.batch;
        let queued: Vec<usize> = match reply.transaction {
            Some(multi) if reply.command.kind == CommandKind::EndMulti => (multi + 1..reply.index)
                .filter(|&queued| !matches!(batch.commands[queued].expect, Expect::Rejected(_)))
                .collect(),
            _ => Vec::new(),
        };
        let mut own_written = false;
        for span in reply.errors {
            let failed = match span.element.and_then(|element| queued.get(element)) {
                Some(&queued) => queued,
                None if own_written => continue,
                None => {
                    own_written = true;
                    reply.index
                }
            };
            self.write_failed(batch, failed);
        }
    }

    /// `--max-errors` counts the errors of every node of a cluster load.
    fn check_max_errors(&self) {
        if let Some(limit) = self.max_errors
            && self.logged_errors >= limit
            && self.stop.request(StopReason::MaxErrors(limit))
        {
            report(&format!(
                "pipeload: stopping after {limit} errors (--max-errors): finishing the commands in flight"
            ));
        }
    }

    /// Appends a failed command's input bytes to `--errors-file`.
    fn write_failed(&mut self, batch: &Batch, index: usize) {
        let Some(file) = self.errors_file.as_ref() else {
            return;
        };
        if !write_or_report(file, batch, index) {
            self.errors_file = None;
        }
    }
}

impl ReplyHandler for ErrorReport<'_> {
    #[inline]
    fn reply(&mut self, reply: &Reply) -> Flow {
        if reply.succeeded() && reply.errors.is_empty() {
            return Flow::Continue;
        }
        if reply.command.expect == Expect::Marker {
            // Its reply counts for nothing: pipeload's own `ASKING` or
            // `CLIENT REPLY ON`, or a copy of `FLUSHALL`, `AUTH`… whose
            // reply the first primary counts. A copy that failed left its
            // primary unflushed or not set up, though: an error.
            if !reply.succeeded() && self.cluster {
                self.write_failed(reply.batch, reply.index);
                self.log_errors(reply);
                self.check_max_errors();
            }
            return Flow::Continue;
        }
        match reply.succeeded() {
            true => self.write_nested_failures(reply),
            false => self.write_failed(reply.batch, reply.index),
        }
        self.log_errors(reply);
        self.check_max_errors();
        Flow::Continue
    }

    fn rejected(&mut self, batch: &Batch, index: usize, why: Rejection) {
        let position = batch.position(index, self.source_names, None);
        let why = batch.refusal_reason(index, why);
        self.logged_errors = self.error_log.error(&position, &format!("not sent: {why}"));
        self.write_failed(batch, index);
        self.check_max_errors();
    }

    fn session_ended(&mut self) {
        if let Some(file) = self.errors_file.as_ref()
            && let Err(error) = file.lock().unwrap_or_else(PoisonError::into_inner).flush()
        {
            report(&format!(
                "pipeload: cannot write the errors file: {}",
                describe_io_error(&error)
            ));
        }
    }
}
