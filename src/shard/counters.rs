//! Per-shard counters. Each shard writes only its own block (one cache
//! line apart from the others, so no line bounces between cores) with plain
//! relaxed load+store, never a locked read-modify-write; the stats reader
//! sums all blocks.

use std::sync::atomic::{AtomicU64, AtomicU8, Ordering::Relaxed};

use crossbeam_utils::CachePadded;

use crate::proxy::DropReason;

/// Number of [`DropReason`] values, for the drop counter array.
pub const DROP_REASONS: usize = DropReason::ALL.len();

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
    /// Drops, indexed by `DropReason as usize`.
    pub drops: [AtomicU64; DROP_REASONS],
    /// Datagrams that did not tokenize as SIP (also counted as a drop).
    pub parse_errors: AtomicU64,
    /// Datagrams the kernel refused to send.
    pub send_failed: AtomicU64,
    /// Requests received, by method (index: `Method::index`).
    pub requests: [AtomicU64; 15],
    /// Bindings created by REGISTERs this shard owns.
    pub bindings_created: AtomicU64,
    /// Bindings refreshed (re-registered) by REGISTERs this shard owns.
    pub bindings_refreshed: AtomicU64,
    /// Bindings removed by REGISTERs (expires=0, `*`, replaced by max-contacts).
    pub bindings_removed: AtomicU64,
    /// Bindings that lapsed and were removed by this shard's expiry wheel.
    pub bindings_expired: AtomicU64,
    /// REGISTERs this shard applied as owner that changed bindings (not
    /// queries, not retransmissions).
    pub registered: AtomicU64,
    /// Sources that went over `--rate-limit` and were banned.
    pub sources_banned: AtomicU64,
    /// REGISTERs passed to their owner shard's inbox.
    pub handed_off: AtomicU64,
    /// REGISTERs answered 503 because the owner's inbox was full or the
    /// log could not be written.
    pub registers_refused: AtomicU64,
    /// Log writes or syncs that failed (`--state-dir`).
    pub store_errors: AtomicU64,
    /// AORs in this shard's replica (a gauge).
    pub aors: AtomicU64,
    /// Replica updates waiting for room in other shards' inboxes (a gauge).
    pub updates_waiting: AtomicU64,
    /// The longest an owner's change took to reach this shard's replica,
    /// in microseconds (publish to apply).
    pub replica_delay_max_us: AtomicU64,
    /// The reason of the latest drop, as `reason as u8 + 1`; 0: none since
    /// [`ShardCounters::take_last_drop`]. Not a metric: it tells the
    /// shard's drop log whether and why the datagram just handled was
    /// dropped, without a hook at every drop site.
    pub last_drop: AtomicU8,
}

impl ShardCounters {
    /// Counts one drop.
    #[inline]
    pub fn dropped(&self, r: DropReason) {
        add(&self.drops[r as usize], 1);
        self.last_drop.store(r as u8 + 1, Relaxed);
    }

    /// The reason of the latest drop since the last call, if any; clears it.
    #[inline]
    pub fn take_last_drop(&self) -> Option<DropReason> {
        let r = self.last_drop.load(Relaxed);
        if r == 0 {
            return None;
        }
        self.last_drop.store(0, Relaxed);
        DropReason::ALL.get(usize::from(r) - 1).copied()
    }
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
