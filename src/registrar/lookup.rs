//! Lookup (RFC 3261 §16.5, §16.6 step 1): which of an AOR's bindings a
//! request for it goes to.

use crate::location::record::{AorRecord, BindingView};

/// The binding a proxy should try first: highest q (absent counts as 1.0),
/// then the newest (§16.6 step 1 leaves the choice to the location
/// service; one target because a stateless proxy cannot fork).
pub fn best(record: &AorRecord, now: u64) -> Option<BindingView<'_>> {
    record
        .bindings()
        .filter(|b| b.expires_at > now)
        .max_by_key(|b| (b.q.unwrap_or(1000), b.created_at))
}
