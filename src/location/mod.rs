//! The location service: AOR -> bindings, written by one owner shard per
//! AOR and read by every shard from its own replica (ARCHITECTURE.md,
//! "Location: sharded writes, replicated reads").
//!
//! - [`record`]: one AOR's bindings, packed in one immutable block;
//! - [`replica`]: a shard's lock-free read copy (shared `Arc` records),
//!   its arrays in [`pages`] from `mmap`;
//! - [`inbox`]: the bounded shard-to-shard mail and its wake-up;
//! - [`shard`]: a shard's replica plus its duties as owner (publish,
//!   expire, log);
//! - [`expiry`]: the owner's timer wheel;
//! - [`store`]: the log and snapshots of `--state-dir`.

pub mod expiry;
pub mod inbox;
pub mod pages;
pub mod record;
pub mod replica;
pub mod shard;
pub mod store;

pub use replica::{aor_hash, canonical_aor, owner_of, AorRecord, LocationOp, Replica};
