//! What became of one message: the value the pipeline returns, so that
//! the caller (the loop's drop log, tests, the fuzzer) sees why a message
//! was dropped without reading it back from the counters.

use crate::proxy::DropReason;

/// The fate of one received message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Sent on toward its next hop.
    Forwarded,
    /// Answered here with this status.
    Answered(u16),
    /// Passed to another shard (a REGISTER to its AOR's owner); that shard
    /// answers.
    HandedOff,
    /// A retransmission its transaction absorbed (`--mode stateful`),
    /// having sent again what it had to.
    Absorbed,
    /// Dropped, and counted under this reason.
    Dropped(DropReason),
}

impl Outcome {
    /// The drop reason, for a dropped message.
    pub fn dropped(self) -> Option<DropReason> {
        match self {
            Outcome::Dropped(r) => Some(r),
            _ => None,
        }
    }
}
