//! Hash slots: which of the 16384 slots a key belongs to (the cluster spec's
//! CRC16/XMODEM of the key, or of its `{hashtag}` when that is non-empty).
//!
//! Place in the data flow: the router calls `key_slot` on each command's
//! first key to pick the primary that owns it, and keeps each slot's
//! commands in order through a change of owner with `SlotOrder`.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use crossbeam_channel::{Receiver, Sender, bounded};

/// Number of hash slots in a Redis Cluster.
pub const SLOT_COUNT: usize = 16384;

/// Keeps the commands of each slot in input order when the slot changes
/// owner. The router counts, on its own, the commands it routes by each
/// slot; the reply readers count here those settled, answered where they
/// finally ran. While a slot whose owner changed still has commands
/// unsettled, they are on their way to the new owner (answered `MOVED` by
/// the old one, then resent), and a later command sent straight there could
/// overtake them: the router waits for the two counts to meet before it
/// switches; a reader that counts a command of the slot it waits on wakes
/// it. Each primary's reader mostly counts the slots it owns, so the
/// readers seldom touch the same counters.
pub struct SlotOrder {
    settled: Vec<AtomicU64>,
    /// The slot the router waits on, plus one; 0 while it waits on none.
    watched: AtomicU32,
    /// Holds at most one wake-up; extra ones are dropped.
    wake: Sender<()>,
    woken: Receiver<()>,
}

impl Default for SlotOrder {
    fn default() -> Self {
        let (wake, woken) = bounded(1);
        SlotOrder {
            settled: (0..SLOT_COUNT).map(|_| AtomicU64::new(0)).collect(),
            watched: AtomicU32::new(0),
            wake,
            woken,
        }
    }
}

impl SlotOrder {
    // A reader counts a command after its reply arrived, so a count the
    // router reads means the node has run that many commands of the slot.
    // SeqCst on the count and on `watched`: either the router sees the new
    // count once it watches the slot, or the reader sees it watching and
    // wakes it.
    pub fn settled(&self, slot: u16) {
        self.settled[usize::from(slot)].fetch_add(1, Ordering::SeqCst);
        if self.watched.load(Ordering::SeqCst) == u32::from(slot) + 1 {
            let _ = self.wake.try_send(());
        }
    }

    /// Undoes `settled` for a command that is to be sent again.
    pub fn unsettled(&self, slot: u16) {
        self.settled[usize::from(slot)].fetch_sub(1, Ordering::Relaxed);
    }

    /// Commands of `slot` settled so far.
    pub fn settled_count(&self, slot: u16) -> u64 {
        self.settled[usize::from(slot)].load(Ordering::SeqCst)
    }

    /// Waits until `slot` has `count` commands settled, or `stopped` is
    /// ready (then returns false).
    pub fn wait_settled(&self, slot: u16, count: u64, stopped: &Receiver<()>) -> bool {
        self.watched.store(u32::from(slot) + 1, Ordering::SeqCst);
        let drained = loop {
            if self.settled_count(slot) >= count {
                break true;
            }
            crossbeam_channel::select! {
                recv(self.woken) -> _ => {}
                recv(stopped) -> _ => break false,
            }
        };
        self.watched.store(0, Ordering::SeqCst);
        drained
    }
}

/// CRC16/XMODEM (polynomial 0x1021, initial value 0), a byte at a time
/// through a table: `--connections` hashes the keys of every command.
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &byte| {
        (crc << 8) ^ CRC16_TABLE[usize::from((crc >> 8) as u8 ^ byte)]
    })
}

/// The CRC of each byte value, as the bit-by-bit loop computes it.
const CRC16_TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut byte = 0;
    while byte < 256 {
        let mut crc = (byte as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = match crc & 0x8000 {
                0 => crc << 1,
                _ => (crc << 1) ^ 0x1021,
            };
            bit += 1;
        }
        table[byte] = crc;
        byte += 1;
    }
    table
};

/// The part of the key that is hashed: the text between the first `{` and
/// the first `}` after it, when that is non-empty; else the whole key.
fn hashed_part(key: &[u8]) -> &[u8] {
    if let Some(open) = find_byte(b'{', key)
        && let Some(length) = find_byte(b'}', &key[open + 1..])
        && length > 0
    {
        return &key[open + 1..open + 1 + length];
    }
    key
}

/// Where `byte` first is in `haystack`: most keys are a few dozen bytes,
/// shorter than a vectorised search gains on.
#[inline]
fn find_byte(byte: u8, haystack: &[u8]) -> Option<usize> {
    match haystack.len() {
        0..64 => haystack.iter().position(|&each| each == byte),
        _ => memchr::memchr(byte, haystack),
    }
}

pub fn key_slot(key: &[u8]) -> u16 {
    crc16(hashed_part(key)) & (SLOT_COUNT as u16 - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc16_check_value() {
        assert_eq!(crc16(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"123456789"), 0x31C3);
    }

    #[test]
    fn hashtags_as_in_the_cluster_spec() {
        assert_eq!(
            key_slot(b"{user1000}.following"),
            key_slot(b"{user1000}.followers")
        );
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        // An empty tag hashes the whole key.
        assert_eq!(hashed_part(b"foo{}{bar}"), b"foo{}{bar}");
        assert_eq!(hashed_part(b"foo{{bar}}zap"), b"{bar");
        assert_eq!(hashed_part(b"foo{bar}{zap}"), b"bar");
        assert_eq!(hashed_part(b"{"), b"{");
        assert_eq!(hashed_part(b"no tag"), b"no tag");
    }
}
