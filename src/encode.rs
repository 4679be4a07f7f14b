//! Arguments → RESP bytes. Text lines are encoded on the client so the server
//! only ever parses RESP (fast for it, and free of the inline protocol's
//! 64 KiB limit and of its habit of closing the connection on a bad quote).
//!
//! Place in the data flow: input splits a text line into `Args`, then
//! `append_command` appends `*N\r\n` and N × `$len\r\n<arg>\r\n` to the batch
//! being filled. The exact length is computed first and reserved once.
//!
//! A template's command (`EncodedCommand`) is encoded as it is made
//! instead: each argument is written once, in place, as a bulk string, and
//! the command is then copied into the batch in one piece.

use crate::input::quoting::Args;

/// Bytes needed to write `value` in decimal.
fn decimal_len(mut value: usize) -> usize {
    let mut digits = 1;
    while value >= 10 {
        value /= 10;
        digits += 1;
    }
    digits
}

/// Writes a header line, `*3\r\n` or `$5\r\n`, at the start of `buf`
/// (no `fmt`); returns the rest of `buf`.
fn put_header(buf: &mut [u8], type_byte: u8, value: usize) -> &mut [u8] {
    // `*3`, `$3` and the like: most headers of short commands.
    if value < 10 {
        return put(buf, &[type_byte, b'0' + value as u8, b'\r', b'\n']);
    }
    let digits = decimal_len(value);
    let (line, rest) = buf.split_at_mut(1 + digits + 2);
    line[0] = type_byte;
    let mut remaining = value;
    for digit in line[1..=digits].iter_mut().rev() {
        *digit = b'0' + (remaining % 10) as u8;
        remaining /= 10;
    }
    line[1 + digits..].copy_from_slice(b"\r\n");
    rest
}

/// Writes `bytes` at the start of `buf`; returns the rest of `buf`.
fn put<'a>(buf: &'a mut [u8], bytes: &[u8]) -> &'a mut [u8] {
    let (head, rest) = buf.split_at_mut(bytes.len());
    head.copy_from_slice(bytes);
    rest
}

/// Length of the RESP encoding of `args`.
pub fn encoded_len(args: &Args) -> usize {
    let header = 1 + decimal_len(args.len()) + 2;
    let bodies: usize = args
        .iter()
        .map(|arg| 1 + decimal_len(arg.len()) + 2 + arg.len() + 2)
        .sum();
    header + bodies
}

/// Appends the RESP array of bulk strings that carries `args`. The exact
/// length is added to `out` once and every piece written in place, which
/// spares a capacity check and a length update per piece.
pub fn append_command(out: &mut Vec<u8>, args: &Args) {
    let start = out.len();
    out.resize(start + encoded_len(args), 0);
    let mut rest = put_header(&mut out[start..], b'*', args.len());
    for arg in args.iter() {
        rest = put_header(rest, b'$', arg.len());
        rest = put(rest, arg);
        rest = put(rest, b"\r\n");
    }
    debug_assert!(rest.is_empty(), "encoded_len and the writes disagree");
}

/// A command encoded as its arguments are made (by a template): each
/// argument goes straight into place as a bulk string. An argument built
/// from pieces has its length known only once it is complete, so room for
/// a two-digit length header is left before it and the bytes are moved
/// when the length needs another width. Cleared, not reallocated, per
/// record.
#[derive(Debug, Default, Clone)]
pub struct EncodedCommand {
    /// The bulk strings back to back, without the array header.
    body: Vec<u8>,
    /// Where each argument's bytes lie in `body`.
    args: Vec<(usize, usize)>,
    /// Where the argument being built starts (its header's room).
    open: usize,
}

/// The room left for the header of an argument being built: `$NN\r\n`.
const GUESSED_HEADER: usize = 5;

impl EncodedCommand {
    pub fn clear(&mut self) {
        self.body.clear();
        self.args.clear();
    }
    pub fn len(&self) -> usize {
        self.args.len()
    }
    pub fn is_empty(&self) -> bool {
        self.args.is_empty()
    }
    pub fn iter(&self) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        self.args.iter().map(|&(start, end)| &self.body[start..end])
    }

    /// Appends one argument.
    pub fn push(&mut self, arg: &[u8]) {
        push_bulk_header(&mut self.body, arg.len());
        let arg_start = self.body.len();
        self.body.extend_from_slice(arg);
        self.body.extend_from_slice(b"\r\n");
        self.args.push((arg_start, arg_start + arg.len()));
    }

    /// Starts an argument built from pieces: the bytes appended to what
    /// this returns, until `end_arg`, are the argument.
    pub fn begin_arg(&mut self) -> &mut Vec<u8> {
        self.open = self.body.len();
        self.body.extend_from_slice(&[0; GUESSED_HEADER]);
        &mut self.body
    }

    /// Ends the argument `begin_arg` started (possibly empty, for `""`):
    /// writes its header in the room left, moving its bytes when the
    /// header is not two digits long.
    pub fn end_arg(&mut self) {
        let start = self.open;
        let guessed_at = start + GUESSED_HEADER;
        let len = self.body.len() - guessed_at;
        let arg_start = match len {
            10..=99 => {
                let (tens, ones) = ((len / 10) as u8, (len % 10) as u8);
                self.body[start..guessed_at].copy_from_slice(&[
                    b'$',
                    b'0' + tens,
                    b'0' + ones,
                    b'\r',
                    b'\n',
                ]);
                guessed_at
            }
            0..=9 => {
                self.body
                    .copy_within(guessed_at..guessed_at + len, start + 4);
                self.body.truncate(start + 4 + len);
                self.body[start..start + 4].copy_from_slice(&[
                    b'$',
                    b'0' + len as u8,
                    b'\r',
                    b'\n',
                ]);
                start + 4
            }
            _ => {
                let header = 1 + decimal_len(len) + 2;
                if header > GUESSED_HEADER {
                    self.body.resize(start + header + len, 0);
                }
                self.body
                    .copy_within(guessed_at..guessed_at + len, start + header);
                self.body.truncate(start + header + len);
                put_header(&mut self.body[start..], b'$', len);
                start + header
            }
        };
        self.body.extend_from_slice(b"\r\n");
        self.args.push((arg_start, arg_start + len));
    }

    /// Appends the command, the array header then the arguments, to `out`.
    pub fn append_to(&self, out: &mut Vec<u8>) {
        let start = out.len();
        let header = 1 + decimal_len(self.len()) + 2;
        out.resize(start + header + self.body.len(), 0);
        let rest = put_header(&mut out[start..], b'*', self.len());
        put(rest, &self.body);
    }
}

/// Appends the header line of a bulk string of `len` bytes, `$5\r\n`; the
/// one- and two-digit lengths of most template arguments as one store.
#[inline]
fn push_bulk_header(out: &mut Vec<u8>, len: usize) {
    match len {
        0..=9 => out.extend_from_slice(&[b'$', b'0' + len as u8, b'\r', b'\n']),
        10..=99 => {
            let (tens, ones) = ((len / 10) as u8, (len % 10) as u8);
            out.extend_from_slice(&[b'$', b'0' + tens, b'0' + ones, b'\r', b'\n']);
        }
        _ => {
            let start = out.len();
            out.resize(start + 1 + decimal_len(len) + 2, 0);
            put_header(&mut out[start..], b'$', len);
        }
    }
}

/// Encodes a command given as plain argument slices (handshake commands and
/// the end-of-input marker, never the hot path).
pub fn command_bytes(args: &[&[u8]]) -> Vec<u8> {
    let mut packed = Args::default();
    for arg in args {
        packed.push(arg);
    }
    let mut out = Vec::new();
    append_command(&mut out, &packed);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::quoting::split_line;
    use proptest::prelude::*;

    #[test]
    fn encodes_a_text_line() {
        let mut args = Args::default();
        split_line(b"SET key \"a b\"", &mut args).unwrap();
        let mut out = Vec::new();
        append_command(&mut out, &args);
        assert_eq!(out, b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$3\r\na b\r\n");
    }

    #[test]
    fn encodes_empty_and_long_arguments() {
        let long = vec![b'v'; 123_456];
        let out = command_bytes(&[b"SET", b"", &long]);
        let mut expected = b"*3\r\n$3\r\nSET\r\n$0\r\n\r\n$123456\r\n".to_vec();
        expected.extend_from_slice(&long);
        expected.extend_from_slice(b"\r\n");
        assert_eq!(out, expected);
    }

    #[test]
    fn decimal_helpers_agree_with_fmt() {
        for value in [0, 1, 9, 10, 99, 100, 12345, usize::MAX] {
            let mut line = [0u8; 24];
            let written = line.len() - put_header(&mut line, b'$', value).len();
            assert_eq!(&line[..written], format!("${value}\r\n").as_bytes());
            assert_eq!(decimal_len(value), written - 3);
        }
    }

    proptest! {
        #[test]
        fn a_command_encoded_as_it_is_made_equals_the_arguments_encoded(
            args in proptest::collection::vec(
                (proptest::collection::vec(any::<u8>(), 0..300), proptest::collection::vec(any::<u8>(), 0..300), any::<bool>()),
                0..12,
            ),
        ) {
            let mut packed = Args::default();
            let mut command = EncodedCommand::default();
            // Used before, as from record to record.
            command.push(b"earlier");
            command.clear();
            for (first, second, pieces) in &args {
                let mut whole = first.clone();
                whole.extend_from_slice(second);
                packed.push(&whole);
                match pieces {
                    true => {
                        let out = command.begin_arg();
                        out.extend_from_slice(first);
                        out.extend_from_slice(second);
                        command.end_arg();
                    }
                    false => command.push(&whole),
                }
            }
            let mut expected = b"before".to_vec();
            append_command(&mut expected, &packed);
            let mut out = b"before".to_vec();
            command.append_to(&mut out);
            prop_assert_eq!(out, expected);
            prop_assert_eq!(command.iter().collect::<Vec<_>>(), packed.iter().collect::<Vec<_>>());
        }

        #[test]
        fn computed_length_equals_output(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..12)) {
            let slices: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
            let mut packed = Args::default();
            for arg in &slices {
                packed.push(arg);
            }
            // After bytes already in the batch, as in the input thread.
            let mut out = b"before".to_vec();
            append_command(&mut out, &packed);
            let mut expected = format!("before*{}\r\n", args.len()).into_bytes();
            for arg in &args {
                expected.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
                expected.extend_from_slice(arg);
                expected.extend_from_slice(b"\r\n");
            }
            prop_assert_eq!(out.len() - 6, encoded_len(&packed));
            prop_assert_eq!(out, expected);
        }
    }
}
