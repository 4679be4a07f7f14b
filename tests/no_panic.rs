//! No input bytes make pipeload panic or hang: property tests feed
//! arbitrary bytes, bytes drawn from the protocol's own alphabet, and
//! mixtures of valid RESP frames, text lines and garbage to the text
//! splitter, the RESP command framer, the reply scanner and the whole input
//! path (`read_input`, with the source delivering its bytes in random
//! pieces). Every case runs on its own thread and fails if it takes more
//! than 10 s. Where the input is valid, the results must also be right:
//! frames are recognised whole, prefixes are incomplete, and the input path
//! sends exactly the expected commands, encoded as expected.

use std::io::{self, Read};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crossbeam_channel::bounded;
use pipeload::batch::{Batch, Expect};
use pipeload::config::Format;
use pipeload::input::quoting::{Args, split_line};
use pipeload::input::{BatchSize, InputOptions, OpenSource, read_input};
use pipeload::resp::{CommandScan, ReplyScan, scan_command, scan_reply};
use proptest::prelude::*;

use crate::common::resp_command;

/// Hang guard for one case.
const CASE_LIMIT: Duration = Duration::from_secs(10);

/// Runs `work` on its own thread; fails if it takes longer than
/// [`CASE_LIMIT`], re-raises its panic.
fn within_limit<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let (done, finished) = mpsc::channel();
    let worker = thread::spawn(move || {
        let _ = done.send(work());
    });
    match finished.recv_timeout(CASE_LIMIT) {
        Ok(value) => {
            let _ = worker.join();
            value
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the worker ended without a result or a panic"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("the case did not finish within {CASE_LIMIT:?}")
        }
    }
}

/// Bytes the protocol gives meaning to, plus a few ordinary ones, so random
/// draws hit headers, lengths, quotes and escapes often.
fn protocol_bytes(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    let alphabet = b"*$+-:_#,(!=%~>|\r\n0123456789-\"' \t\\x\0aZ".to_vec();
    proptest::collection::vec(proptest::sample::select(alphabet), 0..max_len)
}

/// Arbitrary bytes or protocol-alphabet bytes.
fn any_input(max_len: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..max_len),
        protocol_bytes(max_len),
    ]
}

/// Command arguments: a fixed harmless name (so no random draw is
/// `MULTI`, `SUBSCRIBE` or `CLIENT REPLY OFF`) and up to four binary
/// arguments.
fn command_args() -> impl Strategy<Value = Vec<Vec<u8>>> {
    (
        proptest::sample::select(vec!["SET", "get", "HSet", "RPUSH", "x"]),
        proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..12), 0..4),
    )
        .prop_map(|(name, rest)| {
            let mut args = vec![name.as_bytes().to_vec()];
            args.extend(rest);
            args
        })
}

/// One piece of an input: its bytes and, for a valid piece, the RESP the
/// input path must send for it (`None` for a piece that is not a command,
/// and for garbage, of which nothing can be said).
#[derive(Debug, Clone)]
struct Piece {
    bytes: Vec<u8>,
    sent: Option<Vec<u8>>,
}

fn valid_piece() -> impl Strategy<Value = Piece> {
    let word = proptest::collection::vec(
        proptest::sample::select(b"abcdefghijklmnopqrstuvwxyzABC0123456789_:.-{}".to_vec()),
        1..8,
    );
    let separator = proptest::sample::select(vec![" ", "\t", "  ", " \t "]);
    let text_line = (
        proptest::sample::select(vec!["SET", "get", "HSet", "RPUSH", "x"]),
        proptest::collection::vec((separator, word), 0..4),
        proptest::sample::select(vec!["\n", "\r\n", " \n", "\t\r\n"]),
    )
        .prop_map(|(name, rest, ending)| {
            let mut bytes = name.as_bytes().to_vec();
            let mut args = vec![name.as_bytes().to_vec()];
            for (separator, word) in rest {
                bytes.extend_from_slice(separator.as_bytes());
                bytes.extend_from_slice(&word);
                args.push(word);
            }
            bytes.extend_from_slice(ending.as_bytes());
            Piece {
                bytes,
                sent: Some(resp_command(&args)),
            }
        });
    let resp_frame = command_args().prop_map(|args| Piece {
        bytes: resp_command(&args),
        sent: Some(resp_command(&args)),
    });
    let not_a_command = proptest::sample::select(vec![
        &b"\n"[..],
        b"\r\n",
        b"   \n",
        b"\t\r\n",
        b"*0\r\n",
        b"*-1\r\n",
    ])
    .prop_map(|bytes| Piece {
        bytes: bytes.to_vec(),
        sent: None,
    });
    prop_oneof![4 => text_line, 4 => resp_frame, 1 => not_a_command]
}

/// A RESP frame with one argument too big for the input's read buffer (the
/// input reads its data around the buffer), anywhere among small ones. The
/// data holds CR and LF bytes.
fn big_frame_piece() -> impl Strategy<Value = Piece> {
    (
        command_args(),
        65_536usize..300_000,
        any::<u8>(),
        any::<prop::sample::Index>(),
    )
        .prop_map(|(mut args, len, seed, at)| {
            let big = (0..len)
                .map(|i| match i % 97 {
                    0 => b'\n',
                    1 => b'\r',
                    _ => seed.wrapping_add(i as u8),
                })
                .collect();
            args.insert(1 + at.index(args.len()), big);
            Piece {
                bytes: resp_command(&args),
                sent: Some(resp_command(&args)),
            }
        })
}

fn any_piece() -> impl Strategy<Value = Piece> {
    let garbage = any_input(40).prop_map(|bytes| Piece { bytes, sent: None });
    let cut_frame = (command_args(), any::<prop::sample::Index>()).prop_map(|(args, cut)| {
        let frame = resp_command(&args);
        Piece {
            bytes: frame[..cut.index(frame.len())].to_vec(),
            sent: None,
        }
    });
    prop_oneof![6 => valid_piece(), 2 => garbage, 1 => cut_frame]
}

/// A source that hands out its bytes in pieces of the given sizes (cycled),
/// so frames and lines are split across reads anywhere.
struct Trickle {
    bytes: Vec<u8>,
    at: usize,
    sizes: Vec<usize>,
    next_size: usize,
}

impl Read for Trickle {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.sizes[self.next_size % self.sizes.len()];
        self.next_size += 1;
        let count = size.min(buf.len()).min(self.bytes.len() - self.at);
        buf[..count].copy_from_slice(&self.bytes[self.at..self.at + count]);
        self.at += count;
        Ok(count)
    }
}

/// What the input path produced.
struct Loaded {
    result: Result<(), String>,
    batches: Vec<Batch>,
}

/// Runs the whole input path over `bytes` delivered in `sizes`-byte reads,
/// with the batch channel drained by another thread.
fn load(
    bytes: Vec<u8>,
    sizes: Vec<usize>,
    format: Format,
    skip: u64,
    keep_originals: bool,
) -> Loaded {
    within_limit(move || {
        let source = OpenSource::from_reader(
            None,
            Box::new(Trickle {
                bytes,
                at: 0,
                sizes,
                next_size: 0,
            }),
        );
        let (sender, receiver) = bounded::<Batch>(4);
        let drain = thread::spawn(move || receiver.iter().collect::<Vec<_>>());
        let options = InputOptions {
            format,
            confirm_unanswered_tail: true,
            skip,
            keep_originals,
            cluster: false,
            progress: None,
            records: Default::default(),
            batch_size: BatchSize::default(),
        };
        let result = read_input(vec![source], options, &sender).map_err(|error| error.to_string());
        drop(sender);
        let batches = drain.join().expect("the drain thread");
        Loaded { result, batches }
    })
}

/// The input path, over the pieces' bytes delivered in `sizes`-byte reads
/// with the first `skip` commands skipped, ends without error (unless
/// `skip` is beyond the input) and sends exactly the valid pieces' commands
/// after the skipped ones, in order.
fn sends_exactly_the_commands_of(
    pieces: &[Piece],
    sizes: Vec<usize>,
    skip: usize,
    keep_originals: bool,
) -> Result<(), TestCaseError> {
    let bytes: Vec<u8> = pieces
        .iter()
        .flat_map(|piece| piece.bytes.clone())
        .collect();
    let commands: Vec<&Vec<u8>> = pieces
        .iter()
        .filter_map(|piece| piece.sent.as_ref())
        .collect();
    let expected: Vec<u8> = commands
        .iter()
        .skip(skip)
        .flat_map(|sent| sent.to_vec())
        .collect();

    let loaded = load(bytes, sizes, Format::Auto, skip as u64, keep_originals);

    match skip > commands.len() {
        // Nothing is sent, and the input says how many commands it has.
        true => prop_assert!(
            loaded
                .result
                .as_ref()
                .is_err_and(|error| error.starts_with(&format!(
                    "--skip {skip} is beyond the end of the input, which has {} command",
                    commands.len()
                ))),
            "{:?}",
            loaded.result
        ),
        false => prop_assert_eq!(&loaded.result, &Ok(())),
    }
    check_batches(&loaded.batches)?;
    let (sent, count) = sent_commands(&loaded.batches);
    prop_assert_eq!(count, commands.len().saturating_sub(skip), "commands sent");
    // Shown escaped when small; a big frame's bytes would flood the report.
    if expected.len() < 4096 {
        prop_assert_eq!(
            sent.escape_ascii().to_string(),
            expected.escape_ascii().to_string()
        );
    }
    prop_assert!(
        sent == expected,
        "the bytes sent differ from the input's commands"
    );
    Ok(())
}

/// Every batch is consistent: command ends never decrease and the last one
/// is the end of the batch's bytes.
fn check_batches(batches: &[Batch]) -> Result<(), TestCaseError> {
    for (number, batch) in batches.iter().enumerate() {
        let ends: Vec<usize> = batch.commands.iter().map(|command| command.end).collect();
        prop_assert!(
            ends.windows(2).all(|pair| pair[0] <= pair[1]),
            "batch {number}: command ends decrease: {ends:?}"
        );
        prop_assert_eq!(
            ends.last().copied().unwrap_or(0),
            batch.bytes.len(),
            "batch {}: the last command must end where the bytes end",
            number
        );
    }
    Ok(())
}

/// The bytes and number of the commands sent (pipeload's own marker left
/// out).
fn sent_commands(batches: &[Batch]) -> (Vec<u8>, usize) {
    let mut bytes = Vec::new();
    let mut count = 0;
    for batch in batches {
        for (index, command) in batch.commands.iter().enumerate() {
            if matches!(command.expect, Expect::Marker) {
                continue;
            }
            count += 1;
            bytes.extend_from_slice(&batch.bytes[batch.command_range(index)]);
        }
    }
    (bytes, count)
}

fn any_format() -> impl Strategy<Value = Format> {
    proptest::sample::select(vec![Format::Auto, Format::Text, Format::Resp])
}

fn read_sizes() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        Just(vec![1 << 20]),
        proptest::collection::vec(1usize..64, 1..8),
    ]
}

/// A reply, RESP2 or RESP3, nested up to a few levels: its bytes.
fn reply() -> impl Strategy<Value = Vec<u8>> {
    let text =
        proptest::collection::vec(proptest::sample::select(b"abcXYZ 0189-_".to_vec()), 0..10);
    let blob = proptest::collection::vec(any::<u8>(), 0..16);
    let leaf = prop_oneof![
        text.clone()
            .prop_map(|text| [b"+".as_slice(), &text, b"\r\n"].concat()),
        text.clone()
            .prop_map(|text| [b"-ERR ".as_slice(), &text, b"\r\n"].concat()),
        any::<i64>().prop_map(|n| format!(":{n}\r\n").into_bytes()),
        blob.clone().prop_map(|blob| {
            [format!("${}\r\n", blob.len()).as_bytes(), &blob, b"\r\n"].concat()
        }),
        blob.clone().prop_map(|blob| {
            [format!("!{}\r\n", blob.len()).as_bytes(), &blob, b"\r\n"].concat()
        }),
        blob.prop_map(|blob| {
            let body = [b"txt:".as_slice(), &blob].concat();
            [format!("={}\r\n", body.len()).as_bytes(), &body, b"\r\n"].concat()
        }),
        Just(b"$-1\r\n".to_vec()),
        Just(b"*-1\r\n".to_vec()),
        Just(b"_\r\n".to_vec()),
        proptest::sample::select(vec![&b"#t\r\n"[..], b"#f\r\n"]).prop_map(<[u8]>::to_vec),
        Just(b",3.14\r\n".to_vec()),
        Just(b",-inf\r\n".to_vec()),
        Just(b"(3492890328409238509324850943850943825024385\r\n".to_vec()),
    ];
    leaf.prop_recursive(3, 32, 4, |inner| {
        let items = proptest::collection::vec(inner.clone(), 0..4);
        prop_oneof![
            items
                .clone()
                .prop_map(|items| aggregate(b'*', items.len(), &items)),
            items
                .clone()
                .prop_map(|items| aggregate(b'~', items.len(), &items)),
            items
                .clone()
                .prop_map(|items| aggregate(b'>', items.len(), &items)),
            proptest::collection::vec((inner.clone(), inner.clone()), 0..3).prop_map(|pairs| {
                let flat: Vec<Vec<u8>> = pairs
                    .iter()
                    .flat_map(|(k, v)| [k.clone(), v.clone()])
                    .collect();
                aggregate(b'%', pairs.len(), &flat)
            }),
            // An attribute before a reply belongs to it.
            (
                proptest::collection::vec((inner.clone(), inner.clone()), 1..2),
                inner
            )
                .prop_map(|(pairs, value)| {
                    let flat: Vec<Vec<u8>> = pairs
                        .iter()
                        .flat_map(|(k, v)| [k.clone(), v.clone()])
                        .collect();
                    [aggregate(b'|', pairs.len(), &flat), value].concat()
                }),
        ]
    })
}

fn aggregate(type_byte: u8, count: usize, items: &[Vec<u8>]) -> Vec<u8> {
    let mut out = vec![type_byte];
    out.extend_from_slice(format!("{count}\r\n").as_bytes());
    for item in items {
        out.extend_from_slice(item);
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 1500,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn split_line_never_panics(line in any_input(300)) {
        let outcome = within_limit(move || {
            let mut args = Args::default();
            let result = split_line(&line, &mut args);
            (result.is_err(), args.len(), args.total_len(), line.len())
        });
        let (failed, count, total, line_len) = outcome;
        prop_assert!(!failed || count == 0, "an error leaves no arguments");
        prop_assert!(total <= line_len, "arguments never hold more bytes than the line");
    }

    #[test]
    fn split_line_splits_plain_words_on_blanks(
        words in proptest::collection::vec("[a-zA-Z0-9_:.{}-]{1,8}", 0..6),
        separators in proptest::collection::vec("[ \t]{1,3}", 6),
    ) {
        let mut line = separators[0].clone();
        for (word, separator) in words.iter().zip(&separators[1..]) {
            line.push_str(word);
            line.push_str(separator);
        }
        let mut args = Args::default();
        prop_assert!(split_line(line.as_bytes(), &mut args).is_ok());
        let split: Vec<Vec<u8>> = args.iter().map(<[u8]>::to_vec).collect();
        let expected: Vec<Vec<u8>> = words.iter().map(|word| word.as_bytes().to_vec()).collect();
        prop_assert_eq!(split, expected);
    }

    #[test]
    fn scan_command_never_panics(buf in any_input(300)) {
        let (len, outcome) = within_limit(move || {
            let outcome = match scan_command(&buf) {
                CommandScan::Complete(frame) => {
                    let heads_inside = frame.head.iter().all(|range| range.start <= range.end && range.end <= frame.len);
                    Some(Ok((frame.len, heads_inside)))
                }
                CommandScan::Incomplete { .. } => None,
                CommandScan::Invalid(error) => Some(Err(error.offset)),
            };
            (buf.len(), outcome)
        });
        match outcome {
            Some(Ok((frame_len, heads_inside))) => {
                prop_assert!(frame_len <= len, "a frame longer than the buffer");
                prop_assert!(heads_inside, "argument ranges outside the frame");
            }
            Some(Err(offset)) => prop_assert!(offset <= len, "an error offset past the buffer"),
            None => {}
        }
    }

    #[test]
    fn scan_command_frames_valid_commands_whole(
        args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..6),
        after in any_input(20),
        cut in any::<prop::sample::Index>(),
    ) {
        let frame = resp_command(&args);
        let mut buf = frame.clone();
        buf.extend_from_slice(&after);
        match scan_command(&buf) {
            CommandScan::Complete(found) => {
                prop_assert_eq!(found.len, frame.len());
                prop_assert_eq!(found.arg_count, args.len());
                for (index, range) in found.head.iter().enumerate().take(args.len()) {
                    prop_assert_eq!(&buf[range.clone()], &args[index][..]);
                }
            }
            _ => prop_assert!(false, "a valid frame must be complete"),
        }
        let prefix = &frame[..cut.index(frame.len())];
        match scan_command(prefix) {
            // The input reads exactly this many bytes into a big frame.
            CommandScan::Incomplete { at_least } => prop_assert!(
                at_least >= 1 && prefix.len() + at_least <= frame.len(),
                "a strict prefix of {} bytes asks for {at_least} more of a {}-byte frame",
                prefix.len(),
                frame.len()
            ),
            _ => prop_assert!(false, "a strict prefix is incomplete"),
        }
    }

    #[test]
    fn scan_reply_never_panics(buf in any_input(300)) {
        let (len, outcome) = within_limit(move || {
            let mut errors = Vec::new();
            let outcome = match scan_reply(&buf, &mut errors) {
                ReplyScan::Complete(reply) => {
                    let spans_inside = errors.iter().all(|span| {
                        span.message.start <= span.message.end && span.message.end <= reply.len
                    });
                    Some(Ok((reply.len, spans_inside)))
                }
                ReplyScan::Incomplete => None,
                ReplyScan::Invalid(error) => Some(Err(error.offset)),
            };
            (buf.len(), outcome)
        });
        match outcome {
            Some(Ok((reply_len, spans_inside))) => {
                prop_assert!(reply_len <= len, "a reply longer than the buffer");
                prop_assert!(spans_inside, "error text outside the reply");
            }
            Some(Err(offset)) => prop_assert!(offset <= len, "an error offset past the buffer"),
            None => {}
        }
    }

    #[test]
    fn scan_reply_scans_valid_replies_whole(
        reply in reply(),
        after in any_input(20),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut buf = reply.clone();
        buf.extend_from_slice(&after);
        let mut errors = Vec::new();
        match scan_reply(&buf, &mut errors) {
            ReplyScan::Complete(found) => prop_assert_eq!(found.len, reply.len()),
            _ => prop_assert!(false, "a valid reply must be complete"),
        }
        let mut errors = Vec::new();
        let prefix = &reply[..cut.index(reply.len())];
        prop_assert!(matches!(scan_reply(prefix, &mut errors), ReplyScan::Incomplete), "a strict prefix is incomplete");
        prop_assert!(errors.is_empty(), "an incomplete scan reports no errors");
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 600,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_input_path_never_panics_or_hangs(
        bytes in any_input(600),
        sizes in read_sizes(),
        format in any_format(),
        skip in 0u64..4,
        keep_originals in any::<bool>(),
    ) {
        let loaded = load(bytes, sizes, format, skip, keep_originals);
        check_batches(&loaded.batches)?;
    }

    #[test]
    fn mixtures_of_frames_lines_and_garbage_never_panic(
        pieces in proptest::collection::vec(any_piece(), 0..30),
        sizes in read_sizes(),
        format in any_format(),
        skip in 0u64..4,
        keep_originals in any::<bool>(),
    ) {
        let bytes: Vec<u8> = pieces.iter().flat_map(|piece| piece.bytes.clone()).collect();
        let loaded = load(bytes, sizes, format, skip, keep_originals);
        check_batches(&loaded.batches)?;
    }

    #[test]
    fn valid_input_sends_exactly_its_commands(
        pieces in proptest::collection::vec(valid_piece(), 0..40),
        sizes in read_sizes(),
        skip in 0usize..6,
        keep_originals in any::<bool>(),
    ) {
        sends_exactly_the_commands_of(&pieces, sizes, skip, keep_originals)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 48,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Big frames among small ones, delivered in pieces of any size: every
    /// command is sent once, whole and in order.
    #[test]
    fn big_frames_are_sent_whole_among_small_ones(
        pieces in proptest::collection::vec(
            prop_oneof![3 => valid_piece(), 1 => big_frame_piece()],
            1..12,
        ),
        sizes in prop_oneof![
            Just(vec![1 << 20]),
            proptest::collection::vec(1usize..100_000, 1..8),
        ],
        skip in 0usize..3,
        keep_originals in any::<bool>(),
    ) {
        sends_exactly_the_commands_of(&pieces, sizes, skip, keep_originals)?;
    }
}
