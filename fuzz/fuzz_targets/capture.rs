//! A send queue that keeps every datagram a shard sends, for the fuzz
//! targets that look at all of them.

use sipshard::io::SendQueue;
use sipshard::transport::Dest;

/// One send slot of `buf`; each committed datagram is copied into `sent`.
pub struct Capture {
    pub buf: Vec<u8>,
    pub sent: Vec<Vec<u8>>,
}

impl Capture {
    /// A queue whose slot holds `slot` bytes.
    pub fn new(slot: usize) -> Capture {
        Capture {
            buf: vec![0u8; slot],
            sent: Vec::new(),
        }
    }
}

impl SendQueue for Capture {
    fn slot(&mut self) -> Option<&mut [u8]> {
        Some(&mut self.buf[..])
    }
    fn commit(&mut self, len: usize, _dest: Dest) {
        self.sent.push(self.buf[..len].to_vec());
    }
}
