//! The text framer: one line → its arguments with the server's own quoting
//! rules (`quoting`), encoded as RESP into the batch. A line that cannot be
//! split goes on as a refused command, reported in order and never sent;
//! blank lines are skipped.
//!
//! Place in the data flow: one of the input's framers, chosen per command by
//! its first byte (`--format auto`) or for every command (`--format text`).

use super::SourceReader;
use super::admit::{CommandRole, InputState, command_role};
use super::quoting::split_line;
use crate::batch::{Expect, Rejection};
use crate::encode::append_command;

impl SourceReader<'_> {
    /// Frames one text line; false when its end has not arrived yet.
    pub(super) fn frame_text_line(&mut self, state: &mut InputState) -> bool {
        let Some(line_len) = self.next_line_len() else {
            return false;
        };
        let line = &self.buffer.unread()[..line_len];
        let split = split_line(line, &mut self.args);
        let blank = matches!(split, Ok(())) && self.args.is_empty();
        if !blank {
            self.command_no += 1;
            let role = match split {
                Ok(()) => {
                    let head = [0, 1, 2].map(|index| match index < self.args.len() {
                        true => self.args.get(index),
                        false => &[][..],
                    });
                    command_role(self.args.len(), head)
                }
                Err(error) => CommandRole::Refused(Rejection::Split(error)),
            };
            match state.admit(role) {
                None => self.batch.first_command_no = self.command_no + 1,
                Some((expect, kind)) => {
                    if !matches!(expect, Expect::Rejected(_)) {
                        append_command(&mut self.batch.bytes, &self.args);
                    }
                    if state.keep_originals {
                        self.batch
                            .push_original(line.strip_suffix(b"\r").unwrap_or(line));
                    }
                    self.push_admitted(state, self.line_no, false, expect, kind);
                }
            }
        }
        self.buffer.consume(line_len + 1);
        self.searched_without_newline = 0;
        self.line_no += 1;
        true
    }
}
