//! A buffer read into in large chunks and consumed from the front: the input
//! thread reads sources through one, the reply reader reads the socket
//! through another.
//!
//! Place in the data flow: under the scanners. They see `unread()`, say how
//! much they used with `consume`, and ask for `read_from` when a frame or a
//! reply is not complete yet. The storage is zeroed once, when it grows, not
//! on every read, and only the unconsumed tail is moved to the front before
//! reading, so a partial command costs its own length and no more.

use std::io::{self, Read};

#[derive(Debug)]
pub struct ReadBuffer {
    /// Always fully initialised; bytes live in `storage[start..end]`.
    storage: Vec<u8>,
    start: usize,
    end: usize,
    /// Stream offset of `storage[start]`.
    offset: u64,
}

impl ReadBuffer {
    /// A buffer that reads up to `chunk` bytes at a time (more once a single
    /// frame needs more room).
    pub fn new(chunk: usize) -> Self {
        ReadBuffer {
            storage: vec![0; chunk.max(1)],
            start: 0,
            end: 0,
            offset: 0,
        }
    }

    /// The bytes read and not consumed yet.
    pub fn unread(&self) -> &[u8] {
        &self.storage[self.start..self.end]
    }

    /// Marks the first `len` unread bytes as used.
    pub fn consume(&mut self, len: usize) {
        let len = len.min(self.end - self.start);
        self.start += len;
        self.offset += len as u64;
    }

    /// Offset in the stream of the first unread byte.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Takes up after the caller read the stream itself, bypassing the
    /// buffer (a frame too big to pass through it), which must hold nothing
    /// unread: `used` bytes it kept, then `past` which it read beyond them
    /// and which become the unread bytes.
    pub fn resume_after_bypass(&mut self, used: u64, past: &[u8]) {
        debug_assert_eq!(self.start, self.end, "bytes read around unread ones");
        self.offset += used;
        if past.len() > self.storage.len() {
            self.storage.resize(past.len(), 0);
        }
        self.storage[..past.len()].copy_from_slice(past);
        self.start = 0;
        self.end = past.len();
    }

    /// Reads once more from `reader`, after the unread bytes. Returns the
    /// number of bytes read: 0 at the end of the stream.
    pub fn read_from(&mut self, reader: &mut impl Read) -> io::Result<usize> {
        if self.start > 0 {
            self.storage.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.storage.len() {
            let grown = self.storage.len() * 2;
            self.storage.resize(grown, 0);
        }
        loop {
            match reader.read(&mut self.storage[self.end..]) {
                Ok(read) => {
                    self.end += read;
                    return Ok(read);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_unconsumed_tail_across_reads() {
        let mut source: &[u8] = b"hello world, and more";
        let mut buffer = ReadBuffer::new(4);
        assert_eq!(buffer.read_from(&mut source).unwrap(), 4);
        assert_eq!(buffer.unread(), b"hell");
        buffer.consume(3);
        assert_eq!(buffer.offset(), 3);
        assert_eq!(buffer.read_from(&mut source).unwrap(), 3);
        assert_eq!(buffer.unread(), b"lo w");
        // Full with nothing consumed: it grows instead of reading nothing.
        assert_eq!(buffer.read_from(&mut source).unwrap(), 4);
        assert_eq!(buffer.unread(), b"lo world");
        buffer.consume(100);
        assert_eq!(buffer.unread(), b"");
        assert_eq!(buffer.offset(), 11);
        while buffer.read_from(&mut source).unwrap() > 0 {}
        assert_eq!(buffer.unread(), b", and more");
    }
}
