//! `--askpass`: the password read at the start of the run, as redis-cli
//! reads it: typed at the terminal without echo when stdin is a terminal,
//! else stdin's first line (the input's commands follow it).
//!
//! Place in the data flow: before anything else in `run`, before signals
//! are watched and before the input is opened, so the input reader starts
//! on the line after the password. stdin is read with `read(2)` one byte at
//! a time, so nothing past the password's line is consumed.

use std::io::{self, Write};

use anyhow::{Result, bail};

const PROMPT: &str = "Please input password: ";

/// Reads the password (without its line end).
pub fn read_password() -> Result<String> {
    // SAFETY: isatty only inspects the descriptor.
    let typed = match unsafe { libc::isatty(libc::STDIN_FILENO) } == 1 {
        true => read_from_terminal()?,
        false => read_first_line()?,
    };
    match String::from_utf8(typed) {
        Ok(password) => Ok(password),
        Err(_) => bail!("--askpass: the password is not valid UTF-8"),
    }
}

/// One byte of stdin; `None` at its end.
fn read_byte() -> io::Result<Option<u8>> {
    let mut byte = 0u8;
    loop {
        // SAFETY: reads at most one byte into a live local.
        let read = unsafe { libc::read(libc::STDIN_FILENO, (&raw mut byte).cast(), 1) };
        match read {
            1 => return Ok(Some(byte)),
            0 => return Ok(None),
            _ => {
                let error = io::Error::last_os_error();
                if error.kind() != io::ErrorKind::Interrupted {
                    return Err(error);
                }
            }
        }
    }
}

/// stdin's first line, CR LF or LF ended.
fn read_first_line() -> Result<Vec<u8>> {
    let mut line = Vec::new();
    loop {
        match read_byte() {
            Ok(Some(b'\n')) => break,
            Ok(Some(byte)) => line.push(byte),
            Ok(None) if line.is_empty() => {
                bail!("--askpass: stdin is not a terminal and ended before a password line")
            }
            Ok(None) => break,
            Err(error) => bail!("--askpass: cannot read the password from stdin: {error}"),
        }
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(line)
}

/// Typed at the terminal with echo off. Ctrl-C comes as a byte (signals
/// off) and cancels, so the terminal is always given back as it was.
fn read_from_terminal() -> Result<Vec<u8>> {
    // SAFETY: termios is plain data, filled by tcgetattr.
    let mut saved: libc::termios = unsafe { std::mem::zeroed() };
    // SAFETY: valid descriptor and pointer.
    if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
        bail!(
            "--askpass: cannot set up the terminal: {}",
            io::Error::last_os_error()
        );
    }
    let mut quiet = saved;
    quiet.c_lflag &= !(libc::ECHO | libc::ICANON | libc::ISIG);
    quiet.c_cc[libc::VMIN] = 1;
    quiet.c_cc[libc::VTIME] = 0;
    let mut stderr = io::stderr();
    let _ = stderr.write_all(PROMPT.as_bytes());
    // SAFETY: valid descriptor and pointer.
    if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &quiet) } != 0 {
        bail!(
            "--askpass: cannot turn off the terminal's echo: {}",
            io::Error::last_os_error()
        );
    }
    let typed = read_typed_password();
    // SAFETY: restores the settings read above.
    unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &saved) };
    let _ = stderr.write_all(b"\n");
    typed
}

fn read_typed_password() -> Result<Vec<u8>> {
    const CTRL_C: u8 = 0x03;
    const CTRL_D: u8 = 0x04;
    const BACKSPACE: u8 = 0x08;
    const DELETE: u8 = 0x7f;
    let mut password = Vec::new();
    loop {
        match read_byte() {
            Ok(Some(b'\r' | b'\n')) => return Ok(password),
            Ok(Some(CTRL_C)) => bail!("--askpass: no password given (Ctrl-C)"),
            Ok(Some(CTRL_D)) | Ok(None) if password.is_empty() => {
                bail!("--askpass: no password given (end of input)")
            }
            Ok(Some(CTRL_D)) | Ok(None) => return Ok(password),
            Ok(Some(BACKSPACE | DELETE)) => {
                password.pop();
            }
            Ok(Some(byte)) => password.push(byte),
            Err(error) => bail!("--askpass: cannot read the password: {error}"),
        }
    }
}
