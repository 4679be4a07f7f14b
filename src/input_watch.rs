//! The input thread as the load sees it: joined once it is known to have
//! ended (never waited on while it may block on a source), its result, and
//! redis-cli's "All data transferred" line, printed once when the whole
//! input was written.
//!
//! Place in the data flow: beside the input; a connection tells it when its
//! writer has written everything, and the summary asks it how the input
//! ended.

use std::thread::JoinHandle;

use crate::input::InputError;
use crate::progress;
use crate::summary::{ALL_DATA_TRANSFERRED, print_line, report};

/// The input thread, joined once it is known to have ended.
pub(crate) struct InputWatch {
    handle: Option<JoinHandle<Result<(), InputError>>>,
    result: Option<Result<(), InputError>>,
    /// `--json`: no redis-cli progress lines on stdout.
    quiet: bool,
    /// "All data transferred" was printed (once, even if a reconnect
    /// writes some of the data again).
    announced: bool,
    /// The progress display, cleared before the summary lines so that a
    /// terminal shows them whole.
    display: Option<progress::Display>,
}

impl InputWatch {
    pub(crate) fn new(
        handle: JoinHandle<Result<(), InputError>>,
        quiet: bool,
        display: Option<progress::Display>,
    ) -> Self {
        InputWatch {
            handle: Some(handle),
            result: None,
            quiet,
            announced: false,
            display,
        }
    }

    /// Clears the progress display for good.
    pub(crate) fn finish_display(&mut self) {
        if let Some(display) = self.display.take() {
            display.finish();
        }
    }

    /// Whether the whole input was read without error.
    pub(crate) fn is_complete(&self) -> bool {
        matches!(self.result, Some(Ok(())))
    }

    /// Reports an input failure (not a mere stop) and says whether there
    /// was one.
    pub(crate) fn report_failure(&self) -> Option<String> {
        match &self.result {
            Some(Err(error)) if !matches!(error, InputError::Stopped) => {
                let message = error.to_string();
                report(&format!("pipeload: {message}"));
                Some(message)
            }
            _ => None,
        }
    }

    /// Called once the writers have written the whole input (the input
    /// thread dropped its sender, so it is exiting): collects the input's
    /// result and, when all of it was read, says so as redis-cli does.
    pub(crate) fn all_written(&mut self) {
        self.join();
        self.announce_transferred();
    }

    /// Prints redis-cli's "All data transferred" line, once, if the whole
    /// input was read.
    pub(crate) fn announce_transferred(&mut self) {
        if self.is_complete() && !self.quiet && !self.announced {
            self.announced = true;
            self.finish_display();
            print_line(ALL_DATA_TRANSFERRED);
        }
    }

    /// The input command (from the start, `--skip` included) that opened a
    /// transaction the input never closed, if it ended so.
    pub(crate) fn unfinished_transaction(&self) -> Option<u64> {
        match &self.result {
            Some(Err(InputError::UnfinishedTransaction { seq, .. })) => Some(*seq),
            _ => None,
        }
    }

    /// The input's number of commands, when `--skip` asked to leave out
    /// more than that: there is nothing to resume then.
    pub(crate) fn skipped_beyond_input(&self) -> Option<u64> {
        match &self.result {
            Some(Err(InputError::SkipBeyondInput { commands, .. })) => Some(*commands),
            _ => None,
        }
    }

    pub(crate) fn join(&mut self) {
        if let Some(handle) = self.handle.take() {
            self.result = Some(handle.join().unwrap_or(Err(InputError::Panicked)));
        }
    }

    /// Joins the input thread if it has ended; never waits on a thread that
    /// may be blocked on a source that sends nothing.
    pub(crate) fn collect_if_finished(&mut self) {
        if self.handle.as_ref().is_some_and(JoinHandle::is_finished) {
            self.join();
        }
    }
}
