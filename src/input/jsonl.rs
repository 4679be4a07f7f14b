//! The JSON Lines framer's record: one line, one JSON object, parsed with
//! `serde_json` only as deep as the templates reach. The top level is read
//! into (name, raw value) pairs that borrow the line; a nested path
//! (`{user.age}`, `{tags.0}`) parses the raw value it goes through, and a
//! value is unescaped only when a template uses it.
//!
//! Place in the data flow: one of the input's framers (`--format jsonl`);
//! `records` finds the lines and turns each record into commands.
//!
//! Values, as the templates get them: a string its text (unescaped, UTF-8),
//! a number, `true` or `false` its JSON text exactly as written (no float
//! rounding), an object or array its JSON text as written; `null` counts
//! as missing, so `{name:-default}` gives the default for it.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use super::quoting::Args;
use super::template::{Field, Record};

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

/// A JSON object's members, in order, their values unparsed.
struct Object<'a>(Vec<(Cow<'a, str>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Object<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor<'a>(PhantomData<&'a ()>);
        impl<'de: 'a, 'a> Visitor<'de> for ObjectVisitor<'a> {
            type Value = Object<'a>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Object<'a>, M::Error> {
                let mut members = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((Text(name), value)) = map.next_entry::<Text<'a>, &'a RawValue>()? {
                    members.push((name, value));
                }
                Ok(Object(members))
            }
        }
        deserializer.deserialize_map(ObjectVisitor(PhantomData))
    }
}

impl<'a> Object<'a> {
    /// The member named `name` (the last one, when a name repeats, as
    /// JSON parsers commonly keep).
    fn member(&self, name: &str) -> Option<&'a RawValue> {
        self.0
            .iter()
            .rev()
            .find(|(member, _)| member == name)
            .map(|(_, value)| *value)
    }
}

/// One JSON Lines record.
pub(super) struct JsonRecord<'a> {
    /// The line, without surrounding whitespace: `{.}`.
    line: &'a [u8],
    object: Object<'a>,
}

impl<'a> JsonRecord<'a> {
    /// Parses a line (not blank); `Err` is why it cannot be used, with the
    /// column where the JSON went wrong.
    pub(super) fn parse(line: &'a [u8]) -> Result<JsonRecord<'a>, String> {
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
        // library's check is the fastest), so the parser need not check each
        // value it passes over again.
        let text = std::str::from_utf8(line).map_err(|error| {
            format!(
                "column {}: invalid UTF-8 (JSON text is UTF-8)",
                error.valid_up_to() + 1
            )
        })?;
        let object = serde_json::from_str::<Object>(text).map_err(|error| {
            let text = error.to_string();
            // The line is ours to give; serde_json's own "at line 1 column
            // N" becomes the column alone.
            let reason = text
                .rsplit_once(" at line ")
                .map_or(&*text, |(reason, _)| reason);
            format!("column {}: invalid JSON: {reason}", error.column())
        })?;
        Ok(JsonRecord {
            line: &line[start..end],
            object,
        })
    }

    /// The value a dotted path reaches: a member of the top-level object
    /// (a name with dots in it first, whole), then member names or array
    /// indexes.
    fn reach(&self, path: &str) -> Option<&'a RawValue> {
        if let Some(whole) = self.object.member(path) {
            return Some(whole);
        }
        let mut steps = path.split('.');
        let mut value = self.object.member(steps.next()?)?;
        for step in steps {
            let text = value.get();
            value = match text.as_bytes().first() {
                Some(b'{') => serde_json::from_str::<Object>(text).ok()?.member(step)?,
                Some(b'[') => {
                    let index: usize = step.parse().ok()?;
                    *serde_json::from_str::<Vec<&RawValue>>(text)
                        .ok()?
                        .get(index)?
                }
                _ => return None,
            };
        }
        Some(value)
    }
}

/// Appends a value's bytes as templates get them; false for `null`.
fn append_value(value: &RawValue, out: &mut Vec<u8>) -> Result<bool, String> {
    let text = value.get();
    match text.as_bytes().first() {
        // Checked when the line was parsed: without a backslash, the text
        // between the quotes is the value.
        Some(b'"') if memchr::memchr(b'\\', text.as_bytes()).is_none() => {
            out.extend_from_slice(text.as_bytes().get(1..text.len() - 1).unwrap_or_default());
        }
        Some(b'"') => {
            let Text(string) = serde_json::from_str(text).map_err(|error| error.to_string())?;
            out.extend_from_slice(string.as_bytes());
        }
        Some(b'n') => return Ok(false),
        _ => out.extend_from_slice(text.as_bytes()),
    }
    Ok(true)
}

impl Record for JsonRecord<'_> {
    fn append_field(&self, field: &Field, out: &mut Vec<u8>) -> Result<bool, String> {
        match self.reach(&field.name) {
            Some(value) => append_value(value, out),
            None => Ok(false),
        }
    }

    fn push_all_fields(&self, args: &mut Args) -> Result<(), String> {
        for (name, value) in &self.object.0 {
            if value.get() == "null" {
                continue;
            }
            args.push(name.as_bytes());
            append_value(value, args.building())?;
            args.end_arg();
        }
        Ok(())
    }

    fn append_whole(&self, out: &mut Vec<u8>) -> Result<(), String> {
        out.extend_from_slice(self.line);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::template::Template;

    fn expand(template: &str, line: &str) -> Result<Vec<String>, String> {
        let record = JsonRecord::parse(line.as_bytes())?;
        let template = Template::compile(template, 0).map_err(|error| error.reason)?;
        let mut args = Args::default();
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
        let reason = |line: &str| JsonRecord::parse(line.as_bytes()).err().unwrap();
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
}
