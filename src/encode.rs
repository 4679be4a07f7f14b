//! Arguments → RESP bytes. Text lines are encoded on the client so the server
//! only ever parses RESP (fast for it, and free of the inline protocol's
//! 64 KiB limit and of its habit of closing the connection on a bad quote).
//!
//! Place in the data flow: input splits a text line into `Args`, then
//! `append_command` appends `*N\r\n` and N × `$len\r\n<arg>\r\n` to the batch
//! being filled. The exact length is computed first and reserved once.

use crate::text::Args;

/// Bytes needed to write `value` in decimal.
fn decimal_len(mut value: usize) -> usize {
    let mut digits = 1;
    while value >= 10 {
        value /= 10;
        digits += 1;
    }
    digits
}

/// Appends a header line, `*3\r\n` or `$5\r\n`: the type byte, `value` in
/// decimal, CRLF, written on the stack and appended at once (no `fmt`).
fn append_header(out: &mut Vec<u8>, type_byte: u8, value: usize) {
    let mut line = [0u8; 23];
    let mut start = line.len() - 2;
    line[start..].copy_from_slice(b"\r\n");
    let mut rest = value;
    loop {
        start -= 1;
        line[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    start -= 1;
    line[start] = type_byte;
    out.extend_from_slice(&line[start..]);
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

/// Appends the RESP array of bulk strings that carries `args`.
pub fn append_command(out: &mut Vec<u8>, args: &Args) {
    out.reserve(encoded_len(args));
    append_header(out, b'*', args.len());
    for arg in args.iter() {
        append_header(out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
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
    use crate::text::split_line;
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
            let mut out = Vec::new();
            append_header(&mut out, b'$', value);
            assert_eq!(out, format!("${value}\r\n").as_bytes());
            assert_eq!(decimal_len(value), out.len() - 3);
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
            let mut out = Vec::new();
            append_command(&mut out, &packed);
            prop_assert_eq!(out.len(), encoded_len(&packed));
            prop_assert_eq!(out, command_bytes(&slices));
        }
    }
}
