//! The location service: AOR -> bindings, written by one owner shard per
//! AOR and read by every shard from its own replica (ARCHITECTURE.md,
//! "Location: sharded writes, replicated reads").
//!
//! The storage half of Kamailio's usrloc/registrar split: it keeps and
//! replicates bindings and knows no SIP rule; [`crate::registrar`] decides
//! what they are.
//!
//! - [`binding`]: one binding, as stored;
//! - [`record`]: one AOR's bindings, packed in one immutable block;
//! - [`replica`]: a shard's lock-free read copy (shared `Arc` records),
//!   its arrays in [`pages`] from `mmap`;
//! - [`owner`]: a shard's replica plus its duties as owner (publish,
//!   expire, log);
//! - [`expiry`]: the owner's timer wheel;
//! - [`store`]: the log and snapshots of `--state-dir`.

pub mod binding;
pub mod expiry;
pub mod owner;
pub mod pages;
pub mod record;
pub mod replica;
pub mod store;

pub use binding::Binding;
pub use replica::{aor_hash, owner_of, AorRecord, LocationOp, Replica};
