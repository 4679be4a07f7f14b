//! Command templates (`--template`): compiled once from their text, then
//! expanded for every CSV, TSV or JSON Lines record into the arguments of
//! one command each.
//!
//! Place in the data flow: inside the input thread, between a record framer
//! (`csv`, `jsonl`), which finds a record and offers its fields through
//! `Record`, and `records`, which admits the commands like text lines.
//!
//! A template is written like a text input line: arguments separated by
//! spaces or tabs, double quotes with the server's escapes (`\n \r \t \b \a
//! \xHH`, `\"`, `\\`), single quotes with `\'`. Placeholders are found in the
//! template as written, in quotes too: `{name}` (a field, by name or by
//! position `{0}`; a JSON path `{user.age}`, `{tags.0}`), `{name:-text}` (a
//! default for a missing or empty field), `{.}` (the whole record as a JSON
//! object), `{*}` (every field as name and value arguments; an argument of
//! its own), `{{` and `}}` (literal braces).
//!
//! Invariant: a field's bytes go into the argument being built as they are;
//! they are never split, unquoted or searched for placeholders, so any value
//! (spaces, quotes, CR, NUL, invalid UTF-8) arrives byte for byte.

use std::fmt;

use crate::encode::EncodedCommand;

/// One template, compiled: its arguments in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// The template as given, for messages.
    pub text: String,
    args: Vec<ArgTemplate>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum ArgTemplate {
    /// One argument made of literal bytes and values.
    Pieces(Vec<Piece>),
    /// `{*}`: two arguments, name and value, per field.
    AllFields,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(Vec<u8>),
    Field(Field),
    /// `{.}`: the whole record as a JSON object.
    WholeRecord,
}

/// A field a template names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// What is between the braces, default excluded: `email`, `2`,
    /// `user.age`.
    pub name: String,
    /// Given with `{name:-default}`: used when the field is missing or empty.
    pub default: Option<Vec<u8>>,
    /// Numbered in the order fields appear across all templates, so a framer
    /// can keep where each one is (a CSV column) in a table.
    pub id: usize,
}

impl Field {
    /// `{3}`: a field by position (for CSV and TSV).
    pub fn position(&self) -> Option<usize> {
        match self.name.bytes().all(|byte| byte.is_ascii_digit()) {
            true => self.name.parse().ok(),
            false => None,
        }
    }
}

/// What a record offers to the templates. A problem is the one-line reason
/// the record is refused.
pub trait Record {
    /// Appends field `field`'s value to `out`. `Ok(false)` when the record
    /// has no such field (nothing appended).
    fn append_field(&self, field: &Field, out: &mut Vec<u8>) -> Result<bool, String>;
    /// Pushes every field as two arguments, its name and its value.
    fn push_all_fields(&self, args: &mut EncodedCommand) -> Result<(), String>;
    /// Appends the whole record as a JSON object.
    fn append_whole(&self, out: &mut Vec<u8>) -> Result<(), String>;
}

/// Why a template cannot be used: a usage error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateError {
    pub template: String,
    pub reason: String,
}

impl fmt::Display for TemplateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "--template '{}': {}", self.template, self.reason)
    }
}

impl std::error::Error for TemplateError {}

/// Compiles the templates in order, numbering their fields across all of
/// them.
pub fn compile_all(texts: &[String]) -> Result<Vec<Template>, TemplateError> {
    let mut next_id = 0;
    texts
        .iter()
        .map(|text| {
            Template::compile(text, next_id).inspect(|template| {
                next_id += template.fields().count();
            })
        })
        .collect()
}

impl Template {
    /// Compiles one template; its fields are numbered from `first_id`.
    pub fn compile(text: &str, first_id: usize) -> Result<Template, TemplateError> {
        let fail = |reason: String| TemplateError {
            template: text.to_owned(),
            reason,
        };
        let args = Lexer {
            text: text.as_bytes(),
            pos: 0,
            next_id: first_id,
        }
        .arguments()
        .map_err(fail)?;
        if args.is_empty() {
            return Err(fail("a template needs at least a command name".into()));
        }
        Ok(Template {
            text: text.to_owned(),
            args,
        })
    }

    /// The fields the template names, in order.
    pub fn fields(&self) -> impl Iterator<Item = &Field> {
        self.args
            .iter()
            .filter_map(|arg| match arg {
                ArgTemplate::Pieces(pieces) => Some(pieces),
                ArgTemplate::AllFields => None,
            })
            .flatten()
            .filter_map(|piece| match piece {
                Piece::Field(field) => Some(field),
                _ => None,
            })
    }

    /// Whether the template uses `{*}` or `{.}`, which need field names.
    pub fn needs_names(&self) -> Option<&'static str> {
        self.args.iter().find_map(|arg| match arg {
            ArgTemplate::AllFields => Some("{*}"),
            ArgTemplate::Pieces(pieces) => pieces
                .iter()
                .any(|piece| matches!(piece, Piece::WholeRecord))
                .then_some("{.}"),
        })
    }

    /// The command's arguments for `record`, in `args` (cleared first).
    pub fn expand<R: Record>(&self, record: &R, args: &mut EncodedCommand) -> Result<(), String> {
        args.clear();
        for arg in &self.args {
            let pieces = match arg {
                ArgTemplate::AllFields => {
                    record.push_all_fields(args)?;
                    continue;
                }
                // Known in full: its length goes first, no room guessed.
                ArgTemplate::Pieces(pieces) if let [Piece::Literal(bytes)] = pieces.as_slice() => {
                    args.push(bytes);
                    continue;
                }
                ArgTemplate::Pieces(pieces) => pieces,
            };
            let out = args.begin_arg();
            for piece in pieces {
                match piece {
                    Piece::Literal(bytes) => out.extend_from_slice(bytes),
                    Piece::WholeRecord => record.append_whole(out)?,
                    Piece::Field(field) => {
                        let before = out.len();
                        let present = record.append_field(field, out)?;
                        if out.len() == before {
                            match &field.default {
                                Some(default) => out.extend_from_slice(default),
                                None if present => {}
                                None => return Err(format!("no field '{}'", field.name)),
                            }
                        }
                    }
                }
            }
            args.end_arg();
        }
        Ok(())
    }
}

/// Splits a template into arguments, with the text lines' quoting rules,
/// finding placeholders wherever they are.
struct Lexer<'t> {
    text: &'t [u8],
    pos: usize,
    next_id: usize,
}

/// What separates arguments outside quotes (as in a text line).
fn is_separator(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\n' | b'\r')
}

/// How an argument's bytes are being read.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Quoting {
    None,
    Double,
    Single,
}

impl Lexer<'_> {
    fn arguments(mut self) -> Result<Vec<ArgTemplate>, String> {
        let mut args = Vec::new();
        loop {
            while self.pos < self.text.len() && is_separator(self.text[self.pos]) {
                self.pos += 1;
            }
            if self.pos == self.text.len() {
                return Ok(args);
            }
            args.push(self.argument()?);
        }
    }

    /// One argument: an unquoted run, then at most one quoted part, which
    /// must end the argument (the server's rule for text lines).
    fn argument(&mut self) -> Result<ArgTemplate, String> {
        let mut pieces = Vec::new();
        let mut literal = Vec::new();
        let mut quoting = Quoting::None;
        let mut quoted = false;
        loop {
            let Some(&byte) = self.text.get(self.pos) else {
                if quoting != Quoting::None {
                    return Err("unbalanced quotes".into());
                }
                break;
            };
            match (quoting, byte) {
                (Quoting::None, byte) if is_separator(byte) => break,
                (Quoting::None, b'"') => {
                    quoting = Quoting::Double;
                    quoted = true;
                    self.pos += 1;
                }
                (Quoting::None, b'\'') => {
                    quoting = Quoting::Single;
                    quoted = true;
                    self.pos += 1;
                }
                (Quoting::Double, b'"') | (Quoting::Single, b'\'') => {
                    self.pos += 1;
                    if let Some(&next) = self.text.get(self.pos)
                        && !is_separator(next)
                    {
                        return Err(
                            "closing quote must be followed by a space or the end of the template"
                                .into(),
                        );
                    }
                    break;
                }
                (Quoting::Double, b'\\') => {
                    let (unescaped, len) = double_quoted_escape(&self.text[self.pos..]);
                    literal.push(unescaped);
                    self.pos += len;
                }
                (Quoting::Single, b'\\') if self.text.get(self.pos + 1) == Some(&b'\'') => {
                    literal.push(b'\'');
                    self.pos += 2;
                }
                (_, b'{') if self.text.get(self.pos + 1) == Some(&b'{') => {
                    literal.push(b'{');
                    self.pos += 2;
                }
                (_, b'}') if self.text.get(self.pos + 1) == Some(&b'}') => {
                    literal.push(b'}');
                    self.pos += 2;
                }
                (_, b'}') => {
                    return Err(format!(
                        "unbalanced brace: '}}' at byte {} closes nothing (write '}}}}' for a brace)",
                        self.pos + 1
                    ));
                }
                (_, b'{') => {
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(self.placeholder()?);
                }
                (_, byte) => {
                    literal.push(byte);
                    self.pos += 1;
                }
            }
        }
        if !literal.is_empty() || pieces.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        Ok(match pieces.as_slice() {
            [Piece::Field(field)] if field.name == "*" && !quoted => ArgTemplate::AllFields,
            _ if pieces
                .iter()
                .any(|piece| matches!(piece, Piece::Field(field) if field.name == "*")) =>
            {
                return Err(
                    "{*} stands for several arguments: it must be an argument of its own, unquoted"
                        .into(),
                );
            }
            _ => ArgTemplate::Pieces(pieces),
        })
    }

    /// A placeholder starting at `{`: up to the next `}`.
    fn placeholder(&mut self) -> Result<Piece, String> {
        let start = self.pos + 1;
        let inside = &self.text[start..];
        let Some(len) = inside.iter().position(|&byte| byte == b'}') else {
            return Err(format!(
                "unbalanced brace: '{{' at byte {} is never closed (write '{{{{' for a brace)",
                self.pos + 1
            ));
        };
        let inside = &inside[..len];
        if let Some(nested) = inside.iter().position(|&byte| byte == b'{') {
            return Err(format!(
                "unbalanced brace: '{{' at byte {} inside a placeholder",
                start + nested + 1
            ));
        }
        self.pos = start + len + 1;
        // The template is a String: what is between braces is UTF-8.
        let inside = String::from_utf8_lossy(inside);
        let (name, default) = match inside.split_once(":-") {
            Some((name, default)) => (name, Some(default.as_bytes().to_vec())),
            None => (&*inside, None),
        };
        if name.is_empty() {
            return Err(format!(
                "empty placeholder '{{{inside}}}': name a field, as in {{id}} or {{0}}"
            ));
        }
        if name == "." {
            return match default {
                None => Ok(Piece::WholeRecord),
                Some(_) => Err("{.} takes no default".into()),
            };
        }
        if name == "*" && default.is_some() {
            return Err("{*} takes no default".into());
        }
        let field = Field {
            name: name.to_owned(),
            default,
            id: self.next_id,
        };
        if name != "*" {
            self.next_id += 1;
        }
        Ok(Piece::Field(field))
    }
}

/// The byte a backslash escape inside double quotes stands for, and the
/// escape's length (the text line rules: `\n \r \t \b \a \xHH`, any other
/// byte for itself).
fn double_quoted_escape(escape: &[u8]) -> (u8, usize) {
    let hex = |digit: Option<&u8>| digit.and_then(|digit| (*digit as char).to_digit(16));
    match escape.get(1) {
        Some(b'x') => match (hex(escape.get(2)), hex(escape.get(3))) {
            (Some(high), Some(low)) => ((high << 4 | low) as u8, 4),
            _ => (b'x', 2),
        },
        Some(b'n') => (b'\n', 2),
        Some(b'r') => (b'\r', 2),
        Some(b't') => (b'\t', 2),
        Some(b'b') => (b'\x08', 2),
        Some(b'a') => (b'\x07', 2),
        Some(&other) => (other, 2),
        None => (b'\\', 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record of named fields, for the expander's tests.
    struct Fields(Vec<(&'static str, &'static [u8])>);

    impl Record for Fields {
        fn append_field(&self, field: &Field, out: &mut Vec<u8>) -> Result<bool, String> {
            let found = self.0.iter().find(|(name, _)| *name == field.name);
            if let Some((_, value)) = found {
                out.extend_from_slice(value);
            }
            Ok(found.is_some())
        }
        fn push_all_fields(&self, args: &mut EncodedCommand) -> Result<(), String> {
            for (name, value) in &self.0 {
                args.push(name.as_bytes());
                args.push(value);
            }
            Ok(())
        }
        fn append_whole(&self, out: &mut Vec<u8>) -> Result<(), String> {
            out.extend_from_slice(b"{...}");
            Ok(())
        }
    }

    fn expand(template: &str, record: &Fields) -> Result<Vec<Vec<u8>>, String> {
        let template = Template::compile(template, 0).map_err(|error| error.reason)?;
        let mut args = EncodedCommand::default();
        template.expand(record, &mut args)?;
        Ok(args.iter().map(<[u8]>::to_vec).collect())
    }

    fn args(expected: &[&[u8]]) -> Result<Vec<Vec<u8>>, String> {
        Ok(expected.iter().map(|arg| arg.to_vec()).collect())
    }

    fn user() -> Fields {
        Fields(vec![
            ("id", b"7"),
            ("name", b"Smith, \"John\" \\ \r\n\0\xff"),
            ("email", b""),
        ])
    }

    #[test]
    fn values_are_inserted_byte_for_byte_into_one_argument() {
        assert_eq!(
            expand("HSET user:{id} name {name}", &user()),
            args(&[
                b"HSET",
                b"user:7",
                b"name",
                b"Smith, \"John\" \\ \r\n\0\xff"
            ])
        );
        assert_eq!(
            expand("SET \"k {id}:x\" 'v {name}'", &user()),
            args(&[b"SET", b"k 7:x", b"v Smith, \"John\" \\ \r\n\0\xff"])
        );
    }

    #[test]
    fn literal_parts_follow_the_text_line_quoting() {
        assert_eq!(
            expand(r#"SET "a\tb\x41" 'it\'s' {{{id}}} """#, &user()),
            args(&[b"SET", b"a\tbA", b"it's", b"{7}", b""])
        );
    }

    #[test]
    fn all_fields_become_name_value_pairs() {
        assert_eq!(
            expand("HSET user:{id} {*}", &user()),
            args(&[
                b"HSET",
                b"user:7",
                b"id",
                b"7",
                b"name",
                b"Smith, \"John\" \\ \r\n\0\xff",
                b"email",
                b""
            ])
        );
    }

    #[test]
    fn defaults_stand_in_for_missing_or_empty_fields() {
        assert_eq!(
            expand("SET {email:-none} {phone:-} {.}", &user()),
            args(&[b"SET", b"none", b"", b"{...}"])
        );
        assert_eq!(
            expand("SET k {phone}", &user()),
            Err("no field 'phone'".into())
        );
        // Present and empty, without a default: an empty argument.
        assert_eq!(expand("SET k {email}", &user()), args(&[b"SET", b"k", b""]));
    }

    #[test]
    fn bad_templates_are_refused_with_the_reason() {
        let reason = |text: &str| Template::compile(text, 0).unwrap_err().reason;
        assert!(reason("SET {id").contains("never closed"));
        assert!(reason("SET id}").contains("closes nothing"));
        assert!(reason("SET {a{b}").contains("inside a placeholder"));
        assert!(reason("SET {}").contains("empty placeholder"));
        assert!(reason("SET \"a").contains("unbalanced quotes"));
        assert!(reason("SET \"a\"b").contains("closing quote"));
        assert!(reason("HSET k x{*}").contains("argument of its own"));
        assert!(reason("HSET k \"{*}\"").contains("argument of its own"));
        assert!(reason("  ").contains("command name"));
    }

    #[test]
    fn fields_are_numbered_across_templates() {
        let templates = compile_all(&["SET {a} {b}".into(), "SADD s {a} {*}".into()]).unwrap();
        let ids: Vec<(String, usize)> = templates
            .iter()
            .flat_map(Template::fields)
            .map(|field| (field.name.clone(), field.id))
            .collect();
        assert_eq!(
            ids,
            [("a".into(), 0), ("b".into(), 1), ("a".into(), 2)].to_vec()
        );
        assert_eq!(templates[1].needs_names(), Some("{*}"));
        assert_eq!(templates[0].needs_names(), None);
    }
}
