//! The JSON Lines framer's record: one line, one JSON object, checked
//! whole in one pass by a small scanner of our own that records where each
//! top-level member's name and value lie in the line; no value tree is
//! built and nothing is copied. A nested path (`{user.age}`, `{tags.0}`)
//! walks the raw value it goes through, and a string is unescaped only when
//! a template uses it.
//!
//! Place in the data flow: one of the input's framers (`--format jsonl`);
//! `records` finds the lines and turns each record into commands.
//!
//! Values, as the templates get them: a string its text (unescaped, UTF-8),
//! a number, `true` or `false` its JSON text exactly as written (no float
//! rounding), an object or array its JSON text as written; `null` counts
//! as missing, so `{name:-default}` gives the default for it.
//!
//! Invariant: the scanner accepts exactly the lines `serde_json` accepts as
//! an object (tested against it). A line it refuses is parsed again by
//! `serde_json`, whose error gives the reason and the column; strings with
//! escapes are decoded by `serde_json` too, so the text is the same.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::template::{Field, Record};
use crate::encode::EncodedCommand;

/// A JSON string's text: borrowed from the line when it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, text: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(text)))
            }
            fn visit_str<E>(self, text: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(text.to_owned())))
            }
            fn visit_string<E>(self, text: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(text)))
            }
        }
        deserializer.deserialize_str(TextVisitor(PhantomData))
    }
}

/// What `serde_json` makes of a line the scanner refused: an object's
/// members, names decoded and values as written (taken raw, so its errors
/// are word for word those of a raw parse). Here only its error is used;
/// the tests compare its members with the scanner's.
#[cfg_attr(not(test), allow(dead_code))]
struct SerdeObject(Vec<(Vec<u8>, Vec<u8>)>);

impl<'de> Deserialize<'de> for SerdeObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;
        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = SerdeObject;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<SerdeObject, M::Error> {
                let mut members = Vec::new();
                while let Some((Text(name), value)) = map.next_entry::<Text, &RawValue>()? {
                    members.push((name.as_bytes().to_vec(), value.get().as_bytes().to_vec()));
                }
                Ok(SerdeObject(members))
            }
        }
        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// Where a member of an object lies in the line: its name (with the
/// quotes) and its value (JSON text as written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MemberSpan {
    name_start: usize,
    name_end: usize,
    name_escaped: bool,
    value_start: usize,
    value_end: usize,
    /// The value is a string with a backslash escape in it.
    value_escaped: bool,
}

/// The scanner's scratch space, kept from line to line so a line costs no
/// allocation once it has warmed up.
#[derive(Default)]
pub(super) struct JsonScratch {
    /// The top-level members of the last line, in order.
    members: Vec<MemberSpan>,
    /// The closing bytes of the arrays and objects the scan is inside.
    open: Vec<u8>,
}

/// A JSON text checked one byte range at a time; every method leaves
/// `pos` just past what it accepted. `Err(())` says only "not JSON":
/// `serde_json` is asked why.
struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
}

type Scan<T> = Result<T, ()>;

impl Scanner<'_> {
    fn skip_whitespace(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.text.get(self.pos) {
            self.pos += 1;
        }
    }

    /// The next byte after whitespace, not consumed.
    fn peek(&mut self) -> Scan<u8> {
        self.skip_whitespace();
        self.text.get(self.pos).copied().ok_or(())
    }

    /// Consumes `byte` after whitespace.
    fn expect(&mut self, byte: u8) -> Scan<()> {
        match self.peek()? == byte {
            true => {
                self.pos += 1;
                Ok(())
            }
            false => Err(()),
        }
    }

    /// A string starting at `pos` (its opening quote); true when it has a
    /// backslash escape.
    #[inline]
    fn string(&mut self) -> Scan<bool> {
        let text = self.text;
        let mut pos = self.pos + 1;
        let mut escaped = false;
        loop {
            pos = next_special(text, pos);
            match text.get(pos) {
                Some(b'"') => {
                    self.pos = pos + 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    match text.get(pos + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => pos += 2,
                        Some(b'u') => {
                            let hex = text.get(pos + 2..pos + 6).ok_or(())?;
                            if !hex.iter().all(u8::is_ascii_hexdigit) {
                                return Err(());
                            }
                            pos += 6;
                        }
                        _ => return Err(()),
                    }
                }
                // A control character, or the end of the text.
                _ => return Err(()),
            }
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while self.text.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        self.pos - start
    }

    /// A number: `-`, then `0` or digits without a leading zero, then an
    /// optional fraction and exponent, each with at least one digit.
    fn number(&mut self) -> Scan<()> {
        if self.text.get(self.pos) == Some(&b'-') {
            self.pos += 1;
        }
        match self.text.get(self.pos) {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(()),
        }
        if self.text.get(self.pos) == Some(&b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(());
            }
        }
        if let Some(b'e' | b'E') = self.text.get(self.pos) {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.text.get(self.pos) {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(());
            }
        }
        Ok(())
    }

    fn literal(&mut self, word: &[u8]) -> Scan<()> {
        match self.text[self.pos..].starts_with(word) {
            true => {
                self.pos += word.len();
                Ok(())
            }
            false => Err(()),
        }
    }

    /// An object member's name and colon: where the name (with its
    /// quotes) ends, and whether it has an escape.
    fn name_and_colon(&mut self) -> Scan<(usize, bool)> {
        if self.peek()? != b'"' {
            return Err(());
        }
        let escaped = self.string()?;
        let end = self.pos;
        self.expect(b':')?;
        Ok((end, escaped))
    }

    /// One value of any kind, nested ones checked without recursion
    /// (`open` holds the closing bytes still owed); true when it is a
    /// string with an escape.
    fn value(&mut self, open: &mut Vec<u8>) -> Scan<bool> {
        open.clear();
        loop {
            let escaped = match self.peek()? {
                opening @ (b'{' | b'[') => {
                    self.pos += 1;
                    let close = opening + 2; // `}` and `]`
                    if self.peek()? == close {
                        self.pos += 1;
                    } else {
                        open.push(close);
                        if close == b'}' {
                            self.name_and_colon()?;
                        }
                        continue;
                    }
                    false
                }
                b'"' => self.string()?,
                b't' => self.literal(b"true").map(|()| false)?,
                b'f' => self.literal(b"false").map(|()| false)?,
                b'n' => self.literal(b"null").map(|()| false)?,
                b'-' | b'0'..=b'9' => self.number().map(|()| false)?,
                _ => return Err(()),
            };
            // A value is complete: close what it completes, or go on to the
            // next member or element.
            loop {
                let Some(&close) = open.last() else {
                    return Ok(escaped);
                };
                match self.peek()? {
                    b',' => {
                        self.pos += 1;
                        if close == b'}' {
                            self.name_and_colon()?;
                        }
                        break;
                    }
                    byte if byte == close => {
                        self.pos += 1;
                        open.pop();
                    }
                    _ => return Err(()),
                }
            }
        }
    }

    /// The members of the object that starts at `pos`, each handed to
    /// `each` as it is found.
    fn object(&mut self, open: &mut Vec<u8>, mut each: impl FnMut(MemberSpan)) -> Scan<()> {
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_whitespace();
            let name_start = self.pos;
            let (name_end, name_escaped) = self.name_and_colon()?;
            self.skip_whitespace();
            let value_start = self.pos;
            let value_escaped = self.value(open)?;
            each(MemberSpan {
                name_start,
                name_end,
                name_escaped,
                value_start,
                value_end: self.pos,
                value_escaped,
            });
            match self.peek()? {
                b',' => self.pos += 1,
                b'}' => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(()),
            }
        }
    }
}

/// Where the first `"`, `\\` or control character at or after `pos` is
/// (`text.len()` when there is none), eight bytes at a time while eight
/// are left: a byte below 0x20, or one equal to `"` or `\\`, sets the
/// high bit of its lane (Mycroft's test, as `serde_json` does it).
#[inline]
fn next_special(text: &[u8], mut pos: usize) -> usize {
    const ONES: u64 = u64::MAX / 255;
    while let Some(chunk) = text.get(pos..pos + 8) {
        let mut lanes = [0; 8];
        lanes.copy_from_slice(chunk);
        let word = u64::from_le_bytes(lanes);
        let control = word.wrapping_sub(ONES * 0x20) & !word;
        let quote = word ^ (ONES * u64::from(b'"'));
        let quote = quote.wrapping_sub(ONES) & !quote;
        let backslash = word ^ (ONES * u64::from(b'\\'));
        let backslash = backslash.wrapping_sub(ONES) & !backslash;
        let found = (control | quote | backslash) & (ONES << 7);
        if found != 0 {
            // The lowest lane flagged is exact (a borrow only flags lanes
            // above a true one).
            return pos + found.trailing_zeros() as usize / 8;
        }
        pos += 8;
    }
    while let Some(&byte) = text.get(pos) {
        if byte < 0x20 || byte == b'"' || byte == b'\\' {
            break;
        }
        pos += 1;
    }
    pos
}

/// A string's text, given its JSON text with the quotes (in a line
/// already checked, so UTF-8).
fn decode_string(json: &[u8], escaped: bool) -> Result<Cow<'_, [u8]>, String> {
    if !escaped {
        return Ok(Cow::Borrowed(
            json.get(1..json.len() - 1).unwrap_or_default(),
        ));
    }
    let text = std::str::from_utf8(json).map_err(|error| error.to_string())?;
    match serde_json::from_str::<Text>(text).map_err(|error| error.to_string())? {
        Text(Cow::Borrowed(text)) => Ok(Cow::Borrowed(text.as_bytes())),
        Text(Cow::Owned(text)) => Ok(Cow::Owned(text.into_bytes())),
    }
}

/// Whether a name's JSON text (with the quotes) stands for `name`.
#[inline]
fn name_is(json: &[u8], escaped: bool, name: &str) -> bool {
    match escaped {
        false => json.len() == name.len() + 2 && json[1..=name.len()] == *name.as_bytes(),
        true => decode_string(json, true).is_ok_and(|text| *text == *name.as_bytes()),
    }
}

/// Why `serde_json` refuses a line the scanner refused: the reason and
/// the column, its own "at line 1 column N" taken off (the line is ours to
/// give).
fn serde_refusal(text: &str) -> String {
    let error = match serde_json::from_str::<SerdeObject>(text) {
        Err(error) => error,
        // Never seen (the tests hold the scanner to serde_json's grammar);
        // refused all the same rather than loaded half understood.
        Ok(SerdeObject(_)) => return "column 1: invalid JSON: not understood".into(),
    };
    let message = error.to_string();
    let reason = message
        .rsplit_once(" at line ")
        .map_or(&*message, |(reason, _)| reason);
    format!("column {}: invalid JSON: {reason}", error.column())
}

/// One JSON Lines record.
pub(super) struct JsonRecord<'a> {
    line: &'a [u8],
    /// The line without surrounding whitespace: `{.}`.
    whole: &'a [u8],
    members: &'a [MemberSpan],
}

impl<'a> JsonRecord<'a> {
    /// Checks a line (not blank) and finds its top-level members; `Err` is
    /// why it cannot be used, with the column where the JSON went wrong.
    pub(super) fn parse(
        line: &'a [u8],
        scratch: &'a mut JsonScratch,
    ) -> Result<JsonRecord<'a>, String> {
        let start = line
            .iter()
            .position(|byte| !byte.is_ascii_whitespace())
            .unwrap_or(line.len());
        let end = line
            .iter()
            .rposition(|byte| !byte.is_ascii_whitespace())
            .map_or(start, |last| last + 1);
        if line.get(start) != Some(&b'{') {
            return Err(format!(
                "column {}: not a JSON object (each line must be one {{…}})",
                start + 1
            ));
        }
        // JSON is UTF-8: checked once for the whole line (the standard
        // library's check is the fastest), so the scanner need not.
        let text = std::str::from_utf8(line).map_err(|error| {
            format!(
                "column {}: invalid UTF-8 (JSON text is UTF-8)",
                error.valid_up_to() + 1
            )
        })?;
        let JsonScratch { members, open } = scratch;
        members.clear();
        let mut scanner = Scanner { text: line, pos: 0 };
        let scanned = scanner
            .object(open, |member| members.push(member))
            .and_then(|()| {
                scanner.skip_whitespace();
                match scanner.pos == line.len() {
                    true => Ok(()),
                    false => Err(()),
                }
            });
        // A name serde_json cannot decode (a lone surrogate) makes the line
        // invalid for it too.
        let names_decode = || {
            members
                .iter()
                .filter(|member| member.name_escaped)
                .all(|member| {
                    decode_string(&line[member.name_start..member.name_end], true).is_ok()
                })
        };
        if scanned.is_err() || !names_decode() {
            return Err(serde_refusal(text));
        }
        Ok(JsonRecord {
            line,
            whole: &line[start..end],
            members,
        })
    }

    fn name(&self, member: &MemberSpan) -> Cow<'a, [u8]> {
        let json = &self.line[member.name_start..member.name_end];
        // Checked when the line was parsed.
        decode_string(json, member.name_escaped).unwrap_or_default()
    }

    fn value(&self, member: &MemberSpan) -> Value<'a> {
        Value {
            json: &self.line[member.value_start..member.value_end],
            escaped: member.value_escaped,
        }
    }

    /// The top-level member named `name` (the last one, when a name
    /// repeats, as JSON parsers commonly keep).
    fn member(&self, name: &str) -> Option<Value<'a>> {
        for member in self.members.iter().rev() {
            // Most names differ in length: that settles it without looking
            // at their bytes.
            let plain_len_differs =
                !member.name_escaped && member.name_end - member.name_start != name.len() + 2;
            if plain_len_differs {
                continue;
            }
            let json = &self.line[member.name_start..member.name_end];
            if name_is(json, member.name_escaped, name) {
                return Some(self.value(member));
            }
        }
        None
    }

    /// The value a dotted path reaches: a member of the top-level object
    /// (a name with dots in it first, whole), then member names or array
    /// indexes.
    fn reach(&self, path: &str) -> Option<Value<'a>> {
        if let Some(whole) = self.member(path) {
            return Some(whole);
        }
        if !path.as_bytes().contains(&b'.') {
            return None;
        }
        let mut steps = path.split('.');
        let mut value = self.member(steps.next()?)?;
        for step in steps {
            value = value.step(step)?;
        }
        Some(value)
    }
}

/// A value's JSON text, inside a line already checked.
#[derive(Clone, Copy)]
struct Value<'a> {
    json: &'a [u8],
    /// A string with a backslash escape.
    escaped: bool,
}

impl<'a> Value<'a> {
    /// The member named `step` of an object (the last of that name), or
    /// the element at index `step` of an array.
    fn step(self, step: &str) -> Option<Value<'a>> {
        let mut scanner = Scanner {
            text: self.json,
            pos: 0,
        };
        let mut open = Vec::new();
        let mut found = None;
        match self.json.first() {
            Some(b'{') => {
                scanner
                    .object(&mut open, |member| {
                        let name = &self.json[member.name_start..member.name_end];
                        if name_is(name, member.name_escaped, step) {
                            found = Some(member);
                        }
                    })
                    .ok()?;
                let member = found?;
                Some(Value {
                    json: &self.json[member.value_start..member.value_end],
                    escaped: member.value_escaped,
                })
            }
            Some(b'[') => {
                let index: usize = step.parse().ok()?;
                scanner.pos = 1;
                if scanner.peek().ok()? == b']' {
                    return None;
                }
                for _ in 0..index {
                    scanner.value(&mut open).ok()?;
                    scanner.expect(b',').ok()?;
                }
                scanner.skip_whitespace();
                let start = scanner.pos;
                let escaped = scanner.value(&mut open).ok()?;
                Some(Value {
                    json: &self.json[start..scanner.pos],
                    escaped,
                })
            }
            _ => None,
        }
    }

    /// Appends the value's bytes as templates get them; false for `null`.
    fn append(self, out: &mut Vec<u8>) -> Result<bool, String> {
        match self.json.first() {
            Some(b'"') if !self.escaped => {
                out.extend_from_slice(&self.json[1..self.json.len() - 1]);
            }
            Some(b'"') => out.extend_from_slice(&decode_string(self.json, true)?),
            Some(b'n') => return Ok(false),
            _ => out.extend_from_slice(self.json),
        }
        Ok(true)
    }
}

impl Record for JsonRecord<'_> {
    fn append_field(&self, field: &Field, out: &mut Vec<u8>) -> Result<bool, String> {
        match self.reach(&field.name) {
            Some(value) => value.append(out),
            None => Ok(false),
        }
    }

    fn push_all_fields(&self, args: &mut EncodedCommand) -> Result<(), String> {
        for member in self.members {
            let value = self.value(member);
            if value.json == b"null" {
                continue;
            }
            args.push(&self.name(member));
            value.append(args.begin_arg())?;
            args.end_arg();
        }
        Ok(())
    }

    fn append_whole(&self, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(self.whole);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::template::Template;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    fn expand(template: &str, line: &str) -> Result<Vec<String>, String> {
        let mut scratch = JsonScratch::default();
        let record = JsonRecord::parse(line.as_bytes(), &mut scratch)?;
        let template = Template::compile(template, 0).map_err(|error| error.reason)?;
        let mut args = EncodedCommand::default();
        template.expand(&record, &mut args)?;
        Ok(args
            .iter()
            .map(|arg| String::from_utf8_lossy(arg).into_owned())
            .collect())
    }

    #[test]
    fn paths_reach_into_objects_and_arrays() {
        let line = r#" {"id": 7, "user": {"age": 41, "name": "Ann \"A\" \u00e9\n"}, "tags": ["x", {"k": true}], "a.b": 1.50} "#;
        assert_eq!(
            expand(
                "SET {id} {user.age} {user.name} {tags.0} {tags.1.k} {a.b} {tags}",
                line
            ),
            Ok([
                "SET",
                "7",
                "41",
                "Ann \"A\" é\n",
                "x",
                "true",
                "1.50",
                r#"["x", {"k": true}]"#
            ]
            .map(String::from)
            .to_vec())
        );
        assert_eq!(
            expand("SET {user.missing} x", line),
            Err("no field 'user.missing'".into())
        );
        assert_eq!(
            expand("SET {tags.9:-none} {.}", r#"{"tags":[]}"#),
            Ok(vec!["SET".into(), "none".into(), r#"{"tags":[]}"#.into()])
        );
    }

    #[test]
    fn null_is_missing_and_all_fields_leave_it_out() {
        let line = r#"{"id":"1","email":null,"n":12345678901234567890123}"#;
        assert_eq!(
            expand("HSET k {*}", line),
            Ok(["HSET", "k", "id", "1", "n", "12345678901234567890123"]
                .map(String::from)
                .to_vec())
        );
        assert_eq!(
            expand("SET {email:-none} x", line),
            Ok(["SET", "none", "x"].map(String::from).to_vec())
        );
    }

    #[test]
    fn lines_that_are_not_objects_are_refused_with_the_column() {
        let reason = |line: &str| {
            JsonRecord::parse(line.as_bytes(), &mut JsonScratch::default())
                .err()
                .unwrap()
        };
        assert_eq!(
            reason("  [1,2]"),
            "column 3: not a JSON object (each line must be one {…})"
        );
        assert!(
            reason(r#"{"a": 1,, }"#).starts_with("column 9: invalid JSON: "),
            "{}",
            reason(r#"{"a": 1,, }"#)
        );
        assert!(reason(r#"{"a": "x"} trailing"#).contains("trailing characters"));
    }

    /// Each top-level member's name (decoded) and value (JSON text), or
    /// why the line is refused.
    type Members = Result<Vec<(Vec<u8>, Vec<u8>)>, String>;

    /// What `serde_json` reads from a line: each top-level member's name
    /// (decoded) and value (JSON text as written), or its error.
    fn serde_members(line: &str) -> Members {
        serde_json::from_str::<SerdeObject>(line)
            .map(|SerdeObject(members)| members)
            .map_err(|error| error.to_string())
    }

    /// What the scanner reads from a line, in the same terms.
    fn scanned_members(line: &[u8]) -> Members {
        let mut scratch = JsonScratch::default();
        let record = JsonRecord::parse(line, &mut scratch)?;
        Ok(record
            .members
            .iter()
            .map(|member| {
                (
                    record.name(member).to_vec(),
                    record.value(member).json.to_vec(),
                )
            })
            .collect())
    }

    /// The scanner agrees with `serde_json` on `line`: both accept it with
    /// the same members, or both refuse it (with serde_json's reason).
    fn agrees_with_serde(line: &[u8]) -> Result<(), TestCaseError> {
        let scanned = scanned_members(line);
        let Ok(text) = std::str::from_utf8(line) else {
            prop_assert!(scanned.is_err());
            return Ok(());
        };
        match serde_members(text) {
            Ok(members) => prop_assert_eq!(scanned, Ok(members), "{:?}", text),
            Err(reason) => prop_assert!(
                scanned.is_err(),
                "{:?} accepted, serde_json: {}",
                text,
                reason
            ),
        }
        Ok(())
    }

    /// Pieces of JSON, valid and not, that random lines are made of.
    const PIECES: &[&str] = &[
        "{",
        "}",
        "[",
        "]",
        ":",
        ",",
        " ",
        "\t",
        "\r",
        "\u{c}",
        "\"a\"",
        "\"id\"",
        "\"\\\"\"",
        "\"\\u00e9\\n\"",
        "\"\\ud800\"",
        "\"\\ud83d\\ude00\"",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\u{1}\"",
        "\"é\"",
        "\"",
        "\\",
        "0",
        "12",
        "-",
        "-0",
        "01",
        "1.",
        ".5",
        "1.5",
        "e3",
        "1e+2",
        "2E-",
        "true",
        "tru",
        "false",
        "null",
        "nul",
        "x",
        "é",
    ];

    fn random_line() -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(PIECES), 0..24)
            .prop_map(|pieces| format!("{{{}", pieces.concat()))
    }

    /// Valid JSON objects of any shape, written compactly or spaced out.
    fn valid_line() -> impl Strategy<Value = String> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |number| number.is_finite())
                .prop_map(serde_json::Value::from),
            ".{0,12}".prop_map(serde_json::Value::from),
        ];
        let value = leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..5).prop_map(serde_json::Value::from),
                proptest::collection::btree_map(".{0,6}", inner, 0..5)
                    .prop_map(|map| serde_json::Value::Object(map.into_iter().collect())),
            ]
        });
        (
            proptest::collection::btree_map(".{0,6}", value, 0..6),
            any::<bool>(),
        )
            .prop_map(|(members, pretty)| {
                let object = serde_json::Value::Object(members.into_iter().collect());
                match pretty {
                    true => serde_json::to_string_pretty(&object)
                        .unwrap_or_default()
                        .replace('\n', " "),
                    false => object.to_string(),
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn random_lines_are_read_as_serde_json_reads_them(line in random_line()) {
            agrees_with_serde(line.as_bytes())?;
        }

        #[test]
        fn valid_lines_with_pieces_put_in_or_taken_out_are_read_as_serde_json_reads_them(
            line in valid_line(),
            edits in proptest::collection::vec(
                (any::<proptest::sample::Index>(), 0usize..3, proptest::sample::select(PIECES)),
                1..4,
            ),
        ) {
            let mut line = line.into_bytes();
            for (at, removed, piece) in edits {
                let at = at.index(line.len() + 1);
                let removed = removed.min(line.len() - at);
                line.splice(at..at + removed, piece.bytes());
            }
            agrees_with_serde(&line)?;
        }

        #[test]
        fn valid_lines_and_every_cut_of_them_are_read_as_serde_json_reads_them(
            line in valid_line(),
        ) {
            prop_assert!(scanned_members(line.as_bytes()).is_ok(), "{:?}", line);
            for cut in 0..line.len() {
                agrees_with_serde(&line.as_bytes()[..cut])?;
            }
        }

        #[test]
        fn any_bytes_are_refused_or_read_without_a_panic(
            line in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut line = line;
            line.insert(0, b'{');
            agrees_with_serde(&line)?;
        }
    }

    #[test]
    fn refusals_give_serde_json_reasons_and_columns() {
        let reason = |line: &str| scanned_members(line.as_bytes()).unwrap_err();
        assert_eq!(
            reason(r#"{"a": 01}"#),
            "column 8: invalid JSON: invalid number"
        );
        assert_eq!(
            reason(r#"{"a": [1,]}"#),
            "column 10: invalid JSON: expected value"
        );
        assert_eq!(
            reason("{\"a\": \"x\u{1}\"}"),
            "column 8: invalid JSON: control character (\\u0000-\\u001F) found while parsing a string"
        );
        assert_eq!(
            reason(r#"{"\ud800": 1}"#),
            "column 9: invalid JSON: unexpected end of hex escape"
        );
        // A lone surrogate in a value is fine for serde_json until the value
        // is decoded: a template using it refuses the record then.
        assert!(scanned_members(br#"{"a": "\ud800"}"#).is_ok());
        assert_eq!(
            expand("SET {a} x", r#"{"a": "\ud800"}"#),
            Err("unexpected end of hex escape at line 1 column 8".into())
        );
    }
}
