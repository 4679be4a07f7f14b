//! Arguments → RESP bytes. Text lines are encoded on the client so the server
//! only ever parses RESP (fast for it, and free of the inline protocol's
//! 64 KiB limit and of its habit of closing the connection on a bad quote).
//!
//! Place in the data flow: input splits a text line into `Args`, then
//! `append_command` appends `*N\r\n` and N × `$len\r\n<arg>\r\n` to the batch
//! being filled. The exact length is computed first and reserved once.

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
