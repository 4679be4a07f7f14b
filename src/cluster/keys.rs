//! Where a command's keys are, from the server's own `COMMAND` metadata:
//! the legacy first-key/last-key/step triple and the key specs (index or
//! keyword search, then a key range or a key count), including
//! subcommands. Commands whose keys cannot be found that way are marked for
//! `COMMAND GETKEYS`. No hard-coded command list: a module's command routes
//! like a built-in one.
//!
//! Place in the data flow: loaded once at cluster setup; the router asks
//! `first_key` for every command.

use std::cell::Cell;
use std::collections::HashMap;

use anyhow::{Result, anyhow};

use crate::control::{Value, query};
use crate::stream::Stream;

#[derive(Debug, Clone, PartialEq, Eq)]
enum BeginSearch {
    Index(i64),
    Keyword { keyword: Vec<u8>, start_from: i64 },
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum FindKeys {
    /// Keys from the begin position on, to where `RangeEnd` says (`None`:
    /// the server did not say; the first key is still known).
    Range(Option<RangeEnd>),
    /// A count at `count_index` after the begin position, keys from
    /// `first_key` after it, every `step`th.
    KeyCount {
        count_index: i64,
        first_key: i64,
        step: i64,
    },
    Unknown,
}

/// Where a range of keys ends: every `step`th argument to `last_key` after
/// its begin (negative: from the end of the arguments; with a `limit`, over
/// that part of the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RangeEnd {
    last_key: i64,
    step: i64,
    limit: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct KeySpec {
    begin: BeginSearch,
    find: FindKeys,
    /// The server says the spec may not find every key.
    incomplete: bool,
}

#[derive(Debug, Clone, Default)]
struct CommandKeys {
    first_key: i64,
    /// The legacy triple's last key (negative: from the end) and step.
    last_key: i64,
    step: i64,
    movable_keys: bool,
    specs: Vec<KeySpec>,
    subcommands: HashMap<Vec<u8>, CommandKeys>,
}

impl CommandKeys {
    /// One key, the first argument, whatever the other arguments are:
    /// what `all_keys_of` finds from the legacy triple `1 1 1` or from a
    /// sole spec `index 1, range 0`.
    fn key_is_first_argument_only(&self) -> bool {
        if !self.subcommands.is_empty() || self.movable_keys {
            return false;
        }
        match self.specs.as_slice() {
            [] => self.first_key == 1 && self.last_key == 1,
            [
                KeySpec {
                    begin: BeginSearch::Index(1),
                    find: FindKeys::Range(Some(RangeEnd { last_key: 0, .. })),
                    incomplete: false,
                },
            ] => true,
            _ => false,
        }
    }
}

/// Where the first key of a command is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLookup<'a> {
    Key(&'a [u8]),
    Keyless,
    /// The metadata cannot tell: ask the server (`COMMAND GETKEYS`).
    AskServer,
}

#[derive(Debug, Default)]
pub struct KeyPositions {
    /// By lowercase name: the command's place in `table`.
    by_name: HashMap<Vec<u8>, usize>,
    table: Vec<CommandKeys>,
    /// The last command found, by its name as the input wrote it: an input
    /// repeats a few commands, so most lookups end here, with no lowercase
    /// copy and no hashing.
    last_found: Cell<Option<LastFound>>,
}

/// A command name as the input wrote it (short enough to keep here) and
/// its place in the table.
#[derive(Debug, Clone, Copy)]
struct LastFound {
    name: [u8; 16],
    length: u8,
    index: usize,
}

impl LastFound {
    fn name(&self) -> &[u8] {
        &self.name[..usize::from(self.length)]
    }
}

impl KeyPositions {
    /// Reads `COMMAND` from the server.
    pub fn fetch(stream: &mut Stream) -> Result<Self> {
        let reply = query(stream, &[b"COMMAND"]).map_err(|error| anyhow!(error))?;
        if let Value::Error(message) = &reply {
            return Err(anyhow!("COMMAND failed: {message}"));
        }
        Ok(Self::from_reply(&reply))
    }

    fn from_reply(reply: &Value) -> Self {
        let commands = reply
            .as_array()
            .unwrap_or_default()
            .iter()
            .filter_map(parse_command)
            .collect();
        Self::from_commands(commands)
    }

    fn from_commands(commands: HashMap<Vec<u8>, CommandKeys>) -> Self {
        let mut by_name = HashMap::with_capacity(commands.len());
        let mut table = Vec::with_capacity(commands.len());
        for (name, command) in commands {
            by_name.insert(name, table.len());
            table.push(command);
        }
        KeyPositions {
            by_name,
            table,
            last_found: Cell::new(None),
        }
    }

    /// The first key of `args` (a whole command, name first).
    pub fn first_key<'a>(&self, args: &[&'a [u8]]) -> KeyLookup<'a> {
        match self.command(args) {
            Some(command) => first_key_of(command, args),
            // Unknown to the server: it will answer with an error wherever
            // it goes.
            None => KeyLookup::Keyless,
        }
    }

    /// Every key of `args` (a whole command, name first), into `keys`
    /// (cleared first); none for a command the server does not know.
    /// `false`: the metadata cannot tell, ask the server (`COMMAND
    /// GETKEYS`).
    pub fn all_keys<'a>(&self, args: &[&'a [u8]], keys: &mut Vec<&'a [u8]>) -> bool {
        keys.clear();
        match self.command(args) {
            Some(command) => all_keys_of(command, args, keys),
            None => true,
        }
    }

    /// Whether the command named `name` has one key, its first argument
    /// (`SET`, `HSET`, `INCR`, `RPUSH`…): then a route needs to read no
    /// further than that argument. `false` for anything else, unknown
    /// commands and commands with subcommands included.
    pub fn key_is_first_argument_only(&self, name: &[u8]) -> bool {
        self.command(&[name])
            .is_some_and(CommandKeys::key_is_first_argument_only)
    }

    /// Whether the server knows the command `args` names.
    pub fn knows(&self, args: &[&[u8]]) -> bool {
        self.command(args).is_some()
    }

    /// The metadata of the command (or subcommand) `args` names.
    fn command(&self, args: &[&[u8]]) -> Option<&CommandKeys> {
        let name = args.first()?;
        let mut lowercase = [0u8; 64];
        let index = match self.last_found.get() {
            Some(last) if last.name() == *name => last.index,
            _ => {
                // Looked up by a lowercase copy on the stack: this runs
                // for every command of a `--connections` load.
                let index = *self.by_name.get(lowercase_in(&mut lowercase, &[name])?)?;
                if let Ok(length) = u8::try_from(name.len())
                    && name.len() <= 16
                {
                    let mut kept = [0u8; 16];
                    kept[..name.len()].copy_from_slice(name);
                    self.last_found.set(Some(LastFound {
                        name: kept,
                        length,
                        index,
                    }));
                }
                index
            }
        };
        let command = self.table.get(index)?;
        Some(match args.get(1) {
            Some(sub) if !command.subcommands.is_empty() => {
                let full = lowercase_in(&mut lowercase, &[name, b"|", sub]);
                full.and_then(|full| command.subcommands.get(full))
                    .unwrap_or(command)
            }
            _ => command,
        })
    }
}

/// `parts` one after the other, lowercase, in `buffer`; `None` when they
/// do not fit (no command or subcommand name is that long).
fn lowercase_in<'b>(buffer: &'b mut [u8; 64], parts: &[&[u8]]) -> Option<&'b [u8]> {
    let mut length = 0;
    for part in parts {
        let end = length + part.len();
        buffer.get_mut(length..end)?.copy_from_slice(part);
        length = end;
    }
    let name = &mut buffer[..length];
    name.make_ascii_lowercase();
    Some(name)
}

/// Every key, as the server's `getKeysUsingKeySpecs` finds them; a spec the
/// server marks incomplete or that cannot be read means asking the server.
fn all_keys_of<'a>(command: &CommandKeys, args: &[&'a [u8]], keys: &mut Vec<&'a [u8]>) -> bool {
    let argc = args.len() as i64;
    if command.specs.is_empty() {
        if command.movable_keys {
            return false;
        }
        if command.first_key <= 0 {
            return true;
        }
        let last = match command.last_key {
            last if last < 0 => argc + last,
            last => last,
        };
        keys_between(args, command.first_key, last, command.step, keys);
        return true;
    }
    for spec in &command.specs {
        if spec.incomplete {
            return false;
        }
        let begin = match &spec.begin {
            BeginSearch::Index(index) => *index,
            BeginSearch::Keyword {
                keyword,
                start_from,
            } => match find_keyword(args, keyword, *start_from) {
                Some(at) => at + 1,
                None => continue,
            },
            BeginSearch::Unknown => return false,
        };
        let (first, last, step) = match spec.find {
            FindKeys::Range(None) => return false,
            FindKeys::Range(Some(RangeEnd {
                last_key,
                step,
                limit,
            })) => {
                let last = match last_key {
                    last if last >= 0 => begin + last,
                    last if limit <= 0 => argc + last,
                    last => begin + (argc - begin) / limit + last,
                };
                (begin, last, step)
            }
            FindKeys::KeyCount {
                count_index,
                first_key,
                step,
            } => {
                let count = arg_at(args, begin + count_index)
                    .and_then(|count| std::str::from_utf8(count).ok())
                    .and_then(|count| count.parse::<i64>().ok());
                let Some(count) = count else {
                    return false;
                };
                let first = begin + first_key;
                (first, first + count - 1, step)
            }
            FindKeys::Unknown => return false,
        };
        keys_between(args, first, last, step, keys);
    }
    true
}

/// The arguments from `first` to `last` (both included), every `step`th,
/// added to `keys`; those past the end are left out (the server reports the
/// arity error).
fn keys_between<'a>(args: &[&'a [u8]], first: i64, last: i64, step: i64, keys: &mut Vec<&'a [u8]>) {
    let Ok(step) = usize::try_from(step.max(1)) else {
        return;
    };
    if first < 1 || last < first {
        return;
    }
    keys.extend(
        (first..=last)
            .step_by(step)
            .filter_map(|index| arg_at(args, index)),
    );
}

fn first_key_of<'a>(command: &CommandKeys, args: &[&'a [u8]]) -> KeyLookup<'a> {
    let mut unknown = false;
    for spec in &command.specs {
        let begin = match &spec.begin {
            BeginSearch::Index(index) => Some(*index),
            BeginSearch::Keyword {
                keyword,
                start_from,
            } => find_keyword(args, keyword, *start_from).map(|at| at + 1),
            BeginSearch::Unknown => {
                unknown = true;
                None
            }
        };
        let Some(begin) = begin else { continue };
        let key_index = match spec.find {
            FindKeys::Range(_) => Some(begin),
            FindKeys::KeyCount {
                count_index,
                first_key,
                ..
            } => {
                let count = arg_at(args, begin + count_index)
                    .and_then(|count| std::str::from_utf8(count).ok())
                    .and_then(|count| count.parse::<i64>().ok());
                match count {
                    Some(count) if count > 0 => Some(begin + count_index + first_key),
                    Some(_) => None,
                    None => {
                        unknown = true;
                        None
                    }
                }
            }
            FindKeys::Unknown => {
                unknown = true;
                None
            }
        };
        if let Some(key) = key_index.and_then(|index| arg_at(args, index)) {
            return KeyLookup::Key(key);
        }
    }
    if command.specs.is_empty()
        && command.first_key > 0
        && let Some(key) = arg_at(args, command.first_key)
    {
        return KeyLookup::Key(key);
    }
    match unknown || command.movable_keys {
        true => KeyLookup::AskServer,
        false => KeyLookup::Keyless,
    }
}

fn arg_at<'a>(args: &[&'a [u8]], index: i64) -> Option<&'a [u8]> {
    usize::try_from(index)
        .ok()
        .and_then(|index| args.get(index))
        .copied()
}

fn find_keyword(args: &[&[u8]], keyword: &[u8], start_from: i64) -> Option<i64> {
    let matches = |index: usize| args[index].eq_ignore_ascii_case(keyword);
    if start_from >= 0 {
        (start_from as usize..args.len())
            .find(|&index| matches(index))
            .map(|index| index as i64)
    } else {
        let start = args.len() as i64 + start_from;
        (1..=start.max(0) as usize)
            .rev()
            .find(|&index| index < args.len() && matches(index))
            .map(|index| index as i64)
    }
}

fn parse_command(entry: &Value) -> Option<(Vec<u8>, CommandKeys)> {
    let parts = entry.as_array()?;
    let name = parts.first()?.as_bytes()?.to_ascii_lowercase();
    let movable_keys = parts
        .get(2)
        .and_then(Value::as_array)
        .unwrap_or_default()
        .iter()
        .any(|flag| flag.as_bytes() == Some(b"movablekeys"));
    let specs = parts
        .get(8)
        .and_then(Value::as_array)
        .unwrap_or_default()
        .iter()
        .map(parse_key_spec)
        .collect();
    let subcommands = parts
        .get(9)
        .and_then(Value::as_array)
        .unwrap_or_default()
        .iter()
        .filter_map(parse_command)
        .collect();
    Some((
        name,
        CommandKeys {
            first_key: parts.get(3).and_then(Value::as_int).unwrap_or(0),
            last_key: parts.get(4).and_then(Value::as_int).unwrap_or(0),
            step: parts.get(5).and_then(Value::as_int).unwrap_or(1),
            movable_keys,
            specs,
            subcommands,
        },
    ))
}

fn parse_key_spec(spec: &Value) -> KeySpec {
    let kind = |part: Option<&Value>| {
        part.and_then(|part| part.field("type"))
            .and_then(Value::as_bytes)
            .map(<[u8]>::to_vec)
    };
    let number = |part: Option<&Value>, name: &str| {
        part.and_then(|part| part.field("spec"))
            .and_then(|spec| spec.field(name))
            .and_then(Value::as_int)
    };
    let begin_part = spec.field("begin_search");
    let begin = match kind(begin_part).as_deref() {
        Some(b"index") => {
            number(begin_part, "index").map_or(BeginSearch::Unknown, BeginSearch::Index)
        }
        Some(b"keyword") => {
            let keyword = begin_part
                .and_then(|part| part.field("spec"))
                .and_then(|spec| spec.field("keyword"))
                .and_then(Value::as_bytes);
            match (keyword, number(begin_part, "startfrom")) {
                (Some(keyword), Some(start_from)) => BeginSearch::Keyword {
                    keyword: keyword.to_vec(),
                    start_from,
                },
                _ => BeginSearch::Unknown,
            }
        }
        _ => BeginSearch::Unknown,
    };
    let find_part = spec.field("find_keys");
    let find = match kind(find_part).as_deref() {
        Some(b"range") => FindKeys::Range(
            match (
                number(find_part, "lastkey"),
                number(find_part, "keystep"),
                number(find_part, "limit"),
            ) {
                (Some(last_key), Some(step), Some(limit)) => Some(RangeEnd {
                    last_key,
                    step,
                    limit,
                }),
                _ => None,
            },
        ),
        Some(b"keynum") => match (
            number(find_part, "keynumidx"),
            number(find_part, "firstkey"),
        ) {
            (Some(count_index), Some(first_key)) => FindKeys::KeyCount {
                count_index,
                first_key,
                step: number(find_part, "keystep").unwrap_or(1),
            },
            _ => FindKeys::Unknown,
        },
        _ => FindKeys::Unknown,
    };
    let incomplete = spec
        .field("flags")
        .and_then(Value::as_array)
        .unwrap_or_default()
        .iter()
        .any(|flag| flag.as_bytes() == Some(b"incomplete"));
    KeySpec {
        begin,
        find,
        incomplete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn positions() -> KeyPositions {
        let index = |index| KeySpec {
            begin: BeginSearch::Index(index),
            find: FindKeys::Range(Some(RangeEnd {
                last_key: 0,
                step: 1,
                limit: 0,
            })),
            incomplete: false,
        };
        let mut commands = HashMap::new();
        commands.insert(
            b"set".to_vec(),
            CommandKeys {
                first_key: 1,
                specs: vec![index(1)],
                ..CommandKeys::default()
            },
        );
        commands.insert(
            b"eval".to_vec(),
            CommandKeys {
                movable_keys: true,
                specs: vec![KeySpec {
                    begin: BeginSearch::Index(2),
                    find: FindKeys::KeyCount {
                        count_index: 0,
                        first_key: 1,
                        step: 1,
                    },
                    incomplete: false,
                }],
                ..CommandKeys::default()
            },
        );
        commands.insert(
            b"xread".to_vec(),
            CommandKeys {
                movable_keys: true,
                specs: vec![KeySpec {
                    begin: BeginSearch::Keyword {
                        keyword: b"STREAMS".to_vec(),
                        start_from: 1,
                    },
                    find: FindKeys::Range(Some(RangeEnd {
                        last_key: -1,
                        step: 1,
                        limit: 2,
                    })),
                    incomplete: false,
                }],
                ..CommandKeys::default()
            },
        );
        let mut object = CommandKeys::default();
        object.subcommands.insert(
            b"object|encoding".to_vec(),
            CommandKeys {
                first_key: 2,
                specs: vec![index(2)],
                ..CommandKeys::default()
            },
        );
        commands.insert(b"object".to_vec(), object);
        commands.insert(
            b"mset".to_vec(),
            CommandKeys {
                first_key: 1,
                specs: vec![KeySpec {
                    begin: BeginSearch::Index(1),
                    find: FindKeys::Range(Some(RangeEnd {
                        last_key: -1,
                        step: 2,
                        limit: 0,
                    })),
                    incomplete: false,
                }],
                ..CommandKeys::default()
            },
        );
        commands.insert(
            b"smove".to_vec(),
            CommandKeys {
                first_key: 1,
                specs: vec![index(1), index(2)],
                ..CommandKeys::default()
            },
        );
        commands.insert(b"ping".to_vec(), CommandKeys::default());
        KeyPositions::from_commands(commands)
    }

    #[derive(Debug, PartialEq, Eq)]
    enum AllKeys<'a> {
        Keys(Vec<&'a [u8]>),
        AskServer,
    }

    #[test]
    fn finds_every_key_as_the_server_does() {
        let keys = positions();
        let all = |args: &[&'static [u8]]| {
            let mut found = Vec::new();
            match keys.all_keys(args, &mut found) {
                true => AllKeys::Keys(found),
                false => AllKeys::AskServer,
            }
        };
        assert_eq!(all(&[b"SET", b"k", b"v"]), AllKeys::Keys(vec![b"k"]));
        assert_eq!(
            all(&[b"MSET", b"a", b"1", b"b", b"2"]),
            AllKeys::Keys(vec![b"a", b"b"])
        );
        assert_eq!(
            all(&[b"SMOVE", b"from", b"to", b"m"]),
            AllKeys::Keys(vec![b"from", b"to"])
        );
        assert_eq!(
            all(&[b"EVAL", b"return 1", b"2", b"a", b"b", b"arg"]),
            AllKeys::Keys(vec![b"a", b"b"])
        );
        assert_eq!(all(&[b"EVAL", b"return 1", b"0"]), AllKeys::Keys(vec![]));
        assert_eq!(all(&[b"EVAL", b"return 1", b"x"]), AllKeys::AskServer);
        assert_eq!(
            all(&[b"XREAD", b"STREAMS", b"s1", b"s2", b"0", b"0"]),
            AllKeys::Keys(vec![b"s1", b"s2"])
        );
        assert_eq!(all(&[b"PING"]), AllKeys::Keys(vec![]));
        assert_eq!(all(&[b"NOSUCH", b"x"]), AllKeys::Keys(vec![]));
        // Too few arguments: the keys that are there.
        assert_eq!(all(&[b"SMOVE", b"from"]), AllKeys::Keys(vec![b"from"]));
    }

    #[test]
    fn finds_keys_by_index_count_keyword_and_subcommand() {
        let keys = positions();
        assert_eq!(keys.first_key(&[b"SET", b"k", b"v"]), KeyLookup::Key(b"k"));
        assert_eq!(
            keys.first_key(&[b"EVAL", b"return 1", b"2", b"a", b"b"]),
            KeyLookup::Key(b"a")
        );
        assert_eq!(
            keys.first_key(&[b"eval", b"return 1", b"0"]),
            KeyLookup::AskServer
        );
        assert_eq!(
            keys.first_key(&[b"XREAD", b"COUNT", b"2", b"streams", b"s1", b"0"]),
            KeyLookup::Key(b"s1")
        );
        assert_eq!(
            keys.first_key(&[b"OBJECT", b"ENCODING", b"k"]),
            KeyLookup::Key(b"k")
        );
        assert_eq!(keys.first_key(&[b"PING"]), KeyLookup::Keyless);
        assert_eq!(keys.first_key(&[b"NOSUCH", b"x"]), KeyLookup::Keyless);
    }

    #[test]
    fn only_commands_with_one_key_first_take_the_shortcut() {
        let keys = positions();
        assert!(keys.key_is_first_argument_only(b"SET"));
        assert!(keys.key_is_first_argument_only(b"set"));
        for name in [
            &b"MSET"[..],
            b"SMOVE",
            b"EVAL",
            b"XREAD",
            b"OBJECT",
            b"PING",
            b"NOSUCH",
        ] {
            assert!(!keys.key_is_first_argument_only(name), "{name:?}");
        }
    }

    #[test]
    fn the_last_command_found_is_never_taken_for_another() {
        let keys = positions();
        for _ in 0..2 {
            assert_eq!(keys.first_key(&[b"SET", b"k", b"v"]), KeyLookup::Key(b"k"));
            assert_eq!(keys.first_key(&[b"SET", b"j", b"v"]), KeyLookup::Key(b"j"));
            assert_eq!(keys.first_key(&[b"set", b"i", b"v"]), KeyLookup::Key(b"i"));
            assert_eq!(keys.first_key(&[b"SE", b"k"]), KeyLookup::Keyless);
            assert_eq!(keys.first_key(&[b"PING"]), KeyLookup::Keyless);
            assert_eq!(
                keys.first_key(&[b"OBJECT", b"ENCODING", b"k"]),
                KeyLookup::Key(b"k")
            );
            assert_eq!(keys.first_key(&[b"NOSUCH", b"x"]), KeyLookup::Keyless);
        }
    }

    #[test]
    fn reads_the_command_reply() {
        let reply = crate::control::parse(
            b"*1\r\n*10\r\n$3\r\nget\r\n:2\r\n*1\r\n+readonly\r\n:1\r\n:1\r\n:1\r\n*0\r\n*0\r\n\
              *1\r\n*4\r\n$12\r\nbegin_search\r\n*4\r\n$4\r\ntype\r\n$5\r\nindex\r\n$4\r\nspec\r\n\
              *2\r\n$5\r\nindex\r\n:1\r\n$9\r\nfind_keys\r\n*4\r\n$4\r\ntype\r\n$5\r\nrange\r\n\
              $4\r\nspec\r\n*0\r\n*0\r\n",
        )
        .unwrap();
        let keys = KeyPositions::from_reply(&reply);
        assert_eq!(keys.first_key(&[b"GET", b"key"]), KeyLookup::Key(b"key"));
    }
}
