//! Lookup (RFC 3261 §16.5, §16.6 step 1): which of an AOR's bindings a
//! request for it goes to.

use crate::location::record::{AorRecord, BindingView};

/// The binding a proxy should try first: highest q (absent counts as 1.0),
/// then the newest (§16.6 step 1 leaves the choice to the location
/// service; a stateless proxy cannot fork, so this is its one target).
pub fn best(record: &AorRecord, now: u64) -> Option<BindingView<'_>> {
    record
        .bindings()
        .filter(|b| b.expires_at > now)
        .max_by_key(|b| (b.q.unwrap_or(1000), b.created_at))
}

/// Every live binding of `record`, in the order a stateful proxy forks
/// to them (§16.6 step 1, §16.7): by q, highest first (absent counts as
/// 1.0), then the newest; each as its index in the record and its q in
/// thousandths. The first is [`best`]'s.
pub fn fork_order(record: &AorRecord, now: u64) -> Vec<(usize, u16)> {
    let mut order: Vec<(usize, u16, u64)> = record
        .bindings()
        .enumerate()
        .filter(|(_, b)| b.expires_at > now)
        .map(|(i, b)| (i, b.q.unwrap_or(1000), b.created_at))
        .collect();
    // Ties go to the later index, as `max_by_key` in `best` picks.
    order.sort_unstable_by_key(|&(i, q, created)| std::cmp::Reverse((q, created, i)));
    order.into_iter().map(|(i, q, _)| (i, q)).collect()
}

/// The live binding at `index` in `record` (as [`fork_order`] names it).
pub fn nth_live(record: &AorRecord, index: usize, now: u64) -> Option<BindingView<'_>> {
    record.bindings().nth(index).filter(|b| b.expires_at > now)
}

/// How many of `record`'s bindings are live; without allocating.
pub fn live_count(record: &AorRecord, now: u64) -> usize {
    record.bindings().filter(|b| b.expires_at > now).count()
}
