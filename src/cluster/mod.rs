//! Several nodes, one location service, through Redis (`--cluster`;
//! ARCHITECTURE.md, "Location"; docs/cluster.md).
//!
//! Every node keeps the whole location table in its own replicas, so a
//! lookup never leaves the node. Each change its registrar makes goes to
//! Redis (a hash per AOR, a field per binding, and an entry in a stream);
//! every node follows the stream into its owners and replicas. No
//! consensus of our own: per binding, the greater change wins, the same
//! on every node and in Redis.
//!
//! - [`wire`]: one binding's change as Redis holds it, and its order key;
//! - [`merge`]: how another node's change is folded in, and removals
//!   remembered;
//! - [`side`]: an owner shard's part (what it hands the link, what it
//!   takes from it);
//! - [`link`]: the writer and tailer threads.

pub mod link;
pub mod merge;
pub mod side;
pub mod wire;

pub use link::{Link, LinkConfig, LinkStats};
pub use side::{Routes, Side};
pub use wire::Change;
