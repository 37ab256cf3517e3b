//! sipshard: a carrier-grade SIP edge server built as a per-core packet
//! processor.
//!
//! Every shard thread owns a UDP socket bound with `SO_REUSEPORT`, receives
//! datagrams in batches, and handles each one in place: [`sip::Message`]
//! parses the datagram without copying it, the routing step decides what to
//! do with it, and [`sip::Edits`] writes the outgoing datagram by splicing
//! the original bytes into a send buffer. Nothing on that path allocates or
//! takes a lock. See `ARCHITECTURE.md` in the shared design folder for the
//! whole picture; this crate currently holds the parser and writer
//! (issue #2), with the shards, proxy and registrar to come.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(rust_2018_idioms)]

pub mod admit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod hash;
pub mod io;
pub mod location;
pub mod logging;
pub mod metrics;
pub mod proxy;
pub mod registrar;
pub mod server;
pub mod shard;
pub mod sip;
pub mod stats;
pub mod transport;

/// The code examples in README.md run as doc tests, so the README cannot
/// drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

/// The code examples in docs/parser.md run as doc tests too.
#[cfg(doctest)]
#[doc = include_str!("../docs/parser.md")]
struct ParserDocDoctests;
