//! Per-shard counters. Each shard writes only its own block (one cache
//! line apart from the others, so no line bounces between cores) with plain
//! relaxed load+store, never a locked read-modify-write; the stats reader
//! sums all blocks.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

use crate::proxy::DropReason;

/// Number of [`DropReason`] values, for the drop counter array.
pub const DROP_REASONS: usize = 8;

/// Index of a drop reason in [`ShardCounters::drops`].
pub fn drop_index(r: DropReason) -> usize {
    match r {
        DropReason::KeepAlive => 0,
        DropReason::Malformed => 1,
        DropReason::NotOurVia => 2,
        DropReason::NoNextVia => 3,
        DropReason::Unresolved => 4,
        DropReason::WriteFailed => 5,
        DropReason::Oversize => 6,
        DropReason::AckNotAnswered => 7,
    }
}

/// Names of the drop reasons, in index order, for reports.
pub const DROP_NAMES: [&str; DROP_REASONS] = [
    "keepalive",
    "malformed",
    "not_our_via",
    "no_next_via",
    "unresolved",
    "write_failed",
    "oversize",
    "ack_not_answered",
];

/// One shard's counters.
#[derive(Default, Debug)]
pub struct ShardCounters {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Requests forwarded.
    pub forwarded_requests: AtomicU64,
    /// Responses forwarded.
    pub forwarded_responses: AtomicU64,
    /// Local replies by status class: index 1 for 1xx ... 6 for 6xx.
    pub replies: [AtomicU64; 7],
    /// Drops by [`DropReason`] (see [`drop_index`]).
    pub drops: [AtomicU64; DROP_REASONS],
    /// Datagrams that did not tokenize as SIP (also counted as a drop).
    pub parse_errors: AtomicU64,
    /// Datagrams the kernel refused to send.
    pub send_failed: AtomicU64,
}

/// Adds `n` to a counter only this shard writes.
#[inline]
pub fn add(c: &AtomicU64, n: u64) {
    c.store(c.load(Relaxed).wrapping_add(n), Relaxed);
}

/// Counters for every shard, each on its own cache line.
pub type AllCounters = Vec<CachePadded<ShardCounters>>;

/// Sum of one counter over all shards.
pub fn total(all: &[CachePadded<ShardCounters>], f: impl Fn(&ShardCounters) -> &AtomicU64) -> u64 {
    all.iter().map(|c| f(c).load(Relaxed)).sum()
}
