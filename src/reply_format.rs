//! How `--replies` writes one reply: `raw` as `redis-cli --raw` prints it,
//! `json` as one object a line with the input position, `resp` as the bytes
//! received.
//!
//! Place in the data flow: called by the replies-out handler
//! (`handlers::replies_out`) on the reply reader's thread, with the bytes
//! of one complete reply the matcher paired with its command; what it
//! appends goes to `reply_order`, which writes it out in input order.
//!
//! Invariants: the bytes were checked by `resp::scan_reply`, but nothing
//! here relies on it to stay panic-free: a malformed reply ends its
//! formatting early, never with a panic. Nesting is walked with an explicit
//! stack, not recursion, so `*1\r\n*1\r\n…` cannot overflow the stack.
//! RESP3 attributes (`|`) are metadata about the reply that follows them
//! and are left out; a push (`>`) never reaches here (it is no reply).
//!
//! The JSON mapping: simple, bulk and verbatim strings → string (a
//! verbatim string without its `txt:` prefix); bytes that are not UTF-8 →
//! `{"base64":"…"}` (standard alphabet, padded), so nothing is mangled;
//! integer, big number and finite double → number; `inf`, `-inf`, `nan` →
//! string; boolean → `true`/`false`; nil (RESP2 `$-1`, `*-1`, RESP3 `_`) →
//! `null`; array, set → array; map → object, a key that is not a string
//! being written as the string of its JSON; error → `{"error":"…"}`.

use memchr::{memchr, memchr2};

use crate::config::RepliesFormat;

/// Where a reply's command stood in the input, as `json` writes it.
pub struct InputPosition<'a> {
    /// The source's name when the load reads several (`None` for stdin:
    /// `"-"`); `None` with one source.
    pub file: Option<Option<&'a str>>,
    pub line_no: u64,
    /// The command's ordinal in its source, for a command framed as RESP
    /// (its line is only where it started).
    pub command_no: Option<u64>,
}

/// Appends the reply `reply` (one complete RESP reply) in `format`.
pub fn format_reply(
    format: RepliesFormat,
    reply: &[u8],
    position: &InputPosition,
    out: &mut Vec<u8>,
) {
    match format {
        RepliesFormat::Resp => out.extend_from_slice(reply),
        RepliesFormat::Raw => {
            match bulk_string_data(reply) {
                Some(data) => out.extend_from_slice(data),
                None => write_raw(reply, out),
            }
            out.push(b'\n');
        }
        RepliesFormat::Json => {
            out.extend_from_slice(b"{");
            if let Some(file) = position.file {
                out.extend_from_slice(b"\"file\":");
                write_json_string(file.unwrap_or("-").as_bytes(), out);
                out.push(b',');
            }
            out.extend_from_slice(b"\"line\":");
            write_number(position.line_no, out);
            if let Some(command_no) = position.command_no {
                out.extend_from_slice(b",\"command\":");
                write_number(command_no, out);
            }
            out.extend_from_slice(b",\"reply\":");
            match bulk_string_data(reply) {
                Some(data) => write_json_string(data, out),
                None => write_json(reply, out),
            }
            out.extend_from_slice(b"}\n");
        }
    }
}

/// The data of a reply that is one bulk string (`$5\r\nhello\r\n`), the
/// most common reply by far, found without walking it item by item; `None`
/// for any other reply, or bytes whose length header does not match them.
#[inline]
fn bulk_string_data(reply: &[u8]) -> Option<&[u8]> {
    let header = reply.strip_prefix(b"$")?;
    let digits = header
        .iter()
        .take_while(|byte| byte.is_ascii_digit())
        .count();
    let len = parse_count(header.get(..digits)?)?;
    let data = header.get(digits..)?.strip_prefix(b"\r\n")?;
    let data = data.strip_suffix(b"\r\n")?;
    (data.len() == len).then_some(data)
}

/// Appends the decimal digits of `number`, with no allocation.
fn write_number(number: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut rest = number;
    loop {
        start -= 1;
        digits[start] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// One element of a reply, in the order the bytes hold them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item<'r> {
    /// Simple, bulk or verbatim string (without its format prefix).
    Text(&'r [u8]),
    Error(&'r [u8]),
    /// Integer, big number or double, as sent.
    Number(&'r [u8]),
    Boolean(bool),
    Nil,
    /// An array, set or push of `elements`, or a map of `elements / 2`
    /// pairs: the elements follow, each an item.
    Aggregate {
        map: bool,
        elements: usize,
    },
}

/// Reads the items of one reply, front to back, leaving attributes out.
struct Items<'r> {
    bytes: &'r [u8],
    at: usize,
}

impl<'r> Items<'r> {
    fn new(bytes: &'r [u8]) -> Self {
        Items { bytes, at: 0 }
    }

    /// The next item that is no attribute; `None` at the end or at bytes
    /// that are no RESP.
    fn next_item(&mut self) -> Option<Item<'r>> {
        loop {
            let (kind, header) = self.header()?;
            if kind != b'|' {
                return self.item(kind, header);
            }
            // An attribute: its pairs, each possibly nested, are skipped.
            let mut to_skip = parse_count(header)?.checked_mul(2)?;
            while to_skip > 0 {
                to_skip -= 1;
                let (kind, header) = self.header()?;
                let nested = match kind {
                    b'|' => parse_count(header)?.checked_mul(2)?,
                    _ => match self.item(kind, header)? {
                        Item::Aggregate { elements, .. } => elements,
                        _ => 0,
                    },
                };
                to_skip = to_skip.checked_add(nested)?;
            }
        }
    }

    /// The type byte and the rest of the header line of the next element.
    fn header(&mut self) -> Option<(u8, &'r [u8])> {
        let rest = self.bytes.get(self.at..)?;
        let (&kind, _) = rest.split_first()?;
        let line_len = memchr(b'\r', rest)?;
        let header = rest.get(1..line_len)?;
        self.at = self.at.checked_add(line_len + 2)?;
        Some((kind, header))
    }

    /// The item of type `kind` whose header line is `header`, taking its
    /// data for a blob.
    fn item(&mut self, kind: u8, header: &'r [u8]) -> Option<Item<'r>> {
        Some(match kind {
            b'+' => Item::Text(header),
            b'-' => Item::Error(header),
            b':' | b'(' | b',' => Item::Number(header),
            b'#' => Item::Boolean(header == b"t"),
            b'_' => Item::Nil,
            b'$' | b'=' | b'!' => {
                if header.first() == Some(&b'-') {
                    return Some(Item::Nil);
                }
                let len = parse_count(header)?;
                let end = self.at.checked_add(len)?;
                let data = self.bytes.get(self.at..end)?;
                self.at = end.checked_add(2)?;
                match kind {
                    b'!' => Item::Error(data),
                    // `txt:` or `mkd:`, then the text.
                    b'=' => Item::Text(data.get(4..).unwrap_or_default()),
                    _ => Item::Text(data),
                }
            }
            b'*' | b'~' | b'>' | b'%' => {
                if header.first() == Some(&b'-') {
                    return Some(Item::Nil);
                }
                let count = parse_count(header)?;
                let map = kind == b'%';
                Item::Aggregate {
                    map,
                    elements: match map {
                        true => count.checked_mul(2)?,
                        false => count,
                    },
                }
            }
            _ => return None,
        })
    }
}

fn parse_count(digits: &[u8]) -> Option<usize> {
    if digits.is_empty() || digits.len() > 18 {
        return None;
    }
    digits.iter().try_fold(0usize, |count, &digit| {
        digit
            .is_ascii_digit()
            .then(|| count * 10 + usize::from(digit - b'0'))
    })
}

/// An aggregate being written: how many of its elements are still to come
/// and how many were written.
struct Open {
    map: bool,
    remaining: usize,
    written: usize,
    /// `json` only: where the map key being written starts in `out`.
    key_start: usize,
}

/// `redis-cli --raw`: strings as they are, nil as nothing, an error's text
/// and a line end, numbers as sent, booleans as `(true)`/`(false)`, the
/// elements of an array or set on lines of their own, a map's pairs as
/// `key value` lines.
fn write_raw(reply: &[u8], out: &mut Vec<u8>) {
    let mut items = Items::new(reply);
    let mut open: Vec<Open> = Vec::new();
    loop {
        // Separators before the next element of the innermost aggregate.
        if let Some(parent) = open.last_mut() {
            if parent.remaining == 0 {
                open.pop();
                continue;
            }
            if parent.written > 0 {
                let separator: &[u8] = match parent.map && parent.written % 2 == 1 {
                    true => b" ",
                    false => b"\n",
                };
                out.extend_from_slice(separator);
            }
            parent.remaining -= 1;
            parent.written += 1;
        }
        let Some(item) = items.next_item() else {
            return;
        };
        match item {
            Item::Text(text) | Item::Number(text) => out.extend_from_slice(text),
            Item::Error(message) => {
                out.extend_from_slice(message);
                out.push(b'\n');
            }
            Item::Boolean(true) => out.extend_from_slice(b"(true)"),
            Item::Boolean(false) => out.extend_from_slice(b"(false)"),
            Item::Nil => {}
            Item::Aggregate { map, elements } => open.push(Open {
                map,
                remaining: elements,
                written: 0,
                key_start: 0,
            }),
        }
        if open.is_empty() {
            return;
        }
    }
}

/// The reply as one JSON value (see the module header for the mapping).
fn write_json(reply: &[u8], out: &mut Vec<u8>) {
    let start = out.len();
    let mut items = Items::new(reply);
    let mut open: Vec<Open> = Vec::new();
    loop {
        if let Some(parent) = open.last_mut() {
            if parent.remaining == 0 {
                out.push(if parent.map { b'}' } else { b']' });
                open.pop();
                // The aggregate may have been a map key.
                key_written(&mut open, out);
                if open.is_empty() {
                    return;
                }
                continue;
            }
            if parent.written > 0 {
                let separator = match parent.map && parent.written % 2 == 1 {
                    true => b':',
                    false => b',',
                };
                out.push(separator);
            }
            if parent.map && parent.written % 2 == 0 {
                parent.key_start = out.len();
            }
            parent.remaining -= 1;
            parent.written += 1;
        }
        let Some(item) = items.next_item() else {
            // Bytes that are no reply: whatever was written is no JSON.
            out.truncate(start);
            out.extend_from_slice(b"{\"error\":\"pipeload: a reply it cannot read\"}");
            return;
        };
        match item {
            Item::Text(text) => write_json_string(text, out),
            Item::Number(number) if is_json_number(number) => out.extend_from_slice(number),
            Item::Number(other) => write_json_string(other, out),
            Item::Error(message) => {
                out.extend_from_slice(b"{\"error\":");
                write_json_string(message, out);
                out.push(b'}');
            }
            Item::Boolean(true) => out.extend_from_slice(b"true"),
            Item::Boolean(false) => out.extend_from_slice(b"false"),
            Item::Nil => out.extend_from_slice(b"null"),
            Item::Aggregate { map, elements } => {
                out.push(if map { b'{' } else { b'[' });
                open.push(Open {
                    map,
                    remaining: elements,
                    written: 0,
                    key_start: 0,
                });
                continue;
            }
        }
        key_written(&mut open, out);
        if open.is_empty() {
            return;
        }
    }
}

/// After a complete value: when it was a map's key and is not a JSON
/// string, it becomes the string of its JSON, as object keys must be.
fn key_written(open: &mut [Open], out: &mut Vec<u8>) {
    let Some(parent) = open.last() else {
        return;
    };
    if !(parent.map && parent.written % 2 == 1) {
        return;
    }
    let key_start = parent.key_start;
    if out.get(key_start) == Some(&b'"') {
        return;
    }
    let key = out.split_off(key_start);
    write_json_string(&key, out);
}

/// A JSON string when `text` is UTF-8, else `{"base64":"…"}`.
fn write_json_string(text: &[u8], out: &mut Vec<u8>) {
    // Most values are printable ASCII with nothing to escape (ASCII is
    // UTF-8 too), which a pass the compiler vectorises tells.
    if is_plain_ascii(text) {
        out.reserve(text.len() + 2);
        out.push(b'"');
        out.extend_from_slice(text);
        out.push(b'"');
        return;
    }
    let Ok(text) = std::str::from_utf8(text) else {
        out.extend_from_slice(b"{\"base64\":\"");
        write_base64(text, out);
        out.extend_from_slice(b"\"}");
        return;
    };
    write_json_text(text, out);
}

/// `text` as a JSON string, quoted and escaped (also the JSON summary's).
pub fn write_json_text(text: &str, out: &mut Vec<u8>) {
    out.reserve(text.len() + 2);
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut plain_from = 0;
    for (at, &byte) in bytes.iter().enumerate() {
        let escaped: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[plain_from..at]);
        match escaped.is_empty() {
            true => out.extend_from_slice(format!("\\u{byte:04x}").as_bytes()),
            false => out.extend_from_slice(escaped),
        }
        plain_from = at + 1;
    }
    out.extend_from_slice(&bytes[plain_from..]);
    out.push(b'"');
}

/// Whether every byte of `text` is one JSON writes as it is and a whole
/// UTF-8 character: printable ASCII but `"` and `\\`. Two passes with no
/// branch per byte: a maximum the compiler vectorises, and `memchr2`.
fn is_plain_ascii(text: &[u8]) -> bool {
    // 0x20..=0x7f, moved down by 0x20 (wrapping), is all below 0x60.
    let highest = text
        .iter()
        .fold(0u8, |highest, &byte| highest.max(byte.wrapping_sub(0x20)));
    highest < 0x60 && memchr2(b'"', b'\\', text).is_none()
}

const BASE64_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64, padded.
fn write_base64(bytes: &[u8], out: &mut Vec<u8>) {
    out.reserve(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let word = (u32::from(chunk[0]) << 16)
            | (u32::from(chunk.get(1).copied().unwrap_or(0)) << 8)
            | u32::from(chunk.get(2).copied().unwrap_or(0));
        for sextet in 0..4 {
            match sextet <= chunk.len() {
                true => out.push(BASE64_ALPHABET[((word >> (18 - 6 * sextet)) & 0x3f) as usize]),
                false => out.push(b'='),
            }
        }
    }
}

/// Whether `text` is a number as JSON writes one: `-?(0|[1-9][0-9]*)`,
/// then optionally `.digits` and `e[+-]?digits`.
fn is_json_number(text: &[u8]) -> bool {
    let digits = |text: &[u8]| text.iter().take_while(|byte| byte.is_ascii_digit()).count();
    let mut rest = text.strip_prefix(b"-").unwrap_or(text);
    let integer = digits(rest);
    if integer == 0 || (integer > 1 && rest[0] == b'0') {
        return false;
    }
    rest = &rest[integer..];
    if let Some(fraction) = rest.strip_prefix(b".") {
        let count = digits(fraction);
        if count == 0 {
            return false;
        }
        rest = &fraction[count..];
    }
    if let Some(exponent) = rest.strip_prefix(b"e").or_else(|| rest.strip_prefix(b"E")) {
        let exponent = exponent
            .strip_prefix(b"+")
            .or_else(|| exponent.strip_prefix(b"-"))
            .unwrap_or(exponent);
        let count = digits(exponent);
        return count > 0 && count == exponent.len();
    }
    rest.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(reply: &[u8]) -> String {
        let mut out = Vec::new();
        format_reply(
            RepliesFormat::Raw,
            reply,
            &InputPosition {
                file: None,
                line_no: 1,
                command_no: None,
            },
            &mut out,
        );
        String::from_utf8(out).unwrap()
    }

    fn json(reply: &[u8]) -> String {
        let mut out = Vec::new();
        write_json(reply, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn raw_prints_as_redis_cli_raw_does() {
        assert_eq!(raw(b"$5\r\nhello\r\n"), "hello\n");
        assert_eq!(raw(b"$-1\r\n"), "\n");
        assert_eq!(raw(b"_\r\n"), "\n");
        assert_eq!(raw(b"+OK\r\n"), "OK\n");
        assert_eq!(raw(b":-42\r\n"), "-42\n");
        assert_eq!(raw(b"-ERR no\r\n"), "ERR no\n\n");
        assert_eq!(raw(b"*2\r\n$1\r\nx\r\n$1\r\ny\r\n"), "x\ny\n");
        assert_eq!(raw(b"*0\r\n"), "\n");
        assert_eq!(raw(b"%2\r\n+f1\r\n+v1\r\n+f2\r\n:2\r\n"), "f1 v1\nf2 2\n");
        assert_eq!(
            raw(b"%3\r\n:0\r\n#f\r\n:1\r\n#t\r\n:2\r\n#f\r\n"),
            "0 (false)\n1 (true)\n2 (false)\n"
        );
        assert_eq!(raw(b"~3\r\n:0\r\n:1\r\n:2\r\n"), "0\n1\n2\n");
        assert_eq!(raw(b",3.141\r\n"), "3.141\n");
        assert_eq!(
            raw(b"=29\r\ntxt:This is a verbatim\nstring\r\n"),
            "This is a verbatim\nstring\n"
        );
        assert_eq!(
            raw(b"*3\r\n+OK\r\n-ERR not an integer\r\n*2\r\n:1\r\n:2\r\n"),
            "OK\nERR not an integer\n\n1\n2\n"
        );
        assert_eq!(
            raw(b"|1\r\n$3\r\nkey\r\n*2\r\n$1\r\na\r\n:9\r\n$4\r\nreal\r\n"),
            "real\n"
        );
    }

    #[test]
    fn json_maps_every_type() {
        assert_eq!(json(b"$5\r\nhello\r\n"), "\"hello\"");
        assert_eq!(json(b"$-1\r\n"), "null");
        assert_eq!(json(b"*-1\r\n"), "null");
        assert_eq!(json(b":7\r\n"), "7");
        assert_eq!(
            json(b"(123456789012345678901234567890\r\n"),
            "123456789012345678901234567890"
        );
        assert_eq!(json(b",1.5\r\n"), "1.5");
        assert_eq!(json(b",inf\r\n"), "\"inf\"");
        assert_eq!(json(b"#t\r\n"), "true");
        assert_eq!(json(b"-ERR x \"y\"\r\n"), "{\"error\":\"ERR x \\\"y\\\"\"}");
        assert_eq!(json(b"*0\r\n"), "[]");
        assert_eq!(json(b"%0\r\n"), "{}");
        assert_eq!(
            json(b"*3\r\n$1\r\na\r\n*1\r\n:1\r\n%1\r\n+k\r\n_\r\n"),
            "[\"a\",[1],{\"k\":null}]"
        );
        assert_eq!(json(b"%1\r\n:1\r\n#t\r\n"), "{\"1\":true}");
        assert_eq!(json(b"%1\r\n*1\r\n:1\r\n+v\r\n"), "{\"[1]\":\"v\"}");
        assert_eq!(json(b"$3\r\na\x00\n\r\n"), "\"a\\u0000\\n\"");
        assert_eq!(json(b"$3\r\n\xff\xfe\x00\r\n"), "{\"base64\":\"//4A\"}");
        assert_eq!(json(b"$5\r\n\xc3\xa9 \"\x7f\r\n"), "\"\u{e9} \\\"\x7f\"");
    }

    #[test]
    fn a_bulk_string_takes_the_short_way_only_when_its_length_matches() {
        assert_eq!(bulk_string_data(b"$5\r\nhello\r\n"), Some(&b"hello"[..]));
        assert_eq!(bulk_string_data(b"$0\r\n\r\n"), Some(&b""[..]));
        assert_eq!(bulk_string_data(b"$4\r\na\r\nb\r\n"), Some(&b"a\r\nb"[..]));
        for other in [
            &b"$-1\r\n"[..],
            b"$5\r\nhell\r\n",
            b"$3\r\nhello\r\n",
            b"$\r\n\r\n",
            b"+OK\r\n",
            b"*1\r\n$1\r\na\r\n",
            b"$2\r\nab",
        ] {
            assert_eq!(bulk_string_data(other), None, "{other:?}");
        }
    }

    #[test]
    fn plain_ascii_is_told_in_blocks_and_the_rest() {
        for len in [0, 1, 31, 32, 33, 64, 100] {
            let plain = vec![b'a'; len];
            assert!(is_plain_ascii(&plain), "{len}");
            for at in 0..len {
                for byte in [b'"', b'\\', b'\n', 0x00, 0x1f, 0x7f + 1, 0xff] {
                    let mut text = plain.clone();
                    text[at] = byte;
                    assert!(!is_plain_ascii(&text), "{len} {at} {byte}");
                }
            }
        }
        assert!(is_plain_ascii(b" ~\x7f"));
    }

    #[test]
    fn numbers_are_written_in_decimal() {
        for number in [0, 7, 10, 1234567890, u64::MAX] {
            let mut out = Vec::new();
            write_number(number, &mut out);
            assert_eq!(out, number.to_string().as_bytes());
        }
    }

    #[test]
    fn base64_pads() {
        for (bytes, encoded) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
        ] {
            let mut out = Vec::new();
            write_base64(bytes, &mut out);
            assert_eq!(out, encoded.as_bytes());
        }
    }

    #[test]
    fn json_numbers_are_checked() {
        for good in ["0", "-1", "1.5", "1e10", "-2.5E-3"] {
            assert!(is_json_number(good.as_bytes()), "{good}");
        }
        for bad in ["", "-", "01", "1.", ".5", "nan", "inf", "1e", "1x"] {
            assert!(!is_json_number(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn deep_nesting_and_cut_replies_never_panic() {
        let deep = b"*1\r\n".repeat(100_000);
        let mut out = Vec::new();
        write_json(&deep, &mut out);
        write_raw(&deep, &mut out);
        let reply = b"*3\r\n$5\r\nhello\r\n%1\r\n+k\r\n,1.5\r\n:3\r\n";
        for cut in 0..reply.len() {
            let mut out = Vec::new();
            write_json(&reply[..cut], &mut out);
            write_raw(&reply[..cut], &mut out);
        }
    }
}
