//! sipshard: a carrier-grade SIP edge server (RFC 3261 proxy, registrar,
//! location service and redirect server) built as a per-core packet
//! processor.
//!
//! Every shard thread owns its sockets (`SO_REUSEPORT`), receives messages
//! in batches and handles each one in place: it is admitted ([`admit`]),
//! parsed without copying ([`sip::Message`]), authenticated when asked
//! ([`auth`]), routed by a pure function ([`proxy`], with [`registrar`]
//! over [`location`] for REGISTER and lookups), and written out by splicing
//! edits into a send buffer ([`sip::Edits`]). Nothing on the forwarding
//! path allocates or takes a lock. State has one owner shard (an AOR's
//! bindings: `hash(AOR) % shards`); the others read immutable replicas and
//! reach the owner through bounded mailboxes ([`shard::mail`]).
//! `docs/architecture.md` walks through it with the RFC section of each
//! part.
//!
//! # Layers
//! Imports run one way, from the bottom up; a module never imports one
//! above it:
//!
//! ```text
//! hash  <-  sip  <-  transport  <-  location  <-  registrar  <-  proxy  <-  transaction
//!            ^          ^
//!            |          +-- io (sockets, batches; knows transport ids, not SIP)
//!            +------------- auth, admit (sip and hash only; admit also transport)
//! cli (flag types from auth, admit, io)
//! shard  <-  telemetry  <-  config  <-  server  <-  main
//! probe (the upstream prober's thread: sip, transport, proxy)  <-  server
//! cluster (the Redis link: location, registrar, proxy's flow tokens)  <-  shard
//! ```
//! `shard` sees everything below it; `telemetry` reads the shards'
//! counters; `config` builds each layer's settings from `cli`; `server`
//! starts it all. `tests/layers.rs` holds the same table and fails on any
//! import against it, so the rule cannot drift silently.

#![deny(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(rust_2018_idioms)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod admit;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod hash;
pub mod io;
pub mod location;
pub mod probe;
pub mod proxy;
pub mod registrar;
pub mod server;
pub mod shard;
pub mod sip;
pub mod telemetry;
pub mod transaction;
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
