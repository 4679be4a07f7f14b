//! The manual page (`pipeload --man`): what a reader of `man pipeload`
//! needs, in roff. The NAME line, the options and their help come from the
//! clap definition (clap_mangen), so they never drift from `--help`; the
//! sections around them (synopsis, input syntax, exit status, environment,
//! resuming, examples) are written here.
//!
//! Place in the data flow: none; `cli` hands its command definition here
//! and prints the page.

use std::io;

use clap_mangen::Man;

/// The page, ready for `man -l`.
pub fn render(command: clap::Command) -> io::Result<Vec<u8>> {
    let man = Man::new(command);
    // Not clap_mangen's title: without a date it drops the empty field,
    // and the version lands where man shows the date.
    let mut page = TITLE.as_bytes().to_vec();
    man.render_name_section(&mut page)?;
    page.extend_from_slice(SYNOPSIS_AND_DESCRIPTION.as_bytes());
    page.extend_from_slice(INPUT.as_bytes());
    let mut options = Vec::new();
    man.render_options_section(&mut options)?;
    page.extend_from_slice(grouped_options(&String::from_utf8_lossy(&options)).as_bytes());
    page.extend_from_slice(AFTER_OPTIONS.as_bytes());
    Ok(roff_escaped_unicode(&String::from_utf8_lossy(&page)).into_bytes())
}

/// troff reads bytes, not UTF-8: every character beyond ASCII in the help
/// texts (`…`, `—`) becomes its `\[uXXXX]` escape, which groff and mandoc
/// render as the character.
fn roff_escaped_unicode(page: &str) -> String {
    let mut escaped = String::with_capacity(page.len());
    for character in page.chars() {
        match character.is_ascii() {
            true => escaped.push(character),
            false => escaped.push_str(&format!("\\[u{:04X}]", u32::from(character))),
        }
    }
    escaped
}

/// clap_mangen makes each help heading a section of its own; a man page
/// has one OPTIONS section with the headings as subsections, in the order
/// `--help` shows them.
fn grouped_options(rendered: &str) -> String {
    let mut grouped = String::with_capacity(rendered.len() + 32);
    let mut in_options = false;
    for line in rendered.lines() {
        if line.starts_with(".SH ") && !in_options {
            in_options = true;
            if line != ".SH OPTIONS" {
                grouped.push_str(".SH OPTIONS\n");
            }
        }
        match line.strip_prefix(".SH ") {
            Some("OPTIONS") => grouped.push_str(line),
            Some(heading) => {
                let mut title = heading.to_ascii_lowercase();
                if let Some(first) = title.get_mut(..1) {
                    first.make_ascii_uppercase();
                }
                grouped.push_str(&format!(".SS {}", title.replace("Tls", "TLS")));
            }
            None => grouped.push_str(line),
        }
        grouped.push('\n');
    }
    grouped
}

const TITLE: &str = concat!(
    ".TH pipeload 1 \"\" \"pipeload ",
    env!("CARGO_PKG_VERSION"),
    "\" \"User Commands\"\n"
);

const SYNOPSIS_AND_DESCRIPTION: &str = r#".SH SYNOPSIS
.B pipeload
[\fB\-h\fR \fIHOSTNAME\fR] [\fB\-p\fR \fIPORT\fR | \fB\-s\fR \fISOCKET\fR | \fB\-u\fR \fIURI\fR]
[\fB\-a\fR \fIPASSWORD\fR | \fB\-\-askpass\fR] [\fB\-\-user\fR \fIUSERNAME\fR] [\fB\-n\fR \fIDB\fR]
[\fB\-c\fR] [\fB\-\-tls\fR ...] [\fB\-\-skip\fR \fIN\fR] [\fB\-\-retry\fR \fIN\fR]
[\fB\-\-errors\-file\fR \fIFILE\fR] [\fB\-\-json\fR] [\fIOPTIONS\fR] [\fIFILE\fR ...]
.br
.B pipeload \-\-emit\-resp
[\fB\-\-format\fR \fIFORMAT\fR] [\fIFILE\fR ...]
.br
\fIproducer\fR | \fBpipeload \-\-pipe\fR [\fIOPTIONS\fR]
.SH DESCRIPTION
.B pipeload
loads Redis commands into Redis, Valkey or a Redis Cluster as fast as the
server can execute them. It is a drop\-in replacement for
\fBredis\-cli \-\-pipe\fR: it takes the same connection flags and prints the
same summary, but it splits text lines itself with the server's quoting
rules and sends them as RESP (a bad line is reported with its line number
and skipped, the rest still loads), reports every error reply with the
file and line it came from, follows a cluster with \fB\-c\fR, and when a
load stops early still prints how many commands are known to be applied
and the \fB\-\-skip\fR value that resumes it.
.PP
Commands are read from the FILE arguments in order (\fB\-\fR is standard
input), or from standard input when none is given. At a terminal, pipeload
says that it reads typed commands (end them with Ctrl\-D).
.PP
Nothing is sent until the server answers the connection handshake
(\fBAUTH\fR, \fBHELLO\fR, \fBSELECT\fR as the flags ask).
"#;

const INPUT: &str = r#".SH INPUT
Each command is recognised the way the server recognises it: a command
whose first byte is \fB*\fR is a RESP array, anything else is a text line
(\fB\-\-format text\fR or \fB\-\-format resp\fR forces one).
.TP
.B Text lines
Arguments are separated by spaces or tabs. Double quotes allow
\fB\en \er \et \eb \ea \exHH\fR, \fB\e"\fR and \fB\e\e\fR; single quotes
allow \fB\e'\fR; \fB""\fR is an empty argument. LF and CRLF line ends,
blank lines skipped, no length limit. A line with unbalanced quotes, a
closing quote followed by a non\-space, or a NUL byte is reported with its
line number and not sent; the other lines still load.
.TP
.B RESP
Arrays of bulk strings are checked and passed through byte for byte (an
append\-only file loads as it is). A malformed frame stops the input
there, and its byte offset is reported.
.TP
.B Replies
\fBCLIENT REPLY OFF|SKIP|ON\fR, \fBMULTI\fR/\fBEXEC\fR and \fBHELLO 3\fR may
appear in the input: replies are still counted exactly.
\fBSUBSCRIBE\fR and \fBMONITOR\fR are refused as bad lines. A command that
can block (\fBBLPOP\fR, \fBWAIT\fR, \fBXREAD BLOCK\fR, ...) gets one warning:
every command after it waits for it.
"#;

const AFTER_OPTIONS: &str = r#".SH OUTPUT
On standard output, what \fBredis\-cli \-\-pipe\fR prints:
.PP
.nf
.RS
All data transferred. Waiting for the last reply...
Last reply received from server.
errors: 0, replies: 1000000
.RE
.fi
.PP
or, with \fB\-\-json\fR, one JSON object. Every problem is one line on
standard error with where it came from, for example
\fBdata.txt:12: WRONGTYPE Operation against a key holding the wrong kind of value\fR.
.PP
With \fB\-\-replies\fR \fIFILE\fR every reply is written to \fIFILE\fR in
input order, as \fBredis\-cli \-\-raw\fR prints it, as one JSON object a line
with its input line (\fB\-\-replies\-format json\fR), or as received
(\fBresp\fR); with \fB\-\-replies \-\fR they go to standard output and the
summary to standard error.
.SH EXIT STATUS
.TP
.B 0
Every command was sent and answered without an error.
.TP
.B 1
Error replies or refused lines, a server that could not be reached or
refused the password, a load that stopped early (lost connection, no
replies for \fB\-\-pipe\-timeout\fR, malformed RESP, \fB\-\-max\-errors\fR),
\fB\-\-skip\fR beyond the end of the input, or under \fB\-\-retry\fR a
server that restarted during the load.
.TP
.B 2
Bad usage: an unknown flag or a value that cannot be used.
.TP
.BR 130 ", " 143
Stopped by SIGINT (Ctrl\-C) or SIGTERM; the summary is still printed.
.SH ENVIRONMENT
.TP
.B REDISCLI_AUTH
The password, when \fB\-a\fR and \fB\-u\fR give none (ignored with
\fB\-\-askpass\fR), as for redis\-cli; it keeps the password off the
command line.
.TP
.BR SSL_CERT_FILE ", " SSL_CERT_DIR
With \fB\-\-tls\fR, the CA certificates to trust instead of the system's
store (when \fB\-\-cacert\fR and \fB\-\-cacertdir\fR are not given).
.TP
.B NO_COLOR
pipeload writes no color, with or without it.
.SH FILES
\fB\-\-errors\-file\fR \fIFILE\fR is created with mode 0600: it holds failed
commands as they were in the input, which may include \fBAUTH\fR lines and
their passwords.
.SH RESUMING
When a load stops early (a lost connection, \fB\-\-pipe\-timeout\fR,
\fB\-\-max\-errors\fR, Ctrl\-C), the summary says how much of the input is
known to be applied and how to go on:
.PP
.nf
.RS
errors: 1, replies: 137017
acknowledged: 137017
resume with: \-\-skip 137017
.RE
.fi
.PP
\fBacknowledged\fR counts the commands at the start of the input
(\fB\-\-skip\fR included) of which every one was answered. Load the errors
file once its cause is fixed, then run the same input again with the
\fB\-\-skip\fR value given. The commands counted \fBin flight\fR were sent
and never answered: they may have run, and the resume sends them again
(at least once). \fB\-\-retry\fR \fIN\fR does this by itself: it reconnects,
sets the session up again and resends what was not acknowledged.
.SH EXAMPLES
Load a file into a local server, as redis\-cli would:
.PP
.nf
.RS
cat data.txt | pipeload \-\-pipe
.RE
.fi
.PP
Seed a database in a CI job, failing the job on any error:
.PP
.nf
.RS
pipeload \-h "$REDIS_HOST" \-n 1 fixtures/users.txt fixtures/orders.txt
.RE
.fi
.PP
Keep the failures aside, fix them, load them again:
.PP
.nf
.RS
pipeload \-\-errors\-file failed.txt data.txt
$EDITOR failed.txt && pipeload failed.txt
.RE
.fi
.PP
Resume a load that stopped:
.PP
.nf
.RS
pipeload big.txt    # ... resume with: \-\-skip 183742
pipeload \-\-skip 183742 big.txt
.RE
.fi
.PP
Load a whole cluster through one of its nodes, over TLS:
.PP
.nf
.RS
pipeload \-c \-\-tls \-h 10.0.0.5 \-p 7000 \-\-askpass seed.resp
.RE
.fi
.PP
Read a thousand hashes in one round trip, one JSON line each:
.PP
.nf
.RS
seq 1 1000 | sed 's/^/HGETALL user:/' | pipeload \-3 \-\-replies \- \-\-replies\-format json
.RE
.fi
.PP
Convert a text file to RESP once, load it many times:
.PP
.nf
.RS
pipeload \-\-emit\-resp seed.txt > seed.resp
.RE
.fi
.SH SEE ALSO
.BR redis\-cli (1),
.BR redis\-server (1),
.BR valkey\-cli (1),
\fI\%https://redis.io/docs/latest/develop/use/patterns/bulk\-loading/\fR
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn characters_beyond_ascii_become_roff_escapes() {
        assert_eq!(
            roff_escaped_unicode("({0}, {1}\u{2026}) \u{2014} caf\u{e9}"),
            r"({0}, {1}\[u2026]) \[u2014] caf\[u00E9]"
        );
    }

    #[test]
    fn headings_become_subsections_of_one_options_section() {
        let rendered = ".SH OPTIONS\n.TP\nx\n.SH CONNECTION\n.TP\ny\n.SH TLS\n";
        assert_eq!(
            grouped_options(rendered),
            ".SH OPTIONS\n.TP\nx\n.SS Connection\n.TP\ny\n.SS TLS\n"
        );
        // clap_mangen starts every part with its string definitions.
        let preamble = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";
        let grouped = grouped_options(&format!("{preamble}.SH LOADING\n"));
        assert_eq!(grouped, format!("{preamble}.SH OPTIONS\n.SS Loading\n"));
    }
}
