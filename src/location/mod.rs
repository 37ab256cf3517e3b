//! The location service: AOR -> bindings, written by one owner shard per
//! AOR and read by every shard from its own replica (ARCHITECTURE.md,
//! "Location: sharded writes, replicated reads").
//!
//! So far: the replica and its operations (issue #4, first step). The
//! owner's inboxes, the broadcast, the expiry wheel and durability are
//! still to come.

pub mod replica;

pub use replica::{aor_hash, canonical_aor, owner_of, AorRecord, LocationOp, Replica};
