//! Helpers shared by the tests: byte mutation for the property tests,
//! and the process and socket helpers of the end-to-end tests.
#![allow(dead_code)]

pub mod metrics;
pub mod process;
pub mod redis;
pub mod sip;
pub mod tcp;
pub mod ws;

use proptest::sample::Index;

/// One byte edit: where, which byte, and 0 = overwrite, 1 = insert,
/// else delete.
pub type ByteEdit = (Index, u8, u8);

/// Applies byte edits to a message, as a fuzzer would.
pub fn mutate(data: &mut Vec<u8>, edits: &[ByteEdit]) {
    for (at, byte, kind) in edits {
        if data.is_empty() {
            break;
        }
        let i = at.index(data.len());
        match kind {
            0 => data[i] = *byte,
            1 => data.insert(i, *byte),
            _ => {
                data.remove(i);
            }
        }
    }
}
