//! The RESP framer: a command that is a RESP array is checked
//! (`resp::scan_command`) and its bytes copied into the batch unchanged; a
//! frame whose bulk data is too big for the read buffer is read straight
//! into the batch. A malformed frame stops the input there, since nothing
//! after it can be framed safely.
//!
//! Place in the data flow: one of the input's framers, chosen per command by
//! its first byte (`--format auto`) or for every command (`--format resp`).

use std::io::{self, Read};

use super::admit::{InputState, command_role};
use super::{
    BATCH_BYTES, BIG_FRAME_RESERVE, InputError, READ_CHUNK, SourceReader, count_newlines, show_byte,
};
use crate::batch::Expect;
use crate::progress::Counters;
use crate::resp::{CommandFrame, CommandScan, scan_command};

impl SourceReader<'_> {
    /// Frames one RESP command; false when it is not complete yet.
    pub(super) fn frame_resp(&mut self, state: &mut InputState) -> Result<bool, InputError> {
        let rest = self.buffer.unread();
        // Stray line ends between frames (the Redis test suite writes them).
        if rest[0] == b'\n' || rest[0] == b'\r' {
            if rest[0] == b'\n' {
                self.line_no += 1;
            }
            self.buffer.consume(1);
            return Ok(true);
        }
        if rest[0] != b'*' {
            return Err(self.malformed(0, format!("expected '*', found {}", show_byte(rest[0]))));
        }
        let (frame, start) = match scan_command(rest) {
            CommandScan::Complete(frame) => {
                let start = self.batch.bytes.len();
                self.batch.bytes.extend_from_slice(&rest[..frame.len]);
                self.buffer.consume(frame.len);
                (frame, start)
            }
            CommandScan::Incomplete { .. } if self.eof => {
                return Err(self.malformed(rest.len(), "input ends inside a RESP command".into()));
            }
            CommandScan::Incomplete { at_least } if at_least >= BATCH_BYTES => {
                self.read_big_frame(state, at_least)?
            }
            CommandScan::Incomplete { .. } => return Ok(false),
            CommandScan::Invalid(error) => {
                return Err(self.malformed(error.offset, error.to_string()));
            }
        };
        self.admit_frame(state, &frame, start);
        Ok(true)
    }

    /// Reads the rest of a frame whose bulk data is too big for the read
    /// buffer straight to the end of the batch, so its bytes are copied once
    /// instead of through the buffer. Big bulk data is read exactly as the
    /// scanner asks for it; the small headers and arguments after it in
    /// chunks, whatever comes past the frame going back to the buffer.
    /// Returns the frame and where it starts in the batch.
    fn read_big_frame(
        &mut self,
        state: &InputState,
        mut at_least: usize,
    ) -> Result<(CommandFrame, usize), InputError> {
        // Commands framed before it are not held back while it arrives.
        if !state.tracker.in_multi {
            self.send_batch()?;
        }
        let start = self.batch.bytes.len();
        let frame_offset = self.buffer.offset();
        let buffered = self.buffer.unread();
        // Reserved by what has arrived (a declared length alone reserves at
        // most BIG_FRAME_RESERVE); an empty batch is replaced rather than
        // grown, which would copy its old allocation.
        let wanted = buffered.len() + at_least.min(BIG_FRAME_RESERVE);
        if start == 0 {
            self.batch.bytes = Vec::with_capacity(wanted);
        } else {
            self.batch.bytes.reserve(wanted);
        }
        self.batch.bytes.extend_from_slice(buffered);
        self.buffer.consume(buffered.len());
        let mut read_around = 0u64;
        let failure = loop {
            let read = match self.read_onto_batch(at_least) {
                Ok(read) => read,
                Err(error) => {
                    self.batch.bytes.truncate(start);
                    return Err(error);
                }
            };
            read_around += read as u64;
            if let Some(progress) = &state.progress {
                Counters::add(&progress.input_bytes, read as u64);
            }
            let frame = &self.batch.bytes[start..];
            if read == 0 || (at_least >= BATCH_BYTES && read < at_least) {
                self.eof = true;
                break (frame.len(), "input ends inside a RESP command".to_string());
            }
            match scan_command(frame) {
                CommandScan::Complete(complete) => {
                    let end = start + complete.len;
                    let past = self.batch.bytes.len() - end;
                    self.buffer
                        .resume_after_bypass(read_around - past as u64, &self.batch.bytes[end..]);
                    self.batch.bytes.truncate(end);
                    return Ok((complete, start));
                }
                CommandScan::Incomplete { at_least: more } => at_least = more,
                CommandScan::Invalid(error) => break (error.offset, error.to_string()),
            }
        };
        let (offset, reason) = failure;
        let error = self.malformed_in(&self.batch.bytes[start..], frame_offset, offset, reason);
        self.batch.bytes.truncate(start);
        Err(error)
    }

    /// One step of `read_big_frame`: exactly `at_least` bytes of big bulk
    /// data (fewer only at the end of the source), or else one read of up to
    /// a chunk. Returns how many bytes were appended to the batch.
    fn read_onto_batch(&mut self, at_least: usize) -> Result<usize, InputError> {
        let bytes = &mut self.batch.bytes;
        let read = if at_least >= BATCH_BYTES {
            (&mut self.reader).take(at_least as u64).read_to_end(bytes)
        } else {
            let filled = bytes.len();
            bytes.resize(filled + READ_CHUNK, 0);
            let read = loop {
                match self.reader.read(&mut bytes[filled..]) {
                    Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                    read => break read,
                }
            };
            bytes.truncate(filled + *read.as_ref().unwrap_or(&0));
            read
        };
        read.map_err(|error| InputError::Read {
            source_name: self.name.clone(),
            error,
        })
    }

    /// Makes the frame at the end of the batch, from `start` on, a command of
    /// the batch, or takes it back out when it is skipped or refused.
    fn admit_frame(&mut self, state: &mut InputState, frame: &CommandFrame, start: usize) {
        let bytes = &self.batch.bytes[start..];
        let line_no = self.line_no;
        self.line_no += count_newlines(bytes);
        // `*0` and `*-1` get no reply from the server: not commands.
        if frame.arg_count == 0 {
            self.batch.bytes.truncate(start);
            return;
        }
        self.command_no += 1;
        let head = frame.head.clone().map(|range| &bytes[range]);
        match state.admit(command_role(frame.arg_count, head)) {
            None => {
                self.batch.bytes.truncate(start);
                self.batch.first_command_no = self.command_no + 1;
            }
            Some((expect, kind)) => {
                if state.keep_originals {
                    self.batch.keep_original_from(start);
                }
                if matches!(expect, Expect::Rejected(_)) {
                    self.batch.bytes.truncate(start);
                }
                self.push_admitted(state, line_no, true, expect, kind);
            }
        }
    }
}
