//! How an I/O error is worded for the user: as the C library words it
//! ("Connection refused"), the way redis-cli prints it.
//!
//! Place in the data flow: a leaf, used wherever an I/O failure is reported
//! (input, connection, TLS, errors file).

use std::io;

/// An I/O error without Rust's " (os error 111)" suffix.
pub fn describe_io_error(error: &io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error ") {
        Some(at) => text[..at].to_owned(),
        None => text,
    }
}
